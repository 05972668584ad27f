"""Runs tell the truth (issue 11, item 4), against a real Azurite: an import run holds the messages it handled
and the records read, written and rejected over them; it ends Ended (all good), Ended with withErrors (records
rejected or some messages failed) or Error (all failed), with the reasons in `errors`."""

from __future__ import annotations

import pytest

from shared.domain import statuses
from shared.services import work_items
from shared.services.message_views import run_summary

GOOD = b"K,V\n1,1\n2,2\n3,3\n"
SOME_REJECTED = b"K,V\n4,4\n5,not-a-number\n6,6\n"
UNREADABLE = b"K,V\n1,1\n\xff\xfe\x00junk\n"  # not UTF-8: the file cannot be read (PreProcessingError)


@pytest.fixture
def in_order(make_import_job):
    return make_import_job("Ru", processInOrder=True)


def _drain(services, job, bodies: list[bytes]) -> tuple[dict, list[dict]]:
    """Enqueue the files to a process-in-order job and drain them in one run: (the run, its messages)."""
    created, principal, entity = job
    ids = [
        services.enqueue_service().enqueue(
            created.activity_id, principal, body, entity=entity, company=None, external_id=f"file-{i}.csv"
        )
        for i, body in enumerate(bodies)
    ]
    item = {"kind": work_items.KIND_DRAIN, "jobId": created.activity_id}
    services.import_worker().handle(item, claim_token=f"drain-{ids[0]}")
    messages = [services.message_repo().get_by_id(i) for i in ids]
    run_ids = {m["RunId"] for m in messages}
    assert len(run_ids) == 1
    return run_summary(services.run_repo().get_run(run_ids.pop())), messages


def test_a_run_of_good_files_ends_with_their_counts(services, in_order):
    run, messages = _drain(services, in_order, [GOOD, GOOD])
    assert [m["Status"] for m in messages] == [statuses.PROCESSED] * 2
    assert run["status"] == statuses.RUN_ENDED and run["withErrors"] is False and run["errors"] == []
    assert run["counts"] == {"messages": 2, "failedMessages": 0, "read": 6, "written": 6, "rejected": 0}


def test_a_run_with_rejected_records_and_a_failed_file_ends_with_errors(services, in_order):
    run, messages = _drain(services, in_order, [GOOD, SOME_REJECTED, UNREADABLE])
    assert [m["Status"] for m in messages] == [
        statuses.PROCESSED,
        statuses.PROCESSED_WITH_ERRORS,
        statuses.PREPROCESSING_ERROR,
    ]
    assert run["status"] == statuses.RUN_ENDED and run["withErrors"] is True
    assert run["counts"] == {"messages": 3, "failedMessages": 1, "read": 6, "written": 5, "rejected": 1}
    assert len(run["errors"]) == 2
    rejected, failed = run["errors"]
    assert rejected.startswith(f"message {messages[1]['MessageId']} (file-1.csv): ProcessedWithErrors")
    assert failed.startswith(f"message {messages[2]['MessageId']} (file-2.csv): PreProcessingError: ")


def test_a_run_whose_files_all_failed_ends_in_error_with_the_reasons(services, in_order):
    run, messages = _drain(services, in_order, [UNREADABLE, UNREADABLE])
    assert [m["Status"] for m in messages] == [statuses.PREPROCESSING_ERROR] * 2
    assert run["status"] == statuses.RUN_ERROR and run["withErrors"] is False
    assert run["counts"]["messages"] == 2 and run["counts"]["failedMessages"] == 2
    assert [e.split(":")[0] for e in run["errors"]] == [
        f"message {m['MessageId']} (file-{i}.csv)" for i, m in enumerate(messages)
    ]
    assert all(
        m["ErrorSummary"].splitlines()[0][:80] in e for m, e in zip(messages, run["errors"], strict=True)
    )
