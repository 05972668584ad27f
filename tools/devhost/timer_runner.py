"""Run timer-triggered functions as the timer extension runs them: UTC NCRONTAB, one instance, status in blobs.

Sources:
- Azure/azure-webjobs-sdk-extensions, src/WebJobs.Extensions/Extensions/Timers/Listener/TimerListener.cs: a
  past-due occurrence (or RunOnStartup) runs at start-up; the next occurrence is computed from the start of the
  invocation, so after a run longer than the period the next one starts at once; invocations never overlap.
- .../Timers/Scheduling/ScheduleMonitor.cs (CheckPastDueAsync) and src/WebJobs.Extensions.Timers.Storage/
  StorageScheduleMonitor.cs: with ``useMonitor`` the status lives in the blob
  ``azure-webjobs-hosts/timers/{hostId}/{timerName}/status`` of AzureWebJobsStorage; TimerSchedule.cs turns
  the monitor off for schedules that fire more than once a minute.
- Azure/azure-webjobs-sdk, Singleton/SingletonListener.cs, SingletonManager.cs and
  BlobLeaseDistributedLockManager.cs: TimerListener is ``[Singleton(Mode = Listener)]``: only the instance that
  holds a lease on ``azure-webjobs-hosts/locks/{hostId}/{functionFullName}.Listener`` runs the timer; others
  try again every ``listenerLockRecoveryPollingInterval``.
- Azure/azure-functions-host: ScriptHost.cs (functions live in the generated type ``Host.Functions``),
  ScriptHostIdProvider.cs (the host ID), WebJobsScriptHostService.cs (WEBSITE_TIME_ZONE and TZ are not
  supported on Linux Consumption; schedules are UTC).
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import json
import logging
import os
import platform
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from azure.functions.timer import TimerRequest
from croniter import croniter

from .app_loader import TimerFunction, connection_string
from .settings import SettingsError, _get_ci, _read_json, parse_timespan

log = logging.getLogger("devhost.timer")

HOSTS_CONTAINER = "azure-webjobs-hosts"
STORAGE_SETTING = "AzureWebJobsStorage"
HOST_ID_SETTING = "AzureFunctionsWebHost__hostid"  # ConfigurationSectionNames.HostIdPath
MAX_HOST_ID = 32  # ScriptConstants.MaximumHostIdLength
GENERATED_TYPE = "Host.Functions"  # ScriptHost.GeneratedTypeNamespace + "." + GeneratedTypeName


class ScheduleError(SettingsError):
    """A timer schedule is neither a valid NCRONTAB expression nor a TimeSpan."""


def host_timezone() -> dt.tzinfo:
    """Always UTC: WEBSITE_TIME_ZONE is not supported on Linux Consumption or Flex Consumption.

    The host logs a warning when it is set (WebJobsScriptHostService.LogInitialization) and schedules stay UTC.
    """
    name = os.environ.get("WEBSITE_TIME_ZONE")
    if name:
        log.warning(
            "WEBSITE_TIME_ZONE=%r is ignored: it is not supported on Linux (Flex) Consumption, where timer "
            "schedules are UTC; write the schedule in UTC",
            name,
        )
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

    def more_than_once_a_minute(self, now: dt.datetime) -> bool:
        """TimerSchedule.ShouldDisableScheduleMonitor, and the TimeSpan rule in TimerSchedule.Create."""
        if self.interval is not None:
            return self.interval < dt.timedelta(minutes=1)
        fields = self.expression.split()
        if not self.with_seconds or any(f not in ("*", "*/1") for f in fields[1:]):
            return False
        first = self.next_after(now)
        return self.next_after(first) < now + dt.timedelta(minutes=1)


def manual_request() -> TimerRequest:
    """The request an admin invocation passes: not past due, with no schedule status."""
    return TimerRequest(past_due=False)


# --- host identity ------------------------------------------------------------------------------------


def _stable_hash(text: str) -> int:
    """Utility.GetStableHash: 23, then hash * 31 + each UTF-16 code unit, in 32-bit arithmetic."""
    value = 23
    units = text.encode("utf-16-le")
    for i in range(0, len(units), 2):
        value = ctypes.c_int32(value * 31 + int.from_bytes(units[i : i + 2], "little")).value
    return value


def host_id(root: Path, environ: Mapping[str, str] | None = None) -> str:
    """The host ID: AzureFunctionsWebHost__hostid, else the local form ScriptHostIdProvider derives.

    Locally that is ``{machine name, letters and digits}-{|stable hash of the script root|}``, cut to 32
    characters, lower-cased, trailing '-' removed. Two local hosts on one app root share it.
    """
    env = os.environ if environ is None else environ
    configured = env.get(HOST_ID_SETTING)
    if configured:
        return configured
    machine = "".join(c for c in platform.node().split(".")[0] if c.isalnum())
    value = f"{machine}-{abs(_stable_hash(str(root)))}"
    return value[:MAX_HOST_ID].lower().rstrip("-")


# --- schedule status (StorageScheduleMonitor) -------------------------------------------------------------

_NEVER = "0001-01-01T00:00:00+00:00"  # default(DateTimeOffset) as the monitor writes it


def _parse_time(text: Any) -> dt.datetime | None:
    if not text or str(text).startswith("0001-01-01"):
        return None
    value = str(text).replace("Z", "+00:00")
    # .NET writes seven fractional digits; Python reads up to six.
    head, dot, rest = value.partition(".")
    if dot:
        digits = "".join(c for c in rest if c.isdigit())
        value = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    parsed = dt.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _format_time(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).isoformat() if value else _NEVER


@dataclass
class ScheduleStatus:
    """ScheduleStatus.cs: the last run, the next one, and when Next was last computed (UTC; None = never)."""

    last: dt.datetime | None
    next: dt.datetime
    last_updated: dt.datetime | None

    def to_json(self) -> dict[str, str]:
        return {
            "Last": _format_time(self.last),
            "Next": _format_time(self.next),
            "LastUpdated": _format_time(self.last_updated),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScheduleStatus:
        following = _parse_time(data.get("Next"))
        if following is None:
            raise ValueError(f"schedule status without Next: {data!r}")
        return cls(_parse_time(data.get("Last")), following, _parse_time(data.get("LastUpdated")))


class StatusStore(Protocol):
    def get(self, timer_name: str) -> ScheduleStatus | None: ...

    def update(self, timer_name: str, status: ScheduleStatus) -> None: ...


class BlobStatusStore:
    """StorageScheduleMonitor: one JSON blob per timer at timers/{hostId}/{timerName}/status."""

    def __init__(self, connection: str, host: str) -> None:
        from azure.storage.blob import BlobServiceClient

        self.container = BlobServiceClient.from_connection_string(connection).get_container_client(
            HOSTS_CONTAINER
        )
        self.host = host

    def path(self, timer_name: str) -> str:
        return f"timers/{self.host}/{timer_name}/status"

    def get(self, timer_name: str) -> ScheduleStatus | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            text = self.container.download_blob(self.path(timer_name)).readall()
        except ResourceNotFoundError:
            return None  # no status recorded yet
        return ScheduleStatus.from_json(json.loads(text))

    def update(self, timer_name: str, status: ScheduleStatus) -> None:
        from azure.core.exceptions import ResourceExistsError

        try:
            with contextlib.suppress(ResourceExistsError):
                self.container.create_container()
            self.container.upload_blob(self.path(timer_name), json.dumps(status.to_json()), overwrite=True)
        except Exception:
            # "best effort", as in StorageScheduleMonitor.UpdateStatusAsync
            log.exception("timer %s: failed to update the schedule status", timer_name)


def check_past_due(
    store: StatusStore, timer_name: str, now: dt.datetime, schedule: Schedule
) -> tuple[ScheduleStatus, bool]:
    """ScheduleMonitor.CheckPastDueAsync: the status to start from, and whether an occurrence was missed.

    A status written for another schedule is recomputed (from now, if its next occurrence already passed),
    so changing a schedule never counts as past due.
    """
    try:
        status = store.get(timer_name)
    except Exception:
        # GetSafeStatusAsync: an unreadable status counts as none.
        log.exception("timer %s: the schedule status could not be read", timer_name)
        status = None
    if status is None:
        status = ScheduleStatus(None, schedule.next_after(now), now)
        store.update(timer_name, status)
    else:
        if status.last is not None:
            expected, updated = schedule.next_after(status.last), status.last
        elif status.last_updated is not None:
            expected, updated = schedule.next_after(status.last_updated), status.last_updated
        else:
            expected, updated = schedule.next_after(now), now
        if status.next != expected:
            if now > expected:
                expected, updated = schedule.next_after(now), now
            status = ScheduleStatus(None, expected, updated)
            store.update(timer_name, status)
    return status, now > status.next


# --- the listener singleton (blob lease) -----------------------------------------------------------------


@dataclass(frozen=True)
class SingletonSettings:
    """host.json "singleton": the listener lease (15-60 s) and how often others retry it."""

    listener_lock_period: float = 60.0
    listener_lock_recovery_polling_interval: float = 60.0


def load_singleton_settings(root: Path) -> SingletonSettings:
    path = root / "host.json"
    section = (_get_ci(_read_json(path), "singleton", {}) or {}) if path.is_file() else {}
    period = parse_timespan(_get_ci(section, "listenerLockPeriod", "00:01:00"))
    if not 15 <= period <= 60:
        # SingletonOptions.ValidateLockPeriod; blob leases are 15-60 s.
        raise SettingsError(
            f"host.json singleton.listenerLockPeriod must be 00:00:15..00:01:00, not {period}s"
        )
    recovery = parse_timespan(_get_ci(section, "listenerLockRecoveryPollingInterval", "00:01:00"))
    if recovery < 1:
        raise SettingsError("host.json singleton.listenerLockRecoveryPollingInterval must be at least 1 s")
    return SingletonSettings(period, recovery)


class ListenerLock(Protocol):
    lock_id: str

    def acquire(self) -> bool: ...

    def renew(self) -> bool: ...

    def release(self) -> None: ...


class BlobListenerLock:
    """BlobLeaseDistributedLockManager: a lease on an empty blob, created when missing."""

    def __init__(self, connection: str, lock_id: str, period: float) -> None:
        from azure.storage.blob import BlobServiceClient

        self.lock_id = lock_id
        self.period = int(period)
        container = BlobServiceClient.from_connection_string(connection).get_container_client(HOSTS_CONTAINER)
        self._container = container
        self._blob = container.get_blob_client(f"locks/{lock_id}")
        self._lease_id = str(uuid.uuid4())
        self._lease: Any = None

    def acquire(self) -> bool:
        """Take the lease; False while another instance holds it (409)."""
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        for attempt in (1, 2):
            try:
                self._lease = self._blob.acquire_lease(lease_duration=self.period, lease_id=self._lease_id)
                return True
            except ResourceNotFoundError:
                if attempt == 2:
                    raise
                self._create_blob()
            except HttpResponseError as error:
                if error.status_code == 409:
                    return False
                raise
        return False

    def _create_blob(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        with contextlib.suppress(ResourceExistsError):
            self._container.create_container()
        with contextlib.suppress(ResourceExistsError):
            self._blob.upload_blob(b"", overwrite=False)

    def renew(self) -> bool:
        try:
            self._lease.renew()
            return True
        except Exception as error:
            log.warning("singleton lock renewal failed for %s: %s", self.lock_id, str(error).splitlines()[0])
            return False

    def release(self) -> None:
        if self._lease is None:
            return
        try:
            self._lease.release()
        except Exception as error:  # expired or taken: nothing to release
            log.debug("releasing %s: %s", self.lock_id, error)
        self._lease = None


# --- time, so tests can run the schedule without waiting ---------------------------------------------------


class Clock(Protocol):
    def now(self) -> dt.datetime: ...

    def sleep_until(self, when: dt.datetime, halted: Callable[[], bool]) -> bool:
        """Wait until ``when``; True if ``halted()`` became true first."""
        ...


class SystemClock:
    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def sleep_until(self, when: dt.datetime, halted: Callable[[], bool]) -> bool:
        while not halted():
            remaining = (when - self.now()).total_seconds()
            if remaining <= 0:
                return False
            # Wakes at least once a second to notice a lost lock; the stop event wakes it at once.
            self._stop.wait(min(remaining, 1.0))
        return True


# --- the runner -------------------------------------------------------------------------------------------


@dataclass
class TimerStorage:
    """Where a timer keeps its singleton lease and schedule status (AzureWebJobsStorage)."""

    host_id: str
    lock: ListenerLock | None
    status: StatusStore | None
    recovery_interval: float = 60.0
    lock_period: float = 60.0


def storage_for(function: TimerFunction) -> TimerStorage:
    """The real host's: blob lease and status blob in AzureWebJobsStorage, for the app root's host ID."""
    root = Path(function.directory)
    connection = connection_string(STORAGE_SETTING)  # AppLoadError at start when missing
    host = host_id(root)
    singleton = load_singleton_settings(root)
    full_name = f"{GENERATED_TYPE}.{function.name}"
    return TimerStorage(
        host_id=host,
        lock=BlobListenerLock(connection, f"{host}/{full_name}.Listener", singleton.listener_lock_period),
        status=BlobStatusStore(connection, host),
        recovery_interval=singleton.listener_lock_recovery_polling_interval,
        lock_period=singleton.listener_lock_period,
    )


class TimerRunner:
    """One thread per timer function: take the singleton lease, then run the schedule until shutdown.

    ``storage`` None runs without a lease or status (tests); the host passes ``storage_for(function)``.
    """

    def __init__(
        self,
        function: TimerFunction,
        stop: threading.Event,
        tz: dt.tzinfo | None = None,
        *,
        storage: TimerStorage | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.function = function
        self.schedule = Schedule(function.schedule, tz)
        self.storage = storage
        self._stop = stop
        self._clock = clock or SystemClock(stop)
        self._lost = threading.Event()
        self.timer_name = f"{GENERATED_TYPE}.{function.name}"
        # useMonitor defaults to true, and is turned off for sub-minute schedules.
        wanted = function.use_monitor is not False
        self.monitor = (
            storage.status
            if storage is not None and wanted and not self.schedule.more_than_once_a_minute(self._clock.now())
            else None
        )
        self.status: ScheduleStatus | None = None
        self._thread = threading.Thread(target=self._run, name=f"timer-{function.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def run(self) -> None:
        """Run on the calling thread until stop is set (what ``start`` runs on a thread)."""
        self._run()

    # --- singleton -------------------------------------------------------------------------------------
    def _run(self) -> None:
        lock = self.storage.lock if self.storage is not None else None
        while not self._stop.is_set():
            if lock is not None and not self._acquire(lock):
                return
            self._lost.clear()
            renewer = None
            if lock is not None:
                renewer = threading.Thread(
                    target=self._renew, args=(lock,), name=f"lease-{self.function.name}", daemon=True
                )
                renewer.start()
            try:
                self._listen()
            except Exception:
                log.exception("timer %s stopped on an error", self.function.name)
                self._stop.wait(1.0)
            finally:
                self._lost.set()  # ends the renewal thread
                if renewer is not None:
                    renewer.join()
                if lock is not None:
                    lock.release()
            if lock is None:
                return
            if not self._stop.is_set():
                log.warning("timer %s lost its singleton lock; trying to take it again", self.function.name)

    def _acquire(self, lock: ListenerLock) -> bool:
        """SingletonListener.StartAsync and its recovery timer; False when stopped first."""
        assert self.storage is not None
        told = False
        while not self._stop.is_set():
            try:
                if lock.acquire():
                    log.info("timer %s: singleton lock acquired (%s)", self.function.name, lock.lock_id)
                    return True
                if not told:
                    log.info(
                        "timer %s: another host instance holds the singleton lock (%s); retrying every %.0fs",
                        self.function.name,
                        lock.lock_id,
                        self.storage.recovery_interval,
                    )
                    told = True
            except Exception as error:
                first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
                log.error("timer %s: acquiring the singleton lock failed: %s", self.function.name, first_line)
            self._stop.wait(self.storage.recovery_interval)
        return False

    def _renew(self, lock: ListenerLock) -> None:
        """Renew at half the lease period; after a lease period without a renewal the lock is lost."""
        assert self.storage is not None
        period = self.storage.lock_period
        last_ok = time.monotonic()
        wait = period / 2
        # Renews until the listener has finished (also during a graceful stop's last invocation).
        while not self._lost.wait(wait):
            if lock.renew():
                last_ok, wait = time.monotonic(), period / 2
            elif time.monotonic() - last_ok >= period:
                self._lost.set()
                return
            else:
                wait = 1.0

    # --- TimerListener -------------------------------------------------------------------------------
    def _halted(self) -> bool:
        return self._stop.is_set() or self._lost.is_set()

    def _listen(self) -> None:
        now = self._clock.now()
        past_due = False
        status: ScheduleStatus | None = None
        if self.monitor is not None:
            status, past_due = check_past_due(self.monitor, self.timer_name, now, self.schedule)
        self.status = status or ScheduleStatus(None, self.schedule.next_after(now), None)
        log.info(
            "timer %s: schedule %r (UTC), next %s, monitor %s%s",
            self.function.name,
            self.schedule.expression,
            self.status.next.isoformat(),
            "on" if self.monitor is not None else "off",
            ", past due: running now" if past_due else "",
        )
        if past_due:
            self._invoke(self._clock.now(), past_due=True)
        elif self.function.run_on_startup:
            self._invoke(self._clock.now(), run_on_startup=True)
        while True:
            assert self.status is not None
            if self._clock.sleep_until(self.status.next, self._halted):
                return
            self._invoke(self._clock.now())

    def _invoke(self, at: dt.datetime, *, past_due: bool = False, run_on_startup: bool = False) -> None:
        """TimerListener.InvokeJobFunction: run once, then compute Next from this invocation's start."""
        if self._halted():
            return
        assert self.status is not None
        started = time.perf_counter()
        ok = False
        try:
            # azure.functions.TimerRequest is the abstract type; the worker builds this concrete one.
            request = TimerRequest(
                past_due=past_due,
                schedule_status=self.status.to_json() if self.monitor is not None else None,
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
            elapsed = (time.perf_counter() - started) * 1000
            outcome = "Succeeded" if ok else "Failed"
            print(
                f"timer {self.function.name} {'(past due) ' if past_due else ''}{outcome} {elapsed:.1f}ms",
                file=sys.stderr,
                flush=True,
            )
        # A trigger that fired a little early counts from its scheduled time, so Next never repeats.
        adjusted = at
        if not past_due and not run_on_startup and self.status.next > at:
            adjusted = self.status.next
        self.status = ScheduleStatus(adjusted, self.schedule.next_after(adjusted), adjusted)
        if self.monitor is not None:
            self.monitor.update(self.timer_name, self.status)
