"""Write entity files for export: CSV (D365's conventions), XML-Element, XML-Attribute, JSON lines, Excel.

Pure and streaming: each writer takes a binary stream, the columns to write (entity field and its
column/element name in the file), the source format and the rows in pages (mappings of field name to
stored value, e.g. Table rows), and writes the file page by page, so memory holds about one page.
Converters are built once per file; each page is formatted and encoded in one go.

Values as written: 'yyyy-MM-dd HH:mm:ss' datetimes in UTC (or the format's own patterns), exact
decimals in plain notation, Yes/No booleans; JSON carries numbers, booleans, exact decimal strings and
ISO-8601 dates. A missing (None) value is an empty field, an empty element or attribute, or JSON null.

Formula neutralization (CSV and Excel, on unless `neutralize=False`): a text value (string and enum
fields) that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is written with a single quote in
front, so that a spreadsheet shows it instead of running it as a formula (OWASP, "CSV Injection",
owasp.org/www-community/attacks/CSV_Injection). Numbers, dates and booleans are never changed: a
negative int or decimal stays `-5`. In CSV without a text qualifier, where a delimiter or line break in a
value is only backslash-escaped and a spreadsheet would start a new cell there, the start of each such
cell is neutralized too. Excel text cells are always written as strings (never a formula or an error
value), whatever the option.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, BinaryIO

from shared.domain.schema import Field, SourceFormat
from shared.formats.conversion import strptime_pattern

Column = tuple[Field, str]  # (entity field, column/element name in the file)
Page = Sequence[Mapping[str, Any]]  # rows: field name → stored value

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")  # OWASP's list of characters that start a formula
_TEXT_TYPES = frozenset({"string", "enum"})  # field types whose values are free text
_SHEET_JUNK = re.compile(r"[\[\]:*?/\\]")
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


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
        # A format with its own yes/no words writes its first ones, so that it reads its exports back.
        yes = fmt.true_values[0] if fmt.true_values else "Yes"
        no = fmt.false_values[0] if fmt.false_values else "No"
        return lambda v: yes if _plain(v) in (True, "true", "True", 1) else no
    return lambda v: str(_plain(v))


def neutralize_formula(text: str) -> str:
    """`text` with a single quote in front when a spreadsheet would run it as a formula (FORMULA_PREFIXES)."""
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def _cell_converters(
    columns: Sequence[Column], fmt: SourceFormat, neutralize: bool, guard: Callable[[str], str] | None = None
) -> list[tuple[str, Callable[[Any], str]]]:
    """(field name, stored value → cell text) per column; text fields neutralized when `neutralize`."""
    guard = guard or neutralize_formula
    converters = []
    for f, _ in columns:
        convert = _text_converter(f, fmt)
        if neutralize and f.type in _TEXT_TYPES:
            convert = (lambda c: lambda v: guard(c(v)))(convert)
        converters.append((f.name, convert))
    return converters


def _unqualified_guard(delimiter: str) -> Callable[[str], str]:
    """Neutralization for CSV without a text qualifier: a spreadsheet ignores the backslash escapes, so
    every delimiter or line break inside a value starts a cell of its own, and each of those is guarded."""
    starts = re.compile(f"(^|[{re.escape(delimiter)}\r\n])(?=[=+\\-@\t\r])")
    return lambda text: starts.sub(r"\1'", text)


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


def _encoding(fmt: SourceFormat) -> tuple[str, bytes]:
    """The codec and the BOM to start the file with. D365's CSV is UTF-8 without a BOM; CSV-Unicode is
    UTF-16LE with one."""
    name = (fmt.codec or "utf-8").lower().replace("_", "-")
    if name in ("utf-16", "utf-16-le", "utf-16le"):
        return "utf-16-le", b"\xff\xfe"
    if name in ("utf-16-be", "utf-16be"):
        return "utf-16-be", b"\xfe\xff"
    if name == "utf-8-sig":
        return "utf-8", b"\xef\xbb\xbf"
    return name, b""


def excel_sheet_name(name: str) -> str:
    """A valid Excel worksheet name: no []:*?/\\ (each becomes _), no surrounding quotes, 31 characters
    at most; 'Sheet1' when nothing is left."""
    return (_SHEET_JUNK.sub("_", name).strip("'") or "Sheet1")[:31]


# Entity file writers: (stream, columns, format, pages of rows) -------------------------------------


def write_csv(
    stream: BinaryIO,
    columns: Sequence[Column],
    fmt: SourceFormat,
    pages: Iterable[Page],
    *,
    neutralize: bool = True,
) -> None:
    """Delimited text with CRLF line ends: values quoted only when they hold the delimiter, the qualifier
    or a line break (no qualifier: such characters are escaped with a backslash); a header row when the
    format has one; the format's encoding (and its BOM for UTF-16 or utf-8-sig). Text that would run as a
    formula is neutralized unless `neutralize` is False (see the module docstring)."""
    codec, bom = _encoding(fmt)
    buffer = io.StringIO()
    if fmt.text_qualifier:
        writer = csv.writer(
            buffer,
            delimiter=fmt.delimiter_char,
            quotechar=fmt.text_qualifier,
            quoting=csv.QUOTE_MINIMAL,  # quote only a value that holds the delimiter, a quote or a line break
            doublequote=True,
            lineterminator="\r\n",
        )
    else:
        writer = csv.writer(
            buffer,
            delimiter=fmt.delimiter_char,
            quoting=csv.QUOTE_NONE,
            escapechar="\\",
            lineterminator="\r\n",
        )
    guard = None if fmt.text_qualifier else _unqualified_guard(fmt.delimiter_char)
    converters = _cell_converters(columns, fmt, neutralize, guard)
    stream.write(bom)
    if fmt.header_row:
        writer.writerow([column for _, column in columns])
    for page in pages:
        rows = []
        for row in page:
            values = []
            for name, convert in converters:
                value = row.get(name)
                values.append("" if value is None else convert(value))
            rows.append(values)
        writer.writerows(rows)
        stream.write(buffer.getvalue().encode(codec))
        buffer.seek(0)
        buffer.truncate()
    stream.write(buffer.getvalue().encode(codec))


def write_xml(
    stream: BinaryIO,
    columns: Sequence[Column],
    fmt: SourceFormat,
    pages: Iterable[Page],
    *,
    record: str,
    attributes: bool,
) -> None:
    """<Document><RECORD><FIELD>value</FIELD>…</RECORD>…</Document> (XML-Element) or
    <Document><RECORD FIELD="value" …/>…</Document> (XML-Attribute), as D365 writes them."""
    codec, bom = _encoding(fmt)
    converters = [(f.name, column, _text_converter(f, fmt)) for f, column in columns]
    declared = "utf-16" if codec.startswith("utf-16") else codec
    stream.write(bom + f'<?xml version="1.0" encoding="{declared}"?>\r\n<Document>\r\n'.encode(codec))
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
        stream.write("".join(parts).encode(codec))
    stream.write("</Document>\r\n".encode(codec))


def write_json(stream: BinaryIO, columns: Sequence[Column], fmt: SourceFormat, pages: Iterable[Page]) -> None:
    """JSON Lines: one object per record, keyed by column, with exact decimal strings and ISO dates."""
    codec, bom = _encoding(fmt)
    converters = [(f.name, column, _json_converter(f)) for f, column in columns]
    stream.write(bom)
    for page in pages:
        lines = []
        for row in page:
            obj = {}
            for name, column, convert in converters:
                value = row.get(name)
                obj[column] = None if value is None else convert(value)
            lines.append(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))
        if lines:
            stream.write(("\n".join(lines) + "\n").encode(codec))


def write_excel(
    stream: BinaryIO,
    columns: Sequence[Column],
    fmt: SourceFormat,
    pages: Iterable[Page],
    *,
    sheet: str | None = None,
    neutralize: bool = True,
) -> None:
    """An .xlsx workbook with one sheet (`sheet`, else 'Sheet1'): a header row of the column names, then
    one row per record with the values as text (as in CSV); a missing value is an empty cell. Text that
    would run as a formula is neutralized unless `neutralize` is False (see the module docstring).

    openpyxl's write-only mode keeps rows in a temporary file; saving writes a zip, so `stream` should
    be a seekable file (e.g. a temporary file)."""
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    worksheet = workbook.create_sheet(sheet or "Sheet1")
    worksheet.append([_excel_text(worksheet, column) for _, column in columns])
    converters = _cell_converters(columns, fmt, neutralize)
    for page in pages:
        for row in page:
            values = []
            for name, convert in converters:
                value = row.get(name)
                # Cells cannot hold XML-invalid control characters; drop them as the XML writer does.
                values.append(
                    None if value is None else _excel_text(worksheet, _XML_INVALID.sub("", convert(value)))
                )
            worksheet.append(values)
    workbook.save(stream)


def _excel_text(worksheet: Any, text: str) -> Any:
    """`text` as openpyxl should store it: plain text as is; text that openpyxl would turn into a formula
    (it starts with '=') or an error value ('#N/A', ...) as a cell forced to a string.

    openpyxl 3.1 Cell._bind_value sets data_type 'f' for a str longer than one character starting with
    '=' and 'e' for one of ERROR_CODES; a cell's data_type can be reset to 's' after the value is bound,
    and the writer then emits an inline string (openpyxl/cell/_writer.py)."""
    if not text.startswith(("=", "#")):
        return text
    from openpyxl.cell import WriteOnlyCell

    cell = WriteOnlyCell(worksheet, value=text)
    cell.data_type = "s"
    return cell
