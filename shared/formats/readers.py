"""One entry point that turns a source file (any supported format) into raw rows, streamed.

Every reader yields `SourceRow` tuples: the 1-based line or record number in the source and a
dict of column name -> raw text (None for a missing or nil value). A problem with one row is not
an error here: the row carries an `ERROR_KEY` entry with the reason, and the mapper rejects it
later. A file that cannot be read at all raises `shared.errors.FormatError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from shared.domain.schema import SourceFormat
from shared.errors import FormatError

SourceRow = tuple[int, dict[str, str | None]]

# Key of the per-row error marker. It cannot clash with a real column: no format yields it.
ERROR_KEY = "__error__"

MiB = 1024 * 1024


@dataclass(frozen=True)
class ReaderLimits:
    """Structural limits that keep one hostile file from exhausting a worker.

    Each is checked while the input streams, so a file over one fails when it passes it (FormatError
    naming the limit) with memory bounded by the limits, never after its content was loaded.
    """

    max_columns: int = 1000
    max_field_chars: int = 1 * MiB
    # One record (a CSV line, or lines of a quoted multi-line record; one JSON object).
    max_record_chars: int = 8 * MiB
    max_xml_depth: int = 32
    # Raw bytes of one unit of an XML stream (an XML record, an Excel row or shared string), counted under
    # the parser: libxml2 holds a unit whole before any check on it can run (shared/formats/xml_budget.py).
    max_record_bytes: int = 4 * MiB
    # JSON: arrays/objects nested deeper than this (the top-level array is level 1, a record level 2).
    max_json_depth: int = 64
    # Excel: the spool stays in memory up to this size, then moves to a temporary file.
    spool_memory_bytes: int = 8 * MiB
    max_excel_bytes: int = 1024 * MiB
    max_excel_uncompressed_bytes: int = 4096 * MiB
    # Excel's shared-strings table, checked while it is read (past 8 MiB it lives in a temporary file).
    max_shared_strings: int = 4_000_000
    max_shared_strings_chars: int = 256 * MiB


DEFAULT_LIMITS = ReaderLimits()


def read_rows(
    stream: BinaryIO,
    fmt: SourceFormat,
    *,
    entity_name: str | None = None,
    sheet: str | None = None,
    limits: ReaderLimits | None = None,
) -> Iterator[SourceRow]:
    """Read `stream` as `fmt` and yield its rows. Raises FormatError for an unreadable file."""
    limits = limits or DEFAULT_LIMITS
    kind = fmt.kind
    # The readers are imported here, not at module level: lxml and openpyxl are slow to import,
    # and a function cold start should pay only for the format it actually reads.
    if kind == "csv":
        from shared.formats.csv_reader import read_csv_rows

        return read_csv_rows(stream, fmt, limits=limits)
    if kind in ("xml-element", "xml-attribute"):
        from shared.formats.xml_reader import read_xml_rows

        return read_xml_rows(
            stream, attributes=(kind == "xml-attribute"), entity_name=entity_name, limits=limits
        )
    if kind == "json":
        from shared.formats.json_reader import read_json_rows

        return read_json_rows(stream, fmt, limits=limits)
    if kind == "excel":
        from shared.formats.excel_reader import read_excel_rows

        return read_excel_rows(stream, sheet=sheet, limits=limits)
    raise FormatError(f"the source format {fmt.name!r} has an unsupported kind {kind!r}")
