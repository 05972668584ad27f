"""Message and run rows as the JSON the management and connector APIs answer with."""

from __future__ import annotations

from datetime import datetime

from shared.storage.message_repo import iso


def _t(value) -> str | None:
    return iso(value) if isinstance(value, datetime) else value


def _record_totals(counts) -> dict | None:
    """{"read", "written", "rejected"} summed over the message's entities; None before any are counted."""
    if not isinstance(counts, dict) or not counts:
        return None
    totals = {"read": 0, "written": 0, "rejected": 0}
    for entity in counts.values():
        if isinstance(entity, dict):
            for key in totals:
                value = entity.get(key)
                totals[key] += value if isinstance(value, int) else 0
    return totals


def _ended_at(transitions) -> str | None:
    """The time of the message's last move to a terminal import status (IMPORT_TERMINAL), if any."""
    from shared.domain.statuses import IMPORT_TERMINAL

    for step in reversed(transitions if isinstance(transitions, list) else []):
        if isinstance(step, dict) and step.get("status") in IMPORT_TERMINAL:
            return step.get("at")
    return None


def message_summary(msg: dict) -> dict:
    out = {
        "messageId": msg.get("MessageId"),
        "jobId": msg.get("PartitionKey"),
        "direction": msg.get("Direction"),
        "status": msg.get("Status"),
        "externalIdentifier": msg.get("ExternalIdentifier"),
        "entity": msg.get("Entity"),
        "company": msg.get("Company"),
        "enqueuedAt": _t(msg.get("EnqueuedAt")),
        "updatedAt": _t(msg.get("UpdatedAt")),
        "executionId": msg.get("RunId"),
        "size": msg.get("Size"),
        # For the workspace's messages grid: totals over the entities, and when the import ended.
        "records": _record_totals(msg.get("Counts")),
        "processedAt": _ended_at(msg.get("Transitions")),
    }
    if msg.get("Direction") == "export":
        out.update(
            {
                "totalRecords": msg.get("TotalRecords"),
                "fileUploaded": msg.get("FileUploaded"),
                "dequeuedAt": _t(msg.get("DequeuedAt")),
                "ackedAt": _t(msg.get("AckedAt")),
            }
        )
    return out


def message_detail(msg: dict) -> dict:
    out = message_summary(msg)
    out.update(
        {
            "transitions": msg.get("Transitions") or [],
            "counts": msg.get("Counts") or {},
            "errorSummary": msg.get("ErrorSummary"),
            "errorCount": msg.get("ErrorCount") or 0,
            "errorFile": f"/api/manage/messages/{msg.get('MessageId')}/errors"
            if msg.get("ErrorFile")
            else None,
            "attempts": msg.get("Attempts") or 0,
            # The last transient storage error retried during an attempt (retried at the failed call, so
            # the import went on), and the error that ended the last failed attempt.
            "lastTransientError": msg.get("LastTransientError"),
            "lastError": msg.get("LastError"),
            # A failed import that had written records: those stay in the target, the rest did not arrive.
            "partial": bool(msg.get("Partial")),
            # Ended PostProcessingFailed because an administrator canceled it (message_actions.cancel).
            "canceled": bool(msg.get("Canceled")),
            "previousErrors": msg.get("PreviousErrors"),
            # Resumable imports (shared/services/import_checkpoint.py): the attempt whose staged rows are
            # being written, and how this attempt resumed from an earlier one's checkpoint.
            "stagedAttempt": msg.get("StagedAttempt"),
            "resumedFrom": msg.get("ResumedFrom"),
        }
    )
    return out


def run_summary(run: dict) -> dict:
    return {
        "executionId": run.get("RunId"),
        "jobId": run.get("PartitionKey"),
        "operation": run.get("Operation"),
        "trigger": run.get("Trigger"),
        "status": run.get("Status"),
        "createdAt": _t(run.get("CreatedAt")),
        "startedAt": _t(run.get("StartedAt")),
        "endedAt": _t(run.get("EndedAt")),
        "messages": run.get("Messages") or [],
        "totalRecords": run.get("TotalRecords"),
        "fileUploaded": run.get("FileUploaded"),
        "packageSize": run.get("PackageSize"),
        "counts": run.get("Counts") or {},
        "refreshType": run.get("RefreshType"),  # export runs: FullPush or IncrementalPush
        "errors": run.get("Errors") or [],
        # Import runs: Ended with withErrors when records were rejected or some (not all) messages failed.
        "withErrors": bool(run.get("WithErrors")),
        # The run whose attempt replaced this one's (its message was retried there): this run ended in Error.
        "supersededBy": run.get("SupersededBy"),
    }
