"""One import message on a worker, top-down: the stages it goes through, from its file to its terminal status.

The import worker (shared/services/import_worker.py) claims the message and keeps its run; then `execute`:

1. **resume**  an earlier attempt's checkpoint, when there is one for this configuration version
               (shared/services/import_checkpoint.py): its staged rows, counts and error file; stages 2 and 3
               are skipped and writing goes on where that attempt's last checkpoint was.
2. **open**    the message's file (pinned to the version accepted) as entity inputs: one for a file job, one
               per manifest entity for a data package (shared/services/package_import.py).
3. **stage**   (PreProcessing) each input read, transformed, mapped and converted into a spool on local
               disk, bad records rejected with reasons (shared/services/import_pipeline.preprocess);
               the plan and D365's fail-on-error rules are shared/services/import_plan.py's. A file that
               cannot be read ends here, PreProcessingError, before any write. Big files are checkpointed.
4. **write**   (Processing) each staged entity's rows upserted in execution order
               (shared/services/import_pipeline.process), Counts written back as they grow, a checkpoint
               every IMPORT_CHECKPOINT_ROWS rows.
5. **finish**  the terminal status, Counts, error summary and error file; the checkpoint is deleted.

A failure raises (after recording the error and the counts so far on the message): the host delivers the
work item again, and the next attempt starts at stage 1.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import BinaryIO

from shared.domain import statuses
from shared.domain.config import Job
from shared.errors import AppError, FormatError, NotFoundError
from shared.services import fault_points
from shared.services.import_checkpoint import Checkpoint, CheckpointStore, EntityCheckpoint
from shared.services.import_pipeline import EntityInput, EntityOutcome, ErrorFile, modified_now
from shared.services.import_plan import ImportPlan, StagedEntity
from shared.storage import writer_processes
from shared.storage.message_repo import EARLIER_TRANSITIONS, STATUS_AT, iso, now_utc

log = logging.getLogger(__name__)

# During Processing a message's Counts are written back at most this often (one MERGE), so `written`
# grows while a big file is written without multiplying storage calls per chunk.
PROGRESS_SECONDS = 5.0


class MessageImport:
    """The stages of one claimed message (module doc). `sources(container_name)` gives the container of the
    message's file; `checkpoints` is None when checkpoints are off (then every attempt stages again)."""

    def __init__(
        self,
        *,
        job: Job,
        message: dict,
        config,
        messages,
        entities,
        errors_container,
        sources: Callable[[dict], object],
        checkpoints: CheckpointStore | None,
        checkpoint_min_bytes: int,
        checkpoint_rows: int,
        defer_processing: bool = False,
        ended: dict | None = None,
    ) -> None:
        """`message`: the claimed row, with its `_etag` (the first write tries it instead of a read).
        `defer_processing`: a small file; its Processing transition (and time) is written with the terminal
        status, unless it is still writing after PROGRESS_SECONDS or fails. `ended`: filled with the message
        row as the terminal write left it (the worker's folded run is written from it)."""
        self._job = job
        self._message = message
        self._config = config
        self._messages = messages
        self._entities = entities
        self._errors_container = errors_container
        self._sources = sources
        self._checkpoints = checkpoints
        self._min_bytes = checkpoint_min_bytes
        self._every_rows = checkpoint_rows
        self._job_id = job.activity_id
        self._row_key = message["RowKey"]
        self._message_id = message["MessageId"]
        self._company = message.get("Company") or job.legal_entity
        self._progress = _Progress(messages, self._job_id, self._row_key)
        self._checkpoint: Checkpoint | None = None  # the one this attempt resumed from or saved
        self._has_checkpoint = bool(message.get("Checkpointed"))
        self._known: dict | None = (
            message  # the row as this attempt last wrote it, for a write without a read
        )
        self._defer = defer_processing
        self._ended = ended

    def execute(self) -> str:
        """Run the stages; returns the terminal status written. Raises what failed (after recording it)."""
        errors = ErrorFile()
        plan: ImportPlan | None = None
        try:
            plan = self._resume(errors)
            if plan is None:
                with contextlib.ExitStack() as package_files:
                    try:
                        inputs = self._open(package_files)
                        plan = self._stage(inputs, errors)
                    except FormatError as exc:
                        return self._finish(None, errors, statuses.PREPROCESSING_ERROR, reason=str(exc))
                fault_points.hit("preprocessing", self._message_id)
                if self._package and not plan.staged_any and plan.has_problems():
                    reason = "\n".join(plan.reasons())
                    return self._finish(plan, errors, statuses.PREPROCESSING_ERROR, reason=reason)
                self._save_staged(plan, errors)
            self._start_processing(plan)
            self._write(plan, errors)
            problems = errors.count or plan.has_problems()
            final = statuses.PROCESSED_WITH_ERRORS if problems else statuses.PROCESSED
            return self._finish(plan, errors, final, reason="\n".join(plan.reasons()) or None)
        except Exception as exc:
            # Recorded for the failure's reason; the host retries the work item. With the records written so
            # far, so a failure that ends here says how far the import got.
            self._progress.record_failure(_describe(exc))
            raise
        finally:
            if plan is not None:
                plan.close()
            errors.close()

    # 1. resume --------------------------------------------------------------------------------------
    def _resume(self, errors: ErrorFile) -> ImportPlan | None:
        if self._checkpoints is None or not self._has_checkpoint:
            return None
        checkpoint = self._checkpoints.load(self._job_id, self._row_key)
        if checkpoint is None:
            return None
        version = self._config.version()
        if checkpoint.message_id != self._message_id or checkpoint.config_version != version:
            log.info(
                "message %s: the configuration changed since its checkpoint (%s, now %s); staging it again",
                self._message_id,
                checkpoint.config_version,
                version,
            )
            self._checkpoints.delete(self._job_id, self._row_key)
            return None
        if checkpoint.error_count:
            from azure.core.exceptions import ResourceNotFoundError

            try:
                earlier = self._checkpoints.open_errors(self._job_id, self._row_key)
            except ResourceNotFoundError:
                log.warning(
                    "message %s: its checkpoint's error file is gone; staging again", self._message_id
                )
                self._checkpoints.delete(self._job_id, self._row_key)
                return None
            with earlier:
                errors.restore(earlier, count=checkpoint.error_count, summary=checkpoint.error_summary)
        entities = []
        for saved in checkpoint.entities:
            entity = self._config.get_entity(saved.entity) if saved.entity and not saved.done else None
            entities.append(
                StagedEntity(
                    key=saved.key,
                    entity=entity,
                    outcome=_outcome(saved.outcome, self._package),
                    staged=saved.spool is not None,
                    spool_blob=saved.spool,
                    offset=saved.offset,
                    done=saved.done,
                    execution_unit=saved.execution_unit,
                    level=saved.level,
                    fail_level_on_error=saved.fail_level_on_error,
                    fail_unit_on_error=saved.fail_unit_on_error,
                )
            )
        self._checkpoint = checkpoint
        log.info(
            "message %s resumes from the checkpoint of attempt %s: %s record(s) already written",
            self._message_id,
            checkpoint.staged_attempt,
            checkpoint.written(),
        )
        return ImportPlan(entities, package=self._package)

    # 2. open ----------------------------------------------------------------------------------------
    @property
    def _package(self) -> bool:
        """Package mode as recorded on the message at enqueue (the job's mode may have changed since)."""
        return (self._message.get("Mode") or self._job.mode) == "package"

    def _open(self, resources: contextlib.ExitStack) -> list[EntityInput]:
        """The message's entity inputs. FormatError when the file cannot be used at all."""
        from shared.services.definition_groups import DefinitionGroups, is_group_job_id

        new_group = False
        try:
            project = self._config.project_of(self._job)
        except NotFoundError:
            # ImportFromPackage into a definition group that does not exist: as D365, the project comes
            # from the package's manifest (definition_groups.create_from_manifest).
            if not (self._package and is_group_job_id(self._job.activity_id)):
                raise
            project, new_group = None, True
        if self._package:
            # The package (spooled to a temporary file) stays open on `resources` while it is read.
            from shared.services.package_import import package_inputs

            def create_group(manifest) -> None:
                try:
                    name = self._message.get("DefinitionGroup") or self._job.project
                    if name.lower() != self._job.project.lower():
                        name = self._job.project
                    DefinitionGroups(self._config).create_from_manifest(name, manifest)
                except AppError as exc:  # the import goes on from the manifest alone
                    log.warning(
                        "definition group %s not created from the manifest: %s", self._job.project, exc
                    )

            return package_inputs(
                config=self._config,
                project=project,
                open_blob=self._open_file,
                resources=resources,
                on_manifest=create_group if new_group else None,
            )
        wanted = (self._message.get("Entity") or "").lower()
        for pe in project.ordered_entities():
            if pe.entity.lower() != wanted:
                continue
            entity = self._config.get_entity(pe.entity)
            return [
                EntityInput(
                    entity=entity,
                    fmt=self._config.get_format(pe.format),
                    open_stream=self._open_file,
                    mapping=[m.as_item() for m in pe.mapping],
                    transforms=[self._transform(name) for name in pe.transforms],
                    sheet=pe.sheet,
                    source_name=entity.label,
                )
            ]
        raise FormatError(
            f"entity {self._message.get('Entity')!r} is no longer in the project {project.name!r}"
        )

    def _open_file(self) -> BinaryIO:
        """The message's file, as it was when accepted (package API uploads are pinned by ETag)."""
        from shared.storage.blob_io import open_blob

        message = self._message
        return open_blob(self._sources(message), message["BlobName"], etag=message.get("BlobETag"))

    def _transform(self, name: str):
        from shared.formats.xslt import apply_transform_to_stream, compile_transform
        from shared.services.import_pipeline import MAX_TRANSFORM_INPUT

        compiled = compile_transform(self._config.get_transform(name))
        return lambda stream: apply_transform_to_stream(compiled, stream, max_input_bytes=MAX_TRANSFORM_INPUT)

    # 3. stage ---------------------------------------------------------------------------------------
    def _stage(self, inputs: list[EntityInput], errors: ErrorFile) -> ImportPlan:
        from shared.services.import_pipeline import preprocess

        modified = modified_now()

        staged = 0

        def stage_one(inp):
            def encode(record, e=inp.entity):
                nonlocal staged
                staged += 1
                if staged == writer_processes.MIN_ROWS:
                    # Large enough for a window of the writer processes: they start while the rest is staged.
                    self._entities.prepare_writers()
                return self._entities.encode(e, record, self._company, modified)

            return preprocess(inp, encode=encode, errors=errors)

        return ImportPlan.stage(inputs, stage_one, package=self._package)

    def _save_staged(self, plan: ImportPlan, errors: ErrorFile) -> None:
        """Checkpoint a big file's staged rows (smaller ones cost less to stage again than to save)."""
        if self._checkpoints is None:
            return
        spooled = [s for s in plan.entities if s.spool is not None]
        size = sum(_size(s.spool) for s in spooled)
        if size < self._min_bytes:
            return
        for index, staged in enumerate(plan.entities):
            if staged.spool is not None:
                staged.spool_blob = f"{index}.spool"
                self._checkpoints.save_spool(self._job_id, self._row_key, staged.spool_blob, staged.spool)
        self._checkpoint = Checkpoint(
            message_id=self._message_id,
            config_version=self._config.version(),
            staged_attempt=int(self._message.get("Attempts") or 1),
        )
        self._save_checkpoint(plan, errors, errors_changed=True)
        self._has_checkpoint = True

    # 4. write ---------------------------------------------------------------------------------------
    def _start_processing(self, plan: ImportPlan) -> None:
        self._progress.counts = plan.counts
        fields: dict = {"Counts": plan.counts()}
        if self._has_checkpoint:
            fields["Checkpointed"] = True
        if self._checkpoint is not None:
            fields["StagedAttempt"] = self._checkpoint.staged_attempt
            written = self._checkpoint.written()
            if self._checkpoint.staged_attempt != int(self._message.get("Attempts") or 1):
                fields["ResumedFrom"] = (
                    f"attempt {self._message.get('Attempts')} resumed from the checkpoint of attempt "
                    f"{self._checkpoint.staged_attempt}: preprocessing skipped, {written} record(s) already written"
                )
        if self._defer and self._checkpoint is None and not self._has_checkpoint:
            # Written with the terminal status (or by the first progress write, or on a failure), at its time.
            self._progress.pending = (iso(now_utc()), fields)
            return
        self._known = self._messages.transition(
            self._job_id, self._row_key, statuses.PROCESSING, known=self._known, **fields
        )

    def _write(self, plan: ImportPlan, errors: ErrorFile) -> None:
        from shared.services.import_pipeline import process

        def write_one(index: int, staged: StagedEntity) -> None:
            spool = staged.spool
            if spool is None:  # a resumed plan: the checkpoint's spool, from where it was written
                spool = self._open_checkpoint_spool(staged)
            staged.spool = spool
            entity = staged.entity

            def on_checkpoint(offset: int) -> None:
                staged.offset = offset
                self._save_checkpoint(plan, errors)

            process(
                spool,
                staged.outcome,
                start_upsert=lambda rows: self._entities.start_upsert(
                    entity, rows, on_retry=self._progress.on_retry
                ),
                errors=errors,
                after_chunk=lambda n: self._progress.after_chunk(self._message_id, n),
                checkpoint_rows=self._every_rows if self._checkpoint is not None else 0,
                on_checkpoint=on_checkpoint,
            )

        def after_each(index: int, staged: StagedEntity) -> None:
            # An entity ended: saved, so a resumed attempt skips it (after the last one, the message ends).
            if index < len(plan.entities) - 1:
                self._save_checkpoint(plan, errors)

        plan.write(write_one, after_each)

    def _open_checkpoint_spool(self, staged: StagedEntity):
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return self._checkpoints.open_spool(self._job_id, self._row_key, staged.spool_blob, staged.offset)
        except ResourceNotFoundError:
            # Removed behind our back: without it the checkpoint is useless, and the next attempt stages again.
            self._checkpoints.delete(self._job_id, self._row_key)
            raise RuntimeError(
                f"the staged rows of {staged.key} in the message's checkpoint are gone; the next attempt stages "
                "the file again"
            ) from None

    def _save_checkpoint(
        self, plan: ImportPlan, errors: ErrorFile, *, errors_changed: bool | None = None
    ) -> None:
        checkpoint = self._checkpoint
        if checkpoint is None or self._checkpoints is None:
            return
        # The error file is saved again only when it grew (rejections while writing are rare).
        changed = errors_changed or (errors_changed is None and errors.count != checkpoint.error_count)
        if changed and errors.count:
            self._checkpoints.save_errors(self._job_id, self._row_key, errors)
        checkpoint.error_count = errors.count
        checkpoint.error_summary = list(errors.summary)
        checkpoint.entities = [
            EntityCheckpoint(
                key=s.key,
                entity=s.entity.name if s.entity is not None else None,
                outcome=_outcome_fields(s.outcome),
                spool=s.spool_blob if s.staged else None,
                offset=s.offset,
                done=s.done,
                execution_unit=s.execution_unit,
                level=s.level,
                fail_level_on_error=s.fail_level_on_error,
                fail_unit_on_error=s.fail_unit_on_error,
            )
            for s in plan.entities
        ]
        self._checkpoints.save(self._job_id, self._row_key, checkpoint)
        fault_points.hit("checkpoint", self._message_id)

    # 5. finish --------------------------------------------------------------------------------------
    def _finish(
        self, plan: ImportPlan | None, errors: ErrorFile, status: str, reason: str | None = None
    ) -> str:
        fields: dict = {"Counts": plan.counts() if plan is not None else {}}
        if self._progress.last_transient:
            fields["LastTransientError"] = self._progress.last_transient
        summary = list(errors.summary)
        if reason:
            summary.insert(0, reason)
        if summary:
            fields["ErrorSummary"] = "\n".join(summary)[:8000]
        if errors.count:
            name = f"{self._message_id}.csv"
            errors.upload(self._errors_container, name)
            fields["ErrorFile"] = name
            fields["ErrorCount"] = errors.count
        fault_points.hit("terminal", self._message_id)
        pending = self._progress.pending
        if pending is not None:
            at, processing = pending
            fields = {
                **processing,
                **fields,
                EARLIER_TRANSITIONS: [{"status": statuses.PROCESSING, "at": at}],
            }
        ended = self._messages.transition(
            self._job_id,
            self._row_key,
            status,
            allowed_from=set(statuses.IMPORT_ACTIVE),
            known=self._known if self._progress.flushes == 0 else None,
            **fields,
        )
        if ended is not None and self._ended is not None:
            self._ended.update(ended)
        if self._has_checkpoint and self._checkpoints is not None:
            self._checkpoints.delete(self._job_id, self._row_key)
        return status


def _size(spool) -> int:
    position = spool.tell()
    spool.seek(0, 2)
    size = spool.tell()
    spool.seek(position)
    return size


def _outcome_fields(outcome: EntityOutcome) -> dict:
    fields = {
        "entity": outcome.entity,
        "read": outcome.read,
        "written": outcome.written,
        "rejected": outcome.rejected,
        "error": outcome.error,
        "status": outcome.status,
    }
    attachments = getattr(outcome, "attachments", None)
    if attachments:
        fields["attachments"] = list(attachments)
    return fields


def _outcome(fields: dict, package: bool) -> EntityOutcome:
    base = {k: fields.get(k) for k in ("entity", "error", "status")}
    counts = {k: int(fields.get(k) or 0) for k in ("read", "written", "rejected")}
    if package:
        from shared.services.package_import import PackageEntityOutcome

        return PackageEntityOutcome(**base, **counts, attachments=list(fields.get("attachments") or []))
    return EntityOutcome(**base, **counts)


def _describe(exc: BaseException) -> str:
    """The error for a reason: its type and first line (Azure SDK errors go on with the whole response)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:2000]


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
        # A deferred Processing transition: (when, its fields), not written yet (MessageImport._start_processing).
        self.pending: tuple[str, dict] | None = None
        self.flushes = 0  # writes made here, after which the row's ETag the import holds is stale

    def on_retry(self, attempt: int, error: BaseException) -> None:
        from shared.storage.retry import describe

        self.last_transient = f"{iso(now_utc())} (try {attempt}): {describe(error)}"

    def after_chunk(self, message_id: str, chunks_done: int) -> None:
        if chunks_done == 1:
            fault_points.fail_once_after_first_chunk(message_id, chunks_done)
            fault_points.hit("processing", message_id)
        if time.monotonic() - self._flushed_at >= PROGRESS_SECONDS:
            self.flush()

    def _fields(self) -> dict:
        fields: dict = {}
        if self.counts is not None:
            fields["Counts"] = self.counts()
        if self.last_transient:
            fields["LastTransientError"] = self.last_transient
        return fields

    def _with_pending(self, current: dict, fields: dict) -> dict:
        """`fields`, preceded by the deferred Processing transition while the row is still in Preprocessing."""
        if self.pending is None or current.get("Status") != statuses.PREPROCESSING:
            return dict(fields)
        at, processing = self.pending
        return {**processing, **fields, "Status": statuses.PROCESSING, STATUS_AT: at}

    def flush(self) -> None:
        fields = self._fields()
        self._flushed_at = time.monotonic()
        if not fields:
            return

        def change(current: dict) -> dict | None:
            if current.get("Status") == statuses.PROCESSING:
                return dict(fields)
            return self._with_pending(current, fields) if self.pending is not None else None

        try:
            self.flushes += 1
            if self._messages.update_message(self._job_id, self._row_key, change) is not None:
                self.pending = None
        except Exception:  # progress is informative: a failed write must not fail the import
            log.warning("writing the progress of message %s failed", self._row_key, exc_info=True)

    def record_failure(self, last_error: str) -> None:
        """The attempt failed: its last error, and the records written so far (for the failure's reason)."""
        fields = {"LastError": last_error, **self._fields()}
        self.flushes += 1
        self._messages.update_message(self._job_id, self._row_key, lambda c: self._with_pending(c, fields))
        self.pending = None
