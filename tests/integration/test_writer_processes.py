"""A large import's batches written by writer processes (shared/storage/writer_processes.py), against Azurite:
the windows go to other processes and every row lands once; small windows stay in the app's process; refusals,
errors and retries come back to the app's process as if it had written them; a killed writer's rows are
written again; writers end with the app's process. Real processes throughout: the kills are SIGKILLs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
from azure.core.exceptions import ServiceRequestError, ServiceResponseError

from shared.domain.config import parse_entity
from shared.storage import writer_processes
from shared.storage.entity_repo import EntityRepository
from shared.storage.factory import StorageClients
from shared.storage.retry import is_transient
from tests.conftest import REPO_ROOT
from tests.support.faultproxy import FaultProxy, proxied_connection_string

pytestmark = [pytest.mark.azurite, pytest.mark.timeout(300)]


@pytest.fixture(autouse=True)
def two_writers(app_env, monkeypatch):
    monkeypatch.setenv("IMPORT_WRITER_PROCESSES", "2")
    yield
    writer_processes.shutdown()


@pytest.fixture
def entity():
    fields = [{"name": "K"}, {"name": "V", "type": "int"}, {"name": "NOTE"}]
    return parse_entity(f"Wp{uuid.uuid4().hex[:8]}", {"keys": ["K"], "fields": fields})


def encoded(repo: EntityRepository, entity, count: int, *, start: int = 0, note: str = "n") -> list[dict]:
    now = datetime.now(UTC)
    return [
        repo.encode(entity, {"K": f"k{i}", "V": i, "NOTE": note}, "usmf", now)
        for i in range(start, start + count)
    ]


def stored(repo: EntityRepository, entity) -> dict[str, dict]:
    return {row["K"]: row for row in repo.iter_rows(entity)}


class CallLog:
    """The storage requests logged (shared/storage/call_log.py) from now on: (pid, operation, resource)."""

    def __init__(self) -> None:
        self.path = os.environ["DEV_STORAGE_CALL_LOG"]
        self.offset = os.path.getsize(self.path) if os.path.exists(self.path) else 0

    def lines(self) -> list[tuple[int, str, str]]:
        with open(self.path, encoding="utf-8") as f:
            f.seek(self.offset)
            return [(int(pid), op, res) for pid, op, res in (line.split() for line in f)]

    def batches_by_pid(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for pid, op, res in self.lines():
            if op == "table:batch" and res == "ent*":
                out[pid] = out.get(pid, 0) + 1
        return out


def test_a_large_window_is_written_by_the_writer_processes(app_env, entity):
    repo = EntityRepository(StorageClients.from_connection_string(app_env["AzureWebJobsStorage"]))
    rows = encoded(repo, entity, 3000)
    log = CallLog()
    result = repo.upsert_rows(entity, rows)
    assert (result.written, result.failed) == (3000, [])
    writers = writer_processes.writer_pids()
    assert len(writers) == 2 and os.getpid() not in writers
    by_pid = log.batches_by_pid()
    # 3,000 rows over 16 partitions: 2 batches each. All of them from the writers, none from this process.
    assert set(by_pid) <= set(writers) and sum(by_pid.values()) == 32, by_pid
    assert len(by_pid) == 2, f"both writers should have written a part: {by_pid}"
    got = stored(repo, entity)
    assert len(got) == 3000 and got["k2999"]["V"].value == 2999


def test_a_small_window_is_written_in_the_apps_process(app_env, entity):
    repo = EntityRepository(StorageClients.from_connection_string(app_env["AzureWebJobsStorage"]))
    log = CallLog()
    started = writer_processes.started
    result = repo.upsert_rows(entity, encoded(repo, entity, writer_processes.MIN_ROWS - 1))
    assert result.written == writer_processes.MIN_ROWS - 1
    assert writer_processes.started == started and writer_processes.writer_pids() == []
    assert set(log.batches_by_pid()) == {os.getpid()}


def test_no_writers_when_the_setting_is_0(app_env, entity, monkeypatch):
    monkeypatch.setenv("IMPORT_WRITER_PROCESSES", "0")
    repo = EntityRepository(StorageClients.from_connection_string(app_env["AzureWebJobsStorage"]))
    log = CallLog()
    assert repo.upsert_rows(entity, encoded(repo, entity, 3000)).written == 3000
    assert writer_processes.writer_pids() == []
    assert set(log.batches_by_pid()) == {os.getpid()}


def test_a_row_the_store_refuses_in_a_writer_comes_back_as_that_row(app_env, entity):
    repo = EntityRepository(StorageClients.from_connection_string(app_env["AzureWebJobsStorage"]))
    rows = encoded(repo, entity, 2000)
    bad = rows[1234]
    bad["NOTE"] = "x" * (40 * 1024)  # more than the 32 Ki UTF-16 units a string property may hold
    result = repo.upsert_rows(entity, rows)
    assert result.written == 1999
    assert len(result.failed) == 1
    row, reason = result.failed[0]
    assert row is bad, "the refused row should be the caller's own row object"
    assert reason.startswith("the entity store refused the record")
    got = stored(repo, entity)
    assert len(got) == 1999 and "k1234" not in got


def test_killed_idle_writers_are_replaced_by_a_new_pool_for_the_next_window(app_env, entity):
    repo = EntityRepository(StorageClients.from_connection_string(app_env["AzureWebJobsStorage"]))
    repo.upsert_rows(entity, encoded(repo, entity, 1500, note="first"))
    first = writer_processes.writer_pids()
    for pid in first:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while writer_processes.writer_pids() and time.monotonic() < deadline:
        time.sleep(0.05)  # until the pool's manager thread has seen the deaths
    assert writer_processes.writer_pids() == []
    started = writer_processes.started
    log = CallLog()
    result = repo.upsert_rows(entity, encoded(repo, entity, 3000, note="second"))
    assert (result.written, result.failed) == (3000, [])
    assert writer_processes.started == started + 1
    now = writer_processes.writer_pids()
    assert len(now) == 2 and not set(now) & set(first)
    assert set(log.batches_by_pid()) <= set(now)
    got = stored(repo, entity)
    assert len(got) == 3000 and {row["NOTE"] for row in got.values()} == {"second"}


@pytest.fixture
def table_proxy(app_env, azurite, tmp_path):
    proxy = FaultProxy(azurite.table_port, tmp_path / "table")
    try:
        yield proxy, proxied_connection_string(azurite, {"table": proxy})
    finally:
        proxy.stop()


def test_a_writer_killed_while_writing_has_its_part_written_again(entity, table_proxy):
    proxy, conn = table_proxy
    repo = EntityRepository(StorageClients.from_connection_string(conn))
    repo.upsert_rows(entity, encoded(repo, entity, 1500, note="first"))  # the table, and the writers, exist
    victims = writer_processes.writer_pids()
    proxy.set(stall_rate=1.0, stall_seconds=3.0)  # every request waits: the writers are mid-request
    outcome: dict = {}
    retried: list[BaseException] = []

    def write() -> None:
        try:
            outcome["result"] = repo.upsert_rows(
                entity, encoded(repo, entity, 3000, note="second"), on_retry=lambda a, e: retried.append(e)
            )
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = exc

    writing = threading.Thread(target=write)
    writing.start()
    deadline = time.monotonic() + 20
    while proxy.stats().get("stalls", 0) == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proxy.stats().get("stalls", 0) > 0, proxy.stats()
    os.kill(victims[0], signal.SIGKILL)
    proxy.set(stall_rate=0)
    writing.join(120)
    assert "error" not in outcome, outcome.get("error")
    assert (outcome["result"].written, outcome["result"].failed) == (3000, [])
    assert any(isinstance(e, writer_processes.WriterProcessEnded) for e in retried), retried
    got = stored(repo, entity)
    assert len(got) == 3000 and {row["NOTE"] for row in got.values()} == {"second"}


def test_an_error_in_a_writer_is_raised_in_the_apps_process_with_its_class(entity, table_proxy):
    proxy, conn = table_proxy
    repo = EntityRepository(StorageClients.from_connection_string(conn))
    repo.upsert_rows(entity, encoded(repo, entity, 10))  # the table exists (its creation is not a batch)
    log = CallLog()
    proxy.set(reset_rate=1.0)  # every request's connection is reset: the writers' retries run out
    with pytest.raises((ServiceRequestError, ServiceResponseError)) as caught:
        repo.upsert_rows(entity, encoded(repo, entity, 2000))
    assert is_transient(caught.value), "rebuilt with its class, it is still a transient failure to the app"
    batches = log.batches_by_pid()
    assert batches and os.getpid() not in batches, f"the window should have gone to the writers: {batches}"


def test_a_writers_retries_are_told_to_the_apps_process(entity, table_proxy):
    proxy, conn = table_proxy
    repo = EntityRepository(StorageClients.from_connection_string(conn))
    repo.upsert_rows(entity, encoded(repo, entity, 10))  # the table exists (its creation is not a batch)
    retried: list[tuple[int, BaseException]] = []
    with proxy.reset_after(r"^POST /\S*\$batch", count=2):
        result = repo.upsert_rows(
            entity, encoded(repo, entity, 3000), on_retry=lambda a, e: retried.append((a, e))
        )
    assert (result.written, result.failed) == (3000, [])
    assert len(retried) == 2, retried
    assert all(isinstance(e, ServiceResponseError) and a == 1 for a, e in retried), retried
    assert len(stored(repo, entity)) == 3000


PARENT = r"""
import os, sys, time, uuid
sys.path.insert(0, sys.argv[1])
from datetime import UTC, datetime
from shared.domain.config import parse_entity
from shared.storage import writer_processes
from shared.storage.entity_repo import EntityRepository
from shared.storage.factory import StorageClients
from shared.storage.retry import is_transient

entity = parse_entity("Wparent" + uuid.uuid4().hex[:8], {"keys": ["K"], "fields": [{"name": "K"}]})
repo = EntityRepository(StorageClients.from_settings())
now = datetime.now(UTC)
repo.upsert_rows(entity, [repo.encode(entity, {"K": f"k{i}"}, "usmf", now) for i in range(1500)])
print(" ".join(str(pid) for pid in writer_processes.writer_pids()), flush=True)
sys.stdin.readline()  # the test stalls the storage's replies, then this window's writers wait in mid-request
repo.upsert_rows(entity, [repo.encode(entity, {"K": f"k{i}"}, "usmf", now) for i in range(3000)])
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_writers_end_when_the_apps_process_is_killed_while_they_write(app_env, table_proxy):
    proxy, conn = table_proxy
    env = {**os.environ, "IMPORT_WRITER_PROCESSES": "2", "AzureWebJobsStorage": conn}
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(REPO_ROOT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids), pids
        proxy.set(stall_rate=1.0, stall_seconds=60.0)
        parent.stdin.write("go\n")
        parent.stdin.flush()
        deadline = time.monotonic() + 30
        while proxy.stats().get("stalls", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proxy.stats().get("stalls", 0) >= 2, proxy.stats()
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        # A writer blocked for a minute in a request must not live on to store its rows after the app is gone.
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids), f"writers outlived the app's process: {pids}"
    finally:
        proxy.set(stall_rate=0)
        if parent.poll() is None:
            parent.kill()


def test_prepare_writers_starts_them_for_the_first_window_without_waiting(app_env, entity):
    repo = EntityRepository(StorageClients.from_connection_string(app_env["AzureWebJobsStorage"]))
    started = writer_processes.started
    repo.prepare_writers()
    repo.prepare_writers()  # once is enough: the second call adds nothing
    assert writer_processes.started == started + 1
    deadline = time.monotonic() + 30
    while len(writer_processes.writer_pids()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    warmed = writer_processes.writer_pids()
    assert len(warmed) == 2
    log = CallLog()
    assert repo.upsert_rows(entity, encoded(repo, entity, 3000)).written == 3000
    assert writer_processes.started == started + 1 and writer_processes.writer_pids() == warmed
    assert set(log.batches_by_pid()) == set(warmed)


@pytest.mark.parametrize(
    ("rows", "prepared"), [(writer_processes.MIN_ROWS, 1), (writer_processes.MIN_ROWS - 1, 0)]
)
def test_an_import_starts_the_writers_while_it_stages_once_it_is_large_enough(
    services, make_import_job, monkeypatch, rows, prepared
):
    from shared.domain import statuses
    from shared.queue_limits import Delivery
    from tests.support.work import enqueue_message, message_item

    calls: list[int] = []
    repo = services.entity_repo()
    monkeypatch.setattr(repo, "prepare_writers", lambda: calls.append(len(calls)))
    job, principal, name = make_import_job("Ww")
    body = ("K,V\n" + "".join(f"k{i},{i}\n" for i in range(rows))).encode()
    message = enqueue_message(services, job, principal, body, name)
    services.import_worker().handle(message_item(job, message), claim_token="q-warm", delivery=Delivery(1, 3))
    final = services.message_repo().get_by_id(message["MessageId"])
    assert final["Status"] == statuses.PROCESSED and final["Counts"][name]["written"] == rows
    assert len(calls) == prepared


def test_a_writer_that_cannot_be_started_leaves_the_window_to_the_apps_process(app_env, entity, monkeypatch):
    """The fork failing (memory or process limits: OSError, or EOFError from the forkserver) never fails the
    import: warming up is skipped, and the window is written here."""

    def cannot_start(size):
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(writer_processes, "_executor", cannot_start)
    repo = EntityRepository(StorageClients.from_connection_string(app_env["AzureWebJobsStorage"]))
    repo.prepare_writers()  # does not raise
    log = CallLog()
    result = repo.upsert_rows(entity, encoded(repo, entity, 3000))
    assert (result.written, result.failed) == (3000, [])
    assert set(log.batches_by_pid()) == {os.getpid()}
    assert len(stored(repo, entity)) == 3000


def test_writers_ignore_ctrl_c(app_env, entity):
    """The terminal's SIGINT reaches the whole process group; the app's process decides when writers end."""
    repo = EntityRepository(StorageClients.from_connection_string(app_env["AzureWebJobsStorage"]))
    repo.upsert_rows(entity, encoded(repo, entity, 1500))
    pids = writer_processes.writer_pids()
    for pid in pids:
        os.kill(pid, signal.SIGINT)
    time.sleep(0.5)  # a writer that did not ignore it would be gone by now
    log = CallLog()
    assert repo.upsert_rows(entity, encoded(repo, entity, 3000)).written == 3000
    assert writer_processes.writer_pids() == pids
    assert set(log.batches_by_pid()) == set(pids)
