"""The hardened lxml parser factory and helpers that every XML consumer uses."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from lxml import etree

from shared.errors import FormatError
from shared.formats import xml_safety

XXE = b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'


def test_make_parser_is_hardened() -> None:
    parser = xml_safety.make_parser()
    # The parser must not expand entities, even when a caller ignores check_docinfo.
    root = etree.fromstring(XXE, parser)
    assert "root:" not in etree.tostring(root, encoding="unicode")


def test_make_parser_refuses_weakening_overrides() -> None:
    with pytest.raises(ValueError, match="resolve_entities=True is not allowed"):
        xml_safety.make_parser(resolve_entities=True)
    with pytest.raises(ValueError, match="no_network=False"):
        xml_safety.make_parser(no_network=False)
    # Harmless extras are fine.
    assert xml_safety.make_parser(remove_blank_text=True) is not None


def test_fromstring_and_parse_reject_entities() -> None:
    with pytest.raises(FormatError, match="declares a DTD/entities"):
        xml_safety.fromstring(XXE)
    with pytest.raises(FormatError, match="declares a DTD/entities"):
        xml_safety.parse(io.BytesIO(XXE))


def test_parse_refuses_paths() -> None:
    with pytest.raises(TypeError):
        xml_safety.parse("/etc/passwd")  # type: ignore[arg-type]


def test_fromstring_reports_syntax_errors() -> None:
    with pytest.raises(FormatError, match=r"not well-formed \(line 1, column \d+\)"):
        xml_safety.fromstring(b"<a><b></a>")


def test_iterparse_filters_events_and_checks_first() -> None:
    events = list(xml_safety.iterparse(io.BytesIO(b"<a><b/><c/></a>"), events=("end",)))
    assert [(event, el.tag) for event, el in events] == [("end", "b"), ("end", "c"), ("end", "a")]
    with pytest.raises(FormatError, match="declares a DTD/entities"):
        list(xml_safety.iterparse(io.BytesIO(XXE), events=("end",)))
    with pytest.raises(ValueError):
        list(xml_safety.iterparse(io.BytesIO(b"<a/>"), load_dtd=True))


def test_real_d365_manifest_parses(d365: Path) -> None:
    with (d365 / "ms-sample-asset-major-types" / "Manifest.xml").open("rb") as stream:
        tree = xml_safety.parse(stream)
    assert etree.QName(tree.getroot()).localname == "DataManagementPackageManifest"
