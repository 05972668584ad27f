"""The only way this app parses untrusted XML: lxml with entities, DTDs and network access off.

Partner files and packages are untrusted. The settings below stop XXE (external entities reading
local files or URLs), entity-expansion bombs ("billion laughs") and oversized trees; on top of
that, any document whose DOCTYPE declares entities or points to an external DTD is rejected
outright, because no legitimate D365 file has one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, BinaryIO

from lxml import etree

from shared.errors import FormatError

DTD_NOT_ALLOWED = "the file declares a DTD/entities, which are not allowed"

_TRAILING_POSITION = re.compile(r"(?:,? line \d+)?(?:, column \d+)?\s*$")

HARDENED_OPTIONS: dict[str, Any] = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "dtd_validation": False,
    "huge_tree": False,
}


def make_parser(**overrides: Any) -> etree.XMLParser:
    """A hardened XMLParser. Overrides may add options (e.g. remove_blank_text), not weaken them."""
    options = {**HARDENED_OPTIONS, "collect_ids": False}
    for key, value in overrides.items():
        if key in HARDENED_OPTIONS and value != HARDENED_OPTIONS[key]:
            raise ValueError(f"the XML parser option {key}={value!r} is not allowed")
        options[key] = value
    return etree.XMLParser(**options)


def check_docinfo(docinfo: Any) -> None:
    """Raise FormatError when the document has a DOCTYPE with entities or an external DTD."""
    if docinfo.system_url or docinfo.public_id:
        raise FormatError(DTD_NOT_ALLOWED)
    dtd = docinfo.internalDTD
    if dtd is not None:
        for _entity in dtd.iterentities():
            raise FormatError(DTD_NOT_ALLOWED)


def describe_syntax_error(exc: etree.XMLSyntaxError, log: Any = None) -> str:
    """A reason for people: where the XML is broken and what the cause is.

    libxml2 reports some faults by a consequence ("no element found" with no position for an undefined
    entity, "Premature end of data" for a truncated file): when the exception has no position, the first
    error of the parser's own `log` (the iterparse context's error_log) is the cause. Known messages are
    then said in terms of the cause (_CAUSES), with libxml2's words kept after them.
    """
    line, column = exc.position if exc.position else (exc.lineno, None)
    message = exc.msg or str(exc)
    if not line and log is not None:
        first = next((e for e in log if e.line), None)
        if first is not None:
            line, column, message = first.line, first.column, first.message
    # libxml2 messages often end with their own ", line N, column M"; we say where ourselves.
    message = _TRAILING_POSITION.sub("", message.strip())
    if not line:
        if message == "no element found":
            return "the XML file is empty (it has no root element)"
        return f"the XML is not well-formed: {message}"
    lowered = message.lower()
    if "amplification" in lowered or ("entity" in lowered and "loop" in lowered):
        # libxml2's own entity-expansion guards fired: say so in our words.
        return DTD_NOT_ALLOWED
    where = f"line {line}" if column is None else f"line {line}, column {column}"
    for pattern, cause in _CAUSES:
        match = pattern.match(message)
        if match:
            return f"the XML is not well-formed ({where}): {cause.format(*match.groups())} [{message}]"
    return f"the XML is not well-formed ({where}): {message}"


# libxml2 messages that describe a consequence, and the cause to report instead.
_CAUSES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"Premature end of data in tag (\S+) line (\d+)"),
        "the file ends before the element <{0}> opened on line {1} is closed; it looks truncated",
    ),
    (
        re.compile(r"Opening and ending tag mismatch: (\S+) line (\d+) and (\S+)"),
        "the element <{0}> opened on line {1} is closed by </{2}>",
    ),
    (
        re.compile(r"(?:xmlParseEntityRef: no name|EntityRef: expecting ';')"),
        "a '&' that does not start an entity: write a literal & as &amp;",
    ),
    (
        re.compile(r"Entity '([^']*)' not defined"),
        "the entity &{0}; is not defined in XML (only &amp; &lt; &gt; &quot; &apos; and numeric ones "
        "such as &#160; are)",
    ),
    (
        re.compile(r"Input is not proper UTF-8|Invalid bytes in character encoding"),
        "bytes that are not valid in the file's encoding (UTF-8 unless the XML declaration names another); "
        "save the file as UTF-8 or declare its encoding",
    ),
    (re.compile(r"Document is empty"), "the file is empty or holds only blanks"),
    (
        re.compile(r"Start tag expected, '<' not found"),
        "the file does not start with an XML element; it is not XML",
    ),
    (
        re.compile(r"Extra content at the end of the document"),
        "more content after the root element has ended; an XML file has exactly one root element",
    ),
)


def iterparse(
    source: BinaryIO, events: tuple[str, ...] = ("end",), **options: Any
) -> Iterator[tuple[str, Any]]:
    """lxml.etree.iterparse with the hardened settings.

    The DOCTYPE is checked at the very first event (the root's start), before any element
    content reaches the caller; syntax errors become FormatError with the line and column.
    """
    for key in options:
        if key in HARDENED_OPTIONS:
            raise ValueError(f"the XML parser option {key} cannot be changed")
    # A "start" event is always requested internally, so the check runs at the root's start.
    wanted = set(events)
    internal = tuple(dict.fromkeys(("start", *events)))
    context = etree.iterparse(source, events=internal, collect_ids=False, **HARDENED_OPTIONS, **options)
    checked = False
    while True:
        try:
            event, element = next(context)
        except StopIteration:
            return
        except etree.XMLSyntaxError as exc:
            raise FormatError(describe_syntax_error(exc, context.error_log)) from None
        if not checked:
            check_docinfo(element.getroottree().docinfo)
            checked = True
        if event in wanted:
            yield event, element


def parse(source: BinaryIO, *, parser: etree.XMLParser | None = None) -> Any:
    """Parse a whole (small) document, e.g. a manifest or an XSLT, with the hardened settings.

    Only file objects are accepted: a str would be taken as a path or URL by lxml.
    """
    if isinstance(source, str | bytes):
        raise TypeError("parse() takes a binary file object; use fromstring() for bytes")
    try:
        tree = etree.parse(source, parser or make_parser())
    except etree.XMLSyntaxError as exc:
        raise FormatError(describe_syntax_error(exc)) from None
    check_docinfo(tree.docinfo)
    return tree


def fromstring(data: bytes, *, parser: etree.XMLParser | None = None) -> Any:
    """Parse bytes with the hardened settings and return the root element."""
    try:
        root = etree.fromstring(data, parser or make_parser())
    except etree.XMLSyntaxError as exc:
        raise FormatError(describe_syntax_error(exc)) from None
    check_docinfo(root.getroottree().docinfo)
    return root
