"""The legacy jobstatus reply in every message state, running ones included (issue 12, class 3).

The e2e contract walker (tests/e2e/test_d365_reply_contract.py) reaches the waiting and ended states through
the host; a message is Preprocessing or Processing only for a moment, so those states are built here.
"""

from __future__ import annotations

import pytest

from shared.domain import statuses
from shared.domain.config import Job
from shared.services.message_status import D365_EMPTY_DATETIME, job_status_reply
from tests.support.d365_contract import JOBSTATUS, violations

JOB = Job(activity_id="a1", name="J", project="Customer groups", company=None)
AT = "2024-05-01T10:00:00.000Z"


def _message(status: str, transitions: list[dict], counts: dict | None = None) -> dict:
    return {
        "PartitionKey": "a1",
        "MessageId": "m1",
        "Status": status,
        "Transitions": transitions,
        "Counts": counts,
        "Company": None,
        "ExternalIdentifier": None,
        "RunId": None,
        "ErrorSummary": None,
    }


@pytest.mark.parametrize(
    "status,transitions,counts,started,completed",
    [
        (
            statuses.ENQUEUED,
            [{"status": "Enqueued", "at": AT}],
            None,
            D365_EMPTY_DATETIME,
            D365_EMPTY_DATETIME,
        ),
        (
            statuses.PREPROCESSING,
            [{"status": "Enqueued", "at": AT}, {"status": "Preprocessing", "at": AT}],
            None,
            AT,
            D365_EMPTY_DATETIME,
        ),
        (
            statuses.PROCESSING,
            [{"status": "Preprocessing", "at": AT}, {"status": "Processing", "at": AT}],
            {"E": {"read": 3, "written": 0, "rejected": 1}},
            AT,
            D365_EMPTY_DATETIME,
        ),
        # Ended without ever preprocessing (a sweeper ended it): started is the end, never the empty date.
        (statuses.POSTPROCESSING_FAILED, [{"status": "PostProcessingFailed", "at": AT}], None, AT, AT),
        (statuses.PROCESSED, [], {"E": {"read": None}}, D365_EMPTY_DATETIME, D365_EMPTY_DATETIME),
    ],
)
def test_no_null_in_any_state(status, transitions, counts, started, completed) -> None:
    reply = job_status_reply(JOB, _message(status, transitions, counts))
    assert violations(reply, JOBSTATUS) == []
    assert reply["DataJobStatus"]["DataJobStartedDateTime"] == started
    assert reply["DataJobStatus"]["DataJobCompletedDateTime"] == completed
    assert reply["DataJobStatus"]["ExternalIdentifier"] == "" and reply["ExecutionLog"] == ""
    for detail in reply["ExecutionDetail"]:
        assert detail["Company"] == "" and detail["ExecutionStartedDateTime"] == started


def test_states_and_package_entity_statuses_are_enum_names() -> None:
    counts = {
        "A": {"read": 2, "written": 2, "rejected": 0, "status": "Processed"},
        "B": {"read": 0, "written": 0, "rejected": 0, "status": "NotRun", "error": "not run"},
        "C": {"read": 0, "written": 0, "rejected": 0, "status": "Disabled"},
        "D": {"read": 1, "written": 0, "rejected": 1, "status": "Error"},
    }
    msg = _message(statuses.PROCESSED_WITH_ERRORS, [{"status": "Preprocessing", "at": AT}], counts)
    reply = job_status_reply(JOB, msg)
    assert reply["DataJobStatus"]["DataJobState"] == "ProcessedWithErrors"
    assert [d["StagingStatus"] for d in reply["ExecutionDetail"]] == ["Finished", "NotRun", "NotRun", "Error"]
    assert violations(reply, JOBSTATUS) == []
    for status in (*statuses.MESSAGE_STATUSES, None, "Something new"):
        assert violations(job_status_reply(JOB, _message(status, [], None)), JOBSTATUS) == [], status
