"""The XML-Element and XML-Attribute readers, including hostile documents."""

from __future__ import annotations

import codecs
import io
import time

import pytest

from shared.domain.schema import BUILTIN_FORMATS
from shared.errors import FormatError
from shared.formats.readers import ERROR_KEY, ReaderLimits, read_rows
from shared.formats.xml_reader import read_xml_rows
from tests.unit.formats import streams

ELEMENT = BUILTIN_FORMATS["XML-ELEMENT"]
ATTRIBUTE = BUILTIN_FORMATS["XML-ATTRIBUTE"]
XSI = 'xmlns:i="http://www.w3.org/2001/XMLSchema-instance"'


def element_rows(data: bytes, **limits: int) -> list:
    return list(read_xml_rows(io.BytesIO(data), attributes=False, limits=ReaderLimits(**limits)))


def attribute_rows(data: bytes, **limits: int) -> list:
    return list(read_xml_rows(io.BytesIO(data), attributes=True, limits=ReaderLimits(**limits)))


def test_xml_element_records_and_fields() -> None:
    data = f"""<?xml version="1.0" encoding="utf-8"?>
<Document {XSI}>
  <CUSTCUSTOMERGROUPENTITY>
    <CUSTOMERGROUPID>10</CUSTOMERGROUPID>
    <DESCRIPTION>Wholesale &amp; retail</DESCRIPTION>
    <PAYMENTTERMS i:nil="true" />
    <NOTES/>
  </CUSTCUSTOMERGROUPENTITY>
  <CUSTCUSTOMERGROUPENTITY><CUSTOMERGROUPID>20</CUSTOMERGROUPID></CUSTCUSTOMERGROUPENTITY>
</Document>""".encode()
    assert list(read_rows(io.BytesIO(data), ELEMENT, entity_name="CustCustomerGroupEntity")) == [
        (
            3,
            {"CUSTOMERGROUPID": "10", "DESCRIPTION": "Wholesale & retail", "PAYMENTTERMS": None, "NOTES": ""},
        ),
        (9, {"CUSTOMERGROUPID": "20"}),
    ]


def test_xml_attribute_records() -> None:
    data = f"""<Document {XSI}>
<CUSTCUSTOMERBASEENTITY ACCOUNTNUM="US-001" NAME="Contoso &lt;US&gt;" i:type="x"/>
<CUSTCUSTOMERBASEENTITY ACCOUNTNUM="US-002" NAME=""/>
</Document>""".encode()
    assert list(read_rows(io.BytesIO(data), ATTRIBUTE)) == [
        (2, {"ACCOUNTNUM": "US-001", "NAME": "Contoso <US>"}),  # namespaced attributes are markup
        (3, {"ACCOUNTNUM": "US-002", "NAME": ""}),
    ]


def test_any_record_tag_is_accepted_and_namespaces_are_dropped() -> None:
    data = b'<d:Document xmlns:d="urn:x"><d:Customer><d:ID>1</d:ID></d:Customer><Other><ID>2</ID></Other></d:Document>'
    assert element_rows(data) == [(1, {"ID": "1"}), (1, {"ID": "2"})]


def test_utf16_document_with_bom() -> None:
    data = codecs.BOM_UTF16_LE + "<Document><E><N>Zoë</N></E></Document>".encode("utf-16-le")
    assert element_rows(data) == [(1, {"N": "Zoë"})]


def test_nested_and_repeated_fields_mark_the_row() -> None:
    data = b"<Document><E><A><B>1</B></A><C>x</C><C>y</C></E><E><A>ok</A></E></Document>"
    bad, good = element_rows(data)
    assert bad[1][ERROR_KEY] == (
        "field A (line 1) contains the nested element(s) <B>; only simple values are supported; "
        "field C appears more than once"
    )
    assert good == (1, {"A": "ok"})


def test_empty_document_has_no_rows() -> None:
    assert element_rows(b"<Document/>") == []


def test_malformed_xml_reports_the_line() -> None:
    data = b"<Document>\n<E><A>1</A></E>\n<E><A>2</B></E>\n</Document>"
    with pytest.raises(FormatError, match=r"the XML is not well-formed \(line 3, column \d+\)"):
        element_rows(data)


def test_truncated_xml_is_a_format_error_after_the_good_records() -> None:
    reader = read_xml_rows(io.BytesIO(b"<Document><E><A>1</A></E><E><A>2"))
    assert next(reader) == (1, {"A": "1"})
    with pytest.raises(FormatError, match="not well-formed"):
        next(reader)


def test_not_xml_at_all() -> None:
    with pytest.raises(
        FormatError, match=r"\(line 1, column 1\): the file does not start with an XML element"
    ):
        element_rows(b"A,B\n1,2\n")
    with pytest.raises(FormatError, match=r"^the XML file is empty \(it has no root element\)$"):
        element_rows(b"")


# Messages name the cause and where it is, not the consequence libxml2 reports (issue 12, class 7).
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            b"<Document>\n<E><A>1</A></E>\n<E><A>2",
            "(line 3, column 8): the file ends before the element <A> opened on line 3 is closed; "
            "it looks truncated",
        ),
        (
            b"<Document>\n<E><A>Fish & chips</A></E></Document>",
            "(line 2, column 13): a '&' that does not start",
        ),
        # libxml2 says only "no element found", with no position, for an undefined entity.
        (
            b"<Document>\n<E><A>&nbsp;</A></E></Document>",
            "(line 2, column 13): the entity &nbsp; is not defined",
        ),
        (b"<Document>\n<E><A>1</B></E></Document>", "the element <A> opened on line 2 is closed by </B>"),
        (
            b"<Document><E/></Document>\n<Document/>",
            "(line 2, column 1): more content after the root element",
        ),
    ],
)
def test_syntax_errors_name_their_cause_and_line(data: bytes, expected: str) -> None:
    with pytest.raises(FormatError) as info:
        element_rows(data)
    assert str(info.value).startswith("the XML is not well-formed ")
    assert expected in str(info.value)


def test_invalid_utf8_is_a_format_error_with_a_line() -> None:
    with pytest.raises(FormatError, match=r"line 2.*Invalid bytes in character encoding"):
        element_rows(b"<Document>\n<E><A>\xff</A></E></Document>")


def test_xxe_external_entity_is_refused_and_nothing_is_read() -> None:
    data = b"""<?xml version="1.0"?>
<!DOCTYPE Document [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Document><E><A>&xxe;</A></E></Document>"""
    with pytest.raises(FormatError) as info:
        element_rows(data)
    assert str(info.value) == "the file declares a DTD/entities, which are not allowed"
    assert "root:" not in str(info.value)


def test_xxe_parameter_entity_is_refused() -> None:
    data = b'<!DOCTYPE d [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><Document><E><A>1</A></E></Document>'
    with pytest.raises(FormatError, match="declares a DTD/entities"):
        element_rows(data)


def test_external_dtd_is_refused() -> None:
    data = b'<!DOCTYPE Document SYSTEM "http://127.0.0.1:1/evil.dtd"><Document><E A="1"/></Document>'
    with pytest.raises(FormatError, match="declares a DTD/entities"):
        attribute_rows(data)


def test_billion_laughs_fails_quickly() -> None:
    entities = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    )
    data = f'<?xml version="1.0"?><!DOCTYPE Document [{entities}]><Document><E><A>&lol9;</A></E></Document>'
    started = time.monotonic()
    with pytest.raises(FormatError, match="declares a DTD/entities"):
        element_rows(data.encode())
    assert time.monotonic() - started < 2


def test_a_plain_doctype_without_entities_is_allowed() -> None:
    assert element_rows(b"<!DOCTYPE Document><Document><E><A>1</A></E></Document>") == [(1, {"A": "1"})]


def test_depth_limit() -> None:
    data = b"<Document><E><A>" + b"<x>" * 40 + b"</x>" * 40 + b"</A></E></Document>"
    with pytest.raises(FormatError, match="more than 32 levels deep"):
        element_rows(data)


def test_too_many_fields_in_a_record() -> None:
    fields = b"".join(b"<F%d>1</F%d>" % (i, i) for i in range(20))
    with pytest.raises(FormatError, match="more than 10 fields; the limit is 10"):
        element_rows(b"<Document><E>" + fields + b"</E></Document>", max_columns=10)
    attrs = b" ".join(b'F%d="1"' % i for i in range(20))
    with pytest.raises(FormatError, match="has 20 attributes; the limit is 10"):
        attribute_rows(b"<Document><E " + attrs + b"/></Document>", max_columns=10)


def test_field_size_limit() -> None:
    with pytest.raises(FormatError, match="field A is 500 characters long; the limit is 100"):
        element_rows(b"<Document><E><A>" + b"x" * 500 + b"</A></E></Document>", max_field_chars=100)


def test_many_records_stream() -> None:
    count = 20_000
    data = b"<Document>" + b"".join(b"<E><ID>%d</ID></E>" % i for i in range(count)) + b"</Document>"
    seen = 0
    for seen, (_, values) in enumerate(read_rows(io.BytesIO(data), ELEMENT), 1):
        assert values == {"ID": str(seen - 1)}
    assert seen == count


MiB = 1024 * 1024


def test_a_long_field_fails_when_the_field_ends_not_when_the_record_does() -> None:
    # A 2 MB field, then 1 GB more of the same record: the reader stops right after the field.
    body = b"<Document><E><A>" + b"x" * (2 * MiB) + b"</A><B>"
    stream = streams.repeated(body, b"y", 1024 * MiB, b"</B></E></Document>")
    with pytest.raises(FormatError) as info:
        list(read_xml_rows(stream))
    assert str(info.value) == (
        "the record at line 1: field A is 2,097,152 characters long; the limit is 1,048,576 (max_field_chars)"
    )
    assert stream.bytes_read < 3 * MiB


def test_a_record_fails_at_its_text_limit_while_it_streams() -> None:
    fields = b"".join(b"<F%d>%s</F%d>" % (i, b"z" * 900, i) for i in range(10))
    with pytest.raises(FormatError) as info:
        element_rows(b"<Document><E>" + fields + b"</E></Document>", max_record_chars=5000)
    assert str(info.value) == (
        "the record at line 1 holds more than 5,000 characters; the limit is 5,000 (max_record_chars)"
    )


def test_a_record_fails_past_its_byte_budget_before_the_parser_holds_it() -> None:
    # Fields under every text limit, 1 GB of them in one record: only the byte budget can stop it.
    stream = streams.repeated(
        b"<Document><E>", b"<F>" + b"w" * 1000 + b"</F>", 1024 * MiB, b"</E></Document>"
    )
    with pytest.raises(FormatError) as info:
        list(read_xml_rows(stream, limits=ReaderLimits(max_record_chars=10**12, max_columns=10**9)))
    assert str(info.value) == (
        "a record (after record 0) takes more than 4,194,304 bytes of XML; "
        "the limit is 4,194,304 bytes (max_record_bytes)"
    )
    assert stream.bytes_read < 4 * MiB + 64 * 1024


def test_the_byte_budget_is_per_record() -> None:
    # 3,000 records of 2 KB each: 6 MB in all, far over the 64 KB budget, but each record is under it.
    records = b"".join(b"<E><A>%d</A><B>%s</B></E>" % (i, b"v" * 2000) for i in range(3000))
    result = element_rows(b"<Document>" + records + b"</Document>", max_record_bytes=64 * 1024)
    assert len(result) == 3000 and result[-1][1]["A"] == "2999"


def test_attributes_are_checked_when_the_record_starts() -> None:
    # 2,000 attributes, then 1 GB of child elements: refused at the start tag.
    attrs = b" ".join(b'F%d="1"' % i for i in range(2000))
    stream = streams.repeated(b"<Document><E " + attrs + b">", b"<x/>", 1024 * MiB, b"</E></Document>")
    with pytest.raises(FormatError, match=r"has 2000 attributes; the limit is 1000 \(max_columns\)"):
        list(read_xml_rows(stream, attributes=True))
    assert stream.bytes_read < MiB
    big = b'<Document><E A="' + b"q" * 3000 + b'"/></Document>'
    with pytest.raises(FormatError, match=r"field A is 3,000 characters long; the limit is 2,000"):
        attribute_rows(big, max_field_chars=2000)


# --- issue 12: nothing in a record is dropped silently -----------------------------------------

HEADER_WITH_LINES = b"""<Document>
  <SALESORDER ORDERID="SO1" CUSTOMER="C1">
    <LINE ITEM="A" QTY="1"/>
    <LINE ITEM="B" QTY="2"/>
  </SALESORDER>
  <SALESORDER ORDERID="SO2" CUSTOMER="C2"/>
</Document>"""


def test_xml_attribute_record_with_nested_lines_is_rejected_naming_them() -> None:
    bad, good = attribute_rows(HEADER_WITH_LINES)
    assert bad[0] == 2
    assert bad[1]["ORDERID"] == "SO1"  # the values stay visible in the error file
    reason = bad[1][ERROR_KEY]
    assert "the record has the child element(s) <LINE> (first at line 3)" in reason
    assert "XML-Attribute does not import" in reason
    assert good == (6, {"ORDERID": "SO2", "CUSTOMER": "C2"})


def test_xml_attribute_record_with_text_is_rejected() -> None:
    [(_, row)] = attribute_rows(b'<Document><E A="1">stray words</E></Document>')
    assert row[ERROR_KEY].startswith("the record holds the text 'stray words'")


def test_xml_attribute_markup_namespaces_are_skipped_and_other_namespaces_are_fields() -> None:
    data = (
        b'<Document xmlns:x="urn:x" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        b'<E A="1" x:B="2" xsi:type="t" xml:lang="en"/></Document>'
    )
    assert attribute_rows(data) == [(1, {"A": "1", "B": "2"})]
    [(_, row)] = attribute_rows(b'<Document xmlns:x="urn:x"><E A="1" x:A="2"/></Document>')
    assert row[ERROR_KEY] == "field A appears more than once (in two namespaces)"


def test_xml_element_record_attributes_are_fields() -> None:
    data = b'<Document><E CODE="1"><NAME>n</NAME></E><E CODE="2"><CODE>2</CODE></E></Document>'
    first, second = element_rows(data)
    assert first == (1, {"CODE": "1", "NAME": "n"})
    assert second[1][ERROR_KEY] == "field CODE appears more than once"


def test_xml_element_field_with_attributes_is_rejected_not_half_imported() -> None:
    data = (
        b'<Document xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        b'<E><AMOUNT currency="EUR">10</AMOUNT></E><E><AMOUNT xsi:nil="true"/></E></Document>'
    )
    bad, nil = element_rows(data)
    assert bad[1][ERROR_KEY] == (
        "field AMOUNT (line 1) has the attribute(s) currency, which are not imported; "
        "XML-Element fields are plain elements"
    )
    assert nil == (1, {"AMOUNT": None})


def test_xml_element_text_between_fields_is_rejected() -> None:
    [(_, row)] = element_rows(b"<Document><E><A>1</A>loose text<B>2</B></E></Document>")
    assert (
        row[ERROR_KEY] == "the record holds the text 'loose text' outside its fields, which is not imported"
    )


@pytest.mark.parametrize("attributes", [False, True])
def test_text_outside_any_record_fails_the_file(attributes: bool) -> None:
    read = attribute_rows if attributes else element_rows
    record = b'<E A="1"/>' if attributes else b"<E><A>1</A></E>"
    for data, where in (
        (b"<Document>junk\n" + record + b"</Document>", "before the record at line 2"),
        (
            b"<Document>" + record + b"\n<!-- c -->junk " + record + b"</Document>",
            "before the record at line 2",
        ),
        (b"<Document>\n" + record + b"\njunk\n</Document>", "after the record at line 2"),
    ):
        with pytest.raises(FormatError) as info:
            read(data)
        assert str(info.value) == (
            f"the XML has text 'junk' directly in the root element <Document>, {where}: "
            "the root may hold only records (one element each)"
        )


def test_text_after_the_last_record_or_in_a_root_without_records_fails_the_file() -> None:
    with pytest.raises(
        FormatError, match="text 'junk' directly in the root element <D>, after the record at line 1"
    ):
        element_rows(b"<D><E><A>1</A></E><!-- c -->junk</D>")
    with pytest.raises(
        FormatError, match=r"text 'just text' directly in the root element <D> \(line 1\) and no"
    ):
        element_rows(b"<D>just text</D>")
    assert element_rows(b"<D>\n  <!-- nothing -->\n</D>") == []


def test_indentation_and_comments_are_not_data() -> None:
    data = b"<Document>\n  <!-- exported -->\n  <E>\n    <A>1</A>\n  </E>\n  <E><A>2</A></E>\n</Document>\n"
    assert element_rows(data) == [(3, {"A": "1"}), (6, {"A": "2"})]
