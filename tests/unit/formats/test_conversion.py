"""Typed conversion of raw values, with reasons people can act on."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from shared.domain.schema import BUILTIN_FORMATS, Field
from shared.formats.conversion import ConversionError, convert, make_converter, strptime_pattern
from shared.formats.readers import read_rows

CSV = BUILTIN_FORMATS["CSV"]
UTC = dt.UTC


def reason(field: Field, raw: str | None, fmt=CSV) -> str:
    with pytest.raises(ConversionError) as info:
        convert(field, raw, fmt)
    return info.value.reason


def test_conversion_error_is_a_value_error_with_a_reason() -> None:
    error = ConversionError("X: bad")
    assert isinstance(error, ValueError)
    assert error.reason == str(error) == "X: bad"


def test_empty_is_none_and_required_fails() -> None:
    optional = Field("NAME")
    required = Field("NAME", required=True)
    assert convert(optional, "", CSV) is None
    assert convert(optional, None, CSV) is None
    assert reason(required, "") == "NAME is required"
    assert reason(required, None) == "NAME is required"
    assert reason(Field("QTY", "int", required=True), "   ") == "QTY is required"


def test_string_and_max_length() -> None:
    field = Field("CUSTOMERGROUPID", max_length=10)
    assert convert(field, " spaced ", CSV) == " spaced "
    assert (
        reason(field, "ABCDEFGHIJKL")
        == "CUSTOMERGROUPID: 'ABCDEFGHIJKL' is 12 characters long; the limit is 10"
    )
    long_reason = reason(field, "x" * 5000)
    assert len(long_reason) < 150  # a huge value does not flood the error file


def test_int() -> None:
    field = Field("QTY", "int")
    assert convert(field, "42", CSV) == 42
    assert convert(field, " -7 ", CSV) == -7
    assert convert(field, "5.0", CSV) == 5  # spreadsheets and JSON write whole numbers like this
    assert reason(field, "5.5") == "QTY: '5.5' is not a whole number"
    assert reason(field, "1,000") == "QTY: '1,000' is not a whole number"
    assert reason(field, "abc") == "QTY: 'abc' is not a whole number"
    assert (
        reason(field, "99999999999999999999")
        == "QTY: '99999999999999999999' is out of range for a whole number"
    )


def test_decimal_is_exact() -> None:
    field = Field("RATE", "decimal")
    value = convert(field, ".8984500000000000", CSV)
    assert isinstance(value, Decimal)
    assert value == Decimal("0.89845")
    assert str(value) == "0.8984500000000000"
    assert convert(field, "-1.5", CSV) == Decimal("-1.5")
    assert convert(field, "1.3357400000000000", CSV) == Decimal("1.33574")
    assert convert(field, "0.1", CSV) + convert(field, "0.2", CSV) == Decimal("0.3")
    assert convert(field, "1.5E3", CSV) == Decimal("1500")


@pytest.mark.parametrize("raw", ["1,234.5", "1 234", "NaN", "Infinity", "1.2.3", "abc", "--1", "1e99999"])
def test_decimal_rejects(raw: str) -> None:
    assert reason(Field("RATE", "decimal"), raw).startswith(f"RATE: {raw!r} is not a decimal number")


def test_decimal_comma_separator() -> None:
    fmt = replace(CSV, decimal_separator=",")
    field = Field("RATE", "decimal")
    assert convert(field, "1,5", fmt) == Decimal("1.5")
    assert convert(field, ",75", fmt) == Decimal("0.75")
    message = reason(field, "1.234,5", fmt)
    assert (
        message
        == "RATE: '1.234,5' is not a decimal number (use ',' as the decimal separator and no thousands separators)"
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("FALSE", False),
        ("Yes", True),
        ("No", False),
        ("1", True),
        ("0", False),
        (" yes ", True),
    ],
)
def test_bool(raw: str, expected: bool) -> None:
    assert convert(Field("ACTIVE", "bool"), raw, CSV) is expected


def test_bool_rejects() -> None:
    assert reason(Field("ACTIVE", "bool"), "maybe") == (
        "ACTIVE: 'maybe' is not a yes/no value (use true/false, yes/no or 1/0)"
    )


def test_date() -> None:
    field = Field("STARTDATE", "date")
    assert convert(field, "2024-01-31", CSV) == dt.date(2024, 1, 31)
    assert convert(field, "2011-01-31 00:00:00", CSV) == dt.date(2011, 1, 31)  # D365's export
    assert convert(field, "2011-01-31T00:00:00Z", CSV) == dt.date(2011, 1, 31)
    assert reason(field, "2011-01-31 10:00:00") == (
        "STARTDATE: '2011-01-31 10:00:00' has a time of day; a date field takes only the date"
    )
    assert reason(field, "31/01/2024") == "STARTDATE: '31/01/2024' is not a date (expected yyyy-MM-dd)"
    assert reason(field, "2024-02-30").startswith("STARTDATE: '2024-02-30' is not a date")


def test_date_with_a_custom_format() -> None:
    strptime_style = replace(CSV, date_format="%d/%m/%Y")
    dotnet_style = replace(CSV, date_format="dd.MM.yyyy")
    field = Field("D", "date")
    assert convert(field, "31/01/2024", strptime_style) == dt.date(2024, 1, 31)
    assert convert(field, "31.01.2024", dotnet_style) == dt.date(2024, 1, 31)
    # A custom pattern means only that pattern: ISO is refused, with the pattern as written in the reason ...
    assert reason(field, "2024-01-31", dotnet_style) == "D: '2024-01-31' is not a date (expected dd.MM.yyyy)"
    assert reason(field, "01-31-2024", dotnet_style) == "D: '01-31-2024' is not a date (expected dd.MM.yyyy)"
    # ... unless the format asks for the ISO fallback (acceptIsoDates), which this test used to rely on.
    with_iso = replace(dotnet_style, accept_iso_dates=True)
    assert convert(field, "2024-01-31", with_iso) == dt.date(2024, 1, 31)
    assert convert(field, "31.01.2024", with_iso) == dt.date(2024, 1, 31)
    assert reason(field, "01-31-2024", with_iso) == (
        "D: '01-31-2024' is not a date (expected dd.MM.yyyy or ISO 8601 (yyyy-MM-dd))"
    )


def test_datetime_is_aware_utc() -> None:
    field = Field("MODIFIED", "datetime")
    expected = dt.datetime(2024, 1, 31, 10, 20, 30, tzinfo=UTC)
    assert convert(field, "2024-01-31 10:20:30", CSV) == expected
    assert convert(field, "2024-01-31T10:20:30", CSV) == expected
    assert convert(field, "2024-01-31T10:20:30Z", CSV) == expected
    assert convert(field, "2024-01-31T12:20:30+02:00", CSV) == expected
    assert convert(field, "2024-01-31T10:20:30.250Z", CSV) == expected.replace(microsecond=250000)
    assert convert(field, "2024-01-31", CSV) == dt.datetime(2024, 1, 31, tzinfo=UTC)
    value = convert(field, "2024-01-31T12:20:30+02:00", CSV)
    assert value.utcoffset() == dt.timedelta(0)
    assert reason(field, "yesterday") == (
        "MODIFIED: 'yesterday' is not a date and time (expected yyyy-MM-dd HH:mm:ss or ISO 8601)"
    )


def test_datetime_with_a_dotnet_format() -> None:
    fmt = replace(CSV, datetime_format="M/d/yyyy h:mm:ss tt")
    assert convert(Field("T", "datetime"), "1/31/2024 2:05:00 PM", fmt) == dt.datetime(
        2024, 1, 31, 14, 5, tzinfo=UTC
    )


def test_strptime_pattern_translation() -> None:
    assert strptime_pattern("yyyy-MM-dd HH:mm:ss") == "%Y-%m-%d %H:%M:%S"
    assert strptime_pattern("dd/MM/yy 'at' hh:mm tt") == "%d/%m/%y at %I:%M %p"
    assert strptime_pattern("%d.%m.%Y") == "%d.%m.%Y"


def test_guid() -> None:
    field = Field("ID", "guid")
    canonical = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    assert convert(field, "{3F2504E0-4F89-11D3-9A0C-0305E82C3301}", CSV) == canonical
    assert convert(field, canonical.upper(), CSV) == canonical
    assert convert(field, canonical.replace("-", ""), CSV) == canonical
    assert uuid.UUID(convert(field, canonical, CSV)) == uuid.UUID(canonical)
    assert reason(field, "not-a-guid") == "ID: 'not-a-guid' is not a GUID"
    assert reason(field, "{3f2504e0-4f89-11d3-9a0c-0305e82c330}").endswith("is not a GUID")


def test_enum_is_case_insensitive_and_canonical() -> None:
    field = Field("PAYMENTTERMS", "enum", values=("Net30", "Net60"))
    assert convert(field, "net30", CSV) == "Net30"
    assert convert(field, " NET60 ", CSV) == "Net60"
    assert reason(field, "Net90") == "PAYMENTTERMS: 'Net90' is not one of Net30, Net60"


def test_enum_with_many_values_shortens_the_list() -> None:
    field = Field("CODE", "enum", values=tuple(f"V{i}" for i in range(30)))
    assert reason(field, "X").endswith("V19 (and 10 more)")


def test_converters_are_cached_per_field_and_format() -> None:
    field = Field("RATE", "decimal")
    assert make_converter(field, CSV) is make_converter(field, CSV)
    unhashable = Field("E", "enum", values=["A", "B"])  # type: ignore[arg-type]
    assert make_converter(unhashable, CSV)("a") == "A"


def test_unknown_field_type() -> None:
    with pytest.raises(ValueError, match="unknown type 'money'"):
        make_converter(Field("X", "money"), CSV)


def test_real_d365_exchange_rates_convert_exactly(d365: Path) -> None:
    rate = Field("RATE", "decimal", required=True)
    start = Field("STARTDATE", "datetime")
    end = Field("ENDDATE", "date")
    path = d365 / "kiko-exchange-rates-csv" / "RI_CurEx_Export-Exchange rates.csv"
    with path.open("rb") as stream:
        converted = [
            (
                convert(rate, v["RATE"], CSV),
                convert(start, v["STARTDATE"], CSV),
                convert(end, v["ENDDATE"], CSV),
            )
            for _, v in read_rows(stream, CSV)
        ]
    assert len(converted) == 353
    assert converted[0] == (
        Decimal("1.3357400000000000"),
        dt.datetime(2011, 1, 31, tzinfo=UTC),
        dt.date(2011, 2, 27),
    )
    assert Decimal("0.8984500000000000") in {r for r, _, _ in converted}
    assert all(r.as_tuple().exponent == -16 for r, _, _ in converted)  # all 16 decimals kept
    assert max(e for _, _, e in converted) == dt.date(2154, 12, 31)
