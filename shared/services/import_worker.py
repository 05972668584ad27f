"""The import worker: takes work items from the queue, claims their messages, keeps their runs, and ends what
fails for good. The import of one message, stage by stage, is shared/services/message_import.py.

Retries are safe: upserts are idempotent (same key, same row), and a message claimed by a queue item
that the host redelivers is claimed again by that same item. Process-in-order jobs are drained one
message at a time under a per-job lease, so no message overtakes another across instances.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from shared.domain import statuses
from shared.domain.config import Job
from shared.errors import FormatError, NotFoundError
from shared.queue_limits import Delivery
from shared.services import fault_points, work_items

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
# During Processing a message's Counts are written back at most this often (one MERGE), so `written`
# grows while a big file is written without multiplying storage calls per chunk.
PROGRESS_SECONDS = 5.0
NOT_TERMINAL = [statuses.ENQUEUED, statuses.PREPROCESSING, statuses.PROCESSING]
# A process-on-arrival message up to this size is imported with the fewest storage writes: its Processing
# transition (with its time) is written with its terminal status, and its folded run (run_repo) only when it
# ends. Bigger ones show Processing and their run while they are written.
SMALL_FILE_BYTES = 256 * 1024


class ImportWorker:
    def __init__(
        self,
        *,
        config,
        messages,
        runs,
        entities,
        inbound,
        errors,
        dispatcher,
        leases,
        uploads=None,
        staging=None,
    ) -> None:
        self._config = config
        self._messages = messages
        self._runs = runs
        self._entities = entities
        self._inbound = inbound
        self._uploads = uploads  # package API uploads; from the process-wide clients when not given
        self._staging = staging  # import checkpoints (shared/services/import_checkpoint.py); likewise
        self._errors = errors
        self._dispatcher = dispatcher
        self._leases = leases

    # Entry points ----------------------------------------------------------------------------
    def handle(self, item: dict, *, claim_token: str, delivery: Delivery | None = None) -> None:
        """Import a work item taken from the queue (`claim_token`: the queue message ID, the same on every
        redelivery; `delivery`: its dequeue count and the host's maximum).

        A failure is raised so that the host delivers the item again, except on the last allowed delivery:
        then the work ends in PostProcessingFailed with the reason and this returns, so the host deletes the
        item instead of relying on anything that reads the poison queue. When that terminal write fails too,
        its error is raised: the host moves the item to the poison queue, and the sweeper ends it later.
        """
        try:
            self._handle(item, claim_token)
        except Exception as exc:
            if delivery is None or not delivery.last:
                raise
            error = _describe(exc)
            log.error(
                "import work item %s of job %s failed on its last allowed %s; ending it: %s",
                item.get("kind"),
                item.get("jobId"),
                delivery,
                error,
            )
            self.end_failed(
                item,
                reason=f"the import failed on its last allowed {delivery}, after {{attempts}} attempt(s)",
                error=error,
                lease_holder=claim_token,
            )

    def _handle(self, item: dict, claim_token: str) -> None:
        # See every configuration change made before this item (other instances): every write changes the
        # version this reads, so a job cached under the same version is current and is not read again.
        self._config.refresh()
        try:
            job = self._config.get_job(item["jobId"])
        except NotFoundError:
            log.warning("work item for a deleted job %s", item["jobId"])
            self._fail_orphans(item, "the job was deleted before the message was processed")
            return
        trigger = item.get("trigger") or statuses.TRIGGER_RECURRENCE
        if item["kind"] == work_items.KIND_DRAIN:
            self.drain(job, claim_token=claim_token, trigger=trigger)
        elif item["kind"] == work_items.KIND_MESSAGE:
            # A process-on-arrival item (not a retry in a run of its own) runs in a folded run: its ID is the
            # message's, and it has no index row (shared/storage/run_repo.py).
            fold = (
                item.get("messageId")
                if trigger == statuses.TRIGGER_ON_ARRIVAL and not item.get("runId")
                else None
            )
            message = self._claim(
                job, item["rowKey"], claim_token, any_active=False, known=_known_row(item), fold_run=fold
            )
            if message is None:
                # Ended already (or another item has it): a redelivery after a death between the message's
                # outcome and its run's end still ends the run.
                self._end_run_of_ended_message(job.activity_id, item["rowKey"])
                return
            fault_points.hit("claimed", message.get("MessageId"))
            if fold and message.get("RunId") == fold:
                self._process_folded(job, message, trigger)
                return
            run_id = self._start_run(job, trigger, item.get("runId"))
            self.process_message(job, message, run_id)
            fault_points.hit("ended", message.get("MessageId"))
            self._end_run(run_id)

    def _process_folded(self, job: Job, message: dict, trigger: str) -> None:
        """Import a claimed message in its folded run: the run's row is written once, at the end, from the
        message's outcome as this attempt wrote it (also at the start for a file above SMALL_FILE_BYTES)."""
        from shared.services.run_outcome import run_outcome
        from shared.storage.message_repo import now_utc
        from shared.storage.run_repo import folded_base

        run_id = message["MessageId"]
        small = int(message.get("Size") or 0) <= SMALL_FILE_BYTES
        base = folded_base(run_id, message, trigger)
        if not small:
            self._runs.write_folded(job.activity_id, message["RowKey"], run_id, base)
        ended: dict = {}
        self.process_message(job, message, run_id, folded=True, defer_processing=small, ended=ended)
        fault_points.hit("ended", message.get("MessageId"))
        if not ended:  # the terminal write found the message changed by someone else: read what it is
            self._end_run(run_id)
            return
        status, fields = run_outcome(run_id, [ended], None)
        self._runs.write_folded(
            job.activity_id,
            message["RowKey"],
            run_id,
            {**base, "Status": status, "EndedAt": now_utc(), **fields},
        )

    def drain(self, job: Job, *, claim_token: str, trigger: str) -> None:
        while True:
            if not self._leases.acquire(job.activity_id, claim_token, LEASE):
                return  # another worker is draining this job; it picks up what is waiting
            run_id = None
            try:
                while True:
                    message = self._next_in_order(job)
                    if message is None:
                        break
                    message = self._claim(job, message["RowKey"], claim_token, any_active=True)
                    if message is None:
                        continue
                    fault_points.hit("claimed", message.get("MessageId"))
                    run_id = run_id or self._start_run(job, trigger, None)
                    self.process_message(job, message, run_id)
                    self._leases.renew(job.activity_id, claim_token, LEASE)
            except BaseException as exc:
                if run_id:
                    self._end_run(run_id, error=f"the drain stopped: {_describe(exc)}")
                raise
            finally:
                self._leases.release(job.activity_id, claim_token)
            if run_id:
                self._end_run(run_id)
            # A message may have arrived between the last look and the release.
            if self._next_in_order(job) is None:
                return

    def handle_poison(self, item: dict) -> None:
        """The host gave up on a work item (it reached the poison queue): end its message terminal.

        Idempotent: a message that already ended is left as it is. Raises when the terminal write fails,
        so the caller (the poison sweeper) keeps the item and tries again.
        """
        self.end_failed(
            item,
            reason="the import was abandoned after {attempts} attempt(s): the host moved its work item to the "
            "poison queue",
        )

    def end_failed(
        self, item: dict, *, reason: str, error: str | None = None, lease_holder: str | None = None
    ) -> None:
        """End the work of a failed item in PostProcessingFailed, never leaving it hanging.

        `reason` may hold `{attempts}` (the message's claim count); `error` is the last error (else the one
        the worker recorded). For a process-in-order drain the head message (the one that failed) ends,
        the job's lease is released (only `lease_holder`'s when given, else whoever holds it: the holder
        died) and a new drain is queued for the messages behind it. Errors of the writes are raised.
        """
        job_id = item["jobId"]
        if item["kind"] == work_items.KIND_MESSAGE:
            self._fail_message(job_id, item["rowKey"], reason=reason, error=error, owner=lease_holder)
            self._end_run_of_ended_message(job_id, item["rowKey"])
        elif item["kind"] == work_items.KIND_DRAIN:
            try:
                job = self._config.get_job(job_id, fresh=True)
            except NotFoundError:
                return
            message = self._next_in_order(job)
            if message is not None:
                self._fail_message(job_id, message["RowKey"], reason=reason, error=error)
            holder = lease_holder or self._leases.holder(job_id)
            if holder:
                self._leases.release(job_id, holder)
            if self._next_in_order(job) is not None:
                self._dispatcher.dispatch_drain(job, statuses.TRIGGER_RETRY)

    # Steps -----------------------------------------------------------------------------------
    def _next_in_order(self, job: Job) -> dict | None:
        for message in self._messages.iter_messages(job.activity_id, statuses=NOT_TERMINAL):
            if message.get("Direction") == "import":
                return message
        return None

    def _claim(
        self,
        job: Job,
        row_key: str,
        claim_token: str,
        *,
        any_active: bool,
        known: dict | None = None,
        fold_run: str | None = None,
    ) -> dict | None:
        """Preprocessing, claimed by `claim_token` (compare-and-swap); None when the message is not ours to
        take. `known`: the row as the work item carries it (one conditional MERGE, no read, when unchanged).
        `fold_run`: the folded run's ID, recorded as the message's RunId on its first claim (or again by the
        same item)."""
        from shared.storage.run_repo import FOLDED_RUN

        def change(current: dict) -> dict | None:
            status = current.get("Status")
            if status == statuses.ENQUEUED:
                pass
            elif status in statuses.IMPORT_ACTIVE and (
                any_active or current.get("ClaimToken") == claim_token
            ):
                pass  # a retry after a crash: start the message again
            else:
                return None
            attempts = int(current.get("Attempts") or 0)
            fields = {"Status": statuses.PREPROCESSING, "ClaimToken": claim_token, "Attempts": attempts + 1}
            if fold_run and (attempts == 0 or current.get("RunId") == fold_run):
                fields["RunId"] = fold_run
                fields[FOLDED_RUN] = True
            return fields

        return self._messages.update_message(job.activity_id, row_key, change, known=known)

    def _start_run(self, job: Job, trigger: str, run_id: str | None) -> str:
        run_id = run_id or str(uuid.uuid4())
        self._runs.create_run(job.activity_id, run_id, trigger=trigger, operation="import")
        return run_id

    def _end_run(self, run_id: str, *, error: str | None = None) -> None:
        """End an import run as its messages ended (shared.services.run_outcome): Counts, Ended (with
        WithErrors) or Error, and the reasons. `error`: the run's own failure, when it stopped."""
        from shared.services.run_outcome import run_outcome

        run = self._runs.find_run(run_id)
        if run is None:
            return
        messages = [m for m in map(self._messages.find_by_id, run.get("Messages") or []) if m is not None]
        status, fields = run_outcome(run_id, messages, error)
        if run.get("SupersededBy"):
            fields["Errors"] = [*(str(e) for e in run.get("Errors") or []), *fields["Errors"]]
        self._runs.end_run(run_id, status, **fields)

    def process_message(
        self,
        job: Job,
        message: dict,
        run_id: str,
        *,
        folded: bool = False,
        defer_processing: bool = False,
        ended: dict | None = None,
    ) -> str:
        """Import a claimed message in run `run_id` (its stages: shared/services/message_import.py); returns
        the terminal status written. Raises what failed, after recording it on the message.

        `folded`: the run is the message's folded run (its RunId is set by the claim, and the run lists only
        it). `defer_processing`: write the Processing transition with the terminal status (a small file).
        `ended`: filled with the message row as the terminal write left it."""
        from shared.services import import_checkpoint
        from shared.services.message_import import MessageImport

        if not folded:
            previous_run = message.get("RunId")
            message = (
                self._messages.update_message(
                    job.activity_id, message["RowKey"], lambda _: {"RunId": run_id}, known=message
                )
                or message
            )
            if previous_run and previous_run != run_id:
                self._end_abandoned_run(previous_run, message["MessageId"], run_id)
            self._runs.add_message(run_id, message["MessageId"])
        return MessageImport(
            job=job,
            message=message,
            config=self._config,
            messages=self._messages,
            entities=self._entities,
            errors_container=self._errors,
            sources=self._source,
            checkpoints=self._checkpoints(),
            checkpoint_min_bytes=import_checkpoint.min_bytes(),
            checkpoint_rows=import_checkpoint.every_rows(),
            defer_processing=defer_processing,
            ended=ended,
        ).execute()

    def _checkpoints(self):
        """The checkpoint store (the staging container), from the process-wide clients when not given."""
        if self._staging is None:
            from shared.storage import names
            from shared.storage.factory import get_clients

            self._staging = get_clients().container(names.CONTAINER_STAGING)
        from shared.services.import_checkpoint import CheckpointStore

        return CheckpointStore(self._staging)

    def _source(self, message: dict):
        """The container of the message's file: inbound, or uploads for a package API import."""
        from shared.storage import names

        container = message.get("BlobContainer") or names.CONTAINER_INBOUND
        if container == names.CONTAINER_INBOUND:
            return self._inbound
        if container == names.CONTAINER_UPLOADS:
            if self._uploads is None:
                from shared.storage.factory import get_clients

                self._uploads = get_clients().container(names.CONTAINER_UPLOADS)
            return self._uploads
        raise FormatError(f"the message's file is in an unknown container {container!r}")

    def _fail_message(
        self, job_id: str, row_key: str, *, reason: str, error: str | None = None, owner: str | None = None
    ) -> None:
        """PostProcessingFailed with `reason` and the last error, if the message has not ended; its run
        ends in Error too. With `owner` (a claim token), a message another queue item has claimed is left
        to that item. A message that no longer exists has nothing to end. Write errors are raised."""

        def change(current: dict) -> dict | None:
            if current.get("Status") not in NOT_TERMINAL:
                return None
            claimed_by = current.get("ClaimToken")
            if (
                owner
                and claimed_by
                and claimed_by != owner
                and current.get("Status") in statuses.IMPORT_ACTIVE
            ):
                return None
            fault_points.hit("fail_write", current.get("MessageId"))
            last = (
                error
                or current.get("LastError")
                or "the worker stopped during the attempt without recording an error (killed or timed out)"
            )
            attempts = int(current.get("Attempts") or 0)
            written = _written(current.get("Counts"))
            partial = (
                f"; {written} record(s) were written before it failed, so the import is partial (what was "
                "written stays; reprocess the message to write the rest)"
                if written
                else "; no record was written"
            )
            return {
                "Status": statuses.POSTPROCESSING_FAILED,
                "ErrorSummary": f"{reason.format(attempts=attempts)}{partial}; last error: {last}"[:8000],
                "LastError": last[:2000],
                "Partial": written > 0,
            }

        try:
            updated = self._messages.update_message(job_id, row_key, change)
        except NotFoundError:
            log.warning("failed work for message %s of job %s, which no longer exists", row_key, job_id)
            return
        if updated and updated.get("RunId"):
            self._end_run(updated["RunId"])

    def _end_run_of_ended_message(self, job_id: str, row_key: str) -> None:
        """A message that ended while its run did not (the worker failed or died between the two writes):
        the run ends as the message did."""
        try:
            message = self._messages.get_message(job_id, row_key)
        except NotFoundError:
            return
        run = self._runs.find_run(message["RunId"]) if message.get("RunId") else None
        if run is None or run.get("Status") not in (statuses.RUN_WAITING, statuses.RUN_EXECUTING):
            return
        if message.get("Status") in statuses.IMPORT_TERMINAL:
            self._end_run(message["RunId"])

    def _end_abandoned_run(self, run_id: str, message_id: str, retry_run_id: str) -> None:
        """A run whose worker died or failed (its message is being retried in another run) ends in Error and
        records `SupersededBy`: its execution then answers Failed, never Executing for good."""
        run = self._runs.find_run(run_id)
        if run is None:
            return
        reason = f"the worker stopped during this run; message {message_id} was retried in run {retry_run_id}"
        if run.get("Status") not in (statuses.RUN_WAITING, statuses.RUN_EXECUTING):
            errors = [str(e) for e in run.get("Errors") or []]
            self._runs.update_run(run_id, SupersededBy=retry_run_id, Errors=[*errors, reason][-20:])
            return
        self._runs.end_run(run_id, statuses.RUN_ERROR, Errors=[reason], SupersededBy=retry_run_id)

    def _fail_orphans(self, item: dict, reason: str) -> None:
        if item["kind"] != work_items.KIND_MESSAGE:
            return
        self._messages.transition(
            item["jobId"],
            item["rowKey"],
            statuses.POSTPROCESSING_FAILED,
            allowed_from=set(NOT_TERMINAL),
            ErrorSummary=reason,
        )


def _known_row(item: dict) -> dict | None:
    """The message row a work item carries (Dispatcher.dispatch_created), with its ETag; None without one."""
    row, etag = item.get("row"), item.get("etag")
    if not isinstance(row, dict) or not etag or row.get("RowKey") != item.get("rowKey"):
        return None
    return {**row, "PartitionKey": item["jobId"], "_etag": etag}


def _describe(exc: BaseException) -> str:
    """The error for a reason: its type and first line (Azure SDK errors go on with the whole response)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:2000]


def _written(counts) -> int:
    """Records written, summed over a message's per-entity Counts."""
    if not isinstance(counts, dict):
        return 0
    return sum(int(c.get("written") or 0) for c in counts.values() if isinstance(c, dict))
