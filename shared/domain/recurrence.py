"""Due times of a D365-style recurrence (start, unit, every N, optional end or count), computed in O(1)."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta

from shared.domain.config import Monitoring, Recurrence

# With no start date, occurrences are anchored here, so "every 5 minutes" falls on :00, :05, …
ANCHOR = datetime(2000, 1, 1, tzinfo=UTC)

_FIXED = {
    "minutes": timedelta(minutes=1),
    "hours": timedelta(hours=1),
    "days": timedelta(days=1),
    "weeks": timedelta(weeks=1),
}


def _add_months(start: datetime, months: int) -> datetime:
    month_index = start.month - 1 + months
    year = start.year + month_index // 12
    month = month_index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])  # 31 Jan + 1 month = 28/29 Feb
    return start.replace(year=year, month=month, day=day)


def occurrence(unit: str, interval: int, start: datetime, index: int) -> datetime:
    """The `index`-th due time (0 = start)."""
    if unit == "months":
        return _add_months(start, interval * index)
    return start + _FIXED[unit] * (interval * index)


def latest_index(unit: str, interval: int, start: datetime, now: datetime) -> int | None:
    """Index of the latest occurrence at or before `now`, or None before the start."""
    if now < start:
        return None
    if unit == "months":
        months = (now.year - start.year) * 12 + (now.month - start.month)
        index = months // interval
        while index > 0 and occurrence(unit, interval, start, index) > now:
            index -= 1
        return index
    step = _FIXED[unit] * interval
    return int((now - start) // step)


def latest_due(rec: Recurrence, now: datetime) -> datetime | None:
    """The most recent due time at or before `now` that the recurrence allows (end date, count)."""
    start = rec.start or ANCHOR
    index = latest_index(rec.unit, rec.interval, start, now)
    if index is None:
        return None
    if rec.count is not None:
        index = min(index, rec.count - 1)
    due = occurrence(rec.unit, rec.interval, start, index)
    if rec.end is not None and due > rec.end:
        last = latest_index(rec.unit, rec.interval, start, rec.end)
        if last is None:
            return None
        due = occurrence(rec.unit, rec.interval, start, last)
    return due


def next_due(rec: Recurrence, now: datetime) -> datetime | None:
    """The first due time strictly after `now`, or None when the recurrence has ended."""
    start = rec.start or ANCHOR
    index = latest_index(rec.unit, rec.interval, start, now)
    index = 0 if index is None else index + 1
    if rec.count is not None and index >= rec.count:
        return None
    due = occurrence(rec.unit, rec.interval, start, index)
    if rec.end is not None and due > rec.end:
        return None
    return due


def monitoring_due(mon: Monitoring, now: datetime) -> datetime:
    return latest_due(Recurrence(unit=mon.unit, interval=mon.interval), now) or ANCHOR
