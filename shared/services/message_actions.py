"""Operators acting on import messages (issue 11, item 6): reprocess a failed one, cancel a waiting one, and
see which message an in-order job's waiting message waits behind.

- Reprocess: a message that ended PreProcessingError or PostProcessingFailed (canceled ones too) goes back to
  Enqueued with a transition and is dispatched (a process-in-order job queues a drain). History is kept:
  `Attempts` goes on counting, the previous reason moves to `PreviousErrors`, the transitions stay.
- Cancel: an Enqueued message ends PostProcessingFailed with `Canceled` and the reason "canceled by an
  administrator". D365 has no canceled message status (PROTOCOL §4), so every D365-shaped reply shows a
  valid value (PostProcessingFailed, PostProcessError, Failed); the management API adds `canceled: true`.
  A worker never claims it: claims take Enqueued or active messages only (import_worker._claim).
"""

from __future__ import annotations

from datetime import UTC, datetime

from shared.domain import statuses
from shared.errors import ConflictError
from shared.storage.message_repo import iso, now_utc

_LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)
MAX_PREVIOUS_ERRORS = 8000  # characters of earlier reasons kept on a reprocessed message
REPROCESSABLE = statuses.IMPORT_FAILED


def _import_message(messages, message_id: str) -> dict:
    msg = messages.get_by_id(message_id)
    if msg.get("Direction") != "import":
        raise ConflictError("only an import message can be reprocessed or canceled", code="NotAnImport")
    return msg


def reprocess(*, messages, config, dispatcher, message_id: str, by: str) -> dict:
    """Back to Enqueued and dispatched; 409 MessageNotFailed when it is not in a failed status. Returns the
    updated message."""
    msg = _import_message(messages, message_id)
    job = config.get_job(msg["PartitionKey"], fresh=True)

    def change(current: dict) -> dict | None:
        if current.get("Status") not in REPROCESSABLE:
            return None
        earlier = current.get("PreviousErrors") or ""
        reason = current.get("ErrorSummary") or "no reason recorded"
        entry = f"{iso(now_utc())} {current.get('Status')}: {reason}"
        return {
            "Status": statuses.ENQUEUED,
            "PreviousErrors": (f"{earlier}\n{entry}" if earlier else entry)[-MAX_PREVIOUS_ERRORS:],
            # A MERGE cannot remove a property (the SDK drops None values): cleared ones get empty values, and
            # DispatchedAt a time long past, so that Dispatcher.dispatch_message queues it now.
            "ErrorSummary": "",
            "Canceled": False,
            "Partial": False,
            "ClaimToken": "",
            "DispatchedAt": _LONG_AGO,
            "ReprocessedBy": by,
        }

    updated = messages.update_message(job.activity_id, msg["RowKey"], change)
    if updated is None:
        current = messages.get_by_id(message_id)
        raise ConflictError(
            f"message {message_id} is {current.get('Status')}; only a message in "
            f"{' or '.join(sorted(REPROCESSABLE))} can be reprocessed",
            code="MessageNotFailed",
        )
    dispatcher.dispatch_message(job, updated, statuses.TRIGGER_MANUAL)
    return messages.get_by_id(message_id)


def cancel(*, messages, message_id: str, by: str) -> dict:
    """An Enqueued message ends PostProcessingFailed with Canceled; 409 MessageNotWaiting otherwise."""
    msg = _import_message(messages, message_id)
    reason = f"canceled by an administrator ({by}) before it was processed"
    updated = messages.transition(
        msg["PartitionKey"],
        msg["RowKey"],
        statuses.POSTPROCESSING_FAILED,
        allowed_from={statuses.ENQUEUED},
        ErrorSummary=reason,
        Canceled=True,
    )
    if updated is None:
        current = messages.get_by_id(message_id)
        raise ConflictError(
            f"message {message_id} is {current.get('Status')}; only an Enqueued message can be canceled",
            code="MessageNotWaiting",
        )
    return messages.get_by_id(message_id)


def waiting_behind(*, messages, config, msg: dict) -> dict | None:
    """For an Enqueued import message of a process-in-order job: the earliest message of the job that has not
    ended and comes before it ({"messageId", "status"}), which the job drains first; else None."""
    if msg.get("Status") != statuses.ENQUEUED or msg.get("Direction") != "import":
        return None
    try:
        job = config.get_job(msg["PartitionKey"])
    except Exception:  # a deleted job: nothing is drained before it
        return None
    if not job.process_in_order:
        return None
    active = [statuses.ENQUEUED, statuses.PREPROCESSING, statuses.PROCESSING]
    for other in messages.iter_messages(
        job.activity_id, statuses=active, select=["RowKey", "MessageId", "Status", "Direction"]
    ):
        if other["RowKey"] >= msg["RowKey"]:
            return None
        if other.get("Direction") == "import":
            return {"messageId": other["MessageId"], "status": other["Status"]}
    return None
