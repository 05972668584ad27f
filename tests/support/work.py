"""Helpers for integration tests that drive the import worker directly (no host): enqueue a file through the
real EnqueueService, and build the work item the queue would carry for it."""

from __future__ import annotations

from shared.services import work_items


def enqueue_message(services, job, principal, body: bytes, entity: str | None) -> dict:
    """Enqueue `body` on `job` as `principal` (the job's company); returns the message row as stored."""
    message_id = services.enqueue_service().enqueue(
        job.activity_id, principal, body, entity=entity, company=None, external_id=None
    )
    return services.message_repo().get_by_id(message_id)


def message_item(job, message: dict) -> dict:
    """The import work item of `message`, as the dispatcher queues it (without a trigger or run)."""
    return {
        "kind": work_items.KIND_MESSAGE,
        "jobId": job.activity_id,
        "messageId": message["MessageId"],
        "rowKey": message["RowKey"],
    }
