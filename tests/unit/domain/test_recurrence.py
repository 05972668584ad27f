"""Recurrence due times, including month ends, end dates and counts."""

from datetime import UTC, datetime

import pytest

from shared.domain.config import Monitoring, Recurrence
from shared.domain.recurrence import latest_due, monitoring_due, next_due


def dt(*args):
    return datetime(*args, tzinfo=UTC)


def test_every_five_minutes_without_start_falls_on_the_grid():
    rec = Recurrence(unit="minutes", interval=5)
    assert latest_due(rec, dt(2026, 3, 1, 10, 7, 30)) == dt(2026, 3, 1, 10, 5)
    assert next_due(rec, dt(2026, 3, 1, 10, 7, 30)) == dt(2026, 3, 1, 10, 10)


def test_exact_due_time_counts_as_due():
    rec = Recurrence(unit="hours", interval=2, start=dt(2026, 1, 1, 9))
    assert latest_due(rec, dt(2026, 1, 1, 11)) == dt(2026, 1, 1, 11)


def test_before_start_nothing_is_due():
    rec = Recurrence(unit="days", interval=1, start=dt(2026, 5, 1))
    assert latest_due(rec, dt(2026, 4, 30, 23, 59)) is None
    assert next_due(rec, dt(2026, 4, 30)) == dt(2026, 5, 1)


def test_weeks():
    rec = Recurrence(unit="weeks", interval=2, start=dt(2026, 1, 5, 6))
    assert latest_due(rec, dt(2026, 1, 25)) == dt(2026, 1, 19, 6)


def test_months_clamp_to_the_month_end():
    rec = Recurrence(unit="months", interval=1, start=dt(2026, 1, 31, 8))
    assert latest_due(rec, dt(2026, 2, 28, 9)) == dt(2026, 2, 28, 8)
    assert latest_due(rec, dt(2026, 2, 28, 7)) == dt(2026, 1, 31, 8)
    assert next_due(rec, dt(2026, 3, 1)) == dt(2026, 3, 31, 8)


def test_count_limits_occurrences():
    rec = Recurrence(unit="minutes", interval=1, start=dt(2026, 1, 1), count=3)
    assert latest_due(rec, dt(2026, 1, 1, 5)) == dt(2026, 1, 1, 0, 2)
    assert next_due(rec, dt(2026, 1, 1, 0, 2)) is None


def test_end_date_limits_occurrences():
    rec = Recurrence(unit="hours", interval=1, start=dt(2026, 1, 1), end=dt(2026, 1, 1, 3, 30))
    assert latest_due(rec, dt(2026, 1, 2)) == dt(2026, 1, 1, 3)
    assert next_due(rec, dt(2026, 1, 1, 3)) is None


@pytest.mark.parametrize("unit", ["minutes", "hours", "days", "weeks", "months"])
def test_latest_is_never_after_now_and_next_is_after(unit):
    rec = Recurrence(unit=unit, interval=3, start=dt(2025, 7, 31, 13, 17))
    now = dt(2026, 11, 27, 22, 45)
    assert latest_due(rec, now) <= now < next_due(rec, now)


def test_monitoring_grid():
    assert monitoring_due(Monitoring(unit="minutes", interval=5), dt(2026, 1, 1, 0, 12)) == dt(
        2026, 1, 1, 0, 10
    )
