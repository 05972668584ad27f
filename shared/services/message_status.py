"""Status answers for D365 clients: GetMessageStatus, GetExecutionIdByMessageId and the legacy jobstatus."""

from __future__ import annotations

from datetime import datetime

from shared import settings
from shared.auth.principal import Principal
from shared.domain import statuses
from shared.domain.config import Job
from shared.errors import ForbiddenError, NotFoundError
from shared.storage.message_repo import iso


def get_message_for_caller(message_id: str, principal: Principal) -> dict:
    """The message, if the caller is an admin or authorized on the message's job."""
    from shared.services.registry import config_service, message_repo

    msg = message_repo().find_by_id(message_id)
    if msg is None:
        raise NotFoundError(f"message {message_id} does not exist", code="MessageNotFound")
    if principal.is_admin(settings.admin_role(), settings.admin_apps()):
        return msg
    job = config_service().find_job(msg["PartitionKey"])
    if job is None or not job.allows(principal.app_id):
        raise ForbiddenError(
            f"application {principal.app_id} is not mapped to the message's job",
            code="ApplicationNotAuthorized",
        )
    return msg


def legacy_job_status(job: Job, message_id: str) -> dict:
    from shared.services.registry import config_service, message_repo

    msg = message_repo().get_by_id(message_id)
    if msg["PartitionKey"] != job.activity_id:
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
