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
from shared.formats.excel_reader import cell_text, read_excel_rows, spool
from shared.formats.readers import ERROR_KEY, ReaderLimits, read_rows

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
    data = workbook_bytes(("First", [["A"], ["1"]]), ("Second", [["B"], ["2"]]))
    assert rows(data) == [(2, {"A": "1"})]
    assert rows(data, sheet="SECOND") == [(2, {"B": "2"})]


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
    with pytest.raises(FormatError, match="the Excel sheet could not be read after row 0: ParseError"):
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
    with pytest.raises(FormatError, match="row 1 has 30 columns; the limit is 20"):
        rows(data, max_columns=20)


def test_spool_moves_to_disk_past_the_memory_limit() -> None:
    source = io.BytesIO(b"x" * 5000)
    with spool(source, memory_bytes=1000, max_bytes=10_000) as file:
        assert file.read() == b"x" * 5000
        assert file._rolled  # rolled over to a real temporary file
