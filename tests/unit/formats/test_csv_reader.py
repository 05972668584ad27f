"""The CSV reader: D365 conventions, the real D365 export, and hostile files."""

from __future__ import annotations

import codecs
import io
import re
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from shared.domain.schema import BUILTIN_FORMATS, SourceFormat
from shared.errors import FormatError
from shared.formats.csv_reader import read_csv_rows
from shared.formats.readers import ERROR_KEY, ReaderLimits, read_rows
from tests.unit.formats.streams import repeated

CSV = BUILTIN_FORMATS["CSV"]
CSV_UNICODE = BUILTIN_FORMATS["CSV-UNICODE"]
EXCHANGE_RATES = "kiko-exchange-rates-csv/RI_CurEx_Export-Exchange rates.csv"


def rows(data: bytes, fmt: SourceFormat = CSV, **limits: int) -> list:
    return list(read_csv_rows(io.BytesIO(data), fmt, limits=ReaderLimits(**limits)))


def test_header_and_rows_with_line_numbers() -> None:
    assert rows(b" GROUP , NAME\nG1,First\nG2,Second\n") == [
        (2, {"GROUP": "G1", "NAME": "First"}),
        (3, {"GROUP": "G2", "NAME": "Second"}),
    ]


def test_quoted_values_with_delimiters_quotes_and_newlines() -> None:
    data = b'A,B\r\n"x, y","say ""hi"""\r\n"multi\r\nline",2\r\n3,4\r\n'
    assert rows(data) == [
        (2, {"A": "x, y", "B": 'say "hi"'}),
        (3, {"A": "multi\r\nline", "B": "2"}),
        (5, {"A": "3", "B": "4"}),  # the line number counts the physical lines
    ]


def test_blank_lines_are_skipped_and_empty_values_stay_empty() -> None:
    assert rows(b"A,B\n\n1,\n\n,2\n") == [(3, {"A": "1", "B": ""}), (5, {"A": "", "B": "2"})]


def test_last_line_without_newline_and_old_mac_line_ends() -> None:
    assert rows(b"A,B\r1,2\r3,4") == [(2, {"A": "1", "B": "2"}), (3, {"A": "3", "B": "4"})]


def test_custom_delimiter_and_qualifier() -> None:
    fmt = replace(CSV, delimiter=";", text_qualifier="'")
    assert rows(b"A;B\n'1;2';x\n", fmt) == [(2, {"A": "1;2", "B": "x"})]
    tab = replace(CSV, delimiter="tab")
    assert rows(b"A\tB\n1\t2\n", tab) == [(2, {"A": "1", "B": "2"})]


def test_no_text_qualifier_keeps_quotes() -> None:
    fmt = replace(CSV, text_qualifier="")
    assert rows(b'A,B\n"1",2\n', fmt) == [(2, {"A": '"1"', "B": "2"})]


def test_bad_delimiter_is_a_format_error() -> None:
    with pytest.raises(FormatError, match="must be a single character"):
        rows(b"A\n", replace(CSV, delimiter="::"))


def test_without_header_columns_are_numbered() -> None:
    fmt = replace(CSV, header_row=False)
    assert rows(b"a,b\nc\n", fmt) == [(1, {"1": "a", "2": "b"}), (2, {"1": "c"})]


def test_rows_with_the_wrong_number_of_values_are_marked_not_fatal() -> None:
    result = rows(b"A,B,C,D,E\n1,2,3\n1,2,3,4,5,6\n1,2,3,4,5\n")
    short, long, good = result
    assert short == (
        2,
        {
            "A": "1",
            "B": "2",
            "C": "3",
            "D": None,
            "E": None,
            ERROR_KEY: "row has 3 values but the header has 5 columns",
        },
    )
    assert long[1][ERROR_KEY] == "row has 6 values but the header has 5 columns"
    assert ERROR_KEY not in good[1]


def test_duplicate_header_column_is_a_format_error() -> None:
    with pytest.raises(FormatError, match="repeats the column 'A'"):
        rows(b"A,B,A\n1,2,3\n")


def test_a_value_under_an_empty_header_cell_rejects_the_row() -> None:
    # The column has no name, so nothing can map it: the row is rejected, not imported without it.
    assert rows(b"A,,B,\n1,x,2,\n3,,4, \n") == [
        (
            2,
            {
                "A": "1",
                "B": "2",
                ERROR_KEY: "the row has a value in column(s) 2, whose header cell is empty: name the column in "
                "the header row, or leave the value out",
            },
        ),
        (3, {"A": "3", "B": "4"}),  # empty (or blank) under the unnamed columns: nothing is lost
    ]


# --- issue 12, class 7: an unclosed text qualifier is reported as such, with its line ---------------


def test_unclosed_text_qualifier_names_the_line_it_opens_on() -> None:
    data = b'A,B,C\n1,2,3\n4,"five,6\n7,8,9\n10,11,12\n'
    reader = read_csv_rows(io.BytesIO(data), CSV)
    assert next(reader) == (2, {"A": "1", "B": "2", "C": "3"})
    with pytest.raises(FormatError) as info:
        next(reader)
    assert str(info.value) == (
        "the text qualifier '\"' opened on line 3 is never closed: everything from there to the end of the "
        "file (line 5) would be one value. Close the value with '\"', and write a '\"' inside a value as '\"\"'"
    )


def test_unclosed_qualifier_after_a_closed_multiline_value_in_the_same_record() -> None:
    data = b'A,B,C\n"multi\nline",2,"open\n\nmore\n'
    with pytest.raises(FormatError, match="the text qualifier '\"' opened on line 3 is never closed"):
        rows(data)


def test_unclosed_qualifier_on_the_last_line_without_a_line_end() -> None:
    with pytest.raises(FormatError, match=r"opened on line 3 is never closed: .* \(line 3\)"):
        rows(b'A,B\n1,2\n3,"4')
    fmt = replace(CSV, delimiter=";", text_qualifier="'")
    with pytest.raises(FormatError, match="the text qualifier ''' opened on line 2 is never closed"):
        rows(b"A;B\n'x;y\n", fmt)


def test_closed_values_at_the_end_of_the_file_are_fine() -> None:
    assert rows(b'A,B\n1,"2\n2"') == [(2, {"A": "1", "B": "2\n2"})]
    assert rows(b'A,B\n1,"say ""x"""') == [(2, {"A": "1", "B": 'say "x"'})]


def test_a_header_in_one_column_holding_another_delimiter_is_named() -> None:
    with pytest.raises(FormatError) as info:
        rows(b"CODE;NAME;AMOUNT\nA;x;1\n")
    assert str(info.value) == (
        "the header row (line 1) is one column, 'CODE;NAME;AMOUNT': the file seems delimited by ';', but the "
        "format's delimiter is ','; use a format with the file's delimiter"
    )
    with pytest.raises(FormatError, match="seems delimited by tab, but the format's delimiter is ';'"):
        rows(b"CODE\tNAME\nA\tx\n", replace(CSV, delimiter=";"))
    assert rows(b"CODE\nA\n") == [(2, {"CODE": "A"})]  # a real one-column file


def test_utf8_bom_is_not_part_of_the_first_column_name() -> None:
    assert rows(codecs.BOM_UTF8 + b"ID,NAME\n1,x\n") == [(2, {"ID": "1", "NAME": "x"})]


def test_utf16_with_bom_under_the_plain_csv_format() -> None:
    data = codecs.BOM_UTF16_LE + "ID,NAME\n1,Zoë\n".encode("utf-16-le")
    assert rows(data) == [(2, {"ID": "1", "NAME": "Zoë"})]


def test_csv_unicode_reads_utf16le_with_or_without_bom() -> None:
    text = "ID,NAME\n1,Zoë\n"
    expected = [(2, {"ID": "1", "NAME": "Zoë"})]
    assert rows(text.encode("utf-16-le"), CSV_UNICODE) == expected
    assert rows(codecs.BOM_UTF16_LE + text.encode("utf-16-le"), CSV_UNICODE) == expected


def test_declared_single_byte_encoding() -> None:
    fmt = replace(CSV, encoding="cp1252")
    assert rows("N\nCafé\n".encode("cp1252"), fmt) == [(2, {"N": "Café"})]


def test_real_d365_exchange_rates_export(d365: Path) -> None:
    with (d365 / EXCHANGE_RATES).open("rb") as stream:
        result = list(read_rows(stream, CSV))
    assert len(result) == 353
    first_line, first = result[0]
    assert first_line == 2
    assert list(first) == [
        "RATETYPENAME",
        "FROMCURRENCY",
        "TOCURRENCY",
        "STARTDATE",
        "CONVERSIONFACTOR",
        "ENDDATE",
        "RATE",
        "RATETYPEDESCRIPTION",
    ]
    assert first["STARTDATE"] == "2011-01-31 00:00:00"
    assert first["RATE"] == "1.3357400000000000"
    leading_dot = [values["RATE"] for _, values in result if values["RATE"].startswith(".")]
    assert ".8984500000000000" in leading_dot
    assert all(ERROR_KEY not in values for _, values in result)
    assert result[-1][0] == 354


# -- hostile and broken files ------------------------------------------------------------------


def test_ten_thousand_columns_fail_with_the_limit() -> None:
    data = b"A,B\n" + b",".join([b"x"] * 10_000) + b"\n"
    with pytest.raises(FormatError) as info:
        rows(data)
    assert str(info.value) == "row 2 has 10000 columns; the limit is 1000 (max_columns)"


def test_a_wide_header_fails_too() -> None:
    with pytest.raises(FormatError, match="row 1 has 1001 columns; the limit is 1000"):
        rows(b",".join(b"C%d" % i for i in range(1001)) + b"\n")


def test_a_50_mb_line_fails_fast_without_reading_it_all() -> None:
    stream = repeated(b"A,B\n1,", b"x", 50 * 1024 * 1024, b"\n")
    started = time.monotonic()
    with pytest.raises(FormatError, match=r"line 2 is longer than 8,388,608 characters"):
        list(read_rows(stream, CSV))
    assert time.monotonic() - started < 10
    # It stopped soon after the limit: the rest of the 50 MB was never read.
    assert stream.bytes_read < 10 * 1024 * 1024


def test_a_huge_quoted_multiline_value_hits_the_record_limit() -> None:
    line = b"y" * 1000 + b"\n"
    data = b'A,B\n1,"' + line * 100 + b'"\n'
    with pytest.raises(FormatError) as info:
        rows(data, max_record_chars=50_000)
    assert str(info.value) == (
        "the record ending at line 51 is longer than 50,000 characters (max_record_chars): the text qualifier "
        "'\"' opened on line 2 is not closed within it; is its closing '\"' missing?"
    )


def test_a_field_over_the_field_limit_fails() -> None:
    data = b"A,B\n1," + b"z" * 3000 + b"\n"
    with pytest.raises(
        FormatError, match=r"row 2, column 2: the value is 3,000 characters long; the limit is 2,000"
    ):
        rows(data, max_field_chars=2000)


def test_utf16_without_bom_under_default_csv() -> None:
    data = "ACCOUNT,NAME\n1,Contoso\n".encode("utf-16-le")
    with pytest.raises(FormatError) as info:
        rows(data)
    assert str(info.value) == (
        "the file looks like UTF-16 without a byte-order mark; use the CSV-Unicode format or add a BOM"
    )


def test_binary_junk_is_a_format_error() -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00"
    with pytest.raises(FormatError, match="NUL byte|not valid UTF-8"):
        rows(png)
    with pytest.raises(FormatError, match="not valid UTF-8 text: the byte\\(s\\) 0x89 at byte offset 0"):
        rows(b"\x89\xab\xcd\xef junk")


def test_undecodable_byte_reports_its_offset() -> None:
    data = b"A,B\n" + b"1,ok\n" * 20_000 + b"2,caf\xe9\n"
    offset = data.index(b"\xe9")
    assert offset > 64 * 1024  # past the first decoding chunk
    with pytest.raises(FormatError) as info:
        rows(data)
    message = str(info.value)
    assert f"byte offset {offset} " in message
    assert "0xE9" in message and "UTF-8" in message


def test_rows_before_a_bad_byte_are_yielded_first() -> None:
    reader = read_csv_rows(io.BytesIO(b"A\n1\n" + b"2\n" * 70_000 + b"\xff\n"), CSV)
    assert next(reader) == (2, {"A": "1"})
    with pytest.raises(FormatError):
        list(reader)


def test_decimal_values_are_kept_exact_as_text() -> None:
    ((_, values),) = rows(b"RATE\n.8984500000000000\n")
    assert Decimal(values["RATE"]) == Decimal("0.89845")
    assert values["RATE"] == ".8984500000000000"


def test_utf8_file_read_with_csv_unicode_is_refused() -> None:
    with pytest.raises(FormatError) as info:
        rows(b"ACCOUNT,NAME\n1,Contoso Europe\n", CSV_UNICODE)
    assert str(info.value) == (
        "the format expects UTF-16LE text, but the file looks like UTF-8 or ANSI text "
        "(it has no NUL bytes); use the CSV format or add a BOM"
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'<?xml version="1.0"?>\n<Document><E A="1"/></Document>\n', "looks like XML, not delimited text"),
        (b"<Document>\n<E><A>1</A></E>\n</Document>\n", "use the XML-Element or XML-Attribute format"),
        (b'[{"A": 1}]\n', "looks like JSON, not delimited text: its first line starts with '[{\"A\": 1}]'"),
        (b'{"A": 1}\n{"A": 2}\n', "use the JSON format"),
    ],
)
def test_xml_or_json_sent_as_csv_is_named(data: bytes, expected: str) -> None:
    # Otherwise every row is rejected for missing columns: the consequence, not the cause.
    with pytest.raises(FormatError, match=re.escape(expected)):
        rows(data)
