"""The import worker: claims a message, runs the pipeline for its entity file(s), records the outcome.

Retries are safe: upserts are idempotent (same key, same row), and a message claimed by a queue item
that the host redelivers is claimed again by that same item. Process-in-order jobs are drained one
message at a time under a per-job lease, so no message overtakes another across instances.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import BinaryIO

from shared import settings
from shared.domain import statuses
from shared.domain.config import Job
from shared.errors import FormatError, NotFoundError
from shared.queue_limits import Delivery
from shared.services import fault_points, work_items
from shared.services.import_pipeline import (
    EntityInput,
    EntityOutcome,
    ErrorFile,
    modified_now,
    preprocess,
    process,
)
from shared.storage.blob_io import open_blob

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
# During Processing a message's Counts are written back at most this often (one MERGE), so `written`
# grows while a big file is written without multiplying storage calls per chunk.
PROGRESS_SECONDS = 5.0
NOT_TERMINAL = [statuses.ENQUEUED, statuses.PREPROCESSING, statuses.PROCESSING]


class ImportWorker:
    def __init__(
        self, *, config, messages, runs, entities, inbound, errors, dispatcher, leases, uploads=None
    ) -> None:
        self._config = config
        self._messages = messages
        self._runs = runs
        self._entities = entities
        self._inbound = inbound
        self._uploads = uploads  # package API uploads; from the process-wide clients when not given
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
        self._config.refresh()  # see every configuration change made before this item (other instances)
        try:
            job = self._config.get_job(item["jobId"], fresh=True)
        except NotFoundError:
            log.warning("work item for a deleted job %s", item["jobId"])
            self._fail_orphans(item, "the job was deleted before the message was processed")
            return
        trigger = item.get("trigger") or statuses.TRIGGER_RECURRENCE
        if item["kind"] == work_items.KIND_DRAIN:
            self.drain(job, claim_token=claim_token, trigger=trigger)
        elif item["kind"] == work_items.KIND_MESSAGE:
            message = self._claim(job, item["rowKey"], claim_token, any_active=False)
            if message is None:
                # Ended already (or another item has it): a redelivery after a death between the message's
                # outcome and its run's end still ends the run.
                self._end_run_of_ended_message(job.activity_id, item["rowKey"])
                return
            fault_points.hit("claimed", message.get("MessageId"))
            run_id = self._start_run(job, trigger, item.get("runId"))
            self.process_message(job, message, run_id)
            fault_points.hit("ended", message.get("MessageId"))
            self._end_run(run_id)

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

    def _claim(self, job: Job, row_key: str, claim_token: str, *, any_active: bool) -> dict | None:
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
            return {
                "Status": statuses.PREPROCESSING,
                "ClaimToken": claim_token,
                "Attempts": int(current.get("Attempts") or 0) + 1,
            }

        return self._messages.update_message(job.activity_id, row_key, change)

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

    def _inputs(
        self, job: Job, message: dict, resources: contextlib.ExitStack | None = None
    ) -> list[EntityInput]:
        project = self._config.get_project(job.project)
        if _is_package(job, message):
            # The package (spooled to a temporary file) stays open on `resources` while it is read.
            from shared.services.package_import import package_inputs

            return package_inputs(
                config=self._config,
                project=project,
                open_blob=lambda: self._open(message),
                resources=resources if resources is not None else contextlib.ExitStack(),
            )
        wanted = (message.get("Entity") or "").lower()
        for pe in project.ordered_entities():
            if pe.entity.lower() != wanted:
                continue
            entity = self._config.get_entity(pe.entity)
            fmt = self._config.get_format(pe.format)
            transforms = [self._transform(name) for name in pe.transforms]
            return [
                EntityInput(
                    entity=entity,
                    fmt=fmt,
                    open_stream=lambda: self._open(message),
                    mapping=[m.as_item() for m in pe.mapping],
                    transforms=transforms,
                    sheet=pe.sheet,
                    source_name=entity.label,
                )
            ]
        raise FormatError(f"entity {message.get('Entity')!r} is no longer in the project {project.name!r}")

    def _open(self, message: dict) -> BinaryIO:
        """The message's file, as it was when accepted (package API uploads are pinned by ETag)."""
        return open_blob(self._source(message), message["BlobName"], etag=message.get("BlobETag"))

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

    def _transform(self, name: str):
        from shared.formats.xslt import apply_transform_to_stream, compile_transform
        from shared.services.import_pipeline import MAX_TRANSFORM_INPUT

        compiled = compile_transform(self._config.get_transform(name))
        return lambda stream: apply_transform_to_stream(compiled, stream, max_input_bytes=MAX_TRANSFORM_INPUT)

    def process_message(self, job: Job, message: dict, run_id: str) -> str:
        job_id, row_key, message_id = job.activity_id, message["RowKey"], message["MessageId"]
        self._messages.update_message(job_id, row_key, lambda _: {"RunId": run_id})
        previous_run = message.get("RunId")
        if previous_run and previous_run != run_id:
            self._end_abandoned_run(previous_run, message_id, run_id)
        self._runs.add_message(run_id, message_id)
        company = message.get("Company") or job.legal_entity
        errors = ErrorFile()
        outcomes: list[EntityOutcome] = []
        progress = _Progress(self._messages, job_id, row_key)
        try:
            with contextlib.ExitStack() as package_files:
                try:
                    inputs = self._inputs(job, message, package_files)
                    if _is_package(job, message):
                        return self._process_package(
                            job, message, inputs, company, errors, package_files, progress
                        )
                    modified = modified_now()
                    staged = []
                    for inp in inputs:

                        def encode(record, e=inp.entity):
                            return self._entities.encode(e, record, company, modified)

                        staged.append(preprocess(inp, encode=encode, errors=errors))
                    fault_points.hit("preprocessing", message_id)
                except FormatError as exc:
                    return self._finish(
                        job_id,
                        row_key,
                        statuses.PREPROCESSING_ERROR,
                        outcomes,
                        errors,
                        message_id,
                        reason=str(exc),
                    )
            progress.counts = lambda: {o.entity: o.counts() for o, _ in staged}
            self._messages.transition(job_id, row_key, statuses.PROCESSING, Counts=progress.counts())
            for inp, (outcome, spool) in zip(inputs, staged, strict=True):
                process(
                    spool,
                    outcome,
                    upsert=lambda rows, e=inp.entity: self._entities.upsert_rows(
                        e, rows, on_retry=progress.on_retry
                    ),
                    errors=errors,
                    after_chunk=lambda n: progress.after_chunk(message_id, n),
                )
                outcomes.append(outcome)
            final = statuses.PROCESSED_WITH_ERRORS if errors.count else statuses.PROCESSED
            return self._finish(job_id, row_key, final, outcomes, errors, message_id, progress=progress)
        except Exception as exc:
            # Recorded for the poison handler's reason; the host retries the work item.
            # With the records written so far, so a failure that ends here says how far the import got.
            progress.record_failure(_describe(exc))
            raise
        finally:
            errors.close()

    def _process_package(
        self, job: Job, message: dict, inputs, company, errors: ErrorFile, package_files, progress
    ) -> str:
        """A data package: stage every manifest entity, then write them in execution order.

        Per-entity failures and the fail-on-error rules are `package_import.PackageRun`'s; a package
        that cannot be opened at all raised FormatError before this (PreProcessingError).
        """
        from shared.services.package_import import PackageRun

        job_id, row_key, message_id = job.activity_id, message["RowKey"], message["MessageId"]
        modified = modified_now()
        run = PackageRun(inputs)
        try:
            run.stage(
                lambda inp: preprocess(
                    inp,
                    encode=lambda record, e=inp.entity: self._entities.encode(e, record, company, modified),
                    errors=errors,
                )
            )
            package_files.close()  # every entity file has been read: drop the spooled package now
            fault_points.hit("preprocessing", message_id)
            if not run.staged_any and run.has_problems():
                return self._finish(
                    job_id,
                    row_key,
                    statuses.PREPROCESSING_ERROR,
                    run.outcomes(),
                    errors,
                    message_id,
                    reason="\n".join(run.reasons()),
                )
            progress.counts = lambda: {o.entity: o.counts() for o in run.outcomes()}
            self._messages.transition(job_id, row_key, statuses.PROCESSING, Counts=progress.counts())
            run.write(
                lambda inp, outcome, spool: process(
                    spool,
                    outcome,
                    upsert=lambda rows, e=inp.entity: self._entities.upsert_rows(
                        e, rows, on_retry=progress.on_retry
                    ),
                    errors=errors,
                    after_chunk=lambda n: progress.after_chunk(message_id, n),
                )
            )
        finally:
            run.close()
        problems = errors.count or run.has_problems()
        final = statuses.PROCESSED_WITH_ERRORS if problems else statuses.PROCESSED
        reason = "\n".join(run.reasons()) or None
        return self._finish(
            job_id, row_key, final, run.outcomes(), errors, message_id, reason=reason, progress=progress
        )

    def _finish(
        self, job_id, row_key, status, outcomes, errors: ErrorFile, message_id, reason=None, progress=None
    ) -> str:
        fields: dict = {"Counts": {o.entity: o.counts() for o in outcomes}}
        if progress is not None and progress.last_transient:
            fields["LastTransientError"] = progress.last_transient
        summary = list(errors.summary)
        if reason:
            summary.insert(0, reason)
        if summary:
            fields["ErrorSummary"] = "\n".join(summary)[:8000]
        if errors.count:
            name = f"{message_id}.csv"
            errors.upload(self._errors, name)
            fields["ErrorFile"] = name
            fields["ErrorCount"] = errors.count
        fault_points.hit("terminal", message_id)
        self._messages.transition(job_id, row_key, status, allowed_from=set(statuses.IMPORT_ACTIVE), **fields)
        return status

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


def _is_package(job: Job, message: dict) -> bool:
    """Package mode as recorded on the message at enqueue (the job's mode may have changed since)."""
    return (message.get("Mode") or job.mode) == "package"


def _describe(exc: BaseException) -> str:
    """The error for a reason: its type and first line (Azure SDK errors go on with the whole response)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:2000]


def _written(counts) -> int:
    """Records written, summed over a message's per-entity Counts."""
    if not isinstance(counts, dict):
        return 0
    return sum(int(c.get("written") or 0) for c in counts.values() if isinstance(c, dict))


class _Progress:
    """One attempt's view of a message in Processing: writes its Counts back every PROGRESS_SECONDS (after
    a committed chunk of batches) and remembers the last transient storage error retried during it.

    `counts()` gives the current per-entity Counts (set once the entities are staged). `on_retry` is
    shared.storage.retry.TransientRetry's hook; it is called from the upsert pool's threads and only
    assigns a string.
    """

    def __init__(self, messages, job_id: str, row_key: str) -> None:
        self._messages = messages
        self._job_id = job_id
        self._row_key = row_key
        self._flushed_at = time.monotonic()
        self.counts: Callable[[], dict] | None = None
        self.last_transient: str | None = None

    def on_retry(self, attempt: int, error: BaseException) -> None:
        from shared.storage.retry import describe

        self.last_transient = f"{iso_now()} (try {attempt}): {describe(error)}"

    def after_chunk(self, message_id: str, chunks_done: int) -> None:
        _after_chunk(message_id, chunks_done)
        if time.monotonic() - self._flushed_at >= PROGRESS_SECONDS:
            self.flush()

    def _fields(self) -> dict:
        fields: dict = {}
        if self.counts is not None:
            fields["Counts"] = self.counts()
        if self.last_transient:
            fields["LastTransientError"] = self.last_transient
        return fields

    def flush(self) -> None:
        fields = self._fields()
        self._flushed_at = time.monotonic()
        if not fields:
            return

        def change(current: dict) -> dict | None:
            return dict(fields) if current.get("Status") == statuses.PROCESSING else None

        try:
            self._messages.update_message(self._job_id, self._row_key, change)
        except Exception:  # progress is informative: a failed write must not fail the import
            log.warning("writing the progress of message %s failed", self._row_key, exc_info=True)

    def record_failure(self, last_error: str) -> None:
        """The attempt failed: its last error, and the records written so far (for the failure's reason)."""
        fields = {"LastError": last_error, **self._fields()}
        self._messages.update_message(self._job_id, self._row_key, lambda _: dict(fields))


def iso_now() -> str:
    from shared.storage.message_repo import iso, now_utc

    return iso(now_utc())


def _after_chunk(message_id: str, chunks_done: int) -> None:
    _maybe_inject_fault(message_id, chunks_done)
    if chunks_done == 1:
        fault_points.hit("processing", message_id)


def _maybe_inject_fault(message_id: str, chunks_done: int) -> None:
    """Test hook, local mode only: fail once after the first chunk, to prove retries leave no duplicates."""
    directory = os.environ.get("DEV_FAULT_FAIL_ONCE_DIR")
    if not directory or settings.auth_mode() != "local" or settings.running_in_azure():
        return
    marker = os.path.join(directory, message_id)
    if chunks_done == 1 and os.path.exists(os.path.join(directory, "armed")) and not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("injected fault after the first chunk (DEV_FAULT_FAIL_ONCE_DIR)")
