"""Reads D365's XML-Element and XML-Attribute files record by record, in bounded memory.

XML-Element:   <Document><ENTITY><FIELD>value</FIELD>...</ENTITY>...</Document>
XML-Attribute: <Document><ENTITY FIELD="value" .../>...</Document>

Each child of the root is one record. Records are cleared as soon as they are yielded, so memory
holds one record at a time however large the file is, and one record is bounded while it is parsed: its
raw bytes (ReaderLimits.max_record_bytes, counted under the parser, shared/formats/xml_budget.py), its
elements (10 x max_columns) and depth (max_xml_depth) as they start, each field's text (max_field_chars)
and the record's text (max_record_chars) as each field ends, its attributes as the record starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO

from shared.errors import FormatError
from shared.formats import xml_safety
from shared.formats.readers import DEFAULT_LIMITS, ERROR_KEY, ReaderLimits, SourceRow
from shared.formats.xml_budget import BudgetedSource

XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"

# Depth of the parts of a document: the root, its records, and the records' fields.
_RECORD_DEPTH = 2
_FIELD_DEPTH = 3


def _local(tag: Any) -> str:
    """A tag without its namespace: D365 data files use none, but some tools add one."""
    return tag.rpartition("}")[2] if tag[0] == "{" else tag


def read_xml_rows(
    stream: BinaryIO,
    *,
    attributes: bool = False,
    entity_name: str | None = None,
    limits: ReaderLimits = DEFAULT_LIMITS,
) -> Iterator[SourceRow]:
    """Yield (source line of the record, {field: value}) for each record of a D365 XML file.

    `attributes` selects XML-Attribute (fields are attributes) over XML-Element (fields are
    child elements; xsi:nil="true" gives None, an empty element ""). Record tags are not
    checked against `entity_name`: D365 spells them with the entity's public name, its label or
    in upper case, so any child of the root is a record.
    """
    return _records(stream, attributes, limits)


def _records(stream: BinaryIO, attributes: bool, limits: ReaderLimits) -> Iterator[SourceRow]:
    max_depth = limits.max_xml_depth
    max_columns = limits.max_columns
    max_field = limits.max_field_chars
    max_chars = limits.max_record_chars
    # Nested elements inside fields are rejected per row, but still need a bound.
    max_descendants = max_columns * 10
    depth = 0
    fields = 0
    descendants = 0
    chars = 0
    number = 0
    source = BudgetedSource(
        stream,
        budget=limits.max_record_bytes,
        describe=lambda b: (
            f"a record (after record {number}) takes more than {b:,} bytes of XML; "  # noqa: B023 - the record reached
            f"the limit is {b:,} bytes (max_record_bytes)"
        ),
    )
    for event, element in xml_safety.iterparse(source, events=("start", "end")):
        if event == "start":
            depth += 1
            if depth > max_depth:
                raise FormatError(
                    f"the XML nests elements more than {max_depth} levels deep (line {element.sourceline})"
                )
            if depth == _RECORD_DEPTH:
                fields = 0
                descendants = 0
                chars = 0
                if attributes:
                    # All attributes arrive with the start tag: check them before any child is parsed.
                    _check_attributes(element, max_columns, max_field, max_chars, element.sourceline or 0)
            elif depth >= _FIELD_DEPTH:
                # Checked while parsing, so a giant record fails before it is built in memory.
                descendants += 1
                if depth == _FIELD_DEPTH and not attributes:
                    fields += 1
                    if fields > max_columns:
                        raise FormatError(
                            f"a record (line {element.sourceline}) has more than {max_columns} "
                            f"fields; the limit is {max_columns}"
                        )
                if descendants > max_descendants:
                    raise FormatError(
                        f"a record (line {element.sourceline}) holds more than {max_descendants} "
                        f"elements; the limit is {max_descendants}"
                    )
            elif depth == 1:
                source.mark()
            continue
        depth -= 1
        if depth == _FIELD_DEPTH - 1 and not attributes:
            # A field ended: its text is complete, so it is checked now, not when the record ends.
            text = element.text
            if text:
                line = element.getparent().sourceline or 0
                _check_size(text, _local(element.tag), max_field, line)
                chars += len(text)
                if chars > max_chars:
                    raise FormatError(
                        f"the record at line {line} holds more than {max_chars:,} characters; "
                        f"the limit is {max_chars:,} (max_record_chars)"
                    )
            continue
        if depth != _RECORD_DEPTH - 1:
            continue
        number += 1
        line = element.sourceline or number
        row = _attribute_row(element) if attributes else _element_row(element, max_field, line)
        yield line, row
        # Bounded memory: drop the record and everything before it from the tree.
        element.clear(keep_tail=False)
        parent = element.getparent()
        while element.getprevious() is not None:
            del parent[0]
        source.mark()


def _check_size(value: str, name: str, max_field: int, line: int) -> None:
    if len(value) > max_field:
        raise FormatError(
            f"the record at line {line}: field {name} is {len(value):,} characters long; "
            f"the limit is {max_field:,} (max_field_chars)"
        )


def _check_attributes(record: Any, max_columns: int, max_field: int, max_chars: int, line: int) -> None:
    attrib = record.attrib
    if len(attrib) > max_columns:
        raise FormatError(
            f"the record at line {line} has {len(attrib)} attributes; the limit is {max_columns} (max_columns)"
        )
    chars = 0
    for key, value in attrib.items():
        _check_size(value, _local(key), max_field, line)
        chars += len(value)
    if chars > max_chars:
        raise FormatError(
            f"the record at line {line} holds more than {max_chars:,} characters; "
            f"the limit is {max_chars:,} (max_record_chars)"
        )


def _element_row(record: Any, max_field: int, line: int) -> dict[str, str | None]:
    row: dict[str, str | None] = {}
    problems: list[str] = []
    for child in record:
        tag = child.tag
        if not isinstance(tag, str):
            continue  # a comment or processing instruction
        name = _local(tag)
        if name in row:
            problems.append(f"field {name} appears more than once")
            continue
        if len(child):
            problems.append(f"field {name} contains nested elements; only simple values are supported")
            row[name] = None
            continue
        if child.get(XSI_NIL) in ("true", "1"):
            row[name] = None
            continue
        text = child.text or ""
        _check_size(text, name, max_field, line)
        row[name] = text
    if problems:
        row[ERROR_KEY] = "; ".join(problems)
    return row


def _attribute_row(record: Any) -> dict[str, str | None]:
    # Sizes and counts were checked when the record started.
    return {
        key: value for key, value in record.attrib.items() if key[0] != "{"
    }  # xsi:..., xml:lang are markup
