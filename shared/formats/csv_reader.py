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

    A row whose value count differs from the header's, or with a value in a column whose header cell
    is empty (it has no name to be imported by), is yielded with an ERROR_KEY reason (and the values it
    does have; every named header column is a key of every row), so that it is rejected alone.
    Structural problems raise FormatError: a row wider than `limits.max_columns`, an over-long field or
    line, undecodable bytes, a text qualifier that is never closed (named with the line it opens on: it
    would swallow the rest of the file into one value), a header that is one column holding another
    delimiter (the format's delimiter is not the file's).
    """
    dialect = _dialect_args(fmt)  # a bad format fails now; the stream is read on iteration
    _ensure_field_size_limit(limits.max_record_chars + 1)
    return _rows(stream, fmt, dialect, limits)


class _Lines:
    """The file's lines for csv.reader, watched so that an unclosed text qualifier can be reported.

    csv (strict=False) reads a qualifier that is never closed to the end of the file and returns it as
    one value: the row then only looks short. The last line always gets a line end here, so csv can only
    reach the end of the input inside a record when a quoted value is open (`ended` is then set while it
    returns a row). The current record's lines are kept (the record limit bounds them, as it bounds the
    value csv builds from them), so that the line where that value opened can be found when it matters.
    """

    def __init__(self, splitter: LineSplitter) -> None:
        self.splitter = splitter
        self.ended = False  # the input ran out while csv asked for more
        self.record: list[str] = []  # the lines of the current record
        self.first = 1  # the line number of record[0]

    def start_record(self) -> None:
        self.splitter.record_chars = 0
        self.record.clear()
        self.first = self.splitter.line_no + 1

    def __iter__(self) -> Iterator[str]:
        # A generator, not __next__: csv pulls every line through here, and resuming a generator is cheaper.
        keep = self.record.append
        for line in self.splitter:
            if line[-1:] not in ("\n", "\r"):
                line += "\n"  # only the last line lacks one; see the class docstring
            keep(line)
            yield line
        self.ended = True


def _open_qualifier(lines: list[str], first: int, qualifier: str, delimiter: str) -> int | None:
    """The line on which a qualified value opens and stays open to the end of `lines` (one record), or None.

    The same reading as csv's (strict=False): a qualifier opens a value only at the start of a field, a
    doubled one inside a value is a literal, and after the closing one the field runs to the delimiter.
    Run only when an error is reported.
    """
    in_value = False
    opened: int | None = None
    field_start = True
    for number, line in enumerate(lines, first):
        i, end = 0, len(line)
        while i < end:
            if in_value:
                j = line.find(qualifier, i)
                if j < 0:
                    break  # the line ends inside the value
                if line.startswith(qualifier, j + 1):
                    i = j + 2  # a doubled qualifier
                    continue
                in_value, field_start, i = False, False, j + 1
                continue
            if field_start and line.startswith(qualifier, i):
                in_value, opened, i = True, number, i + 1
                continue
            j = line.find(delimiter, i)
            if j < 0:
                break  # the field (and, outside a value, the record) runs to the end of the line
            field_start, i = True, j + 1
    return opened if in_value else None


def _unclosed(qualifier: str, opened: int, last: int) -> FormatError:
    return FormatError(
        f"the text qualifier '{qualifier}' opened on line {opened} is never closed: everything from there to "
        f"the end of the file (line {last}) would be one value. Close the value with '{qualifier}', and "
        f"write a '{qualifier}' inside a value as '{qualifier}{qualifier}'"
    )


def _rows(stream: BinaryIO, fmt: SourceFormat, dialect: dict, limits: ReaderLimits) -> Iterator[SourceRow]:
    splitter = LineSplitter(
        DecodedChunks(stream, fmt.codec),
        max_line_chars=limits.max_record_chars,
        max_record_chars=limits.max_record_chars,
    )
    qualifier = dialect.get("quotechar") or ""
    delimiter = dialect["delimiter"]
    lines = _Lines(splitter)
    header_row = fmt.header_row
    reader = csv.reader(iter(lines), **dialect)
    max_columns = limits.max_columns
    max_field = limits.max_field_chars
    header: list[str] | None = None
    width = 0
    keep: list[int] | None = None  # indexes of named columns, when some header cells are empty
    unnamed: list[int] = []  # indexes of the columns whose header cell is empty
    while True:
        start = reader.line_num + 1
        lines.start_record()
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise FormatError(f"line {start}: the CSV cannot be parsed: {exc}") from None
        except FormatError as exc:
            opened = _open_qualifier(lines.record, lines.first, qualifier, delimiter) if qualifier else None
            if opened is not None:
                # The record limit was reached inside a quoted value: a missing qualifier is the likely cause.
                raise FormatError(
                    f"{exc}: the text qualifier '{qualifier}' opened on line {opened} is not closed "
                    f"within it; is its closing '{qualifier}' missing?"
                ) from None
            raise
        if lines.ended and values:
            opened = _open_qualifier(lines.record, lines.first, qualifier, delimiter) if qualifier else None
            raise _unclosed(qualifier, opened or start, splitter.line_no)
        if not values:
            continue  # a blank line
        if len(values) > max_columns:
            raise FormatError(
                f"row {start} has {len(values)} columns; the limit is {max_columns} (max_columns)"
            )
        if splitter.record_chars > max_field:
            # Only a record longer than the field limit can hold a field longer than it.
            for index, value in enumerate(values):
                if len(value) > max_field:
                    raise FormatError(
                        f"row {start}, column {index + 1}: the value is {len(value):,} characters "
                        f"long; the limit is {max_field:,} (max_field_chars)"
                    )
        if header_row and header is None:
            header = _make_header(values, start, delimiter)
            width = len(header)
            if "" in header:
                keep = [i for i, name in enumerate(header) if name]
                unnamed = [i for i, name in enumerate(header) if not name]
            continue
        if header is None:
            # No header row: columns are named by position, "1", "2", ...
            yield start, {str(i): v for i, v in enumerate(values, 1)}
            continue
        if len(values) == width:
            if keep is None:
                yield start, dict(zip(header, values, strict=True))
                continue
            row = {header[i]: values[i] for i in keep}
            lost = [i + 1 for i in unnamed if values[i].strip()]
            if lost:
                # A value with no column name cannot be mapped; importing the row without it would lose it.
                row[ERROR_KEY] = (
                    f"the row has a value in column(s) {', '.join(map(str, lost))}, whose header cell is empty: "
                    "name the column in the header row, or leave the value out"
                )
            yield start, row
            continue
        # Every header column is present (None when the row is short), so the keys of any row
        # are the file's columns.
        row: dict[str, str | None] = {name: None for name in header if name}
        row.update((name, value) for name, value in zip(header, values, strict=False) if name)
        row[ERROR_KEY] = f"row has {len(values)} values but the header has {width} columns"
        yield start, row


_OTHER_DELIMITERS = (";", "\t", "|", ",")


def _make_header(values: list[str], line: int, delimiter: str) -> list[str]:
    header = [v.strip() for v in values]
    first = header[0]
    # An XML or JSON file sent with a CSV format reads as text whose rows all lack the entity's columns;
    # say what the file is instead (D365 headers are column names, which never start so).
    other = "XML" if first.startswith("<") else "JSON" if first.startswith(("{", "[")) else None
    if other is not None:
        shown = first if len(first) <= 40 else first[:40] + "..."
        formats = "XML-Element or XML-Attribute" if other == "XML" else "JSON"
        raise FormatError(
            f"the file looks like {other}, not delimited text: its first line starts with {shown!r}; "
            f"use the {formats} format"
        )
    if len(header) == 1:
        # One column that holds another delimiter: the file is not split the way the format says, and
        # every row would be rejected for missing columns instead of for this.
        found = next((d for d in _OTHER_DELIMITERS if d != delimiter and d in header[0]), None)
        if found is not None:
            shown = header[0] if len(header[0]) <= 60 else header[0][:60] + "..."
            raise FormatError(
                f"the header row (line {line}) is one column, {shown!r}: the file seems delimited by "
                f"{_delimiter_name(found)}, but the format's delimiter is {_delimiter_name(delimiter)}; "
                "use a format with the file's delimiter"
            )
    seen: set[str] = set()
    for name in header:
        if name and name in seen:
            raise FormatError(f"the header row (line {line}) repeats the column {name!r}")
        seen.add(name)
    if not any(header):
        raise FormatError(f"the header row (line {line}) has no column names")
    return header


def _delimiter_name(delimiter: str) -> str:
    return {"\t": "tab", " ": "space"}.get(delimiter, repr(delimiter))
