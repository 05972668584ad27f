"""Issue 12, class 6: value conversions, yes/no words, thousands separators and date patterns as written."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal

import pytest

from shared.domain import config
from shared.domain.config import parse_format, parse_project
from shared.domain.schema import BUILTIN_FORMATS, Entity, Field
from shared.errors import ValidationError
from shared.formats.conversion import ConversionError, convert
from shared.formats.mapping import build_mapper
from shared.formats.writers import _text_converter

CSV = BUILTIN_FORMATS["CSV"]
GERMAN = parse_format(
    "De",
    {
        "delimiter": ";",
        "decimalSeparator": ",",
        "thousandsSeparator": ".",
        "dateFormat": "dd.MM.yyyy",
        "datetimeFormat": "dd.MM.yyyy HH:mm",
        "trueValues": ["Ja", "J"],
        "falseValues": ["Nein", "N"],
    },
)


def reason(field: Field, raw: str, fmt=CSV) -> str:
    with pytest.raises(ConversionError) as info:
        convert(field, raw, fmt)
    return info.value.reason


def refused(body: dict) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        parse_format("F", body)
    return info.value


# Yes/no words ------------------------------------------------------------------------------------------


def test_default_yes_no_words_are_unchanged() -> None:
    flag = Field("ACTIVE", "bool")
    for text, value in [
        ("true", True),
        ("YES", True),
        ("1", True),
        ("False", False),
        ("no", False),
        ("0", False),
    ]:
        assert convert(flag, text, CSV) is value
    assert reason(flag, "Ja") == "ACTIVE: 'Ja' is not a yes/no value (use true/false, yes/no or 1/0)"


def test_format_words_replace_the_defaults_and_ignore_case() -> None:
    flag = Field("ACTIVE", "bool")
    assert convert(flag, "Ja", GERMAN) is True
    assert convert(flag, " JA ", GERMAN) is True
    assert convert(flag, "n", GERMAN) is False
    assert convert(flag, "Nein", GERMAN) is False
    # The format's words replace the English ones: "yes" is no longer a yes.
    assert (
        reason(flag, "yes", GERMAN)
        == "ACTIVE: 'yes' is not a yes/no value (use Ja or J for yes and Nein or N for no)"
    )


def test_only_false_words_set_keeps_the_default_true_words() -> None:
    fmt = parse_format("F", {"falseValues": ["nope"]})
    flag = Field("F", "bool")
    assert convert(flag, "yes", fmt) is True
    assert convert(flag, "NOPE", fmt) is False
    assert reason(flag, "no", fmt).startswith("F: 'no' is not a yes/no value")


def test_exports_write_the_first_words() -> None:
    flag = Field("ACTIVE", "bool")
    assert _text_converter(flag, GERMAN)(True) == "Ja"
    assert _text_converter(flag, GERMAN)(False) == "Nein"
    assert _text_converter(flag, CSV)(True) == "Yes"  # unchanged without words


# Thousands separators ----------------------------------------------------------------------------------


def test_thousands_separator_with_decimal_comma() -> None:
    amount = Field("AMOUNT", "decimal")
    assert convert(amount, "1.234,56", GERMAN) == Decimal("1234.56")
    assert convert(amount, "-1.234.567,5", GERMAN) == Decimal("-1234567.5")
    assert convert(amount, "1234,56", GERMAN) == Decimal("1234.56")  # grouping is optional
    assert convert(amount, "999", GERMAN) == Decimal("999")
    hint = "use ',' as the decimal separator and '.' between groups of three digits"
    assert reason(amount, "1.2345,6", GERMAN) == f"AMOUNT: '1.2345,6' is not a decimal number ({hint})"
    assert reason(amount, "12.34", GERMAN) == f"AMOUNT: '12.34' is not a decimal number ({hint})"
    assert reason(amount, "1,234.56", GERMAN).startswith("AMOUNT: '1,234.56' is not a decimal number")


def test_thousands_separator_with_decimal_point_and_whole_numbers() -> None:
    fmt = parse_format("F", {"thousandsSeparator": ","})
    assert convert(Field("A", "decimal"), "1,234,567.25", fmt) == Decimal("1234567.25")
    assert convert(Field("Q", "int"), "12,345", fmt) == 12345
    assert convert(Field("Q", "int"), "1.234", GERMAN) == 1234
    assert reason(Field("Q", "int"), "1,5", fmt) == (
        "Q: '1,5' is not a whole number (use '.' as the decimal separator and ',' between groups of three digits)"
    )
    spaced = parse_format("F", {"thousandsSeparator": " ", "decimalSeparator": ","})
    assert convert(Field("A", "decimal"), "1 234 567,5", spaced) == Decimal("1234567.5")


def test_without_a_thousands_separator_grouped_numbers_are_still_refused() -> None:
    comma = replace(CSV, decimal_separator=",")
    assert reason(Field("A", "decimal"), "1.234,50", comma) == (
        "A: '1.234,50' is not a decimal number (use ',' as the decimal separator and no thousands separators)"
    )
    assert convert(Field("Q", "int"), "5.0", CSV) == 5  # whole numbers read as before


# Date patterns -----------------------------------------------------------------------------------------


def test_custom_date_pattern_refuses_iso_and_names_the_pattern() -> None:
    day = Field("VALIDFROM", "date")
    assert convert(day, "31.01.2024", GERMAN) == dt.date(2024, 1, 31)
    assert reason(day, "2024-01-31", GERMAN) == "VALIDFROM: '2024-01-31' is not a date (expected dd.MM.yyyy)"
    stamp = Field("CHANGED", "datetime")
    assert convert(stamp, "01.02.2024 10:20", GERMAN) == dt.datetime(2024, 2, 1, 10, 20, tzinfo=dt.UTC)
    assert reason(stamp, "2024-02-01T10:20:00Z", GERMAN) == (
        "CHANGED: '2024-02-01T10:20:00Z' is not a date and time (expected dd.MM.yyyy HH:mm)"
    )


def test_accept_iso_dates_is_explicit() -> None:
    fmt = replace(GERMAN, accept_iso_dates=True)
    assert convert(Field("D", "date"), "2024-01-31", fmt) == dt.date(2024, 1, 31)
    stamp = convert(Field("T", "datetime"), "2024-02-01T10:20:00Z", fmt)
    assert stamp == dt.datetime(2024, 2, 1, 10, 20, tzinfo=dt.UTC)
    assert (
        reason(Field("T", "datetime"), "soon", fmt)
        == "T: 'soon' is not a date and time (expected dd.MM.yyyy HH:mm or ISO 8601)"
    )


def test_default_patterns_keep_reading_iso() -> None:
    assert convert(Field("D", "date"), "2024-01-31T00:00:00Z", CSV) == dt.date(2024, 1, 31)
    assert convert(Field("T", "datetime"), "2024-01-31", CSV) == dt.datetime(2024, 1, 31, tzinfo=dt.UTC)


# Formats keep what the user wrote ---------------------------------------------------------------------


def test_format_json_returns_every_value_as_written() -> None:
    body = {
        "kind": "csv",
        "delimiter": "tab",
        "textQualifier": "'",
        "encoding": "latin-1",
        "headerRow": False,
        "dateFormat": "dd.MM.yyyy",
        "datetimeFormat": "%d.%m.%Y %H:%M",
        "acceptIsoDates": True,
        "decimalSeparator": ",",
        "thousandsSeparator": ".",
        "trueValues": ["Ja", "J"],
        "falseValues": ["Nein"],
    }
    fmt = parse_format("F", body)
    assert config.format_to_json(fmt) == {"name": "F", **body}
    # Derived values, used by the readers and writers only:
    assert (fmt.delimiter_char, fmt.codec) == ("\t", "iso8859-1")
    stored = {k: v for k, v in config.format_to_json(fmt).items() if k != "name"}
    assert parse_format("F", stored) == fmt


def test_format_defaults() -> None:
    doc = config.format_to_json(parse_format("F", {}))
    assert doc["dateFormat"] == "yyyy-MM-dd" and doc["datetimeFormat"] == "yyyy-MM-dd HH:mm:ss"
    assert doc["thousandsSeparator"] == "" and doc["trueValues"] is None and doc["falseValues"] is None
    assert doc["acceptIsoDates"] is False


@pytest.mark.parametrize(
    ("body", "fragment", "code"),
    [
        ({"dateFormat": "DD.MM.YYYY"}, "dateFormat 'DD.MM.YYYY' is not usable", "InvalidDateFormat"),
        ({"dateFormat": "MM.yyyy"}, "dateFormat 'MM.yyyy' is not usable: it must contain the year", "InvalidDateFormat"),
        ({"datetimeFormat": "HH:mm"}, "datetimeFormat 'HH:mm' is not usable", "InvalidDateFormat"),
        ({"thousandsSeparator": "x"}, "thousandsSeparator must be empty (none), ','", "InvalidRequest"),
        ({"thousandsSeparator": "."}, "thousandsSeparator must differ from the decimalSeparator '.'", "InvalidRequest"),
        ({"trueValues": []}, "trueValues must be a non-empty list", "InvalidRequest"),
        ({"trueValues": ["Ja", " "]}, "trueValues[1] must be a non-empty string", "InvalidRequest"),
        ({"trueValues": ["Ja", "ja"]}, "trueValues lists a word twice", "InvalidRequest"),
        ({"trueValues": ["x" * 41]}, "trueValues[0] is 41 characters long; the limit is 40", "ValueTooLong"),
        ({"trueValues": ["Ja", "0"]}, "falseValues: 0 cannot mean both yes and no", "InvalidRequest"),
        ({"trueValues": ["Ja"], "falseValues": ["JA"]}, "falseValues: ja cannot mean both yes and no", "InvalidRequest"),
        ({"acceptIsoDates": "yes"}, "acceptIsoDates must be true or false", "InvalidRequest"),
    ],
)  # fmt: skip
def test_format_validation_names_the_field(body: dict, fragment: str, code: str) -> None:
    error = refused(body)
    assert fragment in error.message and error.code == code


# Value conversions in mappings --------------------------------------------------------------------------

ENTITY = Entity(
    name="Items",
    label="Items",
    fields=(
        Field("CODE", "string", required=True),
        Field("ACTIVE", "bool"),
        Field("STATE", "enum", values=("Open", "Closed")),
        Field("AMOUNT", "decimal"),
    ),
    keys=("CODE",),
)


def _mapper(conversions: list, fmt=CSV, source: str = "Status", target: str = "STATE", default=None):
    item = {"source": source, "target": target, "default": default, "conversions": conversions}
    return build_mapper(ENTITY, ["CODE", source], [item], fmt)


def test_conversions_apply_before_the_type_conversion() -> None:
    mapper = _mapper([{"from": "O", "to": "Open"}, {"from": "C", "to": "Closed"}])
    assert mapper.map_row({"CODE": "1", "Status": "O"}).record == {"CODE": "1", "STATE": "Open"}
    assert mapper.map_row({"CODE": "1", "Status": " C "}).record == {"CODE": "1", "STATE": "Closed"}
    # Unlisted values pass through to the type conversion unchanged.
    assert mapper.map_row({"CODE": "1", "Status": "closed"}).record == {"CODE": "1", "STATE": "Closed"}
    assert mapper.map_row({"CODE": "1", "Status": "X"}).reason == "STATE: 'X' is not one of Open, Closed"


def test_conversions_are_case_sensitive() -> None:
    mapper = _mapper([{"from": "o", "to": "Open"}])
    assert mapper.map_row({"CODE": "1", "Status": "o"}).record["STATE"] == "Open"
    assert mapper.map_row({"CODE": "1", "Status": "O"}).reason == "STATE: 'O' is not one of Open, Closed"


def test_conversions_of_empty_values_and_to_empty() -> None:
    mapper = _mapper([{"from": "", "to": "Open"}, {"from": "-", "to": ""}], default="Closed")
    assert mapper.map_row({"CODE": "1", "Status": ""}).record["STATE"] == "Open"
    assert mapper.map_row({"CODE": "1"}).record["STATE"] == "Open"  # absent counts as empty
    assert mapper.map_row({"CODE": "1", "Status": "-"}).record["STATE"] == "Closed"  # emptied: the default


def test_conversion_targets_are_read_with_the_format() -> None:
    mapper = _mapper([{"from": "J", "to": "Ja"}], fmt=GERMAN, source="Aktiv", target="ACTIVE")
    assert mapper.map_row({"CODE": "1", "Aktiv": "J"}).record["ACTIVE"] is True
    with pytest.raises(
        ValueError, match=r"conversion 'J' -> 'Ja' is not valid: ACTIVE: 'Ja' is not a yes/no value"
    ):
        _mapper([{"from": "J", "to": "Ja"}], source="Aktiv", target="ACTIVE")


@pytest.mark.parametrize(
    ("conversions", "message"),
    [
        ("O=Open", "conversions must be a list of {from, to}"),
        ([{"from": "O"}], "conversion 1 must be {from, to} with two strings"),
        ([{"from": "O", "to": "Open"}, {"from": " O", "to": "Closed"}], "the value 'O' is converted twice"),
        ([{"from": "O", "to": "Shut"}], "conversion 'O' -> 'Shut' is not valid: STATE: 'Shut' is not one of"),
    ],
)
def test_invalid_conversions_fail_at_build_time(conversions, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}").replace("(", r"\(")):
        _mapper(conversions)


def test_project_keeps_conversions_and_a_null_source_as_written() -> None:
    body = {
        "operation": "import",
        "entities": [
            {
                "entity": "Items",
                "mapping": [
                    {"source": "Status", "target": "STATE", "conversions": [{"from": " O ", "to": "Open"}]},
                    {"source": None, "target": "AMOUNT", "default": "0"},
                ],
            }
        ],
    }
    project = parse_project("P", body)
    rule = project.entities[0].mapping[0]
    assert rule.conversions == ((" O ", "Open"),)
    doc = config.project_to_json(project)
    assert doc["entities"][0]["mapping"][0]["conversions"] == [{"from": " O ", "to": "Open"}]
    assert doc["entities"][0]["mapping"][1]["source"] is None  # was "" before issue 12
    assert doc["entities"][0]["mapping"][1]["conversions"] == []
    assert parse_project("P", {k: v for k, v in doc.items() if k != "name"}) == project


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        ({"target": "STATE", "default": "Open", "conversions": [{"from": "O", "to": "Open"}]},
         "entities[0].mapping[0].conversions apply to a source column's values; set source"),
        ({"source": "S", "target": "STATE", "conversions": [{"from": "O", "to": "Open"}, {"from": "O ", "to": "x"}]},
         "entities[0].mapping[0].conversions[1].from 'O ' is converted twice"),
        ({"source": "S", "target": "STATE", "conversions": [{"from": "O"}]},
         "entities[0].mapping[0].conversions[0].to is required"),
        ({"source": "S", "target": "STATE", "conversions": [{"from": "O", "to": 1}]},
         "entities[0].mapping[0].conversions[0].to must be a string"),
        ({"source": "S", "target": "STATE", "conversions": [{"from": "O", "to": "x", "why": 1}]},
         "entities[0].mapping[0].conversions[0]: unknown field(s) why"),
        ({"source": "S", "target": "STATE", "conversions": {"O": "Open"}},
         "entities[0].mapping[0].conversions must be a list"),
        ({"source": "S", "target": "STATE", "conversions": [{"from": "x" * 1025, "to": ""}]},
         "entities[0].mapping[0].conversions[0].from is 1025 characters long; the limit is 1024"),
        ({"source": "S", "target": "STATE", "conversions": [{"from": str(i), "to": ""} for i in range(501)]},
         "entities[0].mapping[0].conversions has 501 items; the limit is 500"),
    ],
)  # fmt: skip
def test_project_conversion_validation_names_the_field(rule: dict, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_project("P", {"operation": "import", "entities": [{"entity": "Items", "mapping": [rule]}]})
    assert fragment in info.value.message


def test_excel_and_json_typed_values_read_whatever_the_patterns_and_words() -> None:
    # Their readers write date cells as ISO and boolean cells / JSON literals as true/false.
    for kind in ("excel", "json"):
        fmt = replace(GERMAN, kind=kind)
        assert convert(Field("D", "date"), "2024-01-31", fmt) == dt.date(2024, 1, 31)
        assert convert(Field("D", "date"), "31.01.2024", fmt) == dt.date(2024, 1, 31)  # a text cell
        assert convert(Field("T", "datetime"), "2024-01-31T10:20:30", fmt).hour == 10
        assert convert(Field("B", "bool"), "true", fmt) is True
        assert convert(Field("B", "bool"), "Nein", fmt) is False
        assert reason(Field("B", "bool"), "yes", fmt).startswith("B: 'yes' is not a yes/no value")
