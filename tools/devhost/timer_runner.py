"""Run timer-triggered functions on their NCRONTAB schedules, as the Functions host does (UTC by default)."""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import threading
import time
import traceback
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from azure.functions.timer import TimerRequest
from croniter import croniter

from .app_loader import TimerFunction
from .settings import SettingsError, parse_timespan

log = logging.getLogger("devhost.timer")

# How late an occurrence may fire before the invocation is reported as past due.
PAST_DUE_TOLERANCE = dt.timedelta(seconds=1)


class ScheduleError(SettingsError):
    """A timer schedule is neither a valid NCRONTAB expression nor a TimeSpan."""


def host_timezone() -> dt.tzinfo:
    """WEBSITE_TIME_ZONE (an IANA name on Linux) when set, else UTC, like the host."""
    name = os.environ.get("WEBSITE_TIME_ZONE")
    if not name:
        return dt.UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("WEBSITE_TIME_ZONE=%r is not an IANA time zone; timers use UTC", name)
        return dt.UTC


class Schedule:
    """A 6-field NCRONTAB (seconds first), a 5-field cron, or a TimeSpan interval such as 00:05:00."""

    def __init__(self, expression: str, tz: dt.tzinfo | None = None) -> None:
        self.expression = expression.strip()
        self.tz = tz or dt.UTC
        self.interval: dt.timedelta | None = None
        self.with_seconds = True
        fields = self.expression.split()
        if len(fields) == 1 and ":" in self.expression:
            seconds = parse_timespan(self.expression)
            if seconds <= 0:
                raise ScheduleError(f"timer interval {expression!r} must be positive")
            self.interval = dt.timedelta(seconds=seconds)
            return
        if len(fields) not in (5, 6):
            raise ScheduleError(
                f"timer schedule {expression!r} must have 6 NCRONTAB fields "
                "({second} {minute} {hour} {day} {month} {day-of-week})"
            )
        self.with_seconds = len(fields) == 6  # 5 fields: a standard cron, minute-level
        if not croniter.is_valid(self.expression, second_at_beginning=self.with_seconds):
            raise ScheduleError(f"timer schedule {expression!r} is not a valid NCRONTAB expression")

    def next_after(self, when: dt.datetime) -> dt.datetime:
        """The first occurrence strictly after ``when`` (an aware datetime)."""
        if self.interval is not None:
            return when + self.interval
        local = when.astimezone(self.tz)
        following = croniter(self.expression, local, second_at_beginning=self.with_seconds).get_next(
            dt.datetime
        )
        return following.astimezone(dt.UTC)


def manual_request() -> TimerRequest:
    """The request an admin invocation passes: not past due, with no schedule status."""
    return TimerRequest(past_due=False)


class TimerRunner:
    """One thread per timer function, sleeping until the next occurrence or shutdown."""

    def __init__(self, function: TimerFunction, stop: threading.Event, tz: dt.tzinfo | None = None) -> None:
        self.function = function
        self.schedule = Schedule(function.schedule, tz)
        self._stop = stop
        self._thread = threading.Thread(target=self._run, name=f"timer-{function.name}", daemon=True)
        self._last: dt.datetime | None = None

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        now = dt.datetime.now(dt.UTC)
        if self.function.run_on_startup:
            self._fire(now, self.schedule.next_after(now), past_due=False)
        scheduled = self.schedule.next_after(dt.datetime.now(dt.UTC))
        while True:
            delay = (scheduled - dt.datetime.now(dt.UTC)).total_seconds()
            if self._stop.wait(max(0.0, delay)):
                return
            now = dt.datetime.now(dt.UTC)
            # An early wake-up must not fire the same occurrence twice: count from the later time.
            following = self.schedule.next_after(max(now, scheduled))
            self._fire(scheduled, following, past_due=now - scheduled > PAST_DUE_TOLERANCE)
            # Occurrences missed while the function ran are skipped, as the host does.
            scheduled = self.schedule.next_after(max(dt.datetime.now(dt.UTC), scheduled))

    def _fire(self, occurrence: dt.datetime, following: dt.datetime, *, past_due: bool) -> None:
        started = time.perf_counter()
        ok = False
        try:
            # azure.functions.TimerRequest is the abstract type; the worker builds this concrete one.
            request = TimerRequest(
                past_due=past_due,
                schedule_status={
                    "Last": self._last.isoformat() if self._last else None,
                    "Next": following.isoformat(),
                    "LastUpdated": occurrence.isoformat(),
                },
                schedule={"AdjustForDST": True},
            )
            self.function.invoke(request)
            ok = True
        except Exception:
            print(
                f"Function {self.function.name} failed:\n{traceback.format_exc()}",
                file=sys.stderr,
                flush=True,
            )
        finally:
            self._last = occurrence
            elapsed = (time.perf_counter() - started) * 1000
            outcome = "Succeeded" if ok else "Failed"
            print(
                f"timer {self.function.name} {'(past due) ' if past_due else ''}{outcome} {elapsed:.1f}ms",
                file=sys.stderr,
                flush=True,
            )
