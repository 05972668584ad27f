"""Timer triggers under the local host behave as the timer extension does: UTC, one instance, status in blobs.

Sources:
- Azure/azure-webjobs-sdk-extensions src/WebJobs.Extensions/Extensions/Timers/Listener/TimerListener.cs
  (StartAsync: past-due and RunOnStartup runs; InvokeJobFunction: Next from the invocation's start, one at a
  time), .../Timers/Scheduling/ScheduleMonitor.cs (CheckPastDueAsync), .../Timers/Scheduling/TimerSchedule.cs
  (ShouldDisableScheduleMonitor), src/WebJobs.Extensions.Timers.Storage/StorageScheduleMonitor.cs (the blob
  azure-webjobs-hosts/timers/{hostId}/{timerName}/status).
- Azure/azure-webjobs-sdk src/Microsoft.Azure.WebJobs.Host/Singleton/SingletonListener.cs, SingletonManager.cs
  (FormatLockId), src/Microsoft.Azure.WebJobs.Host.Storage/Singleton/BlobLeaseDistributedLockManager.cs (the
  lease blob azure-webjobs-hosts/locks/{hostId}/{function}.Listener).
- Azure/azure-functions-host src/WebJobs.Script/Host/ScriptHostIdProvider.cs and Utility.GetStableHash (host
  ID), ScriptHost.cs (Host.Functions.{name}), src/WebJobs.Script.WebHost/WebJobsScriptHostService.cs
  (WEBSITE_TIME_ZONE unsupported on Linux Consumption).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from tests.devhost.hostproc import HostProcess, clean_env
from tools.azurite import AzuriteProcess
from tools.devhost.app_loader import TimerFunction
from tools.devhost.timer_runner import (
    Schedule,
    ScheduleStatus,
    TimerRunner,
    TimerStorage,
    _stable_hash,
    check_past_due,
    host_id,
    host_timezone,
)

UTC = dt.UTC
YEARLY = "0 0 0 1 1 *"


# --- fakes -------------------------------------------------------------------------------------------------


class FakeClock:
    """Time that moves only when the runner sleeps or a function says it ran for a while."""

    def __init__(self, start: dt.datetime) -> None:
        self.t = start

    def now(self) -> dt.datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += dt.timedelta(seconds=seconds)

    def sleep_until(self, when: dt.datetime, halted: Callable[[], bool]) -> bool:
        if halted():
            return True
        self.t = max(self.t, when)
        return False


class MemoryStore:
    def __init__(self, initial: dict[str, ScheduleStatus] | None = None) -> None:
        self.data = dict(initial or {})
        self.writes = 0

    def get(self, timer_name: str) -> ScheduleStatus | None:
        return self.data.get(timer_name)

    def update(self, timer_name: str, status: ScheduleStatus) -> None:
        self.data[timer_name] = status
        self.writes += 1


def timer_function(
    schedule: str, body: Callable[[Any], None], *, use_monitor: bool | None = None
) -> TimerFunction:
    return TimerFunction(
        name="tick",
        user_function=lambda timer: body(timer),
        trigger=None,
        trigger_arg="timer",
        context_arg=None,
        directory=".",
        schedule=schedule,
        run_on_startup=False,
        use_monitor=use_monitor,
    )


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- unit: the listener's schedule ---------------------------------------------------------------------------


def test_after_a_run_longer_than_the_period_the_next_starts_at_once() -> None:
    """TimerListener.InvokeJobFunction computes Next from the invocation's start, and StartTimer fires at once
    when Next has passed; runs happen one after another, never overlapping."""
    clock = FakeClock(at("2024-06-01T12:00:00.500"))
    stop = threading.Event()
    runs: list[tuple[dt.datetime, dt.datetime]] = []

    def body(timer: Any) -> None:
        started = clock.now()
        if not runs:
            clock.advance(25)  # the first run takes 2.5 periods
        runs.append((started, clock.now()))
        if len(runs) == 3:
            stop.set()

    runner = TimerRunner(timer_function("*/10 * * * * *", body), stop, clock=clock)
    runner.run()
    starts = [s for s, _ in runs]
    assert starts == [at("2024-06-01T12:00:10"), at("2024-06-01T12:00:35"), at("2024-06-01T12:00:40")]
    assert all(runs[i][1] <= runs[i + 1][0] for i in range(len(runs) - 1))


def test_a_missed_occurrence_runs_once_at_start_past_due() -> None:
    """TimerListener.StartAsync with a ScheduleMonitor: a past-due status invokes once with IsPastDue, then the
    regular schedule resumes from now; the status is written after each run."""
    now = at("2024-06-01T08:30:00")
    store = MemoryStore(
        {"Host.Functions.tick": ScheduleStatus(at("2020-01-01"), at("2021-01-01"), at("2020-01-01"))}
    )
    clock = FakeClock(now)
    stop = threading.Event()
    seen: list[tuple[dt.datetime, bool, Any]] = []

    def body(timer: Any) -> None:
        seen.append((clock.now(), timer.past_due, timer.schedule_status))
        if len(seen) == 2:
            stop.set()

    storage = TimerStorage(host_id="h", lock=None, status=store)
    TimerRunner(timer_function(YEARLY, body), stop, storage=storage, clock=clock).run()
    assert [(when, past_due) for when, past_due, _ in seen] == [(now, True), (at("2025-01-01"), False)]
    assert seen[0][2]["Next"] == "2021-01-01T00:00:00+00:00"  # the status it started from
    assert store.data["Host.Functions.tick"] == ScheduleStatus(
        at("2025-01-01"), at("2026-01-01"), at("2025-01-01")
    )


def test_check_past_due_follows_the_schedule_monitor() -> None:
    """ScheduleMonitor.CheckPastDueAsync: no status -> written, not past due; the recorded Next passed -> past
    due; a status from another schedule whose next occurrence passed -> recomputed from now, not past due."""
    now = at("2024-06-01T08:30:00")
    store = MemoryStore()
    status, past_due = check_past_due(store, "t", now, Schedule(YEARLY))
    assert (past_due, status, store.writes) == (False, ScheduleStatus(None, at("2025-01-01"), now), 1)

    # The host was down over 2025-01-01.
    later = at("2025-03-01T00:00:00")
    assert check_past_due(store, "t", later, Schedule(YEARLY)) == (status, True)

    # The schedule changed from yearly to monthly: its next occurrence after Last has passed, so Next is
    # computed from now; not past due.
    store.data["t"] = ScheduleStatus(at("2025-01-01"), at("2026-01-01"), at("2025-01-01"))
    mid_march = at("2025-03-15T00:00:00")
    monthly = Schedule("0 0 0 1 * *")
    assert check_past_due(store, "t", mid_march, monthly) == (
        ScheduleStatus(None, at("2025-04-01"), mid_march),
        False,
    )

    # From monthly to yearly: the recorded Next (March 1) passed, but that is a schedule change, not a miss.
    store.data["t"] = ScheduleStatus(at("2025-02-01"), at("2025-03-01"), at("2025-02-01"))
    expected = ScheduleStatus(None, at("2026-01-01"), at("2025-02-01"))
    assert check_past_due(store, "t", mid_march, Schedule(YEARLY)) == (expected, False)
    assert store.data["t"] == expected


def test_the_monitor_is_off_for_schedules_more_frequent_than_a_minute() -> None:
    """TimerSchedule.Create: UseMonitor defaults to true and is turned off below one minute."""
    now = at("2024-06-01T08:30:00")
    assert Schedule("*/1 * * * * *").more_than_once_a_minute(now)
    assert Schedule("*/10 * * * * *").more_than_once_a_minute(now)
    assert Schedule("00:00:30").more_than_once_a_minute(now)
    assert not Schedule("0 * * * * *").more_than_once_a_minute(now)
    assert not Schedule("*/10 * 9 * * *").more_than_once_a_minute(now)  # restricted hours: monitored
    assert not Schedule("00:01:00").more_than_once_a_minute(now)
    assert not Schedule("*/5 * * * *").more_than_once_a_minute(now)  # 5 fields: minutes

    storage = TimerStorage(host_id="h", lock=None, status=MemoryStore())
    stop = threading.Event()

    def runner(schedule: str, use_monitor: bool | None) -> TimerRunner:
        return TimerRunner(timer_function(schedule, print, use_monitor=use_monitor), stop, storage=storage)

    assert runner(YEARLY, None).monitor is storage.status
    assert runner(YEARLY, False).monitor is None
    assert runner("*/1 * * * * *", True).monitor is None


def test_website_time_zone_is_ignored_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """WebJobsScriptHostService: WEBSITE_TIME_ZONE (and TZ) are not supported on Linux Consumption; UTC."""
    monkeypatch.setenv("WEBSITE_TIME_ZONE", "Europe/Amsterdam")
    with caplog.at_level(logging.WARNING, logger="devhost.timer"):
        tz = host_timezone()
    assert tz is UTC
    assert "WEBSITE_TIME_ZONE='Europe/Amsterdam' is ignored" in caplog.text
    assert Schedule("0 0 9 * * *", tz).next_after(at("2024-06-01T00:00:00")) == at("2024-06-01T09:00:00")


def test_host_id_is_the_setting_or_the_local_derivation(tmp_path: Path) -> None:
    """ScriptHostIdProvider.GetDefaultHostId: AzureFunctionsWebHost__hostid, else machine-|stable hash of the
    root|, at most 32 characters, lower case; Utility.GetStableHash is 32-bit (h = h * 31 + c from 23)."""
    assert _stable_hash("abc") == (23 * 31 + 97) * 31 * 31 + 98 * 31 + 99
    wrapped = 23
    for char in "x" * 100:
        wrapped = (wrapped * 31 + ord(char)) % 2**32
    assert _stable_hash("x" * 100) == (wrapped - 2**32 if wrapped >= 2**31 else wrapped)

    assert host_id(tmp_path, {"AzureFunctionsWebHost__hostid": "myapp"}) == "myapp"
    derived = host_id(tmp_path, {})
    assert derived == host_id(tmp_path, {})  # two processes on one root agree
    assert derived != host_id(tmp_path / "other", {})
    assert len(derived) <= 32 and derived == derived.lower()
    assert str(abs(_stable_hash(str(tmp_path)))).startswith(derived.rsplit("-", 1)[1])


# --- over Azurite, as processes -----------------------------------------------------------------------------

APP = textwrap.dedent(
    """
    import json
    import os
    import time
    from pathlib import Path

    import azure.functions as func

    app = func.FunctionApp()


    def record(name, timer):
        entry = {"pid": os.getpid(), "at": time.time(), "past_due": timer.past_due, "status": timer.schedule_status}
        with (Path(os.environ["TTEST_OUT"]) / f"{name}.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\\n")


    @app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *")
    def yearly(timer: func.TimerRequest) -> None:
        record("yearly", timer)


    @app.timer_trigger(arg_name="timer", schedule="*/1 * * * * *")
    def ticker(timer: func.TimerRequest) -> None:
        record("ticker", timer)
    """
)

HOST_JSON = {
    "version": "2.0",
    "singleton": {"listenerLockPeriod": "00:00:15", "listenerLockRecoveryPollingInterval": "00:00:01"},
}
HOST_ID = "timertest"


@pytest.fixture(scope="module")
def app_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("timers_app")
    (root / "function_app.py").write_text(APP, encoding="utf-8")
    (root / "host.json").write_text(json.dumps(HOST_JSON), encoding="utf-8")
    return root


@pytest.fixture
def start_host(devhost_azurite: AzuriteProcess, app_root: Path, tmp_path: Path):
    hosts: list[HostProcess] = []

    def start(*args: str) -> HostProcess:
        env = clean_env(
            AzureWebJobsStorage=devhost_azurite.connection_string,
            AzureFunctionsWebHost__hostid=HOST_ID,
            TTEST_OUT=str(tmp_path),
        )
        host = HostProcess(app_root, env, tmp_path / "logs", *args, name=f"host{len(hosts)}")
        hosts.append(host)
        host.wait_started()
        return host

    yield start
    for host in hosts:
        host.stop()


def records(out: Path, name: str) -> list[dict[str, Any]]:
    path = out / f"{name}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.mark.azurite
@pytest.mark.e2e
def test_status_blob_and_the_past_due_run_at_start(
    start_host: Callable[..., HostProcess], devhost_azurite: AzuriteProcess, tmp_path: Path
) -> None:
    """StorageScheduleMonitor: the status blob timers/{hostId}/Host.Functions.{name}/status in
    azure-webjobs-hosts; an occurrence missed while no host ran is run once at start with past_due true."""
    container = BlobServiceClient.from_connection_string(
        devhost_azurite.connection_string
    ).get_container_client("azure-webjobs-hosts")
    if not container.exists():
        container.create_container()
    blob = f"timers/{HOST_ID}/Host.Functions.yearly/status"
    missed = {
        "Last": "2020-01-01T00:00:00+00:00",
        "Next": "2021-01-01T00:00:00+00:00",
        "LastUpdated": "2020-01-01T00:00:00+00:00",
    }
    container.upload_blob(blob, json.dumps(missed), overwrite=True)

    first = start_host("--functions", "yearly")
    runs = wait_for(lambda: records(tmp_path, "yearly"), what="the past-due run")
    assert [(r["past_due"], r["status"]["Next"]) for r in runs] == [(True, missed["Next"])]
    wait_for(lambda: "timer yearly (past due) Succeeded" in first.stderr, what="the run logged")
    first.stop()

    status = json.loads(container.download_blob(blob).readall())
    now = dt.datetime.now(UTC)
    assert status["Next"] == dt.datetime(now.year + 1, 1, 1, tzinfo=UTC).isoformat()
    assert now - dt.datetime.fromisoformat(status["Last"]) < dt.timedelta(hours=1)

    # Started again: nothing was missed, so nothing runs.
    second = start_host("--functions", "yearly")
    line = wait_for(
        lambda: next((x for x in second.stderr.splitlines() if "timer yearly: schedule" in x), None),
        what="the listener started",
    )
    assert "past due" not in line
    second.stop()
    assert len(records(tmp_path, "yearly")) == 1


@pytest.mark.azurite
@pytest.mark.e2e
def test_two_hosts_on_one_storage_run_a_timer_once(
    start_host: Callable[..., HostProcess], devhost_azurite: AzuriteProcess, tmp_path: Path
) -> None:
    """SingletonListener: only the holder of the lease on locks/{hostId}/Host.Functions.ticker.Listener runs
    the timer; the other retries every listenerLockRecoveryPollingInterval and takes over when it is released.
    A sub-minute schedule keeps no status blob."""
    first = start_host("--functions", "ticker")
    wait_for(lambda: records(tmp_path, "ticker"), what="the first host's first run")
    second = start_host("--functions", "ticker")
    wait_for(
        lambda: "another host instance holds the singleton lock" in second.stderr, what="the second waits"
    )
    seen = len(records(tmp_path, "ticker"))
    wait_for(lambda: len(records(tmp_path, "ticker")) >= seen + 3, what="three more runs")
    assert {r["pid"] for r in records(tmp_path, "ticker")} == {first.proc.pid}

    blobs = BlobServiceClient.from_connection_string(devhost_azurite.connection_string).get_container_client(
        "azure-webjobs-hosts"
    )
    assert blobs.get_blob_client(f"locks/{HOST_ID}/Host.Functions.ticker.Listener").exists()
    assert list(blobs.list_blob_names(name_starts_with=f"timers/{HOST_ID}/Host.Functions.ticker/")) == []

    assert first.stop() == 0  # a graceful stop releases the lease, after its last run
    wait_for(
        lambda: any(r["pid"] == second.proc.pid for r in records(tmp_path, "ticker")),
        what="the second takes over",
    )
    # One after the other: every run of the first host was recorded before the second host's first run.
    pids = [r["pid"] for r in records(tmp_path, "ticker")]
    handover = pids.index(second.proc.pid)
    assert set(pids[:handover]) == {first.proc.pid}
    assert set(pids[handover:]) == {second.proc.pid}
