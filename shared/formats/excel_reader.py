"""Reads an Excel workbook (.xlsx) sheet row by row, as D365's EXCEL source format does.

openpyxl needs a seekable file, and blob streams are not, so the stream is first spooled to a
SpooledTemporaryFile (in memory up to a limit, then on disk). The sheet is then read with
openpyxl's read-only mode, which streams the sheet XML instead of building the workbook.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import zipfile
from collections.abc import Iterator
from decimal import Decimal
from typing import IO, Any, BinaryIO

from shared.errors import FormatError
from shared.formats.readers import DEFAULT_LIMITS, ERROR_KEY, ReaderLimits, SourceRow

_COPY_CHUNK = 1024 * 1024
_MAX_ENTRIES = 10_000
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_MAGIC = b"PK\x03\x04"


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

    The first sheet is read unless `sheet` names another (case-insensitively; a trailing "$",
    as in ADO-style "Sheet1$", is ignored). The first non-empty row is the header; columns with
    an empty header cell are ignored. A value beyond the last header column marks the row with
    an ERROR_KEY reason.
    """
    return _rows(stream, sheet, limits)


def _rows(stream: BinaryIO, sheet: str | None, limits: ReaderLimits) -> Iterator[SourceRow]:
    # Imported here so that readers of other formats never pay for openpyxl's import time.
    import openpyxl

    with spool(stream, memory_bytes=limits.spool_memory_bytes, max_bytes=limits.max_excel_bytes) as file:
        _check_package(file, limits)
        try:
            workbook = openpyxl.load_workbook(file, read_only=True, data_only=True)
        except FormatError:
            raise
        except Exception as exc:  # openpyxl raises many kinds for a damaged package
            raise FormatError(f"the Excel file is damaged or not an .xlsx workbook: {_reason(exc)}") from None
        try:
            worksheet = _select_sheet(workbook, sheet)
            yield from _sheet_rows(worksheet, limits)
        finally:
            workbook.close()


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
    # what openpyxl can inflate (zip bombs).
    total = sum(info.file_size for info in entries)
    if total > limits.max_excel_uncompressed_bytes:
        raise FormatError(
            f"the Excel file expands to {total:,} bytes; the limit is {limits.max_excel_uncompressed_bytes:,}"
        )
    if not any(info.filename == "xl/workbook.xml" for info in entries):
        raise FormatError("the file is a zip package but not an Excel workbook (no xl/workbook.xml)")


def _select_sheet(workbook: Any, sheet: str | None) -> Any:
    names: list[str] = list(workbook.sheetnames)
    if not names:
        raise FormatError("the Excel workbook has no sheets")
    if not sheet:
        return workbook[names[0]]
    wanted = sheet.strip()
    wanted = wanted[:-1] if wanted.endswith("$") else wanted
    for name in names:
        if name.casefold() == wanted.casefold():
            return workbook[name]
    listed = ", ".join(repr(n) for n in names)
    raise FormatError(f"the Excel workbook has no sheet named {sheet!r}; its sheets are {listed}")


def _sheet_rows(worksheet: Any, limits: ReaderLimits) -> Iterator[SourceRow]:
    max_columns = limits.max_columns
    max_field = limits.max_field_chars
    # Writers other than Excel often store a wrong dimension; without it openpyxl reads all rows.
    if hasattr(worksheet, "reset_dimensions"):
        worksheet.reset_dimensions()
    rows = worksheet.iter_rows(values_only=True)
    header: list[str] | None = None
    columns: list[tuple[int, str]] = []
    number = 0
    while True:
        try:
            values = next(rows)
        except StopIteration:
            return
        except FormatError:
            raise
        except Exception as exc:  # a damaged sheet surfaces only while it is being read
            raise FormatError(
                f"the Excel sheet could not be read after row {number}: {_reason(exc)}"
            ) from None
        number += 1
        if len(values) > max_columns:
            # Trailing empty cells (formatting only) do not count against the limit.
            while values and values[-1] is None:
                values = values[:-1]
            if len(values) > max_columns:
                raise FormatError(f"row {number} has {len(values)} columns; the limit is {max_columns}")
        texts = [cell_text(v) for v in values]
        if not any(t not in (None, "") for t in texts):
            continue  # an empty row
        for index, text in enumerate(texts):
            if text is not None and len(text) > max_field:
                raise FormatError(
                    f"row {number}, column {index + 1}: the value is {len(text):,} characters long; "
                    f"the limit is {max_field:,}"
                )
        if header is None:
            header = _make_header(texts, number)
            columns = [(i, name) for i, name in enumerate(header) if name]
            continue
        row: dict[str, str | None] = {}
        width = len(texts)
        for index, name in columns:
            row[name] = texts[index] if index < width else None
        if width > len(header) and any(t not in (None, "") for t in texts[len(header) :]):
            row[ERROR_KEY] = (
                f"row has values beyond the last header column ({width} columns, the header has {len(header)})"
            )
        yield number, row


def _make_header(texts: list[str | None], number: int) -> list[str]:
    header = [(t or "").strip() for t in texts]
    seen: set[str] = set()
    for name in header:
        if name and name in seen:
            raise FormatError(f"the header row (row {number}) repeats the column {name!r}")
        seen.add(name)
    return header
