"""Status answers for D365 clients: GetMessageStatus, GetExecutionIdByMessageId and the legacy jobstatus."""

from __future__ import annotations

from datetime import datetime

from shared.auth.principal import Principal
from shared.domain import statuses
from shared.domain.config import Job
from shared.errors import NotFoundError
from shared.services import execution_access
from shared.storage.message_repo import iso


def get_message_for_caller(message_id: str, principal: Principal) -> dict:
    """The message, if the caller may see it (execution_access.may_see).

    Raises NotFoundError MessageNotFound (404) both when the message does not exist and when the caller
    may not see it, with the same message text, so a message ID reveals nothing.
    """
    from shared.services.registry import config_service, message_repo

    msg = message_repo().find_by_id(message_id)
    if msg is None or not execution_access.may_see(
        principal,
        job_id=msg.get("PartitionKey"),
        starter=msg.get(execution_access.REQUESTED_BY),
        config=config_service(),
    ):
        raise NotFoundError(f"message {message_id} does not exist", code="MessageNotFound")
    return msg


# D365's value for a date it does not have: X++ has no null utcdatetime, its "empty" date is 1900-01-01,
# and RIS declares DataJobStartedDateTime, DataJobCompletedDateTime and the per-entity dates as
# non-nullable System.DateTime (microsoft/Recurring-Integrations-Scheduler Common/Contracts/DataJobStatus.cs,
# EntityExecutionStatus.cs): a JSON null there fails its deserialization (issue 12, class 3).
D365_EMPTY_DATETIME = "1900-01-01T00:00:00Z"
# RIS's DataJobState enum (Common/Contracts/ContractEnums.cs); any other name fails to deserialize.
LEGACY_DEFAULT_STATE = "Enqueued"
# A package entity's status (package_import) as an EntityExecutionStateEnum name (ContractEnums.cs).
_ENTITY_STATE = {
    "Processed": "Finished",
    "ProcessedWithErrors": "Finished",
    "Error": "Error",
    "NotRun": "NotRun",
    "Disabled": "NotRun",
}


def legacy_job_status(job: Job, message_id: str, principal: Principal) -> dict:
    """The legacy jobstatus reply (PROTOCOL §4). The caller is already authorized on `job` (PROTOCOL §8.3);
    NotFoundError when the message is not this job's or not one the caller may see."""
    from shared.services.registry import config_service, message_repo

    msg = message_repo().find_by_id(message_id)
    if (
        msg is None
        or msg.get("PartitionKey") != job.activity_id
        or not execution_access.may_see(
            principal,
            job_id=msg["PartitionKey"],
            starter=msg.get(execution_access.REQUESTED_BY),
            config=config_service(),
        )
    ):
        raise NotFoundError("not this job's message")
    return job_status_reply(job, msg)


def job_status_reply(job: Job, msg: dict) -> dict:
    """The jobstatus JSON of a message, with a value of D365's type in every field, never null.

    Shape (PROTOCOL §4, RIS Common/Contracts/DataJobStatusDetail.cs): strings are "" when we have none,
    dates are ISO-8601 UTC or D365_EMPTY_DATETIME (not started, not completed), counts are ints, and
    DataJobState, StagingStatus and TargetStatus are names of RIS's enums.
    """
    status = msg.get("Status")
    transitions = [t for t in msg.get("Transitions") or [] if isinstance(t, dict) and t.get("at")]
    started = next((t["at"] for t in transitions if t.get("status") == statuses.PREPROCESSING), None)
    terminal = status in statuses.IMPORT_TERMINAL
    ended = transitions[-1]["at"] if terminal and transitions else None
    started_text = _date(started) or (_date(ended) if terminal else None) or D365_EMPTY_DATETIME
    ended_text = _date(ended) or D365_EMPTY_DATETIME
    failed = status in (statuses.PREPROCESSING_ERROR, statuses.POSTPROCESSING_FAILED)
    details = []
    for entity, counts in (msg.get("Counts") or {}).items():
        counts = counts if isinstance(counts, dict) else {}
        entity_status = _ENTITY_STATE.get(counts.get("status") or "") or (
            "Error" if failed else ("Finished" if terminal else "Executing")
        )
        rejected = _int(counts.get("rejected"))
        details.append(
            {
                "EntityName": str(entity),
                "Company": _text(msg.get("Company") or job.legal_entity),
                "StagingRecords": max(_int(counts.get("read")) - rejected, 0),
                "StagingStatus": entity_status,
                "StagingErrorCount": rejected,
                "TargetRecords": _int(counts.get("written")),
                "TargetStatus": entity_status,
                "TargetErrorCount": rejected,
                "ExecutionStartedDateTime": started_text,
                "ExecutionCompletedDateTime": ended_text,
            }
        )
    return {
        "DataJobStatus": {
            "DataProject": _text(job.project),
            "DataJobIdentifier": _text(msg.get("MessageId")),
            "ExternalIdentifier": _text(msg.get("ExternalIdentifier")),
            "ExecutionIdentifier": _text(msg.get("RunId")),
            "DataJobStartedDateTime": started_text,
            "DataJobCompletedDateTime": ended_text,
            "DataJobState": statuses.LEGACY_JOB_STATE.get(status or "", LEGACY_DEFAULT_STATE),
        },
        "ExecutionLog": _text(msg.get("ErrorSummary")),
        "ExecutionDetail": details,
    }


def _text(value) -> str:
    """D365 strings are never null (X++ has no null string): "" when we have nothing."""
    return "" if value is None else str(value)


def _int(value) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _date(value) -> str | None:
    if isinstance(value, datetime):
        return iso(value)
    return value if isinstance(value, str) and value else None
