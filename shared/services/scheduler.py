"""The scheduler tick: processing recurrences and monitoring samples, each due time dispatched once.

Each job has a state row per recurrence holding the last due time dispatched. Moving it forward is a
compare-and-swap on the row's ETag, so a timer that fires twice, or two instances, dispatch once.
"""

from __future__ import annotations

import logging
from datetime import datetime

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from shared.domain import statuses
from shared.domain.config import Job
from shared.domain.recurrence import latest_due, monitoring_due
from shared.storage.concurrency import replace_if_unchanged
from shared.storage.message_repo import now_utc
from shared.storage.retry import retry_call

log = logging.getLogger(__name__)
_MAX = 10**20


class Scheduler:
    def __init__(
        self, *, config, dispatcher, messages, schedule_table, queueload_table, export_starter=None
    ) -> None:
        self._config = config
        self._dispatcher = dispatcher
        self._messages = messages
        self._schedule = schedule_table
        self._queueload = queueload_table
        self._export_starter = export_starter

    def tick(self, now: datetime | None = None) -> dict[str, int]:
        now = now or now_utc()
        self._config.refresh()  # this instance may not have seen configuration written elsewhere
        summary = {"dispatched": 0, "sampled": 0, "redispatched": 0}
        for job in self._config.list_jobs():
            if not job.enabled:
                continue
            try:
                if job.recurrence and self._claim_due(
                    job.activity_id, "processing", latest_due(job.recurrence, now)
                ):
                    summary["dispatched"] += self.run_job(job, statuses.TRIGGER_RECURRENCE)
                elif job.process_on_arrival:
                    # A message whose on-arrival dispatch failed is not lost: queued again here once
                    # dispatch.REDISPATCH_AFTER passed (Dispatcher.dispatch_stale).
                    summary["redispatched"] += self._dispatcher.dispatch_stale(job)
                if job.monitoring and self._claim_due(
                    job.activity_id, "monitoring", monitoring_due(job.monitoring, now)
                ):
                    summary["sampled"] += 1
                    waiting = self.sample_backlog(job, now)
                    if waiting >= job.monitoring.backlog_threshold:
                        summary["dispatched"] += self.run_job(job, statuses.TRIGGER_MONITORING)
            except Exception:  # one job's failure must not stop the others
                log.exception("scheduling job %s failed", job.activity_id)
        try:
            # Package-API imports run at once whatever their job's settings, and a definition group's job is not
            # stored: those whose first dispatch failed are found through the dispatcher's list.
            summary["redispatched"] += self._dispatcher.dispatch_package_imports(self._config.get_job)
        except Exception:
            log.exception("re-dispatching package imports failed")
        return summary

    def run_job(self, job: Job, trigger: str) -> int:
        """Process (import) or run (export) a job now; returns the number of work items queued."""
        project = self._config.project_of(job)
        if project.operation == "export":
            if self._export_starter is None:
                return 0
            self._export_starter(job, trigger)
            return 1
        return self._dispatcher.dispatch_waiting(job, trigger)

    def _claim_due(self, job_id: str, kind: str, due: datetime | None) -> bool:
        if due is None:
            return False
        try:
            row = self._schedule.get_entity(job_id, kind)
        except ResourceNotFoundError:
            try:
                self._schedule.create_entity({"PartitionKey": job_id, "RowKey": kind, "LastDue": due})
                return True
            except ResourceExistsError:
                return False
        if row["LastDue"] >= due:
            return False
        return replace_if_unchanged(
            self._schedule, {"PartitionKey": job_id, "RowKey": kind, "LastDue": due}, row.metadata["etag"]
        )

    def sample_backlog(self, job: Job, now: datetime) -> int:
        """Counts waiting messages and the oldest one's age, and stores the sample."""
        waiting = 0
        oldest: datetime | None = None
        for msg in self._messages.iter_messages(
            job.activity_id, statuses=[statuses.ENQUEUED], select=["EnqueuedAt", "Direction"]
        ):
            if msg.get("Direction") not in (None, "import"):
                continue
            waiting += 1
            if oldest is None or msg["EnqueuedAt"] < oldest:
                oldest = msg["EnqueuedAt"]
        age = int((now - oldest).total_seconds()) if oldest else 0
        sample = {
            "PartitionKey": job.activity_id,
            "RowKey": f"{_MAX - int(now.timestamp() * 1_000_000):020d}",
            "SampledAt": now,
            "Waiting": waiting,
            "OldestAgeSeconds": age,
        }
        # An upsert is a MERGE, which the SDK does not retry after a reset; the same sample again is harmless.
        retry_call(lambda: self._queueload.upsert_entity(sample), what="sampling the backlog")
        return waiting
