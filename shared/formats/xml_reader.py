"""Reads D365's XML-Element and XML-Attribute files record by record, in bounded memory.

XML-Element:   <Document><ENTITY><FIELD>value</FIELD>...</ENTITY>...</Document>
XML-Attribute: <Document><ENTITY FIELD="value" .../>...</Document>

Each child of the root is one record. Nothing in a record is dropped silently (issue 12): what has a plain
meaning as a field is imported, anything else rejects the record with a reason naming it:

- XML-Element: attributes of the record element are fields too (`<ENTITY ID="1"><NAME>x</NAME></ENTITY>`);
  a field with nested elements or with attributes other than xsi:nil, text between the fields, or a field
  given twice (as an element and an attribute, or twice as an element) rejects the record.
- XML-Attribute: child elements (a header with nested lines) or text inside the record reject it: its
  fields are its attributes, and nested records belong to an entity of their own.
- Both: attributes in the xsi: and xml: namespaces are markup, not fields; other namespaced attributes and
  elements are fields by their local name. Text outside any record (directly in the root) fails the file.
 Records are cleared as soon as they are yielded, so memory
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
                if number == 0:
                    _check_stray_text(element, before=True)  # later text is checked as records are dropped
                # All attributes arrive with the start tag: check them before any child is parsed. In both
                # formats, as XML-Element imports a record's attributes too.
                if attributes or element.keys():
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
        if depth == 0:
            # The root ended: text after the last record (or in a root without records) is left to check.
            _check_root_end(element)
            continue
        if depth != _RECORD_DEPTH - 1:
            continue
        number += 1
        line = element.sourceline or number
        row = _attribute_row(element, line) if attributes else _element_row(element, max_field, line)
        yield line, row
        # Bounded memory: drop the record and everything before it from the tree. Its tail (the text
        # up to the next record) is kept: it is checked when it is dropped, after the next record.
        element.clear(keep_tail=True)
        parent = element.getparent()
        while True:
            first = parent[0]
            if first is element:
                break
            tail = first.tail
            if tail and not tail.isspace():
                _stray_text(tail, parent, f"before the record at line {element.sourceline}")
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


def _check_stray_text(record: Any, *, before: bool) -> None:
    """FormatError for text directly in the root element, which belongs to no record.

    Called at a record's start with the text before it (the root's own text, then the tails of the
    siblings still in the tree: the previous record, comments), and by _check_root_end with the text after
    the last record. Whitespace (indentation) is fine.
    """
    parent = record.getparent()
    if parent is None:
        return
    texts: list[str | None] = []
    if before:
        previous = record.getprevious()
        if previous is None or previous.getprevious() is None:
            texts.append(parent.text)  # the first record or comment: the root's text is not yet checked
        sibling = previous
        while sibling is not None:
            texts.append(sibling.tail)
            sibling = sibling.getprevious()
    else:
        texts.extend(sibling.tail for sibling in record.itersiblings())  # comments after it
        texts.append(record.tail)
    for text in texts:
        if text and not text.isspace():
            where = "before the record" if before else "after the record"
            _stray_text(text, parent, f"{where} at line {record.sourceline}")


def _stray_text(text: str, root: Any, where: str) -> None:
    raise FormatError(
        f"the XML has text {_shown(text)} directly in the root element <{_local(root.tag)}>, {where}: "
        "the root may hold only records (one element each)"
    )


def _check_root_end(root: Any) -> None:
    """At the root's end: the text after its last record, or all of its text when it has no record."""
    records = [child for child in root if isinstance(child.tag, str)]
    if records:
        _check_stray_text(records[-1], before=False)
        return
    texts = [root.text, *(child.tail for child in root)]  # comments only
    text = next((t for t in texts if t and t.strip()), None)
    if text is not None:
        raise FormatError(
            f"the XML has text {_shown(text)} directly in the root element <{_local(root.tag)}> (line "
            f"{root.sourceline}) and no record: the root may hold only records (one element each)"
        )


def _shown(text: str) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= 40 else text[:40] + "...")


def _is_markup(name: str) -> bool:
    """xsi:nil, xsi:type, xml:lang... describe the value; they are not fields."""
    return name.startswith(_MARKUP_NAMESPACES)


_MARKUP_NAMESPACES = ("{http://www.w3.org/2001/XMLSchema-instance}", "{http://www.w3.org/XML/1998/namespace}")


def _record_text(record: Any) -> str | None:
    """Non-blank text directly inside a record (around or between its child elements), else None."""
    if record.text and not record.text.isspace():
        return record.text
    for child in record:
        if child.tail and not child.tail.isspace():
            return child.tail
    return None


def _element_row(record: Any, max_field: int, line: int) -> dict[str, str | None]:
    """XML-Element: child elements and the record's own attributes are fields."""
    row: dict[str, str | None] = {}
    problems: list[str] = []
    for key, value in record.items():
        if not _is_markup(key):
            row[_local(key)] = value  # sizes were checked when the record started
    stray = record.text if record.text and not record.text.isspace() else None
    for child in record:
        tail = child.tail
        if tail and stray is None and not tail.isspace():
            stray = tail
        tag = child.tag
        if not isinstance(tag, str):
            continue  # a comment or processing instruction
        name = _local(tag)
        if name in row:
            problems.append(f"field {name} appears more than once")
            continue
        if len(child):
            nested = _names(child)
            problems.append(
                f"field {name} (line {child.sourceline}) contains the nested element(s) {nested}; "
                "only simple values are supported"
            )
            row[name] = None
            continue
        keys = child.keys()
        extra = [_local(k) for k in keys if not _is_markup(k)] if keys else None
        if extra:
            # An attribute such as currency="EUR" qualifies the value: importing the value without it
            # would change its meaning, and there is no field to put it in.
            problems.append(
                f"field {name} (line {child.sourceline}) has the attribute(s) {', '.join(extra)}, which are "
                "not imported; XML-Element fields are plain elements"
            )
            row[name] = None
            continue
        if keys and child.get(XSI_NIL) in ("true", "1"):
            row[name] = None
            continue
        text = child.text or ""
        _check_size(text, name, max_field, line)
        row[name] = text
    if stray is not None:
        problems.append(
            f"the record holds the text {_shown(stray)} outside its fields, which is not imported"
        )
    if problems:
        row[ERROR_KEY] = "; ".join(problems)
    return row


def _attribute_row(record: Any, line: int) -> dict[str, str | None]:
    """XML-Attribute: the record's attributes are its fields; child elements and text reject the record."""
    # Sizes and counts were checked when the record started.
    items = record.items()
    # The usual record has no namespaced attribute: one comprehension, then the rare ones by local name.
    row: dict[str, str | None] = {key: value for key, value in items if key[0] != "{"}
    problems: list[str] = []
    if len(row) != len(items):
        for key, value in items:
            if key[0] != "{" or _is_markup(key):
                continue
            name = _local(key)
            if name in row:
                problems.append(f"field {name} appears more than once (in two namespaces)")
            row[name] = value
    children = [child for child in record if isinstance(child.tag, str)] if len(record) else None
    if children:
        first = children[0]
        problems.append(
            f"the record has the child element(s) {_names(record)} (first at line {first.sourceline}), which "
            "XML-Attribute does not import: a record's fields are its attributes. Import nested records "
            "(such as lines under a header) as an entity of their own, or use XML-Element for a record "
            "whose fields are elements"
        )
    text = _record_text(record)
    if text is not None:
        problems.append(
            f"the record holds the text {_shown(text)}, which XML-Attribute does not import: a record's "
            "fields are its attributes"
        )
    if problems:
        row[ERROR_KEY] = "; ".join(problems)
    return row


def _names(element: Any, most: int = 5) -> str:
    """The distinct local names of an element's children, for a message: "LINE, NOTE"."""
    names = list(dict.fromkeys(_local(c.tag) for c in element if isinstance(c.tag, str)))
    shown = ", ".join(f"<{n}>" for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")
