"""Export runs: the entity store to a D365 data package in blob storage, and an outbound message to dequeue.

start() (the scheduler's export_starter, "run now", the package API) records a run (Waiting) and puts
an export work item on the export queue. The queue-triggered worker (handle) then, for each entity of
the job's export project in sequence order:

- reads the entity's table page by page (company scope, the project's filter compiled to a
  parameterized query and re-checked exactly with filters.evaluate, and for incremental jobs only
  rows changed since the last successful run started), with the next page fetched while the current
  one is written;
- writes the rows in the entity's source data format (CSV with D365's conventions, XML-Element,
  XML-Attribute, JSON lines or Excel) straight into a zip entry of a PackageWriter spooled to a
  temporary file, so memory holds about two pages whatever the table size;

then uploads the package to `outbound/{jobId}/{runId}.zip` and records an outbound message
(`Enqueued`) that partners dequeue, download and ack (outbound_service). With "prevent upload when
zero records", an empty run uploads and offers nothing.

Retries are safe: the blob name and the message ID derive from the run ID, so a retried run
overwrites its own package and never offers it twice.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import queue
import re
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, BinaryIO

from shared import settings
from shared.domain import statuses
from shared.domain.config import Job, Project, ProjectEntity
from shared.domain.schema import Entity, Field, SourceFormat
from shared.errors import AppError, FormatError, NotFoundError
from shared.services import work_items
from shared.storage.message_repo import now_utc

log = logging.getLogger(__name__)

PAGE_SIZE = 1000  # rows per Table query page (the service's maximum)
PREFETCH_PAGES = 2  # pages read ahead while the current one is written
COMPRESS_LEVEL = 6
MAX_RUN_PAGES = 200  # pages of run history searched for the last successful run (50 runs each)
_MESSAGE_NS = uuid.UUID("9a3c0e4e-5f7d-4a59-b0b4-2f3b9e7f0a11")  # outbound message ID = uuid5(ns, runId)
_TERMINAL_RUN = {statuses.RUN_ENDED, statuses.RUN_ERROR, statuses.RUN_CANCELED}
_FILE_NAME_JUNK = re.compile(r'[\\/:*?"<>|\x00-\x1f]')
_SHEET_JUNK = re.compile(r"[\[\]:*?/\\]")
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
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


# Values as text ------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """azure-data-tables hands Int64 (and some other) values back as EntityProperty(value, type)."""
    return value.value if hasattr(value, "edm_type") and hasattr(value, "value") else value


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return _utc(value)
    return _utc(datetime.fromisoformat(str(value).replace("Z", "+00:00")))


def _text_converter(f: Field, fmt: SourceFormat) -> Callable[[Any], str]:
    """Stored value → the text a D365 file carries: 'yyyy-MM-dd HH:mm:ss' datetimes (UTC), exact decimals
    in plain notation, Yes/No booleans. Formats with their own date/decimal conventions are honoured."""
    from shared.formats.conversion import strptime_pattern

    if f.type == "int":
        return lambda v: str(int(_plain(v)))
    if f.type == "decimal":
        comma = fmt.decimal_separator == ","

        def decimal_text(v: Any) -> str:
            text = format(Decimal(str(_plain(v))), "f")  # exact, never exponent notation
            return text.replace(".", ",") if comma else text

        return decimal_text
    if f.type == "date":
        pattern = strptime_pattern(fmt.date_format or "%Y-%m-%d")
        if pattern == "%Y-%m-%d":
            return lambda v: v.isoformat()[:10] if isinstance(v, date) else str(_plain(v))[:10]
        return lambda v: (v if isinstance(v, date) else date.fromisoformat(str(_plain(v))[:10])).strftime(
            pattern
        )
    if f.type == "datetime":
        pattern = strptime_pattern(fmt.datetime_format or "%Y-%m-%d %H:%M:%S")
        return lambda v: _as_datetime(_plain(v)).strftime(pattern)
    if f.type == "bool":
        return lambda v: "Yes" if _plain(v) in (True, "true", "True", 1) else "No"
    return lambda v: str(_plain(v))


def _json_converter(f: Field) -> Callable[[Any], Any]:
    """Stored value → JSON: numbers for int, booleans, exact decimal strings, ISO-8601 dates and datetimes."""
    if f.type == "int":
        return lambda v: int(_plain(v))
    if f.type == "decimal":
        return lambda v: format(Decimal(str(_plain(v))), "f")
    if f.type == "bool":
        return lambda v: bool(_plain(v))
    if f.type == "date":
        return lambda v: str(_plain(v))[:10]
    if f.type == "datetime":
        return lambda v: _as_datetime(_plain(v)).isoformat().replace("+00:00", "Z")
    return lambda v: str(_plain(v))


def _xml_text(text: str) -> str:
    text = _XML_INVALID.sub("", text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#xD;")


def _xml_attr(text: str) -> str:
    return _xml_text(text).replace('"', "&quot;").replace("\n", "&#xA;").replace("\t", "&#x9;")


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
    def start(self, job: Job, trigger: str, *, run_id: str | None = None, offer: bool = True) -> str:
        """Record a Waiting run and queue its work item; returns the run (execution) ID.

        `offer=False` (package API exports) uploads the package without creating an outbound message.
        """
        run_id = run_id or str(uuid.uuid4())
        self._runs.create_run(
            job.activity_id, run_id, trigger=trigger, operation="export", status=statuses.RUN_WAITING
        )
        self._queue.send_message(
            work_items.encode(
                kind=work_items.KIND_EXPORT,
                jobId=job.activity_id,
                runId=run_id,
                trigger=trigger,
                offer=None if offer else False,
            )
        )
        return run_id

    # The worker ----------------------------------------------------------------------------------
    def handle(self, item: dict) -> ExportResult | None:
        """Run the export of a work item. A run that already ended is not run again (a redelivered item)."""
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
        return self.run_export(job, run_id, offer=item.get("offer", True) is not False, run=run)

    def handle_poison(self, item: dict) -> None:
        """The host gave up on an export work item: end its run in Error with the last failure."""
        run_id = item.get("runId")
        run = self._runs.find_run(run_id) if run_id else None
        if run is None or run.get("Status") in _TERMINAL_RUN:
            return
        last = run.get("LastError") or "the export worker stopped without reporting an error"
        self._runs.end_run(
            run_id,
            statuses.RUN_ERROR,
            Errors=[
                f"the export failed after {run.get('Attempts') or 0} attempt(s); last error: {last}"[:8000]
            ],
        )

    def run_export(
        self, job: Job, run_id: str, *, offer: bool = True, run: dict | None = None
    ) -> ExportResult:
        """Export now, in this thread. Configuration problems end the run in Error; anything else (storage
        trouble) is recorded on the run and raised, so the queue retries and finally the poison handler ends it."""
        run = run or self._runs.get_run(run_id)
        started = now_utc()
        self._runs.update_run(
            run_id,
            Status=statuses.RUN_EXECUTING,
            StartedAt=started,
            Attempts=int(run.get("Attempts") or 0) + 1,
        )
        try:
            project = self._config.get_project(job.project)
            if project.operation != "export":
                raise ExportError(
                    f"the project {project.name!r} of job {job.name!r} is not an export project"
                )
            since = self._since(job, run_id, started) if job.incremental else None
            plans = self._plans(job, project, since)
            return self._export(job, project, run_id, plans, since, offer)
        except (ExportError, FormatError) as exc:
            reason = getattr(exc, "message", None) or str(exc)
            self._runs.end_run(run_id, statuses.RUN_ERROR, Errors=[reason[:8000]])
            return ExportResult(run_id, statuses.RUN_ERROR, error=reason)
        except AppError as exc:  # e.g. the project or an entity was deleted, an invalid filter
            self._runs.end_run(run_id, statuses.RUN_ERROR, Errors=[exc.message[:8000]])
            return ExportResult(run_id, statuses.RUN_ERROR, error=exc.message)
        except Exception as exc:
            self._runs.update_run(run_id, LastError=f"{type(exc).__name__}: {exc}"[:2000])
            raise

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

    def _plans(self, job: Job, project: Project, since: datetime | None) -> list[EntityPlan]:
        from shared.services.records import build_query
        from shared.storage.entity_repo import COMPANY, MODIFIED

        plans: list[EntityPlan] = []
        used_names: set[str] = set()
        for index, pe in enumerate(project.ordered_entities()):
            entity = self._config.find_entity(pe.entity)
            if entity is None:
                raise ExportError(f"entity {pe.entity!r} of project {project.name!r} no longer exists")
            try:
                fmt = self._config.get_format(pe.format)
            except NotFoundError as exc:
                raise ExportError(f"format {pe.format!r} of entity {entity.name} does not exist") from exc
            if fmt.kind not in _EXTENSIONS:
                raise ExportError(f"format {fmt.name!r} ({fmt.kind}) cannot be written by an export")
            company = job.company if entity.company_specific and job.company else None
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
            if result.total == 0 and job.prevent_upload_when_zero_records:
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
                "Company": job.company,
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
        from shared.formats.package_manifest import EntityMap, Manifest, ManifestEntity, PackageHeader
        from shared.formats.package_writer import PackageWriter

        with PackageWriter(spool, compresslevel=self._compresslevel) as writer:
            for plan in plans:
                try:
                    if plan.fmt.kind == "excel":
                        self._write_excel(writer, plan)
                    else:
                        with writer.open_entity_file(plan.file_name) as entry:
                            _WRITERS[plan.fmt.kind](entry, plan, self._pages(plan))
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
                            EntityMap(xml_field=column, entity_field=f.name)
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
        from shared.storage.entity_repo import MODIFIED

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
            plan.count += len(page)
            yield page

    def _write_excel(self, writer, plan: EntityPlan) -> None:
        from openpyxl import Workbook

        workbook = Workbook(write_only=True)
        sheet = workbook.create_sheet(plan.sheet or "Sheet1")
        sheet.append([column for _, column in plan.columns])
        converters = [(f.name, _text_converter(f, plan.fmt)) for f, _ in plan.columns]
        for page in self._pages(plan):
            for row in page:
                values = []
                for name, convert in converters:
                    value = row.get(name)
                    values.append(None if value is None else convert(value))
                sheet.append(values)
        with tempfile.TemporaryFile(dir=self._spool_dir) as xlsx:
            workbook.save(xlsx)
            xlsx.seek(0)
            writer.add_entity_file(plan.file_name, xlsx)


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
    return (_SHEET_JUNK.sub("_", pe.sheet or entity.label).strip("'") or "Sheet1")[:31]


# Entity file writers: (zip entry, plan, pages of rows) ---------------------------------------------


def _encoding(fmt: SourceFormat) -> tuple[str, bytes]:
    """The codec and the BOM to start the file with. D365's CSV is UTF-8 without a BOM; CSV-Unicode is
    UTF-16LE with one."""
    name = (fmt.encoding or "utf-8").lower().replace("_", "-")
    if name in ("utf-16", "utf-16-le", "utf-16le"):
        return "utf-16-le", b"\xff\xfe"
    if name in ("utf-16-be", "utf-16be"):
        return "utf-16-be", b"\xfe\xff"
    if name == "utf-8-sig":
        return "utf-8", b"\xef\xbb\xbf"
    return name, b""


def _write_csv(entry: BinaryIO, plan: EntityPlan, pages: Iterator[list[dict]]) -> None:
    fmt = plan.fmt
    codec, bom = _encoding(fmt)
    buffer = io.StringIO()
    if fmt.text_qualifier:
        writer = csv.writer(
            buffer,
            delimiter=fmt.delimiter,
            quotechar=fmt.text_qualifier,
            quoting=csv.QUOTE_MINIMAL,  # quote only a value that holds the delimiter, a quote or a line break
            doublequote=True,
            lineterminator="\r\n",
        )
    else:
        writer = csv.writer(
            buffer, delimiter=fmt.delimiter, quoting=csv.QUOTE_NONE, escapechar="\\", lineterminator="\r\n"
        )
    converters = [(f.name, _text_converter(f, fmt)) for f, _ in plan.columns]
    entry.write(bom)
    if fmt.header_row:
        writer.writerow([column for _, column in plan.columns])
    for page in pages:
        rows = []
        for row in page:
            values = []
            for name, convert in converters:
                value = row.get(name)
                values.append("" if value is None else convert(value))
            rows.append(values)
        writer.writerows(rows)
        entry.write(buffer.getvalue().encode(codec))
        buffer.seek(0)
        buffer.truncate()
    entry.write(buffer.getvalue().encode(codec))


def _write_xml(entry: BinaryIO, plan: EntityPlan, pages: Iterator[list[dict]], *, attributes: bool) -> None:
    """<Document><ENTITY><FIELD>value</FIELD>…</ENTITY>…</Document> (XML-Element) or
    <Document><ENTITY FIELD="value" …/>…</Document> (XML-Attribute), as D365 writes them."""
    codec, bom = _encoding(plan.fmt)
    record = plan.entity.name.upper()
    converters = [(f.name, column, _text_converter(f, plan.fmt)) for f, column in plan.columns]
    declared = "utf-16" if codec.startswith("utf-16") else codec
    entry.write(bom + f'<?xml version="1.0" encoding="{declared}"?>\r\n<Document>\r\n'.encode(codec))
    for page in pages:
        parts: list[str] = []
        for row in page:
            if attributes:
                parts.append(f"  <{record}")
                for name, column, convert in converters:
                    value = row.get(name)
                    parts.append(f' {column}="{"" if value is None else _xml_attr(convert(value))}"')
                parts.append(" />\r\n")
            else:
                parts.append(f"  <{record}>")
                for name, column, convert in converters:
                    value = row.get(name)
                    if value is None:
                        parts.append(f"<{column} />")
                    else:
                        parts.append(f"<{column}>{_xml_text(convert(value))}</{column}>")
                parts.append(f"</{record}>\r\n")
        entry.write("".join(parts).encode(codec))
    entry.write("</Document>\r\n".encode(codec))


def _write_json(entry: BinaryIO, plan: EntityPlan, pages: Iterator[list[dict]]) -> None:
    """JSON Lines: one object per record, keyed by column, with exact decimal strings and ISO dates."""
    codec, bom = _encoding(plan.fmt)
    converters = [(f.name, column, _json_converter(f)) for f, column in plan.columns]
    entry.write(bom)
    for page in pages:
        lines = []
        for row in page:
            obj = {}
            for name, column, convert in converters:
                value = row.get(name)
                obj[column] = None if value is None else convert(value)
            lines.append(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))
        if lines:
            entry.write(("\n".join(lines) + "\n").encode(codec))


_WRITERS: dict[str, Callable[[BinaryIO, EntityPlan, Iterator[list[dict]]], None]] = {
    "csv": _write_csv,
    "xml-element": lambda e, p, r: _write_xml(e, p, r, attributes=False),
    "xml-attribute": lambda e, p, r: _write_xml(e, p, r, attributes=True),
    "json": _write_json,
}
