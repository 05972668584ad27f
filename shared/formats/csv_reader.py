"""Reads delimited text files the way D365 writes them, streamed and with structural limits.

D365's conventions are the defaults: a header row of column names (typically upper-case), comma
delimiter, double-quote text qualifier, UTF-8 (or UTF-16LE for CSV-Unicode). The encoding comes
from the BOM when there is one, else the format, else UTF-8.
"""

from __future__ import annotations

import csv
import threading
from collections.abc import Iterator
from typing import BinaryIO

from shared.domain.schema import SourceFormat
from shared.errors import FormatError
from shared.formats.encoding import DecodedChunks, LineSplitter
from shared.formats.readers import DEFAULT_LIMITS, ERROR_KEY, ReaderLimits, SourceRow

_field_limit_lock = threading.Lock()


def _ensure_field_size_limit(chars: int) -> None:
    """Make sure csv's process-wide field limit is at least `chars`.

    `csv.field_size_limit` is global, so it cannot be scoped to one reader without breaking
    readers running concurrently. We only ever raise it, and enforce our own per-field limit on
    each row, so the effective limit is always the reader's own.
    """
    with _field_limit_lock:
        if csv.field_size_limit() < chars:
            csv.field_size_limit(chars)


def _dialect_args(fmt: SourceFormat) -> dict:
    delimiter = fmt.delimiter_char
    if len(delimiter) != 1:
        raise FormatError(f"the format's delimiter {fmt.delimiter!r} must be a single character")
    qualifier = fmt.text_qualifier or ""
    if len(qualifier) > 1:
        raise FormatError(f"the format's text qualifier {fmt.text_qualifier!r} must be one character")
    if qualifier == delimiter:
        raise FormatError("the format's delimiter and text qualifier must differ")
    if qualifier:
        return {"delimiter": delimiter, "quotechar": qualifier, "doublequote": True, "strict": False}
    return {"delimiter": delimiter, "quoting": csv.QUOTE_NONE, "strict": False}


def read_csv_rows(
    stream: BinaryIO, fmt: SourceFormat, *, limits: ReaderLimits = DEFAULT_LIMITS
) -> Iterator[SourceRow]:
    """Yield (line number, {column: value}) for each data row of a delimited text file.

    A row whose value count differs from the header's is yielded with an ERROR_KEY reason (and
    the values it does have; every header column is a key of every row), so that it is
    rejected alone. Structural problems (a row wider than `limits.max_columns`, an over-long
    field or line, undecodable bytes) raise FormatError.
    """
    dialect = _dialect_args(fmt)  # a bad format fails now; the stream is read on iteration
    _ensure_field_size_limit(limits.max_record_chars + 1)
    return _rows(stream, fmt, dialect, limits)


def _rows(stream: BinaryIO, fmt: SourceFormat, dialect: dict, limits: ReaderLimits) -> Iterator[SourceRow]:
    lines = LineSplitter(
        DecodedChunks(stream, fmt.codec),
        max_line_chars=limits.max_record_chars,
        max_record_chars=limits.max_record_chars,
    )
    header_row = fmt.header_row
    reader = csv.reader(lines, **dialect)
    max_columns = limits.max_columns
    max_field = limits.max_field_chars
    header: list[str] | None = None
    width = 0
    keep: list[int] | None = None  # indexes of named columns, when some header cells are empty
    while True:
        start = reader.line_num + 1
        lines.record_chars = 0
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise FormatError(f"line {start}: the CSV cannot be parsed: {exc}") from None
        if not values:
            continue  # a blank line
        if len(values) > max_columns:
            raise FormatError(
                f"row {start} has {len(values)} columns; the limit is {max_columns} (max_columns)"
            )
        if lines.record_chars > max_field:
            # Only a record longer than the field limit can hold a field longer than it.
            for index, value in enumerate(values):
                if len(value) > max_field:
                    raise FormatError(
                        f"row {start}, column {index + 1}: the value is {len(value):,} characters "
                        f"long; the limit is {max_field:,} (max_field_chars)"
                    )
        if header_row and header is None:
            header = _make_header(values, start)
            width = len(header)
            if "" in header:
                keep = [i for i, name in enumerate(header) if name]
            continue
        if header is None:
            # No header row: columns are named by position, "1", "2", ...
            yield start, {str(i): v for i, v in enumerate(values, 1)}
            continue
        if len(values) == width:
            if keep is None:
                yield start, dict(zip(header, values, strict=True))
            else:
                yield start, {header[i]: values[i] for i in keep}
            continue
        # Every header column is present (None when the row is short), so the keys of any row
        # are the file's columns.
        row: dict[str, str | None] = {name: None for name in header if name}
        row.update((name, value) for name, value in zip(header, values, strict=False) if name)
        row[ERROR_KEY] = f"row has {len(values)} values but the header has {width} columns"
        yield start, row


def _make_header(values: list[str], line: int) -> list[str]:
    header = [v.strip() for v in values]
    seen: set[str] = set()
    for name in header:
        if name and name in seen:
            raise FormatError(f"the header row (line {line}) repeats the column {name!r}")
        seen.add(name)
    if not any(header):
        raise FormatError(f"the header row (line {line}) has no column names")
    return header
