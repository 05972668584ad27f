"""Services against a real Azurite: idempotent dispatch under races, poison handling, concurrent claims."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

import pytest

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
    ordered, _ = config.upsert_job(created.activity_id, body)
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
