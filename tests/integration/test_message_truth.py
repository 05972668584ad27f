"""Counts are true at every moment (issue 11, item 3), against a real Azurite: `written` grows while a
message is Processing, a failure says how much was written (a partial import), the last transient storage
error retried is on the message, and an execution superseded by a retry answers Failed, not Executing."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ServiceResponseError

from shared.domain import statuses
from shared.queue_limits import Delivery
from tests.support.work import enqueue_message, message_item

ROWS = 2000  # about 125 rows in each of the 16 partitions: batches of 100 fill up before the end


@pytest.fixture
def job(make_import_job):
    return make_import_job("Tr")


@pytest.fixture
def small_chunks(monkeypatch):
    """Every full batch is its own chunk and every chunk writes the progress back (no 5 s throttle)."""
    from shared.services import import_pipeline, message_import

    monkeypatch.setattr(import_pipeline, "WINDOW_BATCHES", 1)
    monkeypatch.setattr(message_import, "PROGRESS_SECONDS", 0.0)


def _csv(rows: int = ROWS) -> bytes:
    return ("K,V\n" + "".join(f"k{i},{i}\n" for i in range(rows))).encode()


def _written(message: dict) -> int:
    return sum(int(c.get("written") or 0) for c in (message.get("Counts") or {}).values())


class _SpyEntities:
    """The real entity repository; before each upsert it reads what the message says it has written."""

    def __init__(self, real, on_upsert) -> None:
        self._real = real
        self._on_upsert = on_upsert

    def __getattr__(self, name):
        return getattr(self._real, name)

    def start_upsert(self, entity, rows, **kwargs):
        self._on_upsert()
        return self._real.start_upsert(entity, rows, **kwargs)


def test_written_grows_while_the_message_is_processing(services, job, small_chunks):
    created, principal, entity = job
    message = enqueue_message(services, created, principal, _csv(), entity)
    repo = services.message_repo()
    seen: list[tuple[str, int]] = []
    worker = services.import_worker()
    real = worker._entities
    worker._entities = _SpyEntities(
        real,
        lambda: seen.append(
            (lambda m: (m["Status"], _written(m)))(repo.get_message(created.activity_id, message["RowKey"]))
        ),
    )
    try:
        worker.handle(message_item(created, message), claim_token="q-progress")
    finally:
        worker._entities = real
    final = repo.get_by_id(message["MessageId"])
    assert final["Status"] == statuses.PROCESSED and _written(final) == ROWS
    assert all(status == statuses.PROCESSING for status, _ in seen)
    written = [n for _, n in seen]
    assert written[0] == 0 and written == sorted(written)
    assert 0 < written[-1] < ROWS, f"written never moved during Processing: {written}"


class _ResetOnce:
    """A real TableClient whose first batch fails as a connection reset before reaching the service
    (what a proxy that resets connections does; tests/faults has the real proxy)."""

    def __init__(self, real, state: dict) -> None:
        self._real = real
        self._state = state

    def __getattr__(self, name):
        return getattr(self._real, name)

    def submit_transaction(self, ops, **kwargs):
        if not self._state["reset"]:
            self._state["reset"] = True
            raise ServiceResponseError("Connection reset by peer")
        return self._real.submit_transaction(ops, **kwargs)


def test_the_message_shows_its_attempts_and_the_last_transient_error(services, job, monkeypatch):
    from shared.services.message_views import message_detail
    from shared.storage.entity_repo import EntityRepository

    created, principal, entity = job
    message = enqueue_message(services, created, principal, _csv(300), entity)
    state = {"reset": False}
    real_table = EntityRepository.table
    monkeypatch.setattr(EntityRepository, "table", lambda self, e: _ResetOnce(real_table(self, e), state))
    services.import_worker().handle(message_item(created, message), claim_token="q-transient")
    detail = message_detail(services.message_repo().get_by_id(message["MessageId"]))
    assert state["reset"]
    assert detail["status"] == statuses.PROCESSED and detail["records"]["written"] == 300
    assert detail["attempts"] == 1
    assert "ServiceResponseError: Connection reset by peer" in detail["lastTransientError"]
    assert detail["partial"] is False


def test_a_failed_import_says_how_many_records_were_written(
    services, job, small_chunks, tmp_path, monkeypatch
):
    """The worker fails after its first committed chunk on every delivery; the last delivery ends the message
    PostProcessingFailed saying the import is partial, with the records written before it failed."""
    from shared.services.message_views import message_detail

    monkeypatch.setenv("DEV_FAULT_PLAN_DIR", str(tmp_path))
    created, principal, entity = job
    message = enqueue_message(services, created, principal, _csv(), entity)
    (tmp_path / f"processing.{message['MessageId']}").write_text("raise 2", encoding="utf-8")
    worker = services.import_worker()
    with pytest.raises(RuntimeError):
        worker.handle(message_item(created, message), claim_token="q-partial", delivery=Delivery(1, 2))
    worker.handle(message_item(created, message), claim_token="q-partial", delivery=Delivery(2, 2))
    final = services.message_repo().get_by_id(message["MessageId"])
    detail = message_detail(final)
    written = _written(final)
    assert final["Status"] == statuses.POSTPROCESSING_FAILED
    assert 0 < written < ROWS and detail["partial"] is True and detail["attempts"] == 2
    assert (
        f"{written} record(s) were written before it failed, so the import is partial"
        in final["ErrorSummary"]
    )
    rows = list(services.entity_repo().iter_rows(services.config_service().get_entity(entity)))
    assert len(rows) == written  # the count is the truth about the target


def test_a_superseded_execution_answers_failed_not_executing(services, job, tmp_path, monkeypatch):
    """Each failed delivery's run is superseded by the next one's: it ends Error with SupersededBy, and its
    execution summary is Failed while the message lives on (active, then Processed) in a later run."""
    from shared.services.package_api_service import Execution, summary_of

    monkeypatch.setenv("DEV_FAULT_PLAN_DIR", str(tmp_path))
    created, principal, entity = job
    message = enqueue_message(services, created, principal, _csv(10), entity)
    (tmp_path / f"processing.{message['MessageId']}").write_text("raise 2", encoding="utf-8")
    worker, runs, repo = services.import_worker(), services.run_repo(), services.message_repo()
    with pytest.raises(RuntimeError):
        worker.handle(message_item(created, message), claim_token="q-super", delivery=Delivery(1, 3))
    first_run = repo.get_by_id(message["MessageId"])["RunId"]
    with pytest.raises(RuntimeError):
        worker.handle(message_item(created, message), claim_token="q-super", delivery=Delivery(2, 3))
    active = repo.get_by_id(message["MessageId"])
    old = runs.get_run(first_run)
    assert active["Status"] in statuses.IMPORT_ACTIVE and active["RunId"] != first_run
    assert old["Status"] == statuses.RUN_ERROR and old["SupersededBy"] == active["RunId"]
    assert summary_of(Execution(first_run, created.activity_id, "import", old, [active])) == "Failed"
    worker.handle(message_item(created, message), claim_token="q-super", delivery=Delivery(3, 3))
    final = repo.get_by_id(message["MessageId"])
    old = runs.get_run(first_run)
    assert final["Status"] == statuses.PROCESSED
    assert summary_of(Execution(first_run, created.activity_id, "import", old, [final])) == "Failed"
    latest = runs.get_run(final["RunId"])
    assert (
        summary_of(Execution(final["RunId"], created.activity_id, "import", latest, [final])) == "Succeeded"
    )
