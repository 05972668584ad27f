"""One entity file to entity rows, in two phases like D365's staging and target:

preprocess: read (streamed), transform, map, convert and encode every record into a spool on local disk,
            rejecting bad records with reasons. A file that cannot be read fails here, before any write.
process:    upsert the spooled rows in batches.
"""

from __future__ import annotations

import csv
import io
import json
import pickle
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO

from shared.domain.schema import Entity, SourceFormat
from shared.errors import FormatError

WINDOW_BATCHES = 32  # full Table batches handed to the parallel upsert at once
MAX_TRANSFORM_INPUT = 256 * 1024 * 1024
ERROR_SUMMARY_LINES = 5


@dataclass
class EntityInput:
    entity: Entity
    fmt: SourceFormat
    open_stream: Callable[[], BinaryIO]
    mapping: list[dict] = field(default_factory=list)
    transforms: list[Callable[[bytes], bytes]] = field(default_factory=list)
    sheet: str | None = None
    source_name: str | None = None  # the element or label the file uses for the entity


@dataclass
class EntityOutcome:
    entity: str
    read: int = 0
    written: int = 0
    rejected: int = 0
    error: str | None = None
    status: str | None = None  # per-entity status, set for the entities of a data package

    def counts(self) -> dict:
        out: dict = {"read": self.read, "written": self.written, "rejected": self.rejected}
        if self.status:
            out["status"] = self.status
        if self.error:
            out["error"] = self.error[:1000]
        return out


class ErrorFile:
    """Rejected records as CSV (entity, line, reason, values), spooled to disk past 1 MB."""

    def __init__(self) -> None:
        self._raw = tempfile.SpooledTemporaryFile(max_size=1024 * 1024, mode="w+b")
        self._text = io.TextIOWrapper(self._raw, encoding="utf-8", newline="", write_through=True)
        self._writer = csv.writer(self._text)
        self._writer.writerow(["Entity", "Line", "Reason", "Values"])
        self.count = 0
        self.summary: list[str] = []

    def add(self, entity: str, line: int, reason: str, values: dict | None) -> None:
        self.count += 1
        if len(self.summary) < ERROR_SUMMARY_LINES:
            self.summary.append(f"{entity} line {line}: {reason}")
        shown = json.dumps(values, ensure_ascii=False, default=str) if values is not None else ""
        self._writer.writerow([entity, line, reason, shown[:10_000]])

    def upload(self, container, name: str) -> None:
        self._text.flush()
        self._raw.seek(0)
        container.upload_blob(name, self._raw, overwrite=True, content_settings=_csv_settings())

    def close(self) -> None:
        self._text.close()


def _csv_settings():
    from azure.storage.blob import ContentSettings

    return ContentSettings(content_type="text/csv; charset=utf-8")


def _apply_transforms(stream: BinaryIO, transforms: list[Callable[[bytes], bytes]]) -> BinaryIO:
    # XSLT needs the whole document as a tree; the input is bounded instead of streamed.
    data = stream.read(MAX_TRANSFORM_INPUT + 1)
    if len(data) > MAX_TRANSFORM_INPUT:
        raise FormatError(f"the file is larger than {MAX_TRANSFORM_INPUT} bytes, the limit for XSLT input")
    for transform in transforms:
        data = transform(data)
    return io.BytesIO(data)


def preprocess(
    inp: EntityInput, *, encode: Callable[[dict], dict], errors: ErrorFile
) -> tuple[EntityOutcome, Any]:
    """Returns the outcome so far and the spool of encoded rows (a temporary file), positioned at 0."""
    from shared.formats.mapping import build_mapper
    from shared.formats.readers import ERROR_KEY, read_rows

    outcome = EntityOutcome(entity=inp.entity.name)
    spool = tempfile.TemporaryFile()
    stream = inp.open_stream()
    try:
        if inp.transforms:
            stream = _apply_transforms(stream, inp.transforms)
        mapper = None
        pickler = pickle.Pickler(spool, protocol=pickle.HIGHEST_PROTOCOL)
        for line, values in read_rows(
            stream, inp.fmt, entity_name=inp.source_name or inp.entity.name, sheet=inp.sheet
        ):
            if mapper is None:
                columns = [c for c in values if c != ERROR_KEY] if inp.fmt.kind in ("csv", "excel") else None
                try:
                    mapper = build_mapper(inp.entity, columns, inp.mapping, inp.fmt)
                except ValueError as exc:
                    raise FormatError(str(exc)) from exc
            outcome.read += 1
            mapped = mapper.map_row(values)
            if mapped.errors or mapped.record is None:
                outcome.rejected += 1
                errors.add(inp.entity.name, line, "; ".join(mapped.errors) or "rejected", values)
                continue
            pickler.dump((line, encode(mapped.record)))
            pickler.clear_memo()
    except BaseException:
        spool.close()
        raise
    finally:
        stream.close()
    spool.seek(0)
    return outcome, spool


def process(
    spool,
    outcome: EntityOutcome,
    *,
    upsert: Callable[[list[dict]], Any],
    errors: ErrorFile,
    after_chunk: Callable[[int], None] | None = None,
) -> EntityOutcome:
    """Upserts the spooled rows; rows the store refuses become rejected records.

    Rows are gathered per partition across the whole spool, so each Table transaction is a full batch
    of 100 (grouping per fixed-size chunk instead leaves many part-filled batches), and full batches
    go to `upsert` WINDOW_BATCHES at a time, which runs them in parallel.
    """
    from shared.storage.entity_repo import BATCH_LIMIT, MODIFIED
    from shared.storage.message_repo import now_utc

    pending: dict[str, dict[str, tuple[int, dict]]] = {}  # partition -> row key -> (line, row)
    ready: list[list[tuple[int, dict]]] = []
    calls = 0

    def send(batches: list[list[tuple[int, dict]]]) -> None:
        nonlocal calls
        rows = [item for batch in batches for item in batch]
        if not rows:
            return
        lines = {row["PartitionKey"] + "\x00" + row["RowKey"]: line for line, row in rows}
        stamp = now_utc()  # the write time, not the read time: incremental exports compare with it
        for _, row in rows:
            row[MODIFIED] = stamp
        result = upsert([row for _, row in rows])
        outcome.written += result.written
        for row, reason in result.failed:
            outcome.rejected += 1
            errors.add(
                outcome.entity,
                lines.get(row["PartitionKey"] + "\x00" + row["RowKey"], 0),
                reason,
                {k: v for k, v in row.items() if k not in ("PartitionKey", "RowKey")},
            )
        calls += 1
        if after_chunk:
            after_chunk(calls)

    while True:
        try:
            # One unpickler per record: each record was pickled with a fresh memo (the pickler's is
            # cleared after every dump), and MEMOIZE numbers entries from the memo's size, so a
            # reused unpickler would resolve a record's back-references to an earlier record's objects.
            line, row = pickle.Unpickler(spool).load()
        except EOFError:
            break
        partition = pending.setdefault(row["PartitionKey"], {})
        if row["RowKey"] in partition:
            # The same key again: what is pending must be written first, so the later row wins.
            ready.extend(list(b.values()) for b in pending.values() if b)
            pending.clear()
            send(ready)
            ready.clear()
            partition = pending.setdefault(row["PartitionKey"], {})
        partition[row["RowKey"]] = (line, row)
        if len(partition) >= BATCH_LIMIT:
            ready.append(list(partition.values()))
            del pending[row["PartitionKey"]]
            if len(ready) >= WINDOW_BATCHES:
                send(ready)
                ready.clear()
    ready.extend(list(b.values()) for b in pending.values() if b)
    send(ready)
    spool.close()
    return outcome


def modified_now() -> datetime:
    from shared.storage.message_repo import now_utc

    return now_utc()
