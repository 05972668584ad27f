"""Reads an Excel workbook (.xlsx) sheet row by row, as D365's EXCEL source format does, in bounded memory.

Blob streams are not seekable and a zip's directory is at its end, so the stream is first spooled to a
SpooledTemporaryFile (in memory up to a limit, then on disk). The package's XML parts are then streamed with
the hardened parser (shared/formats/xml_safety.py); nothing is loaded whole:

- the shared-strings table is read item by item, bounded in count and total text while it is read, and
  moves to a temporary file past a small in-memory size, so its memory is 8 bytes per string;
- the sheet is read cell by cell; each row costs the cells present in the file, whatever its number
  (a row numbered 10^12 after row 2 is refused as beyond Excel's sheet, not reached by walking empty rows);
- every unit (a shared string, a row, anything outside sheetData) may take at most
  `ReaderLimits.max_record_bytes` of XML, enforced under the parser (shared/formats/xml_budget.py).

openpyxl is not used to read: even in read-only mode it loads the whole shared-strings table (and the styles
and theme) when the workbook opens, and pads rows, so a 300 KB package whose strings expand to 300 MB took
330 MB and 5 million tiny strings 490 MB and 213 s; a row numbered 10^6 cost 3.7 s of empty rows (10^12:
weeks), and an empty styled cell in column XFD cost 0.5 s per row (figures from bench/bench_hostile_memory.py
before this reader). Its small helpers for number formats and Excel dates are reused, so cell values are
the ones openpyxl gives (`cell_text` turns them into text).
"""

from __future__ import annotations

import array
import datetime as dt
import os
import posixpath
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import IO, Any, BinaryIO

from shared.errors import FormatError
from shared.formats import xml_safety
from shared.formats.readers import DEFAULT_LIMITS, ERROR_KEY, ReaderLimits, SourceRow
from shared.formats.xml_budget import BudgetedSource
from shared.formats.zip_safety import LimitedReader

_COPY_CHUNK = 1024 * 1024
_MAX_ENTRIES = 10_000
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_MAGIC = b"PK\x03\x04"

# Excel's sheet size ("Excel specifications and limits": 1,048,576 rows by 16,384 columns); ECMA-376 part 1
# §18.3.1.73 (row) and §18.3.1.4 (c) bound the row and cell references the same way.
EXCEL_MAX_ROWS = 1_048_576
EXCEL_MAX_COLUMNS = 16_384
# The workbook, its relationships and styles: small in any real file; each is streamed, and bounded here.
MAX_METADATA_PART_BYTES = 64 * 1024 * 1024
MAX_SHEETS = 10_000
MAX_RELATIONSHIPS = 100_000
MAX_CELL_FORMATS = 65_536  # Excel allows 64,000 cell formats per workbook
MAX_FORMAT_CODE_CHARS = 1_000  # Excel's own limit is 255
# Elements inside one cell (<v>, <f>, <is> with its rich-text runs).
MAX_CELL_ELEMENTS = 10_000
# Shared strings stay in memory up to this much text or this many strings, then move to a temporary file.
SHARED_STRINGS_MEMORY_CHARS = 8 * 1024 * 1024
SHARED_STRINGS_MEMORY_COUNT = 100_000

_CELL_REF = re.compile(r"\$?([A-Za-z]{1,3})\$?([0-9]+)")

_DOC_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_STRICT_DOC_REL = "http://purl.oclc.org/ooxml/officeDocument/relationships"


def cell_text(value: Any) -> str | None:
    """The text of a cell value, written the way the typed conversion expects it.

    Dates without a time become "2024-01-31", datetimes "2024-01-31T10:20:30"; numbers lose
    float noise (5.0 -> "5", 0.1 -> "0.1"); booleans become "true"/"false".
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return str(value)
        if value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        # str() gives the shortest repr that round-trips; Decimal formats it without exponent.
        return format(Decimal(str(value)), "f")
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0, 0) and value.tzinfo is None:
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    return str(value)


def spool(stream: BinaryIO, *, memory_bytes: int, max_bytes: int) -> IO[bytes]:
    """Copy a stream into a seekable temporary file, in chunks, enforcing a size limit."""
    target = tempfile.SpooledTemporaryFile(max_size=memory_bytes)  # noqa: SIM115 - returned open
    total = 0
    try:
        while True:
            chunk = stream.read(_COPY_CHUNK)
            if not chunk:
                break
            total += len(chunk)
            if total > max_bytes:
                raise FormatError(f"the Excel file is larger than the limit of {max_bytes:,} bytes")
            target.write(chunk)
        target.seek(0)
    except BaseException:
        target.close()
        raise
    return target


def read_excel_rows(
    stream: BinaryIO, *, sheet: str | None = None, limits: ReaderLimits = DEFAULT_LIMITS
) -> Iterator[SourceRow]:
    """Yield (row number, {column: text}) for each non-empty data row of one sheet.

    The sheet named by `sheet` is read (case-insensitively; a trailing "$", as in ADO-style "Sheet1$", is
    ignored). Without a name the workbook's only sheet with data is read: when another worksheet has data
    too, FormatError names them (its rows would be dropped without a word otherwise); empty sheets do not
    count. The first non-empty row is the header. Nothing in a row is dropped: a value under an empty
    header cell or beyond the last header column, and a formula cell saved without its calculated value,
    mark the row with an ERROR_KEY reason. A workbook over a bound (ReaderLimits, the module constants)
    raises FormatError naming the bound, as soon as the bound is passed.
    """
    return _rows(stream, sheet, limits)


def _rows(stream: BinaryIO, sheet: str | None, limits: ReaderLimits) -> Iterator[SourceRow]:
    with spool(stream, memory_bytes=limits.spool_memory_bytes, max_bytes=limits.max_excel_bytes) as file:
        _check_package(file, limits)
        try:
            package = zipfile.ZipFile(file)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise FormatError(f"the Excel file is damaged or truncated: {_reason(exc)}") from None
        with package:
            book = _read_workbook(package, limits)
            target = _select_sheet(book, sheet)
            formats = _read_styles(package, book.styles, limits) if book.styles else _DateStyles()
            with _read_shared_strings(package, book.shared_strings, limits) as strings:
                if not sheet:
                    target = _only_sheet_with_data(package, book, target, strings, formats, limits)
                yield from _table(_sheet_rows(package, target, strings, formats, book.epoch, limits), limits)


def _only_sheet_with_data(
    package: zipfile.ZipFile,
    book: _Workbook,
    first: _Sheet,
    strings: SharedStrings,
    formats: _DateStyles,
    limits: ReaderLimits,
) -> _Sheet:
    """The sheet to read when none is named: the one worksheet with data (else `first`, the first sheet).

    FormatError when two or more have data: all but one would be dropped. Each sheet is read only up to
    its first row with a value (an empty sheet to its end), with the bounds of a sheet that is imported;
    each part once, so the work stays within the package's uncompressed size whatever the sheet count.
    """
    with_data: list[_Sheet] = []
    seen: set[str] = set()
    for candidate in book.sheets:
        if candidate.chart or candidate.target in seen:
            continue
        seen.add(candidate.target or "")
        rows = _sheet_rows(package, candidate, strings, formats, book.epoch, limits)
        try:
            if next(rows, None) is not None:
                with_data.append(candidate)
        finally:
            rows.close()  # closes the part now, not when the generator is collected
    if len(with_data) > 1:
        names = ", ".join(repr(s.name) for s in with_data)
        raise FormatError(
            f"the Excel workbook has data on more than one sheet ({names}) and no sheet is named, so the rows "
            "of all but one would not be imported; name the sheet to read (the project entity's sheet, or "
            "ExcelSheetName in a package manifest), or send one sheet per file"
        )
    return with_data[0] if with_data else first


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_package(file: IO[bytes], limits: ReaderLimits) -> None:
    head = file.read(8)
    file.seek(0)
    if head.startswith(_OLE2_MAGIC):
        raise FormatError("the file is a legacy Excel 97-2003 (.xls) workbook; save it as .xlsx")
    if not head.startswith(_ZIP_MAGIC):
        raise FormatError("the file is not an Excel .xlsx workbook (it is not a zip package)")
    try:
        with zipfile.ZipFile(file) as package:
            entries = package.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise FormatError(f"the Excel file is damaged or truncated: {_reason(exc)}") from None
    finally:
        file.seek(0)
    if len(entries) > _MAX_ENTRIES:
        raise FormatError(f"the Excel package has {len(entries)} parts; the limit is {_MAX_ENTRIES}")
    # zipfile never yields more than an entry's declared size, so the declared sizes bound
    # what can be inflated (zip bombs); LimitedReader checks the real bytes again.
    total = sum(info.file_size for info in entries)
    if total > limits.max_excel_uncompressed_bytes:
        raise FormatError(
            f"the Excel file expands to {total:,} bytes; the limit is {limits.max_excel_uncompressed_bytes:,}"
        )
    if not any(info.filename == "xl/workbook.xml" for info in entries):
        raise FormatError("the file is a zip package but not an Excel workbook (no xl/workbook.xml)")


# --- parts ---------------------------------------------------------------------------------------------
def _local(tag: Any) -> str:
    return tag.rpartition("}")[2] if tag[0] == "{" else tag


def _open_part(package: zipfile.ZipFile, name: str, limit: int, unit: str, budget: int) -> BudgetedSource:
    """A part of the package for the XML parser: at most `limit` real bytes in all, and at most `budget`
    bytes between two marks of the caller (one `unit`)."""
    try:
        info = package.getinfo(name)
    except KeyError:
        raise FormatError(f"the Excel package has no part {name}") from None
    if info.file_size > limit:
        raise FormatError(f"the Excel part {name} is {info.file_size:,} bytes; the limit is {limit:,}")
    try:
        raw = package.open(info)
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, ValueError) as exc:
        raise FormatError(f"the Excel part {name} cannot be read: {_reason(exc)}") from None
    limited = LimitedReader(raw, name=name, limit=min(info.file_size, limit))
    return BudgetedSource(
        limited,
        budget=budget,
        describe=lambda b: (
            f"{unit} in the Excel part {name} takes more than {b:,} bytes of XML; "
            f"the limit is {b:,} bytes (max_record_bytes)"
        ),
    )


def _parse(
    source: BudgetedSource,
    what: str | Callable[[], str],
    events: tuple[str, ...] = ("start", "end"),
    **options: Any,
) -> Iterator[tuple[str, Any]]:
    """The events of a part; parse errors say which part (`what`, or what it returns then)."""
    try:
        yield from xml_safety.iterparse(source, events=events, **options)
    except FormatError as exc:
        if str(exc) == xml_safety.DTD_NOT_ALLOWED or "max_record_bytes" in str(exc):
            raise
        where = f"{what} could not be read" if isinstance(what, str) else what()
        raise FormatError(f"{where}: {exc}") from None
    finally:
        source.close()


def _drop(element: Any) -> None:
    """Free a finished element: its content, and its place in the parent (always the first child left)."""
    element.clear(keep_tail=False)
    parent = element.getparent()
    if parent is not None:
        parent.remove(element)


@dataclass
class _Sheet:
    name: str
    target: str | None  # the part, or None when the workbook points at no existing part
    chart: bool = False


@dataclass
class _Workbook:
    sheets: list[_Sheet] = field(default_factory=list)
    epoch: dt.datetime = dt.datetime(1899, 12, 30)
    shared_strings: str | None = None
    styles: str | None = None


def _read_relationships(
    package: zipfile.ZipFile, name: str, limits: ReaderLimits
) -> dict[str, tuple[str, str]]:
    """Id -> (type, part name) of a .rels part, targets resolved as openpyxl's get_dependents does."""
    if name not in package.NameToInfo:
        return {}
    source = _open_part(package, name, MAX_METADATA_PART_BYTES, "a relationship", limits.max_record_bytes)
    base = posixpath.dirname(posixpath.dirname(name))  # xl/_rels/workbook.xml.rels -> xl
    out: dict[str, tuple[str, str]] = {}
    depth = 0
    for event, element in _parse(source, f"the Excel part {name}"):
        if event == "start":
            depth += 1
            continue
        depth -= 1
        if _local(element.tag) == "Relationship" and element.get("TargetMode") != "External":
            target = element.get("Target") or ""
            path = target[1:] if target.startswith("/") else posixpath.normpath(posixpath.join(base, target))
            out[element.get("Id") or ""] = (element.get("Type") or "", path)
            if len(out) > MAX_RELATIONSHIPS:
                raise FormatError(f"the Excel part {name} has more than {MAX_RELATIONSHIPS:,} relationships")
        if depth >= 1:
            _drop(element)  # whatever it is: nothing ended is kept
        source.mark()
    return out


def _read_workbook(package: zipfile.ZipFile, limits: ReaderLimits) -> _Workbook:
    rels = _read_relationships(package, "xl/_rels/workbook.xml.rels", limits)
    book = _Workbook()
    for kind, path in rels.values():
        if kind.endswith("/sharedStrings"):
            book.shared_strings = path
        elif kind.endswith("/styles"):
            book.styles = path
    # Writers that forget the relationship still use the conventional names.
    if book.shared_strings is None and "xl/sharedStrings.xml" in package.NameToInfo:
        book.shared_strings = "xl/sharedStrings.xml"
    if book.styles is None and "xl/styles.xml" in package.NameToInfo:
        book.styles = "xl/styles.xml"
    source = _open_part(
        package, "xl/workbook.xml", MAX_METADATA_PART_BYTES, "an element", limits.max_record_bytes
    )
    depth = 0
    for event, element in _parse(source, "the Excel workbook (xl/workbook.xml)"):
        if event == "start":
            depth += 1
            continue
        depth -= 1
        name = _local(element.tag)
        if name == "sheet":
            rid = element.get(f"{{{_DOC_REL}}}id") or element.get(f"{{{_STRICT_DOC_REL}}}id")
            if rid:  # openpyxl drops sheets without a relationship id as invalid
                kind, path = rels.get(rid, ("", ""))
                present = path in package.NameToInfo
                book.sheets.append(
                    _Sheet(element.get("name") or "", path if present else None, "chartsheet" in kind)
                )
                if len(book.sheets) > MAX_SHEETS:
                    raise FormatError(f"the Excel workbook has more than {MAX_SHEETS:,} sheets")
        elif name == "workbookPr" and element.get("date1904") in ("1", "true"):
            book.epoch = dt.datetime(1904, 1, 1)
        if depth >= 1:
            _drop(element)
        source.mark()
    # openpyxl lists only sheets whose part exists; so do we.
    book.sheets = [s for s in book.sheets if s.target is not None]
    return book


def _select_sheet(book: _Workbook, sheet: str | None) -> _Sheet:
    names = [s.name for s in book.sheets]
    if not names:
        raise FormatError("the Excel workbook has no sheets")
    chosen: _Sheet | None = None
    if not sheet:
        chosen = book.sheets[0]
    else:
        wanted = sheet.strip()
        wanted = wanted[:-1] if wanted.endswith("$") else wanted
        chosen = next((s for s in book.sheets if s.name.casefold() == wanted.casefold()), None)
    if chosen is None:
        listed = ", ".join(repr(n) for n in names)
        raise FormatError(f"the Excel workbook has no sheet named {sheet!r}; its sheets are {listed}")
    if chosen.chart:
        raise FormatError(f"the Excel sheet {chosen.name!r} is a chart sheet; it has no rows to read")
    return chosen


@dataclass
class _DateStyles:
    """Cell style indexes (`s`) whose number format shows a date or a duration."""

    dates: set[int] = field(default_factory=set)
    durations: set[int] = field(default_factory=set)


def _read_styles(package: zipfile.ZipFile, name: str, limits: ReaderLimits) -> _DateStyles:
    # The same classification as openpyxl's Stylesheet._normalise_numbers.
    from openpyxl.styles.numbers import builtin_format_code, is_date_format, is_timedelta_format

    if name not in package.NameToInfo:
        return _DateStyles()
    source = _open_part(package, name, MAX_METADATA_PART_BYTES, "an element", limits.max_record_bytes)
    custom: dict[int, str] = {}
    cell_formats: list[int] = []
    path: list[str] = []
    for event, element in _parse(source, f"the Excel styles ({name})"):
        if event == "start":
            path.append(_local(element.tag))
            continue
        local = path.pop()
        if local == "numFmt" and path[-1:] == ["numFmts"]:
            code = element.get("formatCode") or ""
            number = _small_int(element.get("numFmtId"))
            if number is not None and len(code) <= MAX_FORMAT_CODE_CHARS and len(custom) < MAX_CELL_FORMATS:
                custom[number] = code
        elif local == "xf" and path[-1:] == ["cellXfs"]:
            cell_formats.append(_small_int(element.get("numFmtId")) or 0)
            if len(cell_formats) > MAX_CELL_FORMATS:
                raise FormatError(f"the Excel styles define more than {MAX_CELL_FORMATS:,} cell formats")
        if path:
            _drop(element)
        source.mark()
    styles = _DateStyles()
    for index, number in enumerate(cell_formats):
        code = custom[number] if number in custom else builtin_format_code(number)
        if is_date_format(code):
            styles.dates.add(index)
        if is_timedelta_format(code):
            styles.durations.add(index)
    return styles


def _small_int(text: str | None) -> int | None:
    if text is None or not (text.isascii() and text.isdigit()) or len(text) > 9:
        return None
    return int(text)


# --- shared strings ------------------------------------------------------------------------------------
class SharedStrings:
    """The shared-strings table: in memory while small, then in a temporary file with an offset index.

    Memory past the spill point is 8 bytes per string (the index), whatever the strings hold.
    """

    def __init__(
        self,
        *,
        memory_chars: int = SHARED_STRINGS_MEMORY_CHARS,
        memory_count: int = SHARED_STRINGS_MEMORY_COUNT,
    ) -> None:
        self._memory_chars = memory_chars
        self._memory_count = memory_count
        self._strings: list[str] = []
        self._chars = 0
        self._file: IO[bytes] | None = None
        self._offsets = array.array("Q", [0])
        self.count = 0

    def append(self, text: str) -> None:
        self.count += 1
        if self._file is None:
            self._strings.append(text)
            self._chars += len(text)
            if self._chars > self._memory_chars or len(self._strings) > self._memory_count:
                self._spill()
            return
        self._write(text)

    def _spill(self) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        strings, self._strings = self._strings, []
        for text in strings:
            self._write(text)

    def _write(self, text: str) -> None:
        assert self._file is not None
        data = text.encode("utf-8", "surrogatepass")
        self._file.write(data)
        self._offsets.append(self._offsets[-1] + len(data))

    def seal(self) -> None:
        """The table is complete: make the written strings readable."""
        if self._file is not None:
            self._file.flush()

    @property
    def spilled(self) -> bool:
        return self._file is not None

    def __getitem__(self, index: int) -> str:
        if self._file is None:
            return self._strings[index]
        if index < 0:
            raise IndexError(index)
        start, end = self._offsets[index], self._offsets[index + 1]
        return os.pread(self._file.fileno(), end - start, start).decode("utf-8", "surrogatepass")

    def __enter__(self) -> SharedStrings:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._strings = []
        self._offsets = array.array("Q", [0])
        if self._file is not None:
            self._file.close()
            self._file = None


def _read_shared_strings(package: zipfile.ZipFile, name: str | None, limits: ReaderLimits) -> SharedStrings:
    table = SharedStrings()
    if name is None or name not in package.NameToInfo:
        return table
    try:
        _fill_shared_strings(table, package, name, limits)
        table.seal()
    except BaseException:
        table.close()
        raise
    return table


def _fill_shared_strings(
    table: SharedStrings, package: zipfile.ZipFile, name: str, limits: ReaderLimits
) -> None:
    max_count = limits.max_shared_strings
    max_total = limits.max_shared_strings_chars
    max_field = limits.max_field_chars
    # Only <sst> and <si> are reported (lxml filters the rest in C): two events per string. An <si> is
    # then whole in memory before it is seen, so its raw size is bounded tighter than a row's: its text
    # at 4 bytes a character at most, plus rich-text markup.
    budget = min(limits.max_record_bytes, 4 * max_field + 1024 * 1024)
    source = _open_part(package, name, limits.max_excel_uncompressed_bytes, "a shared string", budget)
    total = 0
    has_root = False
    events = _parse(source, f"the Excel shared strings ({name})", tag=("{*}sst", "{*}si"))
    for event, item in events:
        if event == "start":
            has_root = has_root or _local(item.tag) == "sst"
            continue
        if _local(item.tag) != "si":
            continue
        parts: list[str] = []
        for child in item:
            local = _local(child.tag) if isinstance(child.tag, str) else ""
            if local == "t":
                parts.append(child.text or "")
            elif (
                local == "r"
            ):  # a rich-text run; phonetic runs (<rPh>) are not text (openpyxl's Text.content)
                parts.extend(t.text or "" for t in child if isinstance(t.tag, str) and _local(t.tag) == "t")
        text = "".join(parts)
        if len(text) > max_field:
            raise FormatError(
                f"shared string {table.count + 1:,} of the Excel workbook is {len(text):,} characters long; "
                f"the limit is {max_field:,} characters (max_field_chars)"
            )
        text = text.replace("x005F_", "")  # openpyxl's unescaping of "_x005F_"
        total += len(text)
        if table.count >= max_count:
            raise FormatError(
                f"the Excel workbook's shared strings number more than {max_count:,}; "
                f"the limit is {max_count:,} strings (max_shared_strings)"
            )
        if total > max_total:
            raise FormatError(
                f"the Excel workbook's shared strings hold more than {max_total:,} characters of text; "
                f"the limit is {max_total:,} characters (max_shared_strings_chars)"
            )
        table.append(text)
        # Drop the string and anything before it (elements that are not strings are never reported).
        item.clear(keep_tail=False)
        parent = item.getparent()
        if parent is not None:
            while item.getprevious() is not None:
                del parent[0]
            parent.remove(item)
        source.mark()
    if not has_root:
        # The DOCTYPE is checked at the first reported element (xml_safety.iterparse): there must be one.
        raise FormatError(f"the Excel shared strings ({name}) have no <sst> element")


# --- the sheet -----------------------------------------------------------------------------------------
def _column_index(letters: str) -> int:
    index = 0
    for char in letters.upper():
        index = index * 26 + (ord(char) - 64)
    return index


def _row_number(text: str | None, previous: int) -> int:
    if text is None:
        return previous + 1
    number: int | None = None
    if text.isascii() and text.isdigit() and len(text) <= 12:
        number = int(text)
    elif len(text) <= 20:
        # openpyxl accepts "5.0" too.
        try:
            value = float(text)
        except ValueError:
            value = 0.5
        number = int(value) if value.is_integer() else None
    if number is None or number < 1:
        raise FormatError(f"the Excel sheet has a row numbered {text[:40]!r}, which is not a row number")
    if number > EXCEL_MAX_ROWS:
        raise FormatError(
            f"row {number} is beyond the last row of an Excel sheet ({EXCEL_MAX_ROWS:,}); "
            "the workbook is damaged or not written by a spreadsheet program"
        )
    return number


class _Cells:
    """The values of one row: {column index (1-based): text}, with the row's running text size, and the
    columns of formula cells saved without a calculated value (their value is not in the file)."""

    __slots__ = ("values", "chars", "cells", "uncalculated")

    def __init__(self) -> None:
        self.values: dict[int, str] = {}
        self.chars = 0
        self.cells = 0
        self.uncalculated: list[int] = []


def _sheet_rows(
    package: zipfile.ZipFile,
    sheet: _Sheet,
    strings: SharedStrings,
    styles: _DateStyles,
    epoch: dt.datetime,
    limits: ReaderLimits,
) -> Iterator[tuple[int, _Cells]]:
    """(row number, its cells) for each <row> of the sheet with a non-empty value or an uncalculated formula."""
    assert sheet.target is not None
    max_columns = limits.max_columns
    max_field = limits.max_field_chars
    max_row_chars = limits.max_record_chars
    source = _open_part(
        package, sheet.target, limits.max_excel_uncompressed_bytes, "a row", limits.max_record_bytes
    )
    path: list[str] = []
    in_data = False
    row_number = 0
    column = 0
    row = _Cells()
    cell_elements = 0
    cell: dict[str, Any] = {}
    inline: list[str] = []
    inline_chars = 0
    # The message reads row_number when a parse error happens: the row reached, on purpose.
    where = lambda: f"the Excel sheet {sheet.name!r} could not be read after row {row_number}"  # noqa: B023, E731
    for event, element in _parse(source, where):
        if event == "start":
            local = _local(element.tag)
            path.append(local)
            depth = len(path)
            if depth == 2:
                in_data = local == "sheetData"
            elif in_data and depth == 3 and local == "row":
                row_number = _row_number(element.get("r"), row_number)
                row = _Cells()
                column = 0
            elif in_data and depth == 4 and local == "c":
                row.cells += 1
                if row.cells > EXCEL_MAX_COLUMNS:
                    raise FormatError(
                        f"row {row_number} has more than {EXCEL_MAX_COLUMNS:,} cells, more than an Excel "
                        "sheet has columns"
                    )
                column = _cell_column(element.get("r"), column, row_number)
                cell = {
                    "t": element.get("t") or "n",
                    "s": element.get("s"),
                    "v": None,
                    "f": False,
                    "has_v": False,
                }
                inline = []
                inline_chars = 0
                cell_elements = 0
            elif in_data and depth > 4:
                cell_elements += 1
                if cell_elements > MAX_CELL_ELEMENTS:
                    raise FormatError(
                        f"row {row_number}, column {column}: the cell holds more than "
                        f"{MAX_CELL_ELEMENTS:,} elements"
                    )
            continue
        local = path.pop()
        depth = len(path) + 1
        if in_data and depth > 4:
            # Inside a cell: <v>, or the text runs of an inline string (<is><t>, <is><r><t>; not <rPh>).
            if depth == 5 and local == "v":
                cell["v"] = element.text
                cell["has_v"] = True
            elif depth == 5 and local == "f":
                cell["f"] = True
            elif local == "t" and path[4:5] == ["is"] and "rPh" not in path:
                text = element.text or ""
                inline.append(text)
                inline_chars += len(text)
                if inline_chars > max_field:
                    raise _field_too_long(row_number, column, inline_chars, max_field)
            element.clear(keep_tail=False)
            continue
        if in_data and depth == 4 and local == "c":
            text = _cell_value(cell, inline, strings, styles, epoch, row_number, column, max_field)
            if text is not None and text != "":
                if column > max_columns:
                    raise FormatError(
                        f"row {row_number} has a value in column {column:,}; the limit is {max_columns:,} "
                        "columns (max_columns)"
                    )
                if len(text) > max_field:
                    raise _field_too_long(row_number, column, len(text), max_field)
                row.chars += len(text)
                if row.chars > max_row_chars:
                    raise FormatError(
                        f"row {row_number} holds more than {max_row_chars:,} characters; the limit is "
                        f"{max_row_chars:,} (max_record_chars)"
                    )
                row.values[column] = text
            elif cell["f"] and not cell["has_v"] and cell["t"] != "inlineStr":
                # A formula whose result was never calculated (workbooks written by libraries): its value
                # is not in the file, and an empty field would stand in for it without a word.
                row.uncalculated.append(column)
            _drop(element)
            continue
        if in_data and depth == 3 and local == "row":
            if row.values or row.uncalculated:
                yield row_number, row
            _drop(element)
            source.mark()
            continue
        if depth >= 2:
            # Anything else (column widths, merged cells, ...) is dropped as soon as it ends.
            _drop(element)
            if depth == 2:
                in_data = False
            source.mark()


def _cell_column(ref: str | None, previous: int, row_number: int) -> int:
    if ref is None:
        column = previous + 1
    else:
        match = _CELL_REF.fullmatch(ref)
        if match is None:
            raise FormatError(
                f"row {row_number} has a cell with the reference {ref[:40]!r}, which is not a cell"
            )
        column = _column_index(match.group(1))
    if column > EXCEL_MAX_COLUMNS:
        raise FormatError(
            f"row {row_number} has a cell in column {column:,}, beyond the last column of an Excel sheet "
            f"({EXCEL_MAX_COLUMNS:,})"
        )
    return column


def _field_too_long(row: int, column: int, length: int, limit: int) -> FormatError:
    return FormatError(
        f"row {row}, column {column}: the value is {length:,} characters long; the limit is {limit:,} "
        "(max_field_chars)"
    )


def _cell_value(
    cell: dict[str, Any],
    inline: list[str],
    strings: SharedStrings,
    styles: _DateStyles,
    epoch: dt.datetime,
    row: int,
    column: int,
    max_field: int,
) -> str | None:
    """The cell's text, from the value openpyxl's WorkSheetParser.parse_cell gives (with data_only)."""
    kind = cell["t"]
    raw = cell["v"] or None
    if kind == "inlineStr":
        return "".join(inline) if inline else None
    if raw is None:
        return None
    if len(raw) > max_field:
        raise _field_too_long(row, column, len(raw), max_field)
    where = f"row {row}, column {column}"
    if kind == "n":
        style = _small_int(cell["s"])
        try:
            number: int | float = float(raw) if ("." in raw or "e" in raw or "E" in raw) else int(raw)
        except ValueError:
            raise FormatError(f"{where}: the number {raw[:40]!r} is not a number") from None
        if style is not None and style in styles.dates:
            from openpyxl.utils.datetime import from_excel

            try:
                return cell_text(from_excel(number, epoch, timedelta=style in styles.durations))
            except (OverflowError, ValueError):
                return "#VALUE!"  # what openpyxl makes of a date serial outside the calendar
        return cell_text(number)
    if kind == "s":
        index = _small_int(raw.strip())
        if index is None or index >= strings.count:
            raise FormatError(
                f"{where}: the cell refers to shared string {raw[:40]!r}, but the workbook has "
                f"{strings.count:,}"
            )
        return strings[index]
    if kind == "b":
        if raw not in ("0", "1"):
            raise FormatError(f"{where}: the boolean {raw[:40]!r} is neither 0 nor 1")
        return cell_text(raw == "1")
    if kind == "d":
        from openpyxl.utils.datetime import from_ISO8601

        try:
            return cell_text(from_ISO8601(raw))
        except (ValueError, TypeError, OverflowError):
            raise FormatError(f"{where}: the date {raw[:40]!r} is not an ISO 8601 date") from None
    return (
        raw  # "str" (a formula's text), "e" (an error such as #N/A), or an unknown type: the text as written
    )


# --- header and records --------------------------------------------------------------------------------
def _table(rows: Iterator[tuple[int, _Cells]], limits: ReaderLimits) -> Iterator[SourceRow]:
    header: list[str] | None = None
    columns: list[tuple[int, str]] = []
    unnamed: list[int] = []
    for number, cells in rows:
        values = cells.values
        if header is None:
            if not values:
                continue  # only uncalculated formulas: not a header
            header = _make_header(values, number)
            columns = [(i + 1, name) for i, name in enumerate(header) if name]
            unnamed = [i + 1 for i, name in enumerate(header) if not name]
            if cells.uncalculated:
                raise FormatError(
                    f"the header row (row {number}) has formula cells without a calculated value "
                    f"(column {_letters(cells.uncalculated[0])}); open and save the workbook in Excel"
                )
            continue
        row: dict[str, str | None] = {name: values.get(index) for index, name in columns}
        problems: list[str] = []
        width = max(values, default=0)
        if width > len(header):
            problems.append(
                f"row has values beyond the last header column ({width} columns, the header has {len(header)})"
            )
        lost = [_letters(i) for i in unnamed if i in values]
        if lost:
            # A value with no column name cannot be mapped; importing the row without it would lose it.
            problems.append(
                f"the row has a value in column(s) {', '.join(lost)}, whose header cell is empty: name the "
                "column in the header row, or leave the value out"
            )
        if cells.uncalculated:
            shown = ", ".join(_letters(i) for i in cells.uncalculated[:5])
            problems.append(
                f"column(s) {shown} hold a formula saved without its calculated value (the workbook was written "
                "by a program that does not calculate); open and save it in Excel, or write the values"
            )
        if problems:
            row[ERROR_KEY] = "; ".join(problems)
        yield number, row


def _letters(column: int) -> str:
    """Excel's column letters for a 1-based column index: 1 -> A, 28 -> AB."""
    letters = ""
    while column:
        column, rest = divmod(column - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _make_header(values: dict[int, str], number: int) -> list[str]:
    header = [(values.get(i) or "").strip() for i in range(1, max(values) + 1)]
    seen: set[str] = set()
    for name in header:
        if name and name in seen:
            raise FormatError(f"the header row (row {number}) repeats the column {name!r}")
        seen.add(name)
    return header
