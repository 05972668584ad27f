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


def legacy_job_status(job: Job, message_id: str, principal: Principal) -> dict:
    """The legacy jobstatus reply (PROTOCOL §4). The caller is already authorized on `job` (PROTOCOL §8.3);
    NotFoundError when the message is not this job's or not one the caller may see."""
    from shared.services.registry import config_service, message_repo

    msg = message_repo().get_by_id(message_id)
    if msg["PartitionKey"] != job.activity_id or not execution_access.may_see(
        principal,
        job_id=msg["PartitionKey"],
        starter=msg.get(execution_access.REQUESTED_BY),
        config=config_service(),
    ):
        raise NotFoundError("not this job's message")
    project = config_service().get_project(job.project)
    transitions = msg.get("Transitions") or []
    started = next((t["at"] for t in transitions if t["status"] == statuses.PREPROCESSING), None)
    ended = transitions[-1]["at"] if msg.get("Status") in statuses.IMPORT_TERMINAL and transitions else None
    details = []
    for entity, counts in (msg.get("Counts") or {}).items():
        failed = msg.get("Status") in (statuses.PREPROCESSING_ERROR, statuses.POSTPROCESSING_FAILED)
        done = msg.get("Status") in statuses.IMPORT_TERMINAL
        entity_status = "Error" if failed else ("Finished" if done else "Executing")
        details.append(
            {
                "EntityName": entity,
                "Company": msg.get("Company") or job.company,
                "StagingRecords": counts.get("read", 0) - counts.get("rejected", 0),
                "StagingStatus": entity_status,
                "StagingErrorCount": counts.get("rejected", 0),
                "TargetRecords": counts.get("written", 0),
                "TargetStatus": entity_status,
                "TargetErrorCount": counts.get("rejected", 0),
                "ExecutionStartedDateTime": started,
                "ExecutionCompletedDateTime": ended,
            }
        )
    return {
        "DataJobStatus": {
            "DataProject": project.name,
            "DataJobIdentifier": msg.get("MessageId"),
            "ExternalIdentifier": msg.get("ExternalIdentifier"),
            "ExecutionIdentifier": msg.get("RunId"),
            "DataJobStartedDateTime": started,
            "DataJobCompletedDateTime": ended,
            "DataJobState": statuses.LEGACY_JOB_STATE.get(msg.get("Status"), msg.get("Status")),
        },
        "ExecutionLog": msg.get("ErrorSummary") or "",
        "ExecutionDetail": details,
    }


def _iso(value) -> str | None:
    return iso(value) if isinstance(value, datetime) else value
