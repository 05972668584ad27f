"""The Excel reader: the real D365 package's workbook, generated workbooks, broken files."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path

import openpyxl
import pytest

from shared.domain.schema import BUILTIN_FORMATS
from shared.errors import FormatError
from shared.formats.excel_reader import SharedStrings, cell_text, read_excel_rows, spool
from shared.formats.readers import ERROR_KEY, ReaderLimits, read_rows
from tests.support import hostile
from tests.support.hostile import inline_cell, row_xml, xlsx

EXCEL = BUILTIN_FORMATS["EXCEL"]
ASSET_PACKAGE = "ms-sample-asset-major-types/usmf_asset-major-types-01.zip"


def workbook_bytes(*sheets: tuple[str, list[list]]) -> bytes:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets:
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def rows(data: bytes, sheet: str | None = None, **limits: int) -> list:
    return list(read_excel_rows(io.BytesIO(data), sheet=sheet, limits=ReaderLimits(**limits)))


@pytest.fixture
def asset_workbook(d365: Path) -> bytes:
    with zipfile.ZipFile(d365 / ASSET_PACKAGE) as package:
        return package.read("Fixed asset major type.xlsx")


def test_real_d365_workbook(asset_workbook: bytes) -> None:
    result = list(read_rows(io.BytesIO(asset_workbook), EXCEL))
    assert len(result) == 11
    assert result[0] == (2, {"MAJORTYPEID": "COMP", "DESCRIPTION": "Computer hardware"})
    assert result[-1] == (12, {"MAJORTYPEID": "VEHICLES", "DESCRIPTION": "Vehicles"})


def test_real_d365_workbook_sheet_by_manifest_name(asset_workbook: bytes) -> None:
    # D365 manifests name the sheet; ADO-style names end with "$". Case does not matter.
    result = rows(asset_workbook, sheet="fixed_asset_major_type$")
    assert len(result) == 11


def test_missing_sheet_lists_the_sheets(asset_workbook: bytes) -> None:
    with pytest.raises(FormatError) as info:
        rows(asset_workbook, sheet="Customers")
    assert str(info.value) == (
        "the Excel workbook has no sheet named 'Customers'; its sheets are 'Fixed_asset_major_type'"
    )


def test_cell_types_become_conversion_friendly_text() -> None:
    data = workbook_bytes(
        (
            "Data",
            [
                ["ID", "QTY", "PRICE", "WHEN", "AT", "OK", "NOTE"],
                [1, 5.0, 0.1, dt.date(2024, 1, 31), dt.datetime(2024, 1, 31, 10, 20, 30), True, None],
                [2, 7, 1234.5678, dt.datetime(2024, 2, 29), dt.datetime(2024, 2, 29, 0, 0, 1), False, "x"],
            ],
        )
    )
    assert rows(data) == [
        (
            2,
            {
                "ID": "1",
                "QTY": "5",
                "PRICE": "0.1",
                "WHEN": "2024-01-31",
                "AT": "2024-01-31T10:20:30",
                "OK": "true",
                "NOTE": None,
            },
        ),
        (
            3,
            {
                "ID": "2",
                "QTY": "7",
                "PRICE": "1234.5678",
                "WHEN": "2024-02-29",
                "AT": "2024-02-29T00:00:01",
                "OK": "false",
                "NOTE": "x",
            },
        ),
    ]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, None),
        ("abc", "abc"),
        (True, "true"),
        (10, "10"),
        (5.0, "5"),
        (-3.0, "-3"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1e-7, "0.0000001"),
        (2.5e20, "250000000000000000000"),
        (dt.date(2024, 1, 31), "2024-01-31"),
        (dt.datetime(2024, 1, 31), "2024-01-31"),
        (dt.datetime(2024, 1, 31, 10, 20, 30), "2024-01-31T10:20:30"),
        (dt.time(8, 30), "08:30:00"),
    ],
)
def test_cell_text(value: object, text: str | None) -> None:
    assert cell_text(value) == text


def test_second_sheet_by_name_and_first_sheet_by_default() -> None:
    data = workbook_bytes(("First", [["A"], ["1"]]), ("Second", [["B"], ["2"]]), ("Empty", []))
    assert rows(data, sheet="first") == [(2, {"A": "1"})]
    assert rows(data, sheet="SECOND") == [(2, {"B": "2"})]
    # Empty sheets do not count: the one sheet with data is read without a name.
    assert rows(workbook_bytes(("Notes", []), ("Data", [["B"], ["2"]]), ("Sheet3", []))) == [(2, {"B": "2"})]
    assert rows(workbook_bytes(("Data", [["B"], ["2"]]), ("Sheet2", []))) == [(2, {"B": "2"})]


def test_data_on_another_sheet_without_a_sheet_name_fails_instead_of_being_dropped() -> None:
    data = workbook_bytes(
        ("Orders", [["A"], ["1"]]), ("Lines", [["B"], ["2"]]), ("Empty", []), ("More", [[None, "x"]])
    )
    with pytest.raises(FormatError) as info:
        rows(data)
    assert str(info.value) == (
        "the Excel workbook has data on more than one sheet ('Orders', 'Lines', 'More') and no sheet is named, "
        "so the rows of all but one would not be imported; name the sheet to read (the project entity's sheet, "
        "or ExcelSheetName in a package manifest), or send one sheet per file"
    )


def test_a_value_under_an_empty_header_cell_rejects_the_row() -> None:
    data = workbook_bytes(("S", [["A", None, "C"], [1, "lost?", 3], [4, None, 6]]))
    first, second = rows(data)
    assert first == (
        2,
        {
            "A": "1",
            "C": "3",
            ERROR_KEY: "the row has a value in column(s) B, whose header cell is empty: name the column in the "
            "header row, or leave the value out",
        },
    )
    assert second == (3, {"A": "4", "C": "6"})


def test_a_formula_without_a_calculated_value_rejects_the_row() -> None:
    cells = (
        b'<c r="A2" t="inlineStr"><is><t>K1</t></is></c><c r="B2"><f>1+1</f></c>'
        b'<c r="C2" t="str"><f>""</f><v></v></c>'  # calculated, and empty: fine
    )
    ok = b'<row r="3"><c r="A3" t="inlineStr"><is><t>K2</t></is></c><c r="B3"><f>2+2</f><v>4</v></c></row>'
    data = xlsx([row_xml(1, ["A", "B", "C"]), b'<row r="2">' + cells + b"</row>", ok])
    bad, good = rows(data)
    assert bad == (
        2,
        {
            "A": "K1",
            "B": None,
            "C": None,
            ERROR_KEY: "column(s) B hold a formula saved without its calculated value (the workbook was written "
            "by a program that does not calculate); open and save it in Excel, or write the values",
        },
    )
    assert good == (3, {"A": "K2", "B": "4", "C": None})


def test_empty_rows_are_skipped_and_row_numbers_kept() -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet["A2"], sheet["B2"] = "ID", "NAME"  # header on row 2, after an empty row
    sheet["A3"], sheet["B3"] = "1", "one"
    sheet["A6"] = "2"  # rows 4 and 5 are empty
    out = io.BytesIO()
    book.save(out)
    assert rows(out.getvalue()) == [(3, {"ID": "1", "NAME": "one"}), (6, {"ID": "2", "NAME": None})]


def test_values_beyond_the_header_mark_the_row() -> None:
    data = workbook_bytes(("S", [["A", "B"], [1, 2, 3], [4, 5, None]]))
    first, second = rows(data)
    assert first[1][ERROR_KEY] == "row has values beyond the last header column (3 columns, the header has 2)"
    assert second == (3, {"A": "4", "B": "5"})


def test_duplicate_header_is_a_format_error() -> None:
    with pytest.raises(FormatError, match="repeats the column 'A'"):
        rows(workbook_bytes(("S", [["A", "A"], [1, 2]])))


def test_truncated_workbook(asset_workbook: bytes) -> None:
    for cut in (len(asset_workbook) // 2, len(asset_workbook) - 10):
        with pytest.raises(FormatError, match="damaged or truncated"):
            rows(asset_workbook[:cut])


def test_corrupted_sheet_inside_a_valid_zip() -> None:
    good = workbook_bytes(("S", [["A"], [1]]))
    source = zipfile.ZipFile(io.BytesIO(good))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                content = content[: len(content) // 2]
            target.writestr(info, content)
    with pytest.raises(
        FormatError, match="the Excel sheet 'S' could not be read after row 0: the XML is not well-formed"
    ):
        rows(out.getvalue())


def test_not_a_workbook() -> None:
    with pytest.raises(FormatError, match="legacy Excel 97-2003"):
        rows(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100)
    with pytest.raises(FormatError, match="not a zip package"):
        rows(b"A,B\n1,2\n")
    plain_zip = io.BytesIO()
    with zipfile.ZipFile(plain_zip, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(FormatError, match=r"no xl/workbook.xml"):
        rows(plain_zip.getvalue())


def test_size_limits() -> None:
    data = workbook_bytes(("S", [["A"], [1]]))
    with pytest.raises(FormatError, match="larger than the limit of 100 bytes"):
        rows(data, max_excel_bytes=100)
    with pytest.raises(FormatError, match="expands to .* bytes; the limit is 1,000"):
        rows(data, max_excel_uncompressed_bytes=1000)


def test_column_limit() -> None:
    data = workbook_bytes(("S", [[f"C{i}" for i in range(30)], list(range(30))]))
    with pytest.raises(
        FormatError, match=r"row 1 has a value in column 21; the limit is 20 columns \(max_columns\)"
    ):
        rows(data, max_columns=20)


def test_spool_moves_to_disk_past_the_memory_limit() -> None:
    source = io.BytesIO(b"x" * 5000)
    with spool(source, memory_bytes=1000, max_bytes=10_000) as file:
        assert file.read() == b"x" * 5000
        assert file._rolled  # rolled over to a real temporary file


# --- bounds, and cost by the cells present ---------------------------------------------------------------
def shared_cell(ref: str, index: int) -> bytes:
    return b'<c r="%s" t="s"><v>%d</v></c>' % (ref.encode(), index)


def test_shared_strings_plain_rich_and_phonetic() -> None:
    strings = [
        b"<si><t>plain</t></si>",
        b"<si><r><rPr><b/></rPr><t>ri</t></r><r><t xml:space='preserve'>ch </t></r></si>",
        b"<si><t>\xe6\x9d\xb1\xe4\xba\xac</t><rPh sb='0' eb='2'><t>TOUKYOU</t></rPh></si>",  # phonetic: not text
        b"<si><t>_x005F_x000D_</t></si>",  # openpyxl unescapes _x005F_ only
    ]
    refs = b"".join(shared_cell(f"{c}2", i) for c, i in zip("ABCD", range(4), strict=True))
    data = xlsx([row_xml(1, ["A", "B", "C", "D"]), b'<row r="2">' + refs + b"</row>"], shared_strings=strings)
    assert rows(data) == [(2, {"A": "plain", "B": "rich ", "C": "\u6771\u4eac", "D": "_x000D_"})]


def test_inline_strings_booleans_errors_formulas_and_iso_dates() -> None:
    cells = (
        b'<c r="A2" t="inlineStr"><is><r><t>in</t></r><r><t>line</t></r><rPh><t>x</t></rPh></is></c>'
        b'<c r="B2" t="b"><v>1</v></c><c r="C2" t="e"><v>#N/A</v></c>'
        b'<c r="D2" t="str"><f>A1&amp;"x"</f><v>calc</v></c><c r="E2" t="d"><v>2024-02-29T10:00:00</v></c>'
        b'<c r="F2" s="1"><v>45351</v></c><c r="G2"><v>1.50</v></c>'
    )
    data = xlsx([row_xml(1, list("ABCDEFG")), b'<row r="2">' + cells + b"</row>"])
    assert rows(data) == [
        (
            2,
            {
                "A": "inline",
                "B": "true",
                "C": "#N/A",
                "D": "calc",
                "E": "2024-02-29T10:00:00",
                "F": "2024-02-29",  # style 1 is a date format (built-in 14)
                "G": "1.5",
            },
        )
    ]


def test_cells_and_rows_without_references_follow_the_previous_one() -> None:
    data = xlsx(
        [
            b'<row><c t="inlineStr"><is><t>A</t></is></c><c t="inlineStr"><is><t>B</t></is></c></row>',
            b'<row r="5"><c r="B5"><v>2</v></c></row>',
            b"<row><c><v>3</v></c><c><v>4</v></c></row>",
        ]
    )
    assert rows(data) == [(5, {"A": None, "B": "2"}), (6, {"A": "3", "B": "4"})]


def test_a_row_number_beyond_the_sheet_is_refused_without_walking_to_it() -> None:
    data = hostile.xlsx_huge_row_index(10**12)
    assert len(data) < 3000
    reader = read_excel_rows(io.BytesIO(data))
    assert next(reader) == (2, {"CODE": "R1", "NAME": "one", "AMOUNT": "1"})
    with pytest.raises(FormatError) as info:
        next(reader)
    assert str(info.value) == (
        "row 1000000000000 is beyond the last row of an Excel sheet (1,048,576); "
        "the workbook is damaged or not written by a spreadsheet program"
    )
    for bad in (b"0", b"abc", b"9" * 5000):
        with pytest.raises(FormatError, match="which is not a row number"):
            rows(xlsx([b'<row r="' + bad + b'"><c><v>1</v></c></row>']))


def test_the_last_row_of_the_sheet_is_read_with_its_number() -> None:
    data = xlsx([row_xml(1, ["A"]), row_xml(2, ["x"]), row_xml(1_048_576, ["last"])])
    assert rows(data) == [(2, {"A": "x"}), (1_048_576, {"A": "last"})]


def test_empty_styled_cells_far_right_cost_nothing_and_are_not_columns() -> None:
    data = hostile.xlsx_far_right_empty_cells(50)
    result = rows(data)
    assert len(result) == 50
    assert result[0] == (2, {"CODE": "W2", "NAME": "wide", "AMOUNT": "1"})


def test_cells_beyond_the_sheet_or_the_column_limit() -> None:
    with pytest.raises(
        FormatError, match=r"a cell in column 16,385, beyond the last column of an Excel sheet"
    ):
        rows(xlsx([b'<row r="1"><c r="XFE1"><v>1</v></c></row>']))
    with pytest.raises(FormatError, match="reference 'A1B', which is not a cell"):
        rows(xlsx([b'<row r="1"><c r="A1B"><v>1</v></c></row>']))
    with pytest.raises(FormatError) as info:
        rows(hostile.xlsx_wide_row(2000))
    assert str(info.value) == "row 1 has a value in column 1,001; the limit is 1,000 columns (max_columns)"
    many = b"".join(b"<c/>" for _ in range(16_385))
    with pytest.raises(FormatError, match="row 1 has more than 16,384 cells"):
        rows(xlsx([b'<row r="1">' + many + b"</row>"]))


def test_the_shared_strings_count_and_size_are_bounded_while_they_are_read() -> None:
    strings = [b"<si><t>%s</t></si>" % (b"s" * 300) for _ in range(20)]
    data = xlsx([row_xml(1, ["A"])], shared_strings=strings)
    assert rows(data) == []
    with pytest.raises(FormatError) as info:
        rows(data, max_shared_strings=10)
    assert str(info.value) == (
        "the Excel workbook's shared strings number more than 10; the limit is 10 strings (max_shared_strings)"
    )
    with pytest.raises(FormatError) as info:
        rows(data, max_shared_strings_chars=1000)
    assert str(info.value) == (
        "the Excel workbook's shared strings hold more than 1,000 characters of text; "
        "the limit is 1,000 characters (max_shared_strings_chars)"
    )
    with pytest.raises(FormatError, match=r"shared string 1 of the Excel workbook is 300 characters long"):
        rows(data, max_field_chars=100)


def test_a_shared_strings_bomb_is_refused_at_the_bound() -> None:
    data = hostile.xlsx_shared_strings_bomb()  # 300 MB of strings in a package of about 330 KB
    assert len(data) < 1024 * 1024
    with pytest.raises(FormatError, match=r"hold more than 268,435,456 characters of text"):
        rows(data)


def test_a_reference_to_a_missing_shared_string() -> None:
    data = xlsx([row_xml(1, ["A"]), b'<row r="2">' + shared_cell("A2", 5) + b"</row>"], shared_strings=[])
    with pytest.raises(FormatError, match="refers to shared string '5', but the workbook has 0"):
        rows(data)


def test_cell_text_and_row_text_are_bounded_while_the_row_streams() -> None:
    with pytest.raises(FormatError) as info:
        rows(hostile.xlsx_huge_cell(3000), max_field_chars=2000)
    assert str(info.value) == (
        "row 2, column 2: the value is 3,000 characters long; the limit is 2,000 (max_field_chars)"
    )
    cells = b"".join(inline_cell(f"{hostile.column_letters(i)}2", "t" * 900) for i in range(1, 11))
    data = xlsx([row_xml(1, [f"C{i}" for i in range(10)]), b'<row r="2">' + cells + b"</row>"])
    with pytest.raises(FormatError, match=r"row 2 holds more than 5,000 characters; the limit is 5,000"):
        rows(data, max_record_chars=5000)
    runs = b"".join(b"<r><t>a</t></r>" for _ in range(10_001))
    data = xlsx([b'<row r="1"><c r="A1" t="inlineStr"><is>' + runs + b"</is></c></row>"])
    with pytest.raises(FormatError, match="row 1, column 1: the cell holds more than 10,000 elements"):
        rows(data)


def test_a_row_over_the_byte_budget() -> None:
    cells = b"".join(b'<c r="A1" s="0"/>' for _ in range(3000))  # empty cells: no text limit applies
    data = xlsx([b'<row r="1">' + cells + b'<c r="A1" t="inlineStr"><is><t>A</t></is></c></row>'])
    with pytest.raises(FormatError) as info:
        rows(data, max_record_bytes=16 * 1024)
    assert str(info.value) == (
        "a row in the Excel part xl/worksheets/sheet1.xml takes more than 16,384 bytes of XML; "
        "the limit is 16,384 bytes (max_record_bytes)"
    )


def test_a_dtd_in_any_part_is_refused() -> None:
    doctype = b'<?xml version="1.0"?><!DOCTYPE sst [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    good = xlsx([row_xml(1, ["A"])])
    source = zipfile.ZipFile(io.BytesIO(good))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "xl/sharedStrings.xml":
                content = doctype + content[content.index(b"?>") + 2 :]
            target.writestr(info, content)
    with pytest.raises(FormatError) as error:
        rows(out.getvalue())
    assert str(error.value) == "the file declares a DTD/entities, which are not allowed"


def test_shared_strings_move_to_disk_and_read_back() -> None:
    texts = ["plain", "Zoë", "\U0001f600 astral", "", "x" * 50]
    with SharedStrings(memory_chars=20, memory_count=1000) as table:
        for text in texts * 3:
            table.append(text)
        table.seal()
        assert table.spilled and table.count == 15
        assert [table[i] for i in range(15)] == texts * 3
        with pytest.raises(IndexError):
            table[15]
