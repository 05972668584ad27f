"""Export runs: the entity store to a D365 data package in blob storage, and an outbound message to dequeue.

start() (the scheduler's export_starter, "run now", the package API) records a run (Waiting) and puts
an export work item on the export queue. The queue-triggered worker (handle) then, for each entity of
the job's export project in sequence order:

- reads the entity's table page by page (company scope, the project's filter compiled to a
  parameterized query and re-checked exactly with filters.evaluate, and for incremental jobs only
  rows changed since the last successful run started), with the next page fetched while the current
  one is written;
- writes the rows in the entity's source data format (CSV with D365's conventions, XML-Element,
  XML-Attribute, JSON lines or Excel: shared.formats.writers) straight into a zip entry of a
  PackageWriter spooled to a temporary file, so memory holds about two pages whatever the table size;

then uploads the package to `outbound/{jobId}/{runId}.zip` and records an outbound message
(`Enqueued`) that partners dequeue, download and ack (outbound_service). With "prevent upload when
zero records", an empty run of the recurring queue uploads and offers nothing. That option governs the
dequeue queue only: a package-API export (ExportToPackage, `offer=False`) always uploads its package, with
empty entity files when there are no rows, so GetExportedPackageUrl always has one to answer (issue 12).

Retries are safe: the blob name and the message ID derive from the run ID, so a retried run
overwrites its own package and never offers it twice.
"""

from __future__ import annotations

import logging
import queue
import re
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

from shared import settings
from shared.domain import statuses
from shared.domain.config import Job, Project, ProjectEntity
from shared.domain.schema import Entity, Field, SourceFormat
from shared.errors import AppError, FormatError, NotFoundError
from shared.formats.writers import excel_sheet_name, write_csv, write_excel, write_json, write_xml
from shared.queue_limits import Delivery
from shared.services import fault_points, work_items
from shared.storage.message_repo import now_utc
from shared.storage.retry import describe, is_unsent, retry_call

log = logging.getLogger(__name__)

PAGE_SIZE = 1000  # rows per Table query page (the service's maximum)
PREFETCH_PAGES = 2  # pages read ahead while the current one is written
COMPRESS_LEVEL = 6
MAX_RUN_PAGES = 200  # pages of run history searched for the last successful run (50 runs each)
_MESSAGE_NS = uuid.UUID("9a3c0e4e-5f7d-4a59-b0b4-2f3b9e7f0a11")  # outbound message ID = uuid5(ns, runId)
_TERMINAL_RUN = {statuses.RUN_ENDED, statuses.RUN_ERROR, statuses.RUN_CANCELED}
_FILE_NAME_JUNK = re.compile(r'[\\/:*?"<>|\x00-\x1f]')
_EXTENSIONS = {
    "csv": ".csv",
    "xml-element": ".xml",
    "xml-attribute": ".xml",
    "json": ".json",
    "excel": ".xlsx",
}


class ExportError(AppError):
    """The export cannot succeed as configured (no retry helps): the run ends in Error with this reason."""

    code = "ExportFailed"


def outbound_blob_name(job_id: str, run_id: str) -> str:
    return f"{job_id}/{run_id}.zip"


def outbound_message_id(run_id: str) -> str:
    return str(uuid.uuid5(_MESSAGE_NS, run_id))


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# The plan of one entity file --------------------------------------------------------------------


@dataclass
class EntityPlan:
    entity: Entity
    fmt: SourceFormat
    file_name: str
    sequence: int
    columns: list[tuple[Field, str]]  # (entity field, column/element name in the file)
    query: str | None
    params: dict
    expr: Any  # the parsed filter, re-checked on every row
    select: list[str]
    sheet: str | None = None
    count: int = 0
    neutralize: bool = True  # the project's neutralizeFormulas (CSV and Excel)
    # The project mapping's value conversions by field name, carried into the manifest's EntityMaps so
    # that the package imports (here or into D365) with the project's conversions. The file's values
    # are written as stored: a conversion reads source values, it does not say how to write them.
    conversions: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    misfits: Any = None  # entity_repo.Misfits: stored values that no longer fit their field's type
    limit: int | None = None  # ExportToPackagePreview: at most this many records


@dataclass
class ExportResult:
    run_id: str
    status: str
    counts: dict[str, int] = field(default_factory=dict)
    total: int = 0
    file_uploaded: bool = False
    package_size: int = 0
    blob_name: str | None = None
    message_id: str | None = None
    refresh_type: str = "FullPush"
    error: str | None = None


class _Prefetch:
    """Runs a row iterator in a thread and hands its rows over in pages, at most `depth` pages ahead.

    The Table service answers a page while the previous one is formatted and compressed, so an export
    runs at about the speed of the slower of the two rather than their sum. Memory stays bounded.
    """

    _END = object()

    def __init__(self, rows: Iterator[dict], *, page: int = PAGE_SIZE, depth: int = PREFETCH_PAGES) -> None:
        self._rows = rows
        self._page = page
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="export-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            batch: list[dict] = []
            for row in self._rows:
                batch.append(row)
                if len(batch) >= self._page:
                    if not self._put(batch):
                        return
                    batch = []
            if batch and not self._put(batch):
                return
            self._put(self._END)
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(exc)

    def pages(self) -> Iterator[list[dict]]:
        try:
            while True:
                item = self._queue.get()
                if item is self._END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop.set()


# The service ---------------------------------------------------------------------------------------


def _storage_unavailable() -> AppError:
    return AppError(
        "the export could not be queued because storage did not answer; try again",
        code="StorageUnavailable",
        status=503,
    )


class ExportService:
    def __init__(
        self,
        *,
        config,
        messages,
        runs,
        entities,
        outbound,
        queue=None,
        compresslevel: int = COMPRESS_LEVEL,
        spool_dir: str | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self._config = config
        self._messages = messages
        self._runs = runs
        self._entities = entities
        self._outbound = outbound  # the outbound blob container
        self._queue = queue  # the export work queue
        self._compresslevel = compresslevel
        self._spool_dir = spool_dir
        self._page_size = page_size

    # Starting a run ------------------------------------------------------------------------------
    def start(
        self,
        job: Job,
        trigger: str,
        *,
        run_id: str | None = None,
        offer: bool = True,
        legal_entity: str | None = None,
        incremental: bool = False,
        preview_count: int | None = None,
        entities: list[str] | None = None,
    ) -> str:
        """Record a Waiting run and queue its work item; returns the run (execution) ID. A run ID that exists
        already (ExportToPackage with reExecute) is the same run, back to Waiting.

        `offer=False` (package API exports) uploads the package without creating an outbound message.
        `legal_entity`: the legal entity exported (ExportToPackage's legalEntityId); else the job's company.
        `incremental` (ExportToPackageDelta): only what changed since the job's last successful export.
        `preview_count` (ExportToPackagePreview): at most that many records per entity. `entities`: only
        these of the project (names or labels).
        """
        run_id = run_id or str(uuid.uuid4())
        legal = (legal_entity or job.legal_entity or "").lower() or None
        try:
            self._runs.create_run(
                job.activity_id,
                run_id,
                trigger=trigger,
                operation="export",
                status=statuses.RUN_WAITING,
                **({"Company": legal} if legal else {}),
            )
        except Exception as exc:
            # Its row may be stored (a reply lost after the service acted): never leave it Waiting for an item
            # that was never queued.
            self._end_unqueued(run_id, f"the run could not be recorded ({describe(exc)}); run it again")
            raise _storage_unavailable() from exc
        item = work_items.encode(
            kind=work_items.KIND_EXPORT,
            jobId=job.activity_id,
            runId=run_id,
            trigger=trigger,
            offer=None if offer else False,
            company=(legal_entity or "").lower() or None,  # the run's Company holds the job's too
            incremental=True if incremental else None,
            previewCount=preview_count,
            entities=entities or None,
        )
        try:
            # Retried only when the send surely had no effect: a duplicate item would run the export twice.
            retry_call(lambda: self._queue.send_message(item), what="queueing an export", retryable=is_unsent)
        except Exception as exc:
            # Never leave the run Waiting for an item that may not exist; an item that did arrive finds
            # the run ended and does nothing.
            self._end_unqueued(run_id, f"the export could not be queued ({describe(exc)}); run it again")
            raise _storage_unavailable() from exc
        return run_id

    def _end_unqueued(self, run_id: str, reason: str) -> None:
        """End a run that no work item will run, in Error with `reason`. When even that fails, the run stays
        as far as it got (logged): the poison sweeper's and the operator's views still show it."""
        try:
            self._runs.end_run(run_id, statuses.RUN_ERROR, Errors=[reason])
        except NotFoundError:
            pass  # nothing was stored
        except Exception:
            log.exception("export run %s could not be ended after its start failed: %s", run_id, reason)

    # The worker ----------------------------------------------------------------------------------
    def handle(self, item: dict, *, delivery: Delivery | None = None) -> ExportResult | None:
        """Run the export of a work item. A run that already ended is not run again (a redelivered item).

        A failure is raised so that the host delivers the item again, except on the last allowed
        `delivery` (the dequeue count and the host's maximum): then the run ends in Error with the reason
        and this returns, so the host deletes the item. When that terminal write fails too, its error is
        raised: the host moves the item to the poison queue, and the sweeper ends the run later.
        """
        try:
            return self._handle(item)
        except Exception as exc:
            if delivery is None or not delivery.last:
                raise
            error = _describe(exc)
            log.error(
                "export run %s failed on its last allowed %s; ending it: %s",
                item.get("runId"),
                delivery,
                error,
            )
            self.end_failed(
                item,
                reason=f"the export failed on its last allowed {delivery}, after {{attempts}} attempt(s)",
                error=error,
            )
            return ExportResult(item.get("runId") or "", statuses.RUN_ERROR, error=error)

    def _handle(self, item: dict) -> ExportResult | None:
        self._config.refresh()  # see every configuration change made before this item (other instances)
        run_id = item.get("runId")
        if not run_id:
            log.error("export work item without a runId: %s", item)
            return None
        run = self._runs.find_run(run_id)
        if run is None:
            # Queued by something that did not record the run: record it now, then run.
            run = self._runs.create_run(
                item["jobId"],
                run_id,
                trigger=item.get("trigger") or statuses.TRIGGER_RECURRENCE,
                operation="export",
                status=statuses.RUN_WAITING,
            )
        if run.get("Status") in _TERMINAL_RUN:
            log.info("export run %s already %s; nothing to do", run_id, run.get("Status"))
            return None
        try:
            job = self._config.get_job(item["jobId"], fresh=True)
        except NotFoundError:
            self._runs.end_run(
                run_id, statuses.RUN_ERROR, Errors=["the job was deleted before the export ran"]
            )
            return ExportResult(run_id, statuses.RUN_ERROR, error="job deleted")
        legal = item.get("company") or run.get("Company")
        if item.get("incremental"):
            from dataclasses import replace

            job = replace(job, incremental=True)
        return self.run_export(
            job,
            run_id,
            offer=item.get("offer", True) is not False,
            run=run,
            legal_entity=legal,
            preview_count=item.get("previewCount"),
            entities=item.get("entities"),
        )

    def handle_poison(self, item: dict) -> None:
        """The host gave up on an export work item (it reached the poison queue): end its run in Error.

        Idempotent: a run that already ended is left as it is. Raises when the write fails, so the caller
        (the poison sweeper) keeps the item and tries again.
        """
        self.end_failed(
            item,
            reason="the export was abandoned after {attempts} attempt(s): the host moved its work item to the "
            "poison queue",
        )

    def end_failed(self, item: dict, *, reason: str, error: str | None = None) -> None:
        """End the run of a failed export item in Error with `reason` (which may hold `{attempts}`) and the
        last error (`error`, else the one the worker recorded). A run that ended or never existed is left."""
        run_id = item.get("runId")
        run = self._runs.find_run(run_id) if run_id else None
        if run is None or run.get("Status") in _TERMINAL_RUN:
            return
        fault_points.hit("fail_write", run_id)
        last = (
            error
            or run.get("LastError")
            or "the worker stopped during the attempt without recording an error (killed or timed out)"
        )
        attempts = int(run.get("Attempts") or 0)
        self._runs.end_run(
            run_id,
            statuses.RUN_ERROR,
            Errors=[f"{reason.format(attempts=attempts)}; last error: {last}"[:8000]],
        )

    def run_export(
        self,
        job: Job,
        run_id: str,
        *,
        offer: bool = True,
        run: dict | None = None,
        legal_entity: str | None = None,
        preview_count: int | None = None,
        entities: list[str] | None = None,
    ) -> ExportResult:
        """Export now, in this thread. Configuration problems end the run in Error; anything else (storage
        trouble) is recorded on the run and raised, so the queue retries and finally the poison handler ends it.

        The run exports one legal entity: `legal_entity`, else the job's company. Without either, a project
        with a company-specific entity ends in Error (LegalEntityRequired) instead of mixing every legal
        entity's rows in one file."""
        run = run or self._runs.get_run(run_id)
        legal = (legal_entity or job.legal_entity or "").lower() or None
        if legal != job.legal_entity:
            from dataclasses import replace

            job = replace(job, company=legal)  # the run's legal entity, for the queries and the message
        started = now_utc()
        self._runs.update_run(
            run_id,
            Status=statuses.RUN_EXECUTING,
            StartedAt=started,
            Attempts=int(run.get("Attempts") or 0) + 1,
        )
        try:
            fault_points.hit("export", run_id)
            project = self._config.project_of(job)
            if project.operation != "export":
                raise ExportError(
                    f"the project {project.name!r} of job {job.name!r} is not an export project"
                )
            problem = self.legal_entity_problem(job, legal, project)
            if problem:
                raise ExportError(problem, code="LegalEntityRequired")
            since = self._since(job, run_id, started) if job.incremental else None
            plans = self._plans(job, project, since, entities=entities)
            for plan in plans:
                plan.limit = preview_count
            return self._export(job, project, run_id, plans, since, offer)
        except (ExportError, FormatError) as exc:
            reason = getattr(exc, "message", None) or str(exc)
            self._runs.end_run(run_id, statuses.RUN_ERROR, Errors=[reason[:8000]])
            return ExportResult(run_id, statuses.RUN_ERROR, error=reason)
        except AppError as exc:  # e.g. the project or an entity was deleted, an invalid filter
            self._runs.end_run(run_id, statuses.RUN_ERROR, Errors=[exc.message[:8000]])
            return ExportResult(run_id, statuses.RUN_ERROR, error=exc.message)
        except Exception as exc:
            self._runs.update_run(run_id, LastError=_describe(exc))
            raise

    def legal_entity_problem(
        self, job: Job, legal_entity: str | None, project: Project | None = None
    ) -> str | None:
        """Why an export of `job` cannot run without a legal entity (None when it can): a project with a
        company-specific entity exports one legal entity per run, never all of them mixed in one file."""
        if legal_entity or job.legal_entity:
            return None
        if project is None:
            try:
                project = self._config.get_project(job.project)
            except NotFoundError:
                return None
        if project.operation != "export":
            return None
        specific = []
        for pe in project.entities:
            entity = self._config.find_entity(pe.entity)
            if entity is not None and entity.company_specific:
                specific.append(entity.name)
        if not specific:
            return None
        return (
            f"the job {job.name!r} has no company, and {', '.join(specific)} of its project is company-specific: "
            "an export runs in one legal entity and never mixes legal entities in one file. Set the job's "
            "company, or export with ExportToPackage and its legalEntityId"
        )

    # Steps -------------------------------------------------------------------------------------
    def _since(self, job: Job, run_id: str, started: datetime) -> datetime | None:
        """The start of the job's last successful export run before this one, less the overlap margin
        (None: export everything). At least once: rows near the cutoff may be exported twice, never lost."""
        token = None
        for _ in range(MAX_RUN_PAGES):
            page, token = self._runs.list_runs(job.activity_id, continuation=token)
            for run in page:  # newest first
                if (
                    run.get("RunId") != run_id
                    and run.get("Operation") == "export"
                    and run.get("Status") == statuses.RUN_ENDED
                    and isinstance(run.get("StartedAt"), datetime)
                    and run["StartedAt"] < started
                ):
                    overlap = timedelta(seconds=settings.export_incremental_overlap_seconds())
                    return _utc(run["StartedAt"]) - overlap
            if not token:
                break
        return None

    def _plans(
        self, job: Job, project: Project, since_run: datetime | None, *, entities: list[str] | None = None
    ) -> list[EntityPlan]:
        from shared.services.records import build_query
        from shared.storage.entity_repo import COMPANY, MODIFIED

        plans: list[EntityPlan] = []
        used_names: set[str] = set()
        wanted = {e.casefold() for e in entities or ()}
        for index, pe in enumerate(project.ordered_entities()):
            entity = self._config.find_entity(pe.entity)
            if entity is None:
                raise ExportError(f"entity {pe.entity!r} of project {project.name!r} no longer exists")
            if wanted and not wanted & {
                pe.entity.casefold(),
                entity.name.casefold(),
                entity.label.casefold(),
            }:
                continue
            since = since_run
            if since is not None:
                # ResetVersionToken: an entity whose watermark was reset after the last run exports in full.
                reset = self._config.version_token_reset_at(project.name, entity.name)
                if reset is not None and reset >= since:
                    since = None
            try:
                fmt = self._config.get_format(pe.format)
            except NotFoundError as exc:
                raise ExportError(f"format {pe.format!r} of entity {entity.name} does not exist") from exc
            if fmt.kind not in _EXTENSIONS:
                raise ExportError(f"format {fmt.name!r} ({fmt.kind}) cannot be written by an export")
            company = job.legal_entity if entity.company_specific and job.legal_entity else None
            query, params, expr = build_query(entity, company=company, filter_text=project.filter)
            if since is not None:
                query = f"{query} and {MODIFIED} gt @since" if query else f"{MODIFIED} gt @since"
                params = {**params, "since": since}
            select = [f.name for f in entity.fields]
            if entity.company_specific:
                select.append(COMPANY)
            if since is not None:
                select.append(MODIFIED)
            plans.append(
                EntityPlan(
                    entity=entity,
                    fmt=fmt,
                    file_name=self._file_name(entity, fmt, used_names),
                    sequence=index + 1,
                    columns=_columns(entity, pe),
                    query=_spaced(query),
                    params=params,
                    expr=expr,
                    select=select,
                    sheet=_sheet_name(pe, entity) if fmt.kind == "excel" else None,
                    neutralize=project.neutralize_formulas,
                    conversions={m.target.upper(): m.conversions for m in pe.mapping if m.conversions},
                )
            )
        return plans

    @staticmethod
    def _file_name(entity: Entity, fmt: SourceFormat, used: set[str]) -> str:
        base = _FILE_NAME_JUNK.sub("_", entity.label).strip(" .") or entity.name
        name = base + _EXTENSIONS[fmt.kind]
        n = 2
        while name.casefold() in used:
            name = f"{base} ({n}){_EXTENSIONS[fmt.kind]}"
            n += 1
        used.add(name.casefold())
        return name

    def _export(
        self,
        job: Job,
        project: Project,
        run_id: str,
        plans: list[EntityPlan],
        since: datetime | None,
        offer: bool,
    ) -> ExportResult:
        refresh = "IncrementalPush" if since is not None else "FullPush"
        result = ExportResult(run_id, statuses.RUN_ENDED, refresh_type=refresh)
        with tempfile.TemporaryFile(dir=self._spool_dir) as spool:
            self._write_package(spool, job, project, plans, since, refresh)
            result.counts = {p.entity.name: p.count for p in plans}
            result.total = sum(result.counts.values())
            size = spool.tell()
            fields: dict[str, Any] = {
                "Counts": result.counts,
                "TotalRecords": result.total,
                "RefreshType": refresh,
                "Since": since,
            }
            warnings = [
                f"warning: entity {p.entity.name}: {w}"
                for p in plans
                if p.misfits
                for w in p.misfits.warnings("written empty")
            ]
            if warnings:
                log.warning("export run %s: %s", run_id, "; ".join(warnings))
                fields["Errors"] = warnings
            if result.total == 0 and job.prevent_upload_when_zero_records and offer:
                self._runs.end_run(
                    run_id, statuses.RUN_ENDED, FileUploaded=False, PackageSize=0, **_no_none(fields)
                )
                return result
            blob = outbound_blob_name(job.activity_id, run_id)
            spool.seek(0)
            self._outbound.upload_blob(blob, spool, length=size, overwrite=True, max_concurrency=4)
        result.file_uploaded, result.package_size, result.blob_name = True, size, blob
        fields.update({"FileUploaded": True, "PackageSize": size, "BlobName": blob})
        if offer:
            result.message_id = self._offer(job, run_id, blob, result, plans)
            self._runs.add_message(run_id, result.message_id)
        self._runs.end_run(run_id, statuses.RUN_ENDED, **_no_none(fields))
        return result

    def _offer(self, job: Job, run_id: str, blob: str, result: ExportResult, plans: list[EntityPlan]) -> str:
        """The outbound message partners dequeue; created once per run, however often the run is retried."""
        message_id = outbound_message_id(run_id)
        if self._messages.find_by_id(message_id) is not None:
            return message_id
        self._messages.create_message(
            job.activity_id,
            message_id,
            {
                "Status": statuses.ENQUEUED,
                "Direction": "export",
                "RunId": run_id,
                "BlobName": blob,
                "BlobId": run_id,
                "Size": result.package_size,
                "TotalRecords": result.total,
                "FileUploaded": True,
                "RefreshType": result.refresh_type,
                "Entity": plans[0].entity.name if len(plans) == 1 else None,
                "Company": job.legal_entity,
                "ExternalIdentifier": f"{job.project}-{run_id}.zip",
                "Counts": {
                    name: {"read": n, "written": n, "rejected": 0} for name, n in result.counts.items()
                },
            },
        )
        return message_id

    def _write_package(
        self,
        spool: BinaryIO,
        job: Job,
        project: Project,
        plans: list[EntityPlan],
        since: datetime | None,
        refresh: str,
    ) -> None:
        from shared.formats.package_manifest import (
            EntityFieldConversion,
            EntityMap,
            Manifest,
            ManifestEntity,
            PackageHeader,
        )
        from shared.formats.package_writer import PackageWriter

        with PackageWriter(spool, compresslevel=self._compresslevel) as writer:
            for plan in plans:
                try:
                    self._write_entity_file(writer, plan)
                except UnicodeEncodeError as exc:
                    raise ExportError(
                        f"entity {plan.entity.name}: a value cannot be written in the format's encoding "
                        f"{plan.fmt.encoding}: {exc.reason} ({exc.object[exc.start : exc.end]!r})"
                    ) from exc
                except RuntimeError as exc:
                    if "too large" in str(exc).lower():  # zipfile without zip64: over 2 GiB
                        raise ExportError(
                            f"the {plan.entity.name} file is larger than 2 GiB; export it in parts (a filter, "
                            "or incremental runs)"
                        ) from exc
                    raise
            manifest = Manifest(
                definition_group_name=project.name,
                description=project.description or job.name,
                entities=[
                    ManifestEntity(
                        entity_name=plan.entity.label,
                        input_file_path=plan.file_name,
                        source_format=plan.fmt.name,
                        excel_sheet_name=plan.sheet or "",
                        sequence_in_level=plan.sequence,
                        default_refresh_type=refresh,
                        target_entity=plan.entity.name,
                        entity_maps=[
                            EntityMap(
                                xml_field=column,
                                entity_field=f.name,
                                entity_field_conversion_list=[
                                    EntityFieldConversion.of(source, target)
                                    for source, target in plan.conversions.get(f.name.upper(), ())
                                ],
                            )
                            for f, column in sorted(plan.columns, key=lambda c: c[0].name)
                        ],
                    )
                    for plan in plans
                ],
            )
            writer.close(manifest, PackageHeader(description=project.name))

    def _pages(self, plan: EntityPlan) -> Iterator[list[dict]]:
        """The plan's rows in pages, exactly filtered (the query is only a prefilter)."""
        from shared.formats.filters import evaluate
        from shared.storage.entity_repo import MODIFIED, Misfits, conform_row

        plan.misfits = Misfits()
        rows = self._entities.iter_rows(
            plan.entity, plan.query, plan.params or None, page_size=self._page_size, select=plan.select
        )
        since = plan.params.get("since") if plan.params else None
        expr = plan.expr
        for page in _Prefetch(rows, page=self._page_size).pages():
            if expr is not None or since is not None:
                page = [
                    row
                    for row in page
                    if (expr is None or evaluate(expr, row))
                    and (since is None or (row.get(MODIFIED) is not None and _utc(row[MODIFIED]) > since))
                ]
            # After an entity change made with ?force=true, stored values may not fit their field's type:
            # written empty and reported, never a writer's crash.
            page = [conform_row(plan.entity, row, plan.misfits) for row in page]
            if plan.limit is not None:
                page = page[: max(plan.limit - plan.count, 0)]
            plan.count += len(page)
            yield page
            if plan.limit is not None and plan.count >= plan.limit:
                return

    def _write_entity_file(self, writer, plan: EntityPlan) -> None:
        """The plan's rows, in its format, as one entry of the package."""
        kind = plan.fmt.kind
        if kind == "excel":
            with tempfile.TemporaryFile(dir=self._spool_dir) as xlsx:
                write_excel(
                    xlsx,
                    plan.columns,
                    plan.fmt,
                    self._pages(plan),
                    sheet=plan.sheet,
                    neutralize=plan.neutralize,
                )
                xlsx.seek(0)
                writer.add_entity_file(plan.file_name, xlsx)
            return
        with writer.open_entity_file(plan.file_name) as entry:
            if kind == "csv":
                write_csv(entry, plan.columns, plan.fmt, self._pages(plan), neutralize=plan.neutralize)
            elif kind == "json":
                write_json(entry, plan.columns, plan.fmt, self._pages(plan))
            else:
                write_xml(
                    entry,
                    plan.columns,
                    plan.fmt,
                    self._pages(plan),
                    record=plan.entity.name.upper(),
                    attributes=kind == "xml-attribute",
                )


def _describe(exc: BaseException) -> str:
    """The error for a reason: its type and first line (Azure SDK errors go on with the whole response)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:2000]


def _no_none(fields: dict) -> dict:
    return {k: v for k, v in fields.items() if v is not None}


def _spaced(query: str | None) -> str | None:
    """azure-data-tables substitutes `@name` only as a whole space-separated word; the query holds no
    literals (values travel as parameters), so padding parentheses with spaces is always safe."""
    if not query:
        return query
    return re.sub(r"\s+", " ", query.replace("(", "( ").replace(")", " )")).strip()


def _columns(entity: Entity, pe: ProjectEntity) -> list[tuple[Field, str]]:
    """Each entity field with its column name: the project mapping's source column when mapped, else the field."""
    by_target = {m.target.upper(): m.source for m in pe.mapping if m.source}
    return [(f, by_target.get(f.name.upper(), f.name)) for f in entity.fields]


def _sheet_name(pe: ProjectEntity, entity: Entity) -> str:
    return excel_sheet_name(pe.sheet or entity.label)
