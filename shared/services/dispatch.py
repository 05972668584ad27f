"""Hands import work to the queue: per message, or one "drain" for jobs that process messages in order."""

from __future__ import annotations

from datetime import timedelta

from shared.domain import statuses
from shared.domain.config import Job
from shared.services import work_items
from shared.storage.message_repo import MessageRepository, now_utc
from shared.storage.retry import retry_call

# A dispatched message that no worker has claimed after this long is dispatched again.
REDISPATCH_AFTER = timedelta(minutes=10)


class Dispatcher:
    def __init__(self, messages: MessageRepository, import_queue) -> None:
        self._messages = messages
        self._queue = import_queue

    def dispatch_message(self, job: Job, message: dict, trigger: str) -> bool:
        """Marks the message dispatched (compare-and-swap) and queues it. False when someone else did."""
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
        )
        # A send is a POST, which the SDK does not retry after a reset; a duplicate item is harmless (the
        # second claim of the message finds it no longer Enqueued).
        retry_call(lambda: self._queue.send_message(item), what="queueing an import")
        return True

    def dispatch_drain(self, job: Job, trigger: str) -> None:
        item = work_items.encode(kind=work_items.KIND_DRAIN, jobId=job.activity_id, trigger=trigger)
        # A duplicate drain finds the job's lease held, or nothing left to drain.
        retry_call(lambda: self._queue.send_message(item), what="queueing a drain")

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
