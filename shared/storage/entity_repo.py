"""Imported entity data: one table per entity, typed properties, batched parallel upserts.

Partition key: the company plus a hash bucket of the record key, so one big import spreads over
several partitions (Azure caps one partition near 2,000 entities/s). Row key: the escaped record key.
"""

from __future__ import annotations

import hashlib
import re
import threading
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables import EdmType, EntityProperty, TableClient, TableTransactionError, UpdateMode

from shared import settings
from shared.domain.schema import Entity, Field
from shared.storage import names, writer_processes
from shared.storage.retry import retry_call

BATCH_LIMIT = 100  # Table transactions take at most 100 operations, all in one partition
NUM_SUFFIX = "__num"  # a Double copy of each int and decimal, for filters (see shared/formats/filters.py)
MODIFIED = "SysModifiedAt"
COMPANY = "company"
_ESCAPE = re.compile(r"[%/\\#?|\x00-\x1f\x7f-\x9f]")

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def executor() -> ThreadPoolExecutor:
    """The process's upsert threads (shared by every import in it)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="entity-upsert")
        return _pool


def entity_table_name(entity_name: str) -> str:
    """A valid, stable table name (alphanumeric, 3-63 chars) that cannot collide after sanitizing."""
    clean = re.sub(r"[^A-Za-z0-9]", "", entity_name).lower()[:40]
    digest = hashlib.sha1(entity_name.lower().encode()).hexdigest()[:8]
    return f"{names.ENTITY_TABLE_PREFIX}{clean}{digest}"


def _key_text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return value.casefold()  # D365 keys are case-insensitive
    return str(value)


def row_key_for(entity: Entity, record: dict) -> str:
    parts = [_key_text(record[k]) for k in entity.keys]
    return "|".join(_ESCAPE.sub(lambda m: f"%{ord(m.group()):02X}", p) for p in parts)


def partition_for(company: str | None, row_key: str, buckets: int) -> str:
    bucket = zlib.crc32(row_key.encode()) % max(buckets, 1)
    return f"{(company or '_').lower()}-{bucket:02d}"


def company_range(company: str) -> tuple[str, str]:
    """PartitionKey bounds of one company: every `{company}-NN` sorts between them ('.' follows '-')."""
    company = company.lower()
    return f"{company}-", f"{company}."


def encode_record(
    entity: Entity, record: dict, company: str | None, buckets: int, modified: datetime
) -> dict:
    row_key = row_key_for(entity, record)
    row: dict[str, Any] = {
        "PartitionKey": partition_for(company if entity.company_specific else None, row_key, buckets),
        "RowKey": row_key,
        MODIFIED: modified,
    }
    if entity.company_specific:
        row[COMPANY] = (company or "").lower()
    for f in entity.fields:
        value = record.get(f.name)
        if value is None:
            continue
        if f.type == "int":
            row[f.name] = EntityProperty(int(value), EdmType.INT64)
            # Filters compare through this Double: an Int64 property never matches the Int32
            # literal azure-data-tables renders for a small int parameter.
            row[f.name + NUM_SUFFIX] = float(value)
        elif f.type == "decimal":
            row[f.name] = str(value)
            row[f.name + NUM_SUFFIX] = float(value)
        elif f.type == "datetime":
            row[f.name] = value
        elif f.type == "date":
            row[f.name] = value.isoformat()
        elif f.type == "bool":
            row[f.name] = bool(value)
        else:
            row[f.name] = str(value)
    return row


class Misfits:
    """Stored values that do not fit their field's current type, per field: how many, and the first one.

    They exist after an entity changed with `?force=true` while it had records (the rows keep the values
    they were stored with; shared/services/config_service.ConfigService._check_records_fit), or after an
    entity was deleted and defined again over its old table. Readers show them as null and report them
    here instead of failing."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._samples: dict[str, tuple[str, Any]] = {}

    def add(self, f: Field, value: Any) -> None:
        self.counts[f.name] = self.counts.get(f.name, 0) + 1
        self._samples.setdefault(f.name, (f.type, value))

    def __bool__(self) -> bool:
        return bool(self.counts)

    def warnings(self, shown_as: str = "shown as null") -> list[str]:
        """One sentence per field, e.g. `PRICE (int): 3 stored values do not fit the field's type and are
        shown as null, e.g. '12.5'`."""
        out = []
        for name, count in self.counts.items():
            ftype, sample = self._samples[name]
            text = repr(sample)
            text = text if len(text) <= 60 else text[:48] + "…"
            values = "value does" if count == 1 else "values do"
            out.append(
                f"{name} ({ftype}): {count:,} stored {values} not fit the field's type and "
                f"{'is' if count == 1 else 'are'} {shown_as}, e.g. {text}"
            )
        return out


class _Misfit(ValueError):
    pass


def _utc_aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def typed_value(f: Field, value: Any) -> Any:
    """A stored value as the Python value of the field's type (int, Decimal, date, datetime, bool, str);
    ValueError when it does not fit that type (a decimal '12.5' read as an int, text read as a date).
    Text fields take any stored value, as text. The value may be an azure-data-tables EntityProperty."""
    if isinstance(value, EntityProperty):
        value = value.value
    t = f.type
    if t == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            number = Decimal(value.strip())  # '7' and '7.0' are ints, '12.5' is not (as filters read it)
            if number.is_finite() and number == number.to_integral_value():
                return int(number)
    elif t == "decimal":
        if isinstance(value, Decimal | int | float | str) and not isinstance(value, bool):
            number = value if isinstance(value, Decimal) else Decimal(str(value).strip())
            if number.is_finite():
                return number
    elif t == "date":
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            return date.fromisoformat(value.strip())
    elif t == "datetime":
        if isinstance(value, datetime):
            return _utc_aware(value)
        if isinstance(value, str):
            return _utc_aware(datetime.fromisoformat(value.strip()))
    elif t == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
    else:  # string, enum, guid
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, datetime):
            return _utc_aware(value).astimezone(UTC).isoformat().replace("+00:00", "Z")
        if isinstance(value, date | Decimal | int | float):
            return value.isoformat() if isinstance(value, date) else str(value)
    raise _Misfit(f"{value!r} is not a {t}")


def _fit(f: Field, value: Any, misfits: Misfits | None) -> Any:
    try:
        return typed_value(f, value)
    except (ValueError, TypeError, ArithmeticError):
        if misfits is not None:
            misfits.add(f, value.value if isinstance(value, EntityProperty) else value)
        return None


def decode_record(entity: Entity, row: dict, misfits: Misfits | None = None) -> dict:
    """A stored row as typed Python values (Decimal, date, datetime), keyed by the entity's field names.
    A stored value that does not fit its field's current type is None, and counted in `misfits`."""
    out: dict[str, Any] = {}
    for f in entity.fields:
        value = row.get(f.name)
        out[f.name] = None if value is None else _fit(f, value, misfits)
    if entity.company_specific:
        out[COMPANY] = row.get(COMPANY)
    return out


def conform_row(entity: Entity, row: dict, misfits: Misfits) -> dict:
    """The stored row made safe for the export writers (shared/formats/writers.py), which convert stored
    values by the field's type: the row itself when every value fits, else a copy in which each value that
    does not fit is None (written empty) and counted in `misfits`, and a non-text value of a text field is
    its text. Cheap when nothing changed: a type check per value, a parse of decimals and dates."""
    copy: dict | None = None
    for f in entity.fields:
        value = row.get(f.name)
        if value is None or _stored_fits(f, value):
            continue
        if copy is None:
            copy = dict(row)
        copy[f.name] = _fit(f, value, misfits)
    return row if copy is None else copy


def _stored_fits(f: Field, value: Any) -> bool:
    """Whether `value` is in the form encode_record stores for the field's type (the common case)."""
    t = f.type
    if isinstance(value, EntityProperty):
        value = value.value
    if t in ("string", "enum", "guid"):
        return isinstance(value, str)
    if t == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "datetime":
        return isinstance(value, datetime)
    if t == "bool":
        return isinstance(value, bool)
    # Decimals and dates are stored as text, which the writers parse themselves: parse it once here.
    if not isinstance(value, str):
        return False
    try:
        typed_value(f, value)
    except (ValueError, TypeError, ArithmeticError):
        return False
    return True


def record_to_json(record: dict) -> dict:
    """Typed values as JSON: ISO-8601 dates and datetimes, decimals as exact strings."""
    out = {}
    for key, value in record.items():
        if isinstance(value, datetime):
            out[key] = value.astimezone(UTC).isoformat().replace("+00:00", "Z")
        elif isinstance(value, date):
            out[key] = value.isoformat()
        elif isinstance(value, Decimal):
            out[key] = str(value)
        else:
            out[key] = value
    return out


# The Table service's documented limits ("Understanding the Table service data model", learn.microsoft.com/
# rest/api/storageservices/understanding-the-table-service-data-model): a string property holds at most
# 64 KiB of UTF-16 (Azurite: more than 32 * 1024 UTF-16 units is PropertyValueTooLarge), an entity at most
# 252 properties of its own and 1 MiB in all.
MAX_STRING_UNITS = 32 * 1024
MAX_PROPERTIES = 252
MAX_ENTITY_BYTES = 1024 * 1024


def _utf16_units(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-16-le", "surrogatepass")) // 2


def store_problem(row: dict) -> str | None:
    """Why the Table service would refuse this encoded row, by its documented limits; None if it would not.

    The import rejects such rows before batching them, so a row that a later row of the same key replaces
    while both wait (shared/services/import_pipeline.process) is judged as if it had been written. The
    entity size follows the service's formula: 4 + 2 x len(PartitionKey + RowKey), and per property
    8 + 2 x len(name) + its value (strings 4 + 2 per UTF-16 unit; numbers, dates 8; booleans 1).
    """
    names = [k for k in row if k not in ("PartitionKey", "RowKey")]
    if MODIFIED not in row:
        names.append(MODIFIED)  # stamped when the row is written
    if len(names) > MAX_PROPERTIES:
        return f"the entity store refuses more than {MAX_PROPERTIES} properties; the record has {len(names)}"
    size = 4 + 2 * (len(row.get("PartitionKey", "")) + len(row.get("RowKey", "")))
    for name in names:
        value = row.get(name)
        if isinstance(value, EntityProperty):
            value = value.value
        size += 8 + 2 * len(name)
        if isinstance(value, str):
            # Every character is at most 2 UTF-16 units: only long strings need counting.
            units = _utf16_units(value) if len(value) > MAX_STRING_UNITS // 2 else len(value)
            if units > MAX_STRING_UNITS:
                return (
                    f"the entity store refuses values longer than {MAX_STRING_UNITS:,} UTF-16 characters "
                    f"(64 KiB); {name} has {units:,}"
                )
            size += 4 + 2 * units
        elif isinstance(value, bool):
            size += 1
        else:
            size += 8
    if size > MAX_ENTITY_BYTES:
        return f"the entity store refuses records larger than 1 MiB; this one is {size:,} bytes"
    return None


def submit_batch(table: TableClient, batch: list[dict], on_retry=None) -> tuple[int, list[tuple[dict, str]]]:
    """Upserts one batch (one partition, at most 100 rows): (rows written, [(row, reason)] the service refused).
    A batch the service refuses is retried row by row, so one bad row rejects only itself."""
    ops = [("upsert", row, {"mode": UpdateMode.REPLACE}) for row in batch]
    try:
        # A batch is a POST, which the SDK does not retry after a reset (shared/storage/retry.py);
        # a batch of upserts is idempotent, so it is retried here, not by restarting the file.
        retry_call(lambda: table.submit_transaction(ops), what="a batch upsert", on_retry=on_retry)
        return len(batch), []
    except TableTransactionError:
        pass
    written, failed = 0, []
    for row in batch:
        try:
            table.upsert_entity(row, mode=UpdateMode.REPLACE)
            written += 1
        except HttpResponseError as exc:
            if exc.status_code and 400 <= exc.status_code < 500 and exc.status_code not in (408, 429):
                failed.append((row, f"the entity store refused the record: {exc.message}"))
            else:
                raise
    return written, failed


class UpsertResult:
    def __init__(self) -> None:
        self.written = 0
        self.failed: list[tuple[dict, str]] = []  # (row, reason)


def collect(results: Iterable[Callable[[], tuple[int, list[tuple[dict, str]]]]]) -> UpsertResult:
    """The UpsertResult of batches or parts being written, each waited for by calling it (giving rows written
    and [(row, reason)] refused). Every one ends before the first error is raised, so none is left running."""
    result = UpsertResult()
    error: BaseException | None = None
    for get in results:
        try:
            written, failed = get()
        except BaseException as exc:  # noqa: BLE001 - raised below
            error = error or exc
            continue
        result.written += written
        result.failed.extend(failed)
    if error is not None:
        raise error
    return result


class EntityRepository:
    def __init__(self, clients, *, buckets: int = 16) -> None:
        self._clients = clients
        self._buckets = buckets

    def table(self, entity: Entity) -> TableClient:
        return self._clients.table(entity_table_name(entity.name))

    def partitions(self, company: str | None) -> list[str]:
        """Every partition that holds records of `company` (None: of a shared entity), in order."""
        return [f"{(company or '_').lower()}-{b:02d}" for b in range(max(self._buckets, 1))]

    def encode(self, entity: Entity, record: dict, company: str | None, modified: datetime) -> dict:
        return encode_record(entity, record, company, self._buckets, modified)

    def prepare_writers(self) -> None:
        """Start the writer processes now, without waiting for them (shared/storage/writer_processes.py): an
        import calls this once it has staged enough rows to use them, so they start while it stages the rest."""
        writer_processes.warm(self._clients, settings.import_writer_processes())

    def upsert_rows(
        self,
        entity: Entity,
        rows: Iterable[dict],
        *,
        on_retry: Callable[[int, BaseException], None] | None = None,
    ) -> UpsertResult:
        """Upserts encoded rows: batches of at most 100 per partition, several batches in flight.
        A batch the service refuses is retried row by row, so one bad row rejects only itself.
        `on_retry(attempt, error)` is told of each transient failure retried (from the pool's threads)."""
        return self.start_upsert(entity, rows, on_retry=on_retry)()

    def start_upsert(
        self,
        entity: Entity,
        rows: Iterable[dict],
        *,
        on_retry: Callable[[int, BaseException], None] | None = None,
    ) -> Callable[[], UpsertResult]:
        """upsert_rows without waiting: the batches are handed to the upsert pool now, and the function
        returned waits for them and gives their UpsertResult (raising what a batch raised). The import's
        writer keeps two of these in flight, so the pool never idles while it reads the next rows."""
        table = self.table(entity)
        by_partition: dict[str, dict[str, dict]] = defaultdict(dict)
        for row in rows:
            by_partition[row["PartitionKey"]][row["RowKey"]] = row  # last one wins, as in a file
        batches = []
        for partition_rows in by_partition.values():
            items = list(partition_rows.values())
            batches.extend(items[i : i + BATCH_LIMIT] for i in range(0, len(items), BATCH_LIMIT))
        parts = None
        if sum(len(batch) for batch in batches) >= writer_processes.MIN_ROWS:
            parts = writer_processes.start_window(
                self._clients, table, batches, on_retry, settings.import_writer_processes()
            )
        if parts is None:
            futures = [executor().submit(submit_batch, table, batch, on_retry) for batch in batches]
            results = [future.result for future in futures]
        else:
            results = [part.result for part in parts]

        return lambda: collect(results)

    def count_rows(self, entity: Entity, cap: int) -> int:
        """How many records the entity's table holds, counting at most `cap` (a scan of row keys only,
        1,000 per page); 0 when the table does not exist."""
        count = 0
        try:
            for _ in self.table(entity).list_entities(results_per_page=1000, select=["RowKey"]):
                count += 1
                if count >= cap:
                    break
        except ResourceNotFoundError:
            return 0
        return count

    def iter_rows(
        self,
        entity: Entity,
        query: str | None = None,
        parameters: dict | None = None,
        *,
        page_size: int = 1000,
        select: list[str] | None = None,
    ) -> Iterator[dict]:
        table = self.table(entity)
        if query:
            pages = table.query_entities(
                query, parameters=parameters, results_per_page=page_size, select=select
            )
        else:
            pages = table.list_entities(results_per_page=page_size, select=select)
        yield from pages

    def list_page(
        self,
        entity: Entity,
        query: str | None,
        parameters: dict | None,
        *,
        top: int,
        continuation: Any = None,
    ) -> tuple[list[dict], Any]:
        table = self.table(entity)
        if query:
            pager = table.query_entities(query, parameters=parameters, results_per_page=top)
        else:
            pager = table.list_entities(results_per_page=top)
        pages = pager.by_page(continuation_token=continuation)
        return list(next(pages, [])), pages.continuation_token

    def iter_pages(
        self,
        entity: Entity,
        query: str | None,
        parameters: dict | None,
        *,
        page_size: int = 1000,
        continuation: Any = None,
        select: list[str] | None = None,
    ) -> Iterator[tuple[Any, list[dict], Any]]:
        """The Table pages of a query from `continuation` on, one at a time, as (the continuation that starts
        the page, its rows, the continuation of the next page or None): a reader can stop in the middle of a
        page and resume at its start. Nothing when the table does not exist yet."""
        table = self.table(entity)
        if query:
            pager = table.query_entities(
                query, parameters=parameters, results_per_page=page_size, select=select
            )
        else:
            pager = table.list_entities(results_per_page=page_size, select=select)
        pages = pager.by_page(continuation_token=continuation)
        start = continuation
        try:
            for page in pages:
                rows = list(page)
                following = pages.continuation_token
                yield start, rows, following
                if not following:
                    return
                start = following
        except ResourceNotFoundError:
            return

    def get_row(self, entity: Entity, company: str | None, record: dict) -> dict | None:
        """The stored row of the record whose key values `record` holds, in `company` (None for a shared
        entity), by a point read; None when there is none."""
        row_key = row_key_for(entity, record)
        partition = partition_for(company if entity.company_specific else None, row_key, self._buckets)
        try:
            return self.table(entity).get_entity(partition, row_key)
        except ResourceNotFoundError:
            return None
