"""Every operator, literal form, null and string function of the filter language (docs/filters.md), each
decided by evaluate() and, where the Table query narrows, by the compiled query as well."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from shared.domain.schema import Entity, Field
from shared.formats.filters import (
    FilterError,
    Function,
    Not,
    UnsupportedFilterFunctionError,
    compile_filter,
    evaluate,
    format_filter,
    parse_filter,
)

ENTITY = Entity(
    name="Cust",
    label="Customers",
    fields=(
        Field("ACCOUNT", "string", required=True),
        Field("NAME", "string"),
        Field("LIMIT", "decimal"),
        Field("QTY", "int"),
        Field("BLOCKED", "bool"),
        Field("CREATED", "date"),
        Field("MODIFIED", "datetime"),
        Field("PARTY", "guid"),
        Field("STATUS", "enum", values=("Active", "OnHold")),
    ),
    keys=("ACCOUNT",),
)
ROW = {
    "ACCOUNT": "US-001",
    "NAME": "Contoso Retail",
    "LIMIT": "1000.50",
    "QTY": 7,
    "BLOCKED": False,
    "CREATED": "2024-01-31",
    "MODIFIED": datetime(2024, 2, 1, 10, 0, tzinfo=UTC),
    "PARTY": "6f0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d",
    "STATUS": "Active",
    "company": "usmf",
}


def matches(text: str, row=ROW) -> bool:
    return evaluate(parse_filter(text, ENTITY), row)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # every operator, in words and in symbols
        ("QTY eq 7", True),
        ("QTY = 7", True),
        ("QTY == 7", True),
        ("QTY ne 7", False),
        ("QTY != 7", False),
        ("QTY <> 8", True),
        ("QTY gt 6", True),
        ("QTY > 7", False),
        ("QTY ge 7", True),
        ("QTY >= 8", False),
        ("QTY lt 8", True),
        ("QTY < 7", False),
        ("QTY le 7", True),
        ("QTY <= 6", False),
        ("8 gt QTY", True),  # a literal first reads flipped
        # literal forms
        ("NAME eq 'Contoso Retail'", True),
        ("NAME eq 'O''Brien'", False),
        ("LIMIT eq 1000.5", True),
        ("LIMIT gt -3.5", True),
        ("CREATED eq 2024-01-31", True),
        ("MODIFIED eq 2024-02-01T10:00:00Z", True),
        ("MODIFIED eq 2024-02-01T11:00:00+01:00", True),
        ("MODIFIED gt 2024-02-01", True),  # a date against a datetime is midnight UTC
        ("BLOCKED eq false", True),
        ("PARTY eq '{6F0B1C2D-3E4F-4A5B-8C6D-7E8F9A0B1C2D}'", True),
        ("STATUS eq 'active'", True),  # enum values are canonicalized
        ("company eq 'USMF'", True),
        # null
        ("NAME eq null", False),
        ("NAME ne null", True),
        # logic
        ("QTY eq 7 and BLOCKED eq true", False),
        ("QTY eq 7 or BLOCKED eq true", True),
        ("not QTY eq 7", False),
        ("not (QTY eq 8 or NAME eq 'x') and STATUS eq 'Active'", True),
        # functions
        ("startswith(NAME, 'Contoso')", True),
        ("startswith(NAME, 'contoso')", False),  # ordinal and case-sensitive, as eq
        ("endswith(NAME, 'Retail')", True),
        ("endswith(NAME, 'Contoso')", False),
        ("contains(NAME, 'so Re')", True),
        ("contains(NAME, 'Wholesale')", False),
        ("STARTSWITH(name,'C')", True),
        ("startswith(NAME, 'C') eq true", True),
        ("startswith(NAME, 'C') eq false", False),
        ("startswith(NAME, 'C') ne true", False),
        ("not startswith(NAME, 'C')", False),
        ("startswith(company, 'US')", True),
        ("startswith(NAME, '')", True),
        ("contains(NAME, 'Retail') and QTY gt 5", True),
    ],
)
def test_every_operator_literal_and_function(text, expected):
    assert matches(text) is expected


def test_a_missing_value_passes_no_function_and_its_negation_passes():
    row = {**ROW, "NAME": None}
    for name in ("startswith", "endswith", "contains"):
        assert matches(f"{name}(NAME, 'C')", row) is False
        assert matches(f"not {name}(NAME, 'C')", row) is True
    del row["NAME"]
    assert matches("contains(NAME, '')", row) is False


@pytest.mark.parametrize(
    "name", ["tolower", "toupper", "substringof", "length", "indexof", "substring", "trim", "year", "concat"]
)
def test_other_functions_are_UnsupportedFilterFunction_naming_them(name):
    with pytest.raises(UnsupportedFilterFunctionError) as err:
        parse_filter(f"{name}(NAME) eq 'x'", ENTITY)
    assert err.value.code == "UnsupportedFilterFunction"
    assert f"'{name}'" in str(err.value) and "startswith, endswith, contains" in str(err.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("startswith(QTY, '7')", "applies to string fields"),
        ("contains(STATUS, 'Act')", "applies to string fields"),
        ("startswith(NAME, 7)", "a string as the second argument"),
        ("startswith(NAME 'C')", "','"),
        ("startswith('C', NAME)", "a field name"),
        ("startswith(NOPE, 'C')", "unknown field 'NOPE'"),
        ("startswith(NAME, 'C') eq 'x'", "true or false"),
        ("startswith(NAME, 'C'", "')'"),
        ("NAME gt null", "eq or ne only"),
    ],
)
def test_malformed_calls_are_InvalidFilter(text, fragment):
    with pytest.raises(FilterError) as err:
        parse_filter(text, ENTITY)
    assert err.value.code == "InvalidFilter" and fragment in str(err.value)


def test_startswith_narrows_the_table_query_to_a_range():
    text, params = compile_filter(parse_filter("startswith(NAME, 'Con')", ENTITY))
    assert text == "NAME ge @p0 and NAME lt @p1"
    assert params == {"p0": "Con", "p1": "Coo"}
    text, params = compile_filter(parse_filter("startswith(company, 'US')", ENTITY))
    assert params == {"p0": "us", "p1": "ut"}


@pytest.mark.parametrize(
    "text",
    [
        "endswith(NAME, 'x')",
        "contains(NAME, 'x')",
        "not startswith(NAME, 'x')",
        "startswith(NAME, 'x') eq false",
        "startswith(NAME, '')",
        "startswith(NAME, 'a\uffff')",  # no single-unit successor: left to evaluate()
        "startswith(NAME, 'x') or endswith(NAME, 'y')",
    ],
)
def test_other_functions_are_decided_after_the_query(text):
    assert compile_filter(parse_filter(text, ENTITY)) == ("", {})


def test_the_range_is_a_superset_of_startswith():
    """Every value that starts with the prefix falls in [prefix, successor), in code-unit order."""
    prefix = "Ab\u00e9"
    _, params = compile_filter(parse_filter(f"startswith(NAME, '{prefix}')", ENTITY))
    lo, hi = params["p0"], params["p1"]
    for value in [prefix, prefix + "\x00", prefix + "\uffff", prefix + "\U0001f600", prefix + "zzz"]:
        assert lo <= value < hi
        assert value.encode("utf-16-be") < hi.encode("utf-16-be")
    for value in ["Ab", "Abf", "Ac", "ab\u00e9"]:
        assert not (lo <= value < hi) or value.startswith(prefix)


def test_functions_combine_with_comparisons_in_the_query():
    text, params = compile_filter(parse_filter("startswith(NAME, 'C') and QTY gt 5", ENTITY))
    assert text == "( NAME ge @p0 and NAME lt @p1 ) and QTY__num gt @p2"
    assert params == {"p0": "C", "p1": "D", "p2": 5.0}


def test_functions_print_back_to_text_that_parses_to_the_same_tree():
    for text in ["startswith(NAME, 'O''B')", "not (contains(NAME, 'x')) and QTY eq 1"]:
        expr = parse_filter(text, ENTITY)
        assert parse_filter(format_filter(expr), ENTITY) == expr
    assert parse_filter("endswith(NAME, 'x') eq false", ENTITY) == Not(Function("endswith", "NAME", "x"))


def test_dates_and_numbers_still_compile_as_before():
    text, params = compile_filter(parse_filter("CREATED ge 2024-01-01 and LIMIT lt 10", ENTITY))
    assert params == {"p0": date(2024, 1, 1).isoformat(), "p1": 10.0}
