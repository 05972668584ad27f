"""Services against a real Azurite: idempotent dispatch under races, failed work ending terminal (last delivery,
poison sweep), concurrent claims."""

from __future__ import annotations

import base64
import contextlib
import logging
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from shared.domain import statuses
from shared.services import work_items


@pytest.fixture
def job(make_import_job):
    return make_import_job("It", recurrence={"unit": "minutes", "interval": 1})


def enqueue(services, job, principal, entity, body=b"K,V\n1,1\n"):
    return services.enqueue_service().enqueue(
        job.activity_id, principal, body, entity=entity, company=None, external_id=None
    )


def test_racing_scheduler_ticks_dispatch_a_due_time_once(services, job):
    created, principal, entity = job
    for _ in range(3):
        enqueue(services, created, principal, entity)
    scheduler = services.scheduler()
    now = datetime.now(UTC)
    results = []

    def tick():
        results.append(scheduler.tick(now)["dispatched"])

    threads = [threading.Thread(target=tick) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    messages = list(services.message_repo().iter_messages(created.activity_id))
    assert len(messages) == 3 and all(m.get("DispatchedAt") for m in messages)
    stamps = [m["DispatchedAt"] for m in messages]
    scheduler.tick(now)  # the same due time again: our messages are not dispatched again
    assert [m["DispatchedAt"] for m in services.message_repo().iter_messages(created.activity_id)] == stamps


def test_dispatching_the_same_message_twice_queues_it_once(services, job):
    created, principal, entity = job
    enqueue(services, created, principal, entity)
    message = next(services.message_repo().iter_messages(created.activity_id))
    dispatcher = services.dispatcher()
    outcomes = []
    threads = [
        threading.Thread(
            target=lambda: outcomes.append(
                dispatcher.dispatch_message(created, message, statuses.TRIGGER_MANUAL)
            )
        )
        for _ in range(5)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count(True) == 1


def test_only_one_worker_claims_a_message(services, job):
    created, principal, entity = job
    enqueue(services, created, principal, entity)
    message = next(services.message_repo().iter_messages(created.activity_id))
    worker = services.import_worker()
    claims = []

    def claim(token):
        claims.append(worker._claim(created, message["RowKey"], token, any_active=False))

    threads = [threading.Thread(target=claim, args=(f"q{i}",)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [c for c in claims if c is not None]
    assert len(winners) == 1
    # the same queue item, redelivered after a crash, may claim it again; another may not
    token = winners[0]["ClaimToken"]
    assert worker._claim(created, message["RowKey"], "someone-else", any_active=False) is None
    assert worker._claim(created, message["RowKey"], token, any_active=False)["Attempts"] == 2


def test_poison_ends_a_stuck_message_with_the_last_error(services, job):
    created, principal, entity = job
    message_id = enqueue(services, created, principal, entity)
    repo = services.message_repo()
    message = repo.get_by_id(message_id)
    worker = services.import_worker()
    worker._claim(created, message["RowKey"], "q1", any_active=False)
    repo.update_message(created.activity_id, message["RowKey"], lambda _: {"LastError": "RuntimeError: boom"})
    item = work_items.decode(
        work_items.encode(
            kind=work_items.KIND_MESSAGE,
            jobId=created.activity_id,
            messageId=message_id,
            rowKey=message["RowKey"],
        )
    )
    worker.handle_poison(item)
    final = repo.get_by_id(message_id)
    assert final["Status"] == statuses.POSTPROCESSING_FAILED
    assert "RuntimeError: boom" in final["ErrorSummary"]
    worker.handle_poison(item)  # idempotent: a terminal message stays as it is
    assert repo.get_by_id(message_id)["Transitions"] == final["Transitions"]


def test_poison_of_a_drain_fails_the_head_and_lets_the_rest_flow(services, job):
    created, principal, entity = job
    config = services.config_service()
    body = {
        "name": "ordered",
        "project": created.project,
        "company": "usmf",
        "processInOrder": True,
        "authorizationPolicy": [{"applicationId": principal.app_id}],
    }
    ordered = config.upsert_job(created.activity_id, body).value
    first = enqueue(services, ordered, principal, entity, b"K,V\n1,1\n")
    second = enqueue(services, ordered, principal, entity, b"K,V\n2,2\n")
    repo = services.message_repo()
    worker = services.import_worker()
    worker._claim(ordered, repo.get_by_id(first)["RowKey"], "dead-drain", any_active=True)
    item = {"kind": work_items.KIND_DRAIN, "jobId": ordered.activity_id}
    worker.handle_poison(item)
    assert repo.get_by_id(first)["Status"] == statuses.POSTPROCESSING_FAILED
    # The handler queued a new drain for the rest; the local host on this Azurite may run it before we
    # do (then ours finds the lease taken and returns), so wait for whichever drain wins.
    worker.drain(ordered, claim_token="new-drain", trigger=statuses.TRIGGER_RETRY)
    deadline = time.monotonic() + 30
    while repo.get_by_id(second)["Status"] != statuses.PROCESSED and time.monotonic() < deadline:
        time.sleep(0.2)
    assert repo.get_by_id(second)["Status"] == statuses.PROCESSED


def test_leases_exclude_other_holders(services):
    from datetime import timedelta

    from shared.storage import names
    from shared.storage.factory import get_clients
    from shared.storage.lease_repo import LeaseRepository

    leases = LeaseRepository(get_clients().table(names.TABLE_LEASES), scope="test")
    key = uuid.uuid4().hex
    assert leases.acquire(key, "a", timedelta(minutes=1))
    assert not leases.acquire(key, "b", timedelta(minutes=1))
    assert leases.acquire(key, "a", timedelta(minutes=1))  # renew
    leases.release(key, "b")  # not the holder: no effect
    assert leases.holder(key) == "a"
    leases.release(key, "a")
    assert leases.acquire(key, "b", timedelta(seconds=-1))  # expired immediately
    assert leases.acquire(key, "c", timedelta(minutes=1))  # an expired lease can be taken


def test_a_due_time_is_claimed_by_exactly_one_racer(services):
    scheduler = services.scheduler()
    job_id = str(uuid.uuid4())
    due = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    wins = []
    threads = [
        threading.Thread(target=lambda: wins.append(scheduler._claim_due(job_id, "processing", due)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1
    assert scheduler._claim_due(job_id, "processing", due) is False
    assert scheduler._claim_due(job_id, "processing", due.replace(minute=1)) is True  # the next due time


def test_imported_rows_are_stamped_when_written_not_when_read(services, job):
    from shared.storage.entity_repo import MODIFIED

    created, principal, entity = job
    message_id = enqueue(services, created, principal, entity, b"K,V\n1,1\n2,2\n")
    message = services.message_repo().get_by_id(message_id)
    services.import_worker().handle(
        {
            "kind": work_items.KIND_MESSAGE,
            "jobId": created.activity_id,
            "messageId": message_id,
            "rowKey": message["RowKey"],
        },
        claim_token="stamp-test",
    )
    final = services.message_repo().get_by_id(message_id)
    assert final["Status"] == statuses.PROCESSED
    processing_at = next(t["at"] for t in final["Transitions"] if t["status"] == statuses.PROCESSING)
    config_entity = services.config_service().get_entity(entity)
    rows = list(services.entity_repo().iter_rows(config_entity))
    assert len(rows) == 2
    assert all(r[MODIFIED].isoformat().replace("+00:00", "Z") >= processing_at.replace("Z", "") for r in rows)


# Failed work ends terminal: on the last allowed delivery, and by the poison sweep --------------------


@pytest.fixture
def fault_plan(tmp_path, monkeypatch):
    """Arms shared.services.fault_points in this process: arm(step, key, action="raise", times=1)."""
    monkeypatch.setenv("DEV_FAULT_PLAN_DIR", str(tmp_path))

    def arm(step: str, key: str, action: str = "raise", times: int = 1) -> None:
        (tmp_path / f"{step}.{key}").write_text(f"{action} {times}", encoding="utf-8")

    return arm


def _message_item(job, message: dict) -> dict:
    return {
        "kind": work_items.KIND_MESSAGE,
        "jobId": job.activity_id,
        "messageId": message["MessageId"],
        "rowKey": message["RowKey"],
    }


def _lose_file(message: dict) -> bytes:
    """Delete the message's inbound file, so that every attempt fails (ResourceNotFoundError: not a
    FormatError, so the worker raises for the host to retry). Returns the content, to put it back."""
    from shared.storage import names
    from shared.storage.factory import get_clients

    inbound = get_clients().container(names.CONTAINER_INBOUND)
    data = inbound.download_blob(message["BlobName"]).readall()
    inbound.delete_blob(message["BlobName"])
    return data


def _runs_of(services, job) -> list[dict]:
    return services.run_repo().list_runs(job.activity_id)[0]


def test_a_failure_before_the_last_delivery_is_raised_and_the_message_stays_retryable(services, job):
    """Deliveries below maxDequeueCount raise, so the host makes the item visible again (QueueProcessor.
    CompleteProcessingMessageAsync, Storage Queues extension); the next delivery imports the message."""
    from shared.queue_limits import Delivery
    from shared.storage import names
    from shared.storage.factory import get_clients

    created, principal, entity = job
    message_id = enqueue(services, created, principal, entity)
    repo = services.message_repo()
    message = repo.get_by_id(message_id)
    data = _lose_file(message)
    worker = services.import_worker()
    with pytest.raises(ResourceNotFoundError):
        worker.handle(_message_item(created, message), claim_token="q-retry", delivery=Delivery(1, 3))
    after = repo.get_by_id(message_id)
    assert after["Status"] == statuses.PREPROCESSING and "ResourceNotFoundError" in after["LastError"]

    get_clients().container(names.CONTAINER_INBOUND).upload_blob(message["BlobName"], data, overwrite=True)
    worker.handle(_message_item(created, message), claim_token="q-retry", delivery=Delivery(2, 3))
    final = repo.get_by_id(message_id)
    assert final["Status"] == statuses.PROCESSED and final["Attempts"] == 2
    # The failed delivery's run did not stay Executing: the retry ended it.
    runs = _runs_of(services, created)
    assert sorted(r["Status"] for r in runs) == [statuses.RUN_ENDED, statuses.RUN_ERROR]


def test_the_last_delivery_ends_a_failing_message_with_the_reason(services, job):
    from shared.queue_limits import Delivery

    created, principal, entity = job
    message_id = enqueue(services, created, principal, entity)
    repo = services.message_repo()
    message = repo.get_by_id(message_id)
    _lose_file(message)
    worker = services.import_worker()
    item = _message_item(created, message)
    with pytest.raises(ResourceNotFoundError):
        worker.handle(item, claim_token="q-last", delivery=Delivery(1, 2))
    worker.handle(item, claim_token="q-last", delivery=Delivery(2, 2))  # returns: the host deletes the item
    final = repo.get_by_id(message_id)
    assert final["Status"] == statuses.POSTPROCESSING_FAILED
    summary = final["ErrorSummary"]
    assert "the import failed on its last allowed queue delivery 2 of 2, after 2 attempt(s)" in summary
    assert summary.endswith("last error: ResourceNotFoundError: The specified blob does not exist.")
    assert all(r["Status"] == statuses.RUN_ERROR for r in _runs_of(services, created))
    # The run's reason names the message and its status, then the message's reason (run_outcome).
    assert any(
        f"message {message_id}: PostProcessingFailed: {summary[:400]}" in " ".join(r.get("Errors") or [])
        for r in _runs_of(services, created)
    )


def test_a_failing_terminal_write_on_the_last_delivery_is_raised(services, job, fault_plan):
    """The host then moves the item to the poison queue (QueueProcessor: DequeueCount >= MaxDequeueCount),
    where the sweep ends the message."""
    from shared.queue_limits import Delivery

    created, principal, entity = job
    message_id = enqueue(services, created, principal, entity)
    repo = services.message_repo()
    message = repo.get_by_id(message_id)
    _lose_file(message)
    fault_plan("fail_write", message_id)
    worker = services.import_worker()
    with pytest.raises(RuntimeError, match="injected fault at fail_write"):
        worker.handle(_message_item(created, message), claim_token="q-w", delivery=Delivery(5, 5))
    assert repo.get_by_id(message_id)["Status"] == statuses.PREPROCESSING
    worker.handle_poison(_message_item(created, message))  # what the sweep does with the poisoned item
    final = repo.get_by_id(message_id)
    assert final["Status"] == statuses.POSTPROCESSING_FAILED
    assert "poison queue" in final["ErrorSummary"] and "ResourceNotFoundError" in final["ErrorSummary"]


def test_the_last_delivery_of_a_drain_fails_the_head_and_the_rest_flows(services, job):
    from shared.queue_limits import Delivery

    created, principal, entity = job
    saved = services.config_service().upsert_job(
        created.activity_id,
        {
            "name": "ordered-last",
            "project": created.project,
            "company": "usmf",
            "processInOrder": True,
            "authorizationPolicy": [{"applicationId": principal.app_id}],
        },
    )
    ordered = saved.value
    repo = services.message_repo()
    first = enqueue(services, ordered, principal, entity, b"K,V\n1,1\n")
    second = enqueue(services, ordered, principal, entity, b"K,V\n2,2\n")
    _lose_file(repo.get_by_id(first))
    worker = services.import_worker()
    item = {"kind": work_items.KIND_DRAIN, "jobId": ordered.activity_id}
    with pytest.raises(ResourceNotFoundError):
        worker.handle(item, claim_token="drain-1", delivery=Delivery(1, 2))
    assert repo.get_by_id(second)["Status"] == statuses.ENQUEUED  # in order: nothing overtakes the head
    worker.handle(item, claim_token="drain-1", delivery=Delivery(2, 2))
    head = repo.get_by_id(first)
    assert head["Status"] == statuses.POSTPROCESSING_FAILED
    assert "last allowed queue delivery 2 of 2" in head["ErrorSummary"]
    # A new drain was queued for the rest; a local host on this Azurite may run it first, or we do.
    worker.drain(ordered, claim_token="drain-2", trigger=statuses.TRIGGER_RETRY)
    deadline = time.monotonic() + 30
    while repo.get_by_id(second)["Status"] != statuses.PROCESSED and time.monotonic() < deadline:
        time.sleep(0.2)
    assert repo.get_by_id(second)["Status"] == statuses.PROCESSED


@pytest.fixture
def export_run(services, make_import_job):
    """An export job and a Waiting run of it, without queueing it (a local host could take it)."""
    config = services.config_service()
    _, principal, entity = make_import_job("Ex")
    config.upsert_project(f"{entity}-out", {"operation": "export", "entities": [{"entity": entity}]})
    job = config.create_job(
        {
            "name": f"{entity}-out",
            "project": f"{entity}-out",
            "company": "usmf",
            "authorizationPolicy": [{"applicationId": principal.app_id}],
        }
    ).value
    run_id = str(uuid.uuid4())
    services.run_repo().create_run(
        job.activity_id,
        run_id,
        trigger=statuses.TRIGGER_MANUAL,
        operation="export",
        status=statuses.RUN_WAITING,
    )
    return {"kind": work_items.KIND_EXPORT, "jobId": job.activity_id, "runId": run_id}


def test_an_export_run_ends_in_error_on_its_last_delivery(services, export_run, fault_plan):
    from shared.queue_limits import Delivery

    run_id = export_run["runId"]
    fault_plan("export", run_id, times=2)
    exports = services.export_service()
    with pytest.raises(RuntimeError, match="injected fault at export"):
        exports.handle(export_run, delivery=Delivery(1, 2))
    run = services.run_repo().get_run(run_id)
    assert run["Status"] == statuses.RUN_EXECUTING and "injected fault" in run["LastError"]
    result = exports.handle(export_run, delivery=Delivery(2, 2))
    assert result.status == statuses.RUN_ERROR
    run = services.run_repo().get_run(run_id)
    assert run["Status"] == statuses.RUN_ERROR
    [reason] = run["Errors"]
    assert reason.startswith(
        "the export failed on its last allowed queue delivery 2 of 2, after 2 attempt(s)"
    )
    assert "RuntimeError: injected fault at export" in reason


def _poison_client(name: str):
    """A client of a poison queue that neither encodes nor decodes: the test writes what the host writes."""
    from shared.storage.factory import get_clients

    client = get_clients().queue_service.get_queue_client(name)
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    return client


def _host_encoded(item: dict) -> str:
    return base64.b64encode(work_items.encode(**item).encode("utf-8")).decode("ascii")


def _ids_in(client) -> set[str]:
    return {m.id for m in client.peek_messages(max_messages=32)}


def test_the_sweep_ends_poisoned_import_and_export_items_once(services, job, export_run):
    from shared.storage import names

    created, principal, entity = job
    message_id = enqueue(services, created, principal, entity)
    repo = services.message_repo()
    message = repo.get_by_id(message_id)
    services.import_worker()._claim(created, message["RowKey"], "dead", any_active=False)
    repo.update_message(created.activity_id, message["RowKey"], lambda _: {"LastError": "OSError: gone"})
    services.run_repo().update_run(export_run["runId"], Status=statuses.RUN_EXECUTING, Attempts=2)

    imports, exports = _poison_client(names.QUEUE_IMPORT_POISON), _poison_client(names.QUEUE_EXPORT_POISON)
    # The same item twice (the host poisons a copy; a copy may be swept after its work already ended).
    sent = [imports.send_message(_host_encoded(_message_item(created, message))).id for _ in range(2)]
    sent.append(exports.send_message(_host_encoded(export_run)).id)

    first = services.poison_sweeper().sweep()
    assert first[names.QUEUE_IMPORT_POISON]["ended"] >= 2 and first[names.QUEUE_EXPORT_POISON]["ended"] >= 1
    ended = repo.get_by_id(message_id)
    assert ended["Status"] == statuses.POSTPROCESSING_FAILED
    assert ended["ErrorSummary"] == (
        "the import was abandoned after 1 attempt(s): the host moved its work item to the poison queue; "
        "no record was written; last error: OSError: gone"
    )
    assert [t["status"] for t in ended["Transitions"]].count(statuses.POSTPROCESSING_FAILED) == 1
    run = services.run_repo().get_run(export_run["runId"])
    assert run["Status"] == statuses.RUN_ERROR
    assert run["Errors"][0].startswith("the export was abandoned after 2 attempt(s)")
    assert not (set(sent) & (_ids_in(imports) | _ids_in(exports)))

    services.poison_sweeper().sweep()  # again: nothing changes
    assert repo.get_by_id(message_id)["Transitions"] == ended["Transitions"]
    assert services.run_repo().get_run(export_run["runId"])["Errors"] == run["Errors"]


def test_the_sweep_keeps_an_item_whose_terminal_write_fails(services, job, fault_plan, monkeypatch):
    from shared.services import poison_sweeper
    from shared.storage import names

    monkeypatch.setattr(poison_sweeper, "HIDE_SECONDS", 1)  # so the kept item is visible again soon
    created, principal, entity = job
    message_id = enqueue(services, created, principal, entity)
    message = services.message_repo().get_by_id(message_id)
    fault_plan("fail_write", message_id)
    imports = _poison_client(names.QUEUE_IMPORT_POISON)
    sent = imports.send_message(_host_encoded(_message_item(created, message))).id

    counts = services.poison_sweeper().sweep_queue(names.QUEUE_IMPORT_POISON)
    assert counts.failed >= 1 and any("injected fault at fail_write" in e for e in counts.errors)
    assert services.message_repo().get_by_id(message_id)["Status"] == statuses.ENQUEUED
    deadline = time.monotonic() + 10
    while sent not in _ids_in(imports) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sent in _ids_in(imports), "the item must stay until its work has ended"

    services.poison_sweeper().sweep_queue(names.QUEUE_IMPORT_POISON)
    assert services.message_repo().get_by_id(message_id)["Status"] == statuses.POSTPROCESSING_FAILED
    assert sent not in _ids_in(imports)


def test_an_unreadable_poison_item_is_logged_and_removed(services, caplog):
    from shared.storage import names

    imports = _poison_client(names.QUEUE_IMPORT_POISON)
    not_base64 = imports.send_message("this is not base64 {kind}").id
    not_an_item = imports.send_message(base64.b64encode(b'{"hello": "world"}').decode("ascii")).id
    incomplete = imports.send_message(_host_encoded({"kind": work_items.KIND_MESSAGE, "jobId": "j"})).id
    with caplog.at_level(logging.ERROR, logger="shared.services.poison_sweeper"):
        counts = services.poison_sweeper().sweep_queue(names.QUEUE_IMPORT_POISON)
    assert counts.unreadable >= 3
    assert not ({not_base64, not_an_item, incomplete} & _ids_in(imports))
    logged = caplog.text
    assert f"deleting an unreadable item {not_base64}" in logged and "'this is not base64 {kind}'" in logged
    assert f"deleting an unreadable item {not_an_item}" in logged and "not a work item" in logged
    assert f"deleting an unreadable item {incomplete}" in logged and "needs jobId, rowKey" in logged


def test_the_sweep_ends_the_run_of_a_message_that_ended_without_it(services, job):
    """The worker died between the message's outcome and its run's end: the message is Processed, and the
    poisoned item ends the run as Ended rather than leaving it Executing."""
    created, principal, entity = job
    message_id = enqueue(services, created, principal, entity)
    message = services.message_repo().get_by_id(message_id)
    services.import_worker().handle(_message_item(created, message), claim_token="q-done")
    done = services.message_repo().get_by_id(message_id)
    assert done["Status"] == statuses.PROCESSED
    services.run_repo().update_run(
        done["RunId"], Status=statuses.RUN_EXECUTING
    )  # as if killed before its end

    services.import_worker().handle_poison(_message_item(created, message))
    assert services.message_repo().get_by_id(message_id)["Transitions"] == done["Transitions"]
    assert services.run_repo().get_run(done["RunId"])["Status"] == statuses.RUN_ENDED


def test_an_execution_started_again_keeps_one_run_row(services, job):
    """A retried package import keeps its execution ID: the run restarts in place, never leaving an orphan row
    stuck at Executing beside a new one."""
    job, _, _ = job
    runs = services.run_repo()
    run_id = f"exec-{uuid.uuid4().hex[:8]}"
    runs.create_run(job.activity_id, run_id, trigger="package-api", operation="import")
    runs.add_message(run_id, "m1")
    runs.end_run(run_id, "Error", Errors=["killed"])
    again = runs.create_run(job.activity_id, run_id, trigger="package-api", operation="import")
    assert again["Status"] == "Executing" and "EndedAt" not in again
    page, _ = runs.list_runs(job.activity_id)
    mine = [r for r in page if r["RunId"] == run_id]
    assert len(mine) == 1
    assert mine[0]["Status"] == "Executing" and mine[0]["Messages"] == ["m1"] and "EndedAt" not in mine[0]


def test_an_on_arrival_message_whose_dispatch_never_reached_a_worker_is_queued_again(
    services, make_import_job
):
    """The process stopped between the message's row and its work item (or the queue did not answer): the
    row says dispatched, and no item exists. Without a recurrence, the scheduler's tick queues it again once
    dispatch.REDISPATCH_AFTER passed, and it is processed; a fresh dispatch is left alone."""
    from datetime import timedelta

    from shared.services.dispatch import REDISPATCH_AFTER

    created, _, entity = make_import_job("Oa", processOnArrival=True)
    repo = services.message_repo()
    long_ago = datetime.now(UTC) - REDISPATCH_AFTER - timedelta(minutes=1)
    just_now = datetime.now(UTC)
    stranded = _stored_message(services, created, entity, DispatchedAt=long_ago)
    fresh = _stored_message(services, created, entity, DispatchedAt=just_now)
    summary = services.scheduler().tick()
    assert summary["redispatched"] >= 1, summary
    assert repo.find_by_id(stranded)["DispatchedAt"] > long_ago
    # Its work item is on the import queue: this test's worker handles it, unless the session's local host
    # (same Azurite, when an e2e file ran first on this worker) took it; either way it ends Processed.
    deadline = time.monotonic() + 60
    while repo.find_by_id(stranded)["Status"] != statuses.PROCESSED:
        assert time.monotonic() < deadline, repo.find_by_id(stranded)
        item = _take_item(services, stranded)
        if item is not None:
            services.import_worker().handle(item, claim_token="q-stale")
        else:
            time.sleep(0.2)
    left = repo.find_by_id(fresh)  # dispatched just now: not queued again
    assert left["Status"] == statuses.ENQUEUED and left["DispatchedAt"] == just_now, left


def test_an_in_order_message_whose_drain_never_reached_a_worker_is_drained_by_the_tick(
    services, make_import_job
):
    """An in-order on-arrival job queues a drain, not the message; when that first send failed, the tick queues
    a drain once the oldest Enqueued message has waited REDISPATCH_AFTER, and the message is processed. A job
    whose oldest message is fresh gets none."""
    from datetime import timedelta

    from shared.services.dispatch import REDISPATCH_AFTER

    stale_job, _, entity = make_import_job("Od", processOnArrival=True, processInOrder=True)
    fresh_job, _, fresh_entity = make_import_job("Of", processOnArrival=True, processInOrder=True)
    repo = services.message_repo()
    long_ago = datetime.now(UTC) - REDISPATCH_AFTER - timedelta(minutes=1)
    stranded = _stored_message(services, stale_job, entity, EnqueuedAt=long_ago)
    fresh = _stored_message(services, fresh_job, fresh_entity)
    dispatcher = services.dispatcher()
    assert dispatcher.dispatch_stale(fresh_job) == 0
    summary = services.scheduler().tick()
    assert summary["redispatched"] >= 1, summary
    deadline = time.monotonic() + 60
    while repo.find_by_id(stranded)["Status"] != statuses.PROCESSED:
        assert time.monotonic() < deadline, repo.find_by_id(stranded)
        item = _take_drain(services, stale_job.activity_id)
        if item is not None:
            services.import_worker().handle(item, claim_token="q-drain")
        else:
            time.sleep(0.2)
    assert repo.find_by_id(fresh)["Status"] == statuses.ENQUEUED
    assert _take_drain(services, fresh_job.activity_id) is None


def _take_drain(services, job_id: str) -> dict | None:
    """The import queue's drain item for this job (deleted from the queue), or None when it is not there."""
    from shared.storage import names
    from shared.storage.factory import get_clients

    queue = get_clients().queue(names.QUEUE_IMPORT)
    for message in queue.receive_messages(messages_per_page=32, visibility_timeout=1, max_messages=320):
        item = work_items.decode(message.content)
        if item.get("kind") == work_items.KIND_DRAIN and item.get("jobId") == job_id:
            queue.delete_message(message)
            return item
    return None


def _stored_message(services, job, entity: str, **fields) -> str:
    """An Enqueued one-row file message of `job` as enqueue stores it (its file, then its row), with `fields`;
    no work item is queued. Its ID."""
    from shared.storage import names
    from shared.storage.factory import get_clients

    message_id = str(uuid.uuid4())
    blob = f"{job.activity_id}/{message_id}"
    get_clients().container(names.CONTAINER_INBOUND).upload_blob(blob, b"K,V\n7,7\n", overwrite=True)
    services.message_repo().create_message(
        job.activity_id,
        message_id,
        {
            "Status": statuses.ENQUEUED,
            "Direction": "import",
            "Entity": entity,
            "Company": "usmf",
            "BlobName": blob,
            "Mode": "file",
            **fields,
        },
    )
    return message_id


def _take_item(services, message_id: str) -> dict | None:
    """The import queue's item for this message (deleted from the queue), or None when it is not there."""
    from shared.storage import names
    from shared.storage.factory import get_clients

    queue = get_clients().queue(names.QUEUE_IMPORT)
    for message in queue.receive_messages(messages_per_page=32, visibility_timeout=1, max_messages=320):
        item = work_items.decode(message.content)
        if item.get("messageId") == message_id:
            queue.delete_message(message)
            return item
    return None


def test_a_package_import_whose_first_dispatch_failed_runs_in_its_execution(services, make_import_job):
    """ImportFromPackage lists its job before storing the message (Dispatcher.mark_pending): a message whose first
    dispatch never reached a worker is queued by the tick in its own execution, even on a manual job (a package
    import runs at once) or a definition group's job (not stored); the job's own messages still wait for it to
    run; the list entry goes once nothing is left."""
    from shared.services.dispatch import NOT_DISPATCHED, PENDING_PARTITION
    from shared.storage import names
    from shared.storage.factory import get_clients

    created, principal, entity = make_import_job("Pk")  # manual: no recurrence, not on arrival
    own = enqueue(services, created, principal, entity)
    repo = services.message_repo()
    exec_id = f"pkg-{uuid.uuid4().hex[:8]}"
    services.dispatcher().mark_pending(created.activity_id)
    message_id = _stored_message(
        services,
        created,
        entity,
        RunId=exec_id,
        Trigger=statuses.TRIGGER_PACKAGE_API,
        DispatchedAt=NOT_DISPATCHED,  # its first dispatch failed
    )
    scheduler = services.scheduler()
    summary = scheduler.tick()
    assert summary["redispatched"] >= 1, summary
    deadline = time.monotonic() + 60
    while repo.find_by_id(message_id)["Status"] != statuses.PROCESSED:
        assert time.monotonic() < deadline, repo.find_by_id(message_id)
        item = _take_item(services, message_id)
        if item is not None:
            assert item["runId"] == exec_id and item["trigger"] == statuses.TRIGGER_PACKAGE_API, item
            services.import_worker().handle(item, claim_token="q-package")
        else:
            time.sleep(0.2)
    assert services.run_repo().get_run(exec_id)["Status"] == "Ended"
    assert repo.find_by_id(own)["Status"] == statuses.ENQUEUED  # the job's own message waits for a run
    schedule = get_clients().table(names.TABLE_SCHEDULE)
    scheduler.tick()  # nothing of the package API left waiting: the job leaves the list
    listed = schedule.query_entities(
        "PartitionKey eq @pk and RowKey eq @job",
        parameters={"pk": PENDING_PARTITION, "job": created.activity_id},
    )
    assert list(listed) == []
