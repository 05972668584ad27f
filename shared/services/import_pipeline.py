"""The two steps of one entity's import, like D365's staging and target (the message-level pipeline that
calls them, with checkpoints, is shared/services/message_import.py):

preprocess: read (streamed), transform, map, convert and encode every record into a spool on local disk,
            rejecting bad records with reasons. A file that cannot be read fails here, before any write.
process:    upsert the spooled rows in batches, from wherever the spool is positioned (a resumed attempt
            starts at its checkpoint), reporting checkpoints where every row read so far is written.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import pickle
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO

from shared.domain.schema import Entity, SourceFormat
from shared.errors import FormatError

WINDOW_BATCHES = 32  # full Table batches handed to the parallel upsert at once
# Windows being written while the next is read from the spool: with two, the upsert pool always has a window
# queued behind the one it is finishing, so it never idles on a window's last batch or on the reading.
WINDOWS_IN_FLIGHT = 2
# Rows waiting for a full batch are written early past this many pickled bytes (rows can be up to the
# readers' record limit, and thousands wait), or once this many rows were replaced by later rows of the
# same key (each replaced row's line is kept for the error file): memory stays bounded either way.
MAX_PENDING_BYTES = 32 * 1024 * 1024
MAX_PENDING_REPLACED = 100_000
MAX_TRANSFORM_INPUT = (
    256 * 1024 * 1024
)  # bytes of XML an XSLT may read (the worker's memory limit binds first)
ERROR_SUMMARY_LINES = 5


@dataclass
class EntityInput:
    entity: Entity
    fmt: SourceFormat
    open_stream: Callable[[], BinaryIO]
    mapping: list[dict] = field(default_factory=list)
    transforms: list[Callable[[BinaryIO], BinaryIO]] = field(default_factory=list)  # stream in, stream out
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
    # Columns of the file that feed no field: not imported (as in D365), so listed rather than lost unseen.
    unmapped: list[str] = field(default_factory=list)
    unmapped_more: bool = False

    def counts(self) -> dict:
        out: dict = {"read": self.read, "written": self.written, "rejected": self.rejected}
        if self.status:
            out["status"] = self.status
        if self.error:
            out["error"] = self.error[:1000]
        if self.unmapped:
            out["unmappedColumns"] = self.unmapped + (["..."] if self.unmapped_more else [])
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
        """The whole file so far to blob `name` (it can go on growing afterwards)."""
        from shared.storage.blob_io import upload_stream

        self._text.flush()
        self._raw.seek(0)
        try:
            upload_stream(container, name, self._raw, content_settings=_csv_settings())
        finally:
            self._raw.seek(0, io.SEEK_END)

    def restore(self, stream: BinaryIO, *, count: int, summary: list[str]) -> None:
        """Start from an earlier attempt's file (header included, as `upload` wrote it) and its count and
        summary, so that a resumed attempt adds only what it rejects itself."""
        self._text.flush()
        self._raw.seek(0)
        self._raw.truncate()
        while chunk := stream.read(1024 * 1024):
            self._raw.write(chunk)
        self.count = count
        self.summary = list(summary)[:ERROR_SUMMARY_LINES]

    def close(self) -> None:
        self._text.close()


def _csv_settings():
    from azure.storage.blob import ContentSettings

    return ContentSettings(content_type="text/csv; charset=utf-8")


def _apply_transforms(stream: BinaryIO, transforms: list[Callable[[BinaryIO], BinaryIO]]) -> BinaryIO:
    """The input through each XSLT in turn. XSLT needs the whole document as a tree, which is built in a
    worker process under memory and time limits (shared/formats/xslt.py): the input is staged to a file
    there and each result comes back as a temporary file, so this process never holds the document."""
    current = stream
    for transform in transforms:
        result = transform(current)
        if current is not stream:
            current.close()  # an intermediate result: a temporary file, deleted on close
        current = result
    if current is not stream:
        stream.close()
    return current


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
        if mapper is not None:
            outcome.unmapped, outcome.unmapped_more = mapper.unmapped(), mapper.unmapped_more
    except BaseException:
        spool.close()
        raise
    finally:
        stream.close()
    spool.seek(0)
    return outcome, spool


@dataclass(slots=True)
class _Pending:
    """A row waiting for its batch, and the lines of earlier rows with its key that it replaced."""

    line: int
    row: dict
    size: int
    replaced: list[int] = field(default_factory=list)


def process(
    spool,
    outcome: EntityOutcome,
    *,
    upsert: Callable[[list[dict]], Any] | None = None,
    errors: ErrorFile,
    after_chunk: Callable[[int], None] | None = None,
    checkpoint_rows: int = 0,
    on_checkpoint: Callable[[int], None] | None = None,
    start_upsert: Callable[[list[dict]], Callable[[], Any]] | None = None,
) -> EntityOutcome:
    """Upserts the spooled rows from the spool's current position; rows the store refuses become rejected
    records. Closes the spool.

    `upsert(rows)` writes rows and gives an UpsertResult (shared/storage/entity_repo.py); or
    `start_upsert(rows)` starts writing them and gives a function that waits and gives it. With
    `start_upsert`, up to WINDOWS_IN_FLIGHT windows are written while the next rows are read. A row whose key
    is in a window still being written waits for that window, so the last row of a key in file order is the
    one stored; counts, rejections and `after_chunk` follow the windows' order.

    Checkpoints: with `checkpoint_rows` > 0, after each that many rows read every waiting row is written
    (part-filled batches too) and `on_checkpoint(offset)` is called: every row before `offset` (bytes of
    the spool) is then written or rejected and counted in `outcome`, so a later attempt may start there.

    Rows are gathered per partition across the whole spool, so each Table transaction is a full batch
    of 100 (grouping per fixed-size chunk instead leaves many part-filled batches), and full batches
    go to `upsert` WINDOW_BATCHES at a time, which runs them in parallel.

    Repeated keys: a row whose key is still waiting replaces the waiting row, so the last row in file
    order wins and the cost stays one batch slot per key, not one round trip per repetition (20,000 rows
    of one key took 20,000 sequential writes). Counts stay those of writing every row in order: rows the
    store's documented limits refuse are rejected before they wait (entity_repo.store_problem), and a
    replaced row counts as written when the row that replaced it is written. Should the store still refuse
    that row, the rows it replaced are rejected with it, each with a reason naming it (none reached the store).
    """
    from shared.storage.entity_repo import BATCH_LIMIT, MODIFIED, store_problem
    from shared.storage.message_repo import now_utc

    if start_upsert is None:
        if upsert is None:
            raise TypeError("process() needs upsert or start_upsert")

        def start_upsert(rows: list[dict], write=upsert) -> Callable[[], Any]:
            result = write(rows)
            return lambda: result

    pending: dict[str, dict[str, _Pending]] = {}  # partition -> row key -> waiting row
    ready: list[list[_Pending]] = []
    held_bytes = 0  # pickled size of the rows in `pending` and `ready`
    replaced = 0  # rows replaced while waiting, since the last write
    calls = 0
    since_checkpoint = 0
    # Windows being written, oldest first: (wait for it, its entries, their keys), and their pickled bytes.
    in_flight: deque[tuple[Callable[[], Any], list[_Pending], set[str]]] = deque()
    in_flight_bytes = 0

    def send(batches: list[list[_Pending]]) -> None:
        nonlocal held_bytes, in_flight_bytes
        entries = [entry for batch in batches for entry in batch]
        if not entries:
            return
        size = sum(entry.size for entry in entries)
        held_bytes -= size
        # At most WINDOWS_IN_FLIGHT windows at once, and (memory) at most MAX_PENDING_BYTES besides this one.
        while len(in_flight) >= WINDOWS_IN_FLIGHT or (in_flight and in_flight_bytes > MAX_PENDING_BYTES):
            settle_oldest()
        stamp = now_utc()  # the write time, not the read time: incremental exports compare with it
        for entry in entries:
            entry.row[MODIFIED] = stamp
        wait = start_upsert([entry.row for entry in entries])
        keys = {entry.row["PartitionKey"] + "\x00" + entry.row["RowKey"] for entry in entries}
        in_flight.append((wait, entries, keys))
        in_flight_bytes += size

    def settle_oldest() -> None:
        nonlocal calls, in_flight_bytes
        wait, entries, _ = in_flight.popleft()
        in_flight_bytes -= sum(entry.size for entry in entries)
        result = wait()
        refused = {row["PartitionKey"] + "\x00" + row["RowKey"]: reason for row, reason in result.failed}
        for entry in entries:
            row = entry.row
            reason = refused.get(row["PartitionKey"] + "\x00" + row["RowKey"])
            if reason is None:
                outcome.written += 1 + len(entry.replaced)
                continue
            outcome.rejected += 1 + len(entry.replaced)
            values = {k: v for k, v in row.items() if k not in ("PartitionKey", "RowKey")}
            errors.add(outcome.entity, entry.line, reason, values)
            for line in entry.replaced:
                errors.add(
                    outcome.entity,
                    line,
                    f"not written: line {entry.line} has the same key and replaced this row before it was "
                    f"written, and the entity store refused line {entry.line}",
                    None,
                )
        calls += 1
        if after_chunk:
            after_chunk(calls)

    def settle_all() -> None:
        while in_flight:
            settle_oldest()

    def settle_key(key: str) -> None:
        """Wait for the windows up to the last one writing `key` (windows settle in order)."""
        last = max((i for i, (_, _, keys) in enumerate(in_flight) if key in keys), default=-1)
        for _ in range(last + 1):
            settle_oldest()

    def send_ready() -> None:
        nonlocal replaced
        for batch in ready:
            for entry in batch:
                replaced -= len(entry.replaced)
        send(list(ready))
        ready.clear()

    def send_all() -> None:
        ready.extend(list(b.values()) for b in pending.values() if b)
        pending.clear()
        send_ready()

    def read_all() -> None:
        nonlocal held_bytes, replaced, since_checkpoint
        while True:
            start = spool.tell()
            try:
                # One unpickler per record: each record was pickled with a fresh memo (the pickler's is
                # cleared after every dump), and MEMOIZE numbers entries from the memo's size, so a
                # reused unpickler would resolve a record's back-references to an earlier record's objects.
                line, row = pickle.Unpickler(spool).load()
            except EOFError:
                break
            size = spool.tell() - start
            problem = store_problem(row)
            if problem is not None:
                # Refused now, as the store would refuse it: a later row of its key must not hide that.
                outcome.rejected += 1
                values = {k: v for k, v in row.items() if k not in ("PartitionKey", "RowKey")}
                errors.add(outcome.entity, line, problem, values)
                continue
            if in_flight:
                settle_key(row["PartitionKey"] + "\x00" + row["RowKey"])
            held_bytes += size
            partition = pending.setdefault(row["PartitionKey"], {})
            waiting = partition.get(row["RowKey"])
            if waiting is not None:
                # The same key again before the earlier row was written: the later row takes its place.
                waiting.replaced.append(waiting.line)
                held_bytes -= waiting.size
                waiting.line, waiting.row, waiting.size = line, row, size
                replaced += 1
            else:
                partition[row["RowKey"]] = _Pending(line, row, size)
                if len(partition) >= BATCH_LIMIT:
                    ready.append(list(partition.values()))
                    del pending[row["PartitionKey"]]
                    if len(ready) >= WINDOW_BATCHES:
                        send_ready()
            if held_bytes > MAX_PENDING_BYTES or replaced >= MAX_PENDING_REPLACED:
                send_all()
            since_checkpoint += 1
            if checkpoint_rows and since_checkpoint >= checkpoint_rows and on_checkpoint is not None:
                send_all()
                settle_all()  # a checkpoint says every row before it is written
                since_checkpoint = 0
                on_checkpoint(spool.tell())

    try:
        read_all()
        send_all()
        settle_all()
    except BaseException:
        # The windows still being written end first (what they wrote is counted), so nothing is writing once
        # the failure is reported; their own errors give way to the first one.
        while in_flight:
            with contextlib.suppress(Exception):
                settle_oldest()
        raise
    spool.close()
    return outcome


def modified_now() -> datetime:
    from shared.storage.message_repo import now_utc

    return now_utc()
