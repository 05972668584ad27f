"""Hands import work to the queue: per message, or one "drain" for jobs that process messages in order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.domain import statuses
from shared.domain.config import Job
from shared.services import work_items
from shared.storage.message_repo import MessageRepository, now_utc
from shared.storage.retry import retry_call

# A dispatched message that no worker has claimed after this long is dispatched again.
REDISPATCH_AFTER = timedelta(minutes=10)
# The partition of the schedule table that lists jobs with package-API imports to watch (Dispatcher.mark_pending).
PENDING_PARTITION = "pending-dispatch"
# "Never dispatched" for a row that was marked (a Table MERGE cannot remove a property): long past the cutoff.
NOT_DISPATCHED = datetime(2000, 1, 1, tzinfo=UTC)


class Dispatcher:
    def __init__(self, messages: MessageRepository, import_queue, pending=None) -> None:
        """`pending`: the schedule table, where jobs with package-API imports are listed (mark_pending)."""
        self._messages = messages
        self._queue = import_queue
        self._pending = pending

    def dispatch_message(self, job: Job, message: dict, trigger: str, *, run_id: str | None = None) -> bool:
        """Marks the message dispatched (compare-and-swap) and queues it. False when someone else did.
        `run_id`: the execution the message runs in (a package-API import keeps its execution ID)."""
        if job.process_in_order:
            self.dispatch_drain(job, trigger)
            return True
        cutoff = now_utc() - REDISPATCH_AFTER

        def change(current: dict) -> dict | None:
            if current.get("Status") != statuses.ENQUEUED or current.get("Direction") != "import":
                return None
            dispatched = current.get("DispatchedAt")
            if dispatched is not None and dispatched > cutoff:
                return None
            return {"DispatchedAt": now_utc()}

        if self._messages.update_message(job.activity_id, message["RowKey"], change) is None:
            return False
        item = work_items.encode(
            kind=work_items.KIND_MESSAGE,
            jobId=job.activity_id,
            messageId=message["MessageId"],
            rowKey=message["RowKey"],
            trigger=trigger,
            runId=run_id,
        )
        # A send is a POST, which the SDK does not retry after a reset; a duplicate item is harmless (the
        # second claim of the message finds it no longer Enqueued).
        retry_call(lambda: self._queue.send_message(item), what="queueing an import")
        return True

    def dispatch_created(self, job: Job, message: dict, trigger: str) -> None:
        """Queue a message that enqueue has just created already marked `DispatchedAt` (a process-on-arrival
        job that is not in order): no read and no compare-and-swap, as nobody else can have seen it yet.

        The item carries the row as created and its ETag, so the worker claims it with one conditional MERGE
        instead of a read and a MERGE; when anything changed the row since, that MERGE fails and the worker
        reads it. When the send fails, `DispatchedAt` is cleared (best effort) so that the scheduler's next
        tick queues the message, and the error is raised."""
        item = work_items.encode(
            kind=work_items.KIND_MESSAGE,
            jobId=job.activity_id,
            messageId=message["MessageId"],
            rowKey=message["RowKey"],
            trigger=trigger,
            etag=message.get("_etag"),
            row=work_items.snapshot(message) if message.get("_etag") else None,
        )
        try:
            retry_call(lambda: self._queue.send_message(item), what="queueing an import")
        except Exception:
            try:
                self._messages.update_message(
                    job.activity_id,
                    message["RowKey"],
                    lambda current: (
                        {"DispatchedAt": NOT_DISPATCHED}
                        if current.get("Status") == statuses.ENQUEUED
                        else None
                    ),
                )
            except Exception:  # the scheduler re-dispatches it after REDISPATCH_AFTER anyway
                pass
            raise

    def dispatch_drain(self, job: Job, trigger: str) -> None:
        item = work_items.encode(kind=work_items.KIND_DRAIN, jobId=job.activity_id, trigger=trigger)
        # A duplicate drain finds the job's lease held, or nothing left to drain.
        retry_call(lambda: self._queue.send_message(item), what="queueing a drain")

    def dispatch_stale(self, job: Job) -> int:
        """Queue again the work of a process-on-arrival job whose dispatch never reached a worker (the queue did
        not answer at enqueue, or the process stopped between the row and its work item). Without a recurrence
        nothing else would queue it. It runs in a run of its own (trigger `retry`); returns how many items were
        queued.

        Not in order: the Enqueued messages never dispatched, or dispatched more than REDISPATCH_AFTER ago; one
        query of the job's Enqueued messages, plus a compare-and-swap and a send per message queued.
        In order: one drain when the oldest Enqueued message has waited more than REDISPATCH_AFTER (a drain
        queues itself again after a failure, but not after a failed first send); one query, stopped at the first
        import message. While a long drain is still working through an old backlog this sends a duplicate drain
        per tick, which finds the job's lease held and ends (two calls)."""
        if not job.process_on_arrival:
            return 0
        if not job.process_in_order:
            return self.dispatch_waiting(job, statuses.TRIGGER_RETRY)
        cutoff = now_utc() - REDISPATCH_AFTER
        waiting = self._messages.iter_messages(
            job.activity_id, statuses=[statuses.ENQUEUED], select=["RowKey", "Direction", "EnqueuedAt"]
        )
        for message in waiting:
            if message.get("Direction") != "import":
                continue
            enqueued = message.get("EnqueuedAt")
            if enqueued is not None and enqueued > cutoff:
                return 0  # the oldest is recent: its drain may still be on its way
            self.dispatch_drain(job, statuses.TRIGGER_RETRY)
            return 1
        return 0

    def mark_pending(self, job_id: str) -> None:
        """List the job as one with a package-API import, before its message is stored: whatever happens to the
        first dispatch (the queue does not answer, the process stops), the scheduler's tick finds the message
        (dispatch_package_imports). The job may be a definition group's, which is not stored."""
        if self._pending is None:
            return
        row = {"PartitionKey": PENDING_PARTITION, "RowKey": job_id, "MarkedAt": now_utc()}
        retry_call(lambda: self._pending.upsert_entity(row), what="recording a package import")

    def dispatch_package_imports(self, get_job) -> int:
        """Queue again every package-API import whose dispatch never reached a worker (Enqueued, never
        dispatched or dispatched more than REDISPATCH_AFTER ago), in its own execution, for the jobs listed by
        mark_pending; a job with no such import left is taken off the list. `get_job(activity ID)` gives a job
        (NotFoundError: deleted). One query of the list, and one of each listed job's Enqueued messages."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        from shared.errors import NotFoundError

        if self._pending is None:
            return 0
        queued = 0
        marks = self._pending.query_entities("PartitionKey eq @pk", parameters={"pk": PENDING_PARTITION})
        for mark in marks:
            try:
                job = get_job(mark["RowKey"])
            except NotFoundError:
                job = None
            waiting = 0
            if job is not None:
                for message in self._messages.iter_messages(
                    job.activity_id,
                    statuses=[statuses.ENQUEUED],
                    select=["RowKey", "MessageId", "Status", "Direction", "DispatchedAt", "Trigger", "RunId"],
                ):
                    if message.get("Trigger") != statuses.TRIGGER_PACKAGE_API:
                        continue  # the job's own messages wait for its recurrence or a manual run
                    waiting += 1
                    if job.process_in_order:
                        break  # one drain takes them all, in order
                    run_id = message.get("RunId")
                    if self.dispatch_message(job, message, statuses.TRIGGER_PACKAGE_API, run_id=run_id):
                        queued += 1
                if waiting and job.process_in_order:
                    self.dispatch_drain(job, statuses.TRIGGER_PACKAGE_API)
                    queued += 1
            if waiting == 0:
                # Unless it was marked again since it was read (a new import): then it stays listed.
                try:
                    self._pending.delete_entity(
                        PENDING_PARTITION,
                        mark["RowKey"],
                        etag=mark.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
                except (ResourceModifiedError, ResourceNotFoundError):
                    pass
        return queued

    def dispatch_waiting(self, job: Job, trigger: str) -> int:
        """Queues every waiting message of an import job; returns how many were queued."""
        waiting = self._messages.iter_messages(
            job.activity_id,
            statuses=[statuses.ENQUEUED],
            select=["RowKey", "MessageId", "Status", "Direction", "DispatchedAt"],
        )
        if job.process_in_order:
            for _ in waiting:
                self.dispatch_drain(job, trigger)
                return 1
            return 0
        count = 0
        for message in waiting:
            if message.get("Direction") == "import" and self.dispatch_message(job, message, trigger):
                count += 1
        return count
