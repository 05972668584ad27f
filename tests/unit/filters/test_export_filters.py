"""Export filters: parsing and type checks, evaluation, and the parameterized Table query they compile to."""

from __future__ import annotations

import random
import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from shared.domain.schema import Entity, Field
from shared.formats.filters import (
    And,
    Comparison,
    FilterError,
    Not,
    Or,
    compile_filter,
    evaluate,
    format_filter,
    parse_filter,
)

ENTITY = Entity(
    name="CustCustomerV3Entity",
    label="Customers V3",
    fields=(
        Field("CUSTOMERACCOUNT", "string", required=True),
        Field("NAME", "string"),
        Field("CREDITLIMIT", "decimal"),
        Field("QTY", "int"),
        Field("BLOCKED", "bool"),
        Field("CREATED", "date"),
        Field("MODIFIEDAT", "datetime"),
        Field("PARTYID", "guid"),
        Field("STATUS", "enum", values=("Active", "OnHold", "Closed")),
        Field("LEVEL", "int", required=True),
    ),
    keys=("CUSTOMERACCOUNT",),
)
SHARED = Entity(
    name="CurrencyEntity",
    label="Currencies",
    fields=(Field("CODE", "string"),),
    keys=("CODE",),
    company_specific=False,
)


def p(text: str, entity: Entity = ENTITY):
    return parse_filter(text, entity)


# ---------------------------------------------------------------- parsing


def test_field_names_are_case_insensitive_and_canonicalized() -> None:
    assert p("name eq 'Contoso'") == Comparison("NAME", "eq", "Contoso", "string")
    assert p("Company EQ 'USMF'") == Comparison("company", "eq", "usmf", "string")


def test_precedence_and_parentheses() -> None:
    a, b, c = (Comparison("QTY", "eq", v, "int") for v in (1, 2, 3))
    assert p("QTY eq 1 or QTY eq 2 and QTY eq 3") == Or((a, And((b, c))))
    assert p("(QTY eq 1 or QTY eq 2) and QTY eq 3") == And((Or((a, b)), c))
    assert p("not QTY eq 1 and QTY eq 2") == And((Not(a), b))
    assert p("not (QTY eq 1 and QTY eq 2)") == Not(And((a, b)))


def test_literals_are_typed() -> None:
    assert p("NAME eq 'O''Brien & Sons'").value == "O'Brien & Sons"  # type: ignore[union-attr]
    assert p("CREDITLIMIT ge -1000.50").value == Decimal("-1000.50")  # type: ignore[union-attr]
    assert p("QTY lt 10").value == 10  # type: ignore[union-attr]
    assert p("QTY lt 10.0").value == 10  # type: ignore[union-attr]
    assert p("BLOCKED eq TRUE").value is True  # type: ignore[union-attr]
    assert p("CREATED ge 2024-01-31").value == date(2024, 1, 31)  # type: ignore[union-attr]
    assert p("MODIFIEDAT ge 2024-01-31T10:00:00Z").value == datetime(2024, 1, 31, 10, tzinfo=UTC)  # type: ignore[union-attr]
    assert p("MODIFIEDAT ge 2024-01-31T12:00:00+02:00").value == datetime(2024, 1, 31, 10, tzinfo=UTC)  # type: ignore[union-attr]
    assert p("MODIFIEDAT ge 2024-01-31T10:00:00.1234567Z").value == datetime(
        2024, 1, 31, 10, 0, 0, 123456, tzinfo=UTC
    )  # type: ignore[union-attr]
    assert p("MODIFIEDAT ge 2024-01-31").value == datetime(2024, 1, 31, tzinfo=UTC)  # type: ignore[union-attr]
    assert (
        p("PARTYID eq '{6F9619FF-8B86-D011-B42D-00C04FC964FF}'").value
        == "6f9619ff-8b86-d011-b42d-00c04fc964ff"
    )  # type: ignore[union-attr]
    assert p("STATUS eq 'onhold'").value == "OnHold"  # type: ignore[union-attr]
    assert p("NAME eq null") == Comparison("NAME", "eq", None, "string")


def test_symbolic_operators_and_literal_first() -> None:
    assert p("QTY >= 5") == p("QTY ge 5")
    assert p("QTY <> 5") == p("QTY ne 5")
    assert p("5 lt QTY") == p("QTY gt 5")
    assert p("2024-01-01 ge CREATED") == p("CREATED le 2024-01-01")


def test_unknown_field_lists_the_entitys_fields() -> None:
    with pytest.raises(FilterError) as info:
        p("CUSTGROUP eq '10'")
    assert str(info.value) == (
        "unknown field 'CUSTGROUP'; the entity has CUSTOMERACCOUNT, NAME, CREDITLIMIT, QTY, BLOCKED, "
        "CREATED, MODIFIEDAT, PARTYID, STATUS, LEVEL, company"
    )
    with pytest.raises(FilterError, match=r"unknown field 'company'; the entity has CODE$"):
        p("company eq 'usmf'", SHARED)


@pytest.mark.parametrize(
    "text,words",
    [
        ("NAME eq 5", ["'NAME'", "string", "number"]),
        ("QTY eq '5'", ["'QTY'", "int", "string"]),
        ("CREDITLIMIT gt true", ["'CREDITLIMIT'", "decimal", "boolean"]),
        ("CREATED eq 2024-01-01T00:00:00Z", ["'CREATED'", "date", "datetime"]),
        ("BLOCKED eq 'yes'", ["'BLOCKED'", "bool", "string"]),
        ("MODIFIEDAT lt 5", ["'MODIFIEDAT'", "datetime", "number"]),
        ("PARTYID eq 1", ["'PARTYID'", "guid", "number"]),
    ],
)
def test_type_mismatch_names_field_and_types(text: str, words: list[str]) -> None:
    with pytest.raises(FilterError) as info:
        p(text)
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "text,message",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("NAME eq 'open", "unterminated string"),
        ("NAME eq", "expected a value but found the end of the filter"),
        ("NAME 'x'", "expected a comparison operator"),
        ("(QTY eq 1", "expected ')'"),
        ("QTY eq 1)", "expected 'and', 'or' or the end"),
        ("QTY eq 1 and", "expected a field name"),
        ("QTY eq 1 QTY eq 2", "expected 'and', 'or'"),
        ("QTY ~ 1", "unexpected '~' at position 5"),
        ("QTY eq 1.5", "not a whole number"),
        ("QTY eq 99999999999999999999", "out of range"),
        ("STATUS eq 'Gone'", "has no value 'Gone'; it allows Active, OnHold, Closed"),
        ("PARTYID eq 'nope'", "not a GUID"),
        ("NAME gt null", "eq or ne only"),
        ("BLOCKED gt false", "supports only eq and ne"),
        ("STATUS lt 'Closed'", "supports only eq and ne"),
        ("CREATED eq 2024-02-30", "not a valid date"),
        ("MODIFIEDAT eq 2024-01-01T25:00:00Z", "not a valid datetime"),
        ("NAME eq NAME", "expected a value"),
    ],
)
def test_syntax_and_value_errors(text: str, message: str) -> None:
    with pytest.raises(FilterError, match=re.escape(message)):
        p(text)


def test_limits() -> None:
    with pytest.raises(FilterError, match="nested more than"):
        p("(" * 40 + "QTY eq 1" + ")" * 40)
    with pytest.raises(FilterError, match="longer than"):
        p("NAME eq '" + "x" * 5000 + "'")
    with pytest.raises(FilterError, match="more than 100 comparisons"):
        p(" or ".join(["QTY eq 1"] * 101))


def test_format_filter_round_trips() -> None:
    for text in [
        "name eq 'O''Brien' and (qty gt 5 or not blocked eq true)",
        "modifiedat ge 2024-01-31T10:00:00.5Z or created le 2024-01-01",
        "creditlimit ge -0.5 and partyid ne null and company eq 'USMF'",
        "not (QTY eq 1 or QTY eq 2) and STATUS eq 'closed'",
    ]:
        expr = p(text)
        assert p(format_filter(expr)) == expr, format_filter(expr)


# ---------------------------------------------------------------- evaluation


RECORD = {
    "CUSTOMERACCOUNT": "US-001",
    "NAME": "Contoso",
    "CREDITLIMIT": "1000.50",  # decimals come back from the store as strings
    "QTY": 7,
    "BLOCKED": False,
    "CREATED": "2024-01-31",
    "MODIFIEDAT": datetime(2024, 1, 31, 10, 0, tzinfo=UTC),
    "PARTYID": "6F9619FF-8B86-D011-B42D-00C04FC964FF",
    "STATUS": "OnHold",
    "LEVEL": 1,
    "company": "usmf",
}


@pytest.mark.parametrize(
    "text,expected",
    [
        ("NAME eq 'Contoso'", True),
        ("NAME eq 'contoso'", False),  # ordinal, as Azure Tables compares
        ("NAME gt 'Abc'", True),
        ("CREDITLIMIT eq 1000.5", True),
        ("CREDITLIMIT gt 1000.50", False),
        ("CREDITLIMIT ge 1000.50 and CREDITLIMIT lt 1000.51", True),
        ("QTY gt 6 and QTY le 7", True),
        ("BLOCKED eq false", True),
        ("CREATED eq 2024-01-31", True),
        ("CREATED gt 2024-01-30", True),
        ("MODIFIEDAT eq 2024-01-31T11:00:00+01:00", True),
        ("MODIFIEDAT lt 2024-01-31", False),
        ("PARTYID eq '6f9619ff-8b86-d011-b42d-00c04fc964ff'", True),
        ("STATUS eq 'ONHOLD'", True),
        ("company eq 'USMF'", True),
        ("company eq 'DEMF'", False),
        ("not (QTY lt 5)", True),
        ("QTY eq 1 or NAME eq 'Contoso'", True),
        ("NAME ne null", True),
        ("NAME eq null", False),
    ],
)
def test_evaluate(text: str, expected: bool) -> None:
    assert evaluate(p(text), RECORD) is expected


def test_evaluate_missing_values() -> None:
    record = {"CUSTOMERACCOUNT": "A", "LEVEL": 1}
    assert evaluate(p("NAME eq null"), record) is True
    assert evaluate(p("NAME ne 'x'"), record) is True
    assert evaluate(p("NAME eq 'x'"), record) is False
    assert evaluate(p("QTY lt 5"), record) is False
    assert evaluate(p("QTY ge 5"), record) is False
    assert evaluate(p("not (QTY lt 5)"), record) is True
    # Unreadable stored values count as missing rather than crashing an export.
    assert evaluate(p("QTY eq null"), {"QTY": "n/a"}) is True


def test_evaluate_accepts_store_shapes() -> None:
    from azure.data.tables import EdmType, EntityProperty

    assert evaluate(p("QTY eq 7"), {"QTY": EntityProperty(7, EdmType.INT64)})
    assert evaluate(p("MODIFIEDAT eq 2024-01-31T10:00:00Z"), {"MODIFIEDAT": "2024-01-31T10:00:00.0000000Z"})
    assert evaluate(p("CREATED eq 2024-01-31"), {"CREATED": date(2024, 1, 31)})
    assert evaluate(p("name eq 'x'"), {"Name": "x"})  # case-insensitive key fallback


# ---------------------------------------------------------------- compilation


def c(text: str) -> tuple[str, dict[str, object]]:
    return compile_filter(p(text))


def test_compile_simple_comparisons() -> None:
    assert c("NAME eq 'Contoso'") == ("NAME eq @p0", {"p0": "Contoso"})
    assert c("QTY ge 5") == ("QTY__num ge @p0", {"p0": 5.0})
    assert c("BLOCKED eq true") == ("BLOCKED eq @p0", {"p0": True})
    assert c("CREATED lt 2024-01-31") == ("CREATED lt @p0", {"p0": "2024-01-31"})
    assert c("MODIFIEDAT ge 2024-01-31T12:00:00+02:00") == (
        "MODIFIEDAT ge @p0",
        {"p0": datetime(2024, 1, 31, 10, tzinfo=UTC)},
    )
    assert c("PARTYID eq '{6F9619FF-8B86-D011-B42D-00C04FC964FF}'") == (
        "PARTYID eq @p0",
        {"p0": "6f9619ff-8b86-d011-b42d-00c04fc964ff"},
    )
    assert c("STATUS eq 'closed'") == ("STATUS eq @p0", {"p0": "Closed"})
    assert c("company eq 'USMF'") == ("company eq @p0", {"p0": "usmf"})
    assert compile_filter(p("company eq 'USMF'"), company_property="DataAreaId") == (
        "DataAreaId eq @p0",
        {"p0": "usmf"},
    )


def test_compile_decimals_against_their_double_shadow() -> None:
    assert c("CREDITLIMIT gt 1000.50") == ("CREDITLIMIT__num ge @p0", {"p0": 1000.5})
    assert c("CREDITLIMIT lt 1000.50") == ("CREDITLIMIT__num le @p0", {"p0": 1000.5})
    assert c("CREDITLIMIT eq 1000.50") == ("CREDITLIMIT__num eq @p0", {"p0": 1000.5})
    assert c("CREDITLIMIT ne 1000.50") == ("", {})
    assert c("CREDITLIMIT gt 1e20".replace("1e20", "100000000000000000000")) == (
        "",
        {},
    )  # not plain-notation safe


def test_compile_ints_against_their_double_shadow() -> None:
    # An int parameter would be rendered as an Int32 literal, which never matches the stored Int64
    # property; the Double shadow is matched by the float parameter.
    for text, expected in [
        ("QTY eq 5", ("QTY__num eq @p0", {"p0": 5.0})),
        ("QTY gt 5", ("QTY__num gt @p0", {"p0": 5.0})),  # exact below 2**53: strict stays strict
        ("QTY lt -5", ("QTY__num lt @p0", {"p0": -5.0})),
        ("QTY ge 3000000000", ("QTY__num ge @p0", {"p0": 3000000000.0})),
        ("LEVEL ne 2", ("LEVEL__num ne @p0", {"p0": 2.0})),  # required: `ne` is exact
        ("LEVEL le 9007199254740991", ("LEVEL__num le @p0", {"p0": 9007199254740991.0})),
        ("LEVEL eq -9007199254740991", ("LEVEL__num eq @p0", {"p0": -9007199254740991.0})),
    ]:
        text_out, params = c(text)
        assert (text_out, params) == expected, text
        assert all(type(v) is float for v in params.values()), text
    assert c("QTY ne 2") == ("", {})  # optional: a missing value is unequal to 2
    # From 2**53 on, distinct ints share Doubles: evaluate() alone decides.
    assert c("LEVEL eq 9007199254740992") == ("", {})
    assert c("LEVEL gt -9007199254740992") == ("", {})
    assert c("LEVEL eq 9223372036854775807 and QTY eq 1") == ("QTY__num eq @p0", {"p0": 1.0})


def test_compile_nesting_and_logic() -> None:
    assert c("QTY ge 5 and (NAME eq 'a' or NAME eq 'b')") == (
        "QTY__num ge @p0 and ( NAME eq @p1 or NAME eq @p2 )",
        {"p0": 5.0, "p1": "a", "p2": "b"},
    )
    assert c("(QTY eq 1 and LEVEL eq 2) or (QTY eq 3 and LEVEL eq 4)") == (
        "( QTY__num eq @p0 and LEVEL__num eq @p1 ) or ( QTY__num eq @p2 and LEVEL__num eq @p3 )",
        {"p0": 1.0, "p1": 2.0, "p2": 3.0, "p3": 4.0},
    )
    # De Morgan on a required field is exact...
    assert c("not (LEVEL lt 5 or CUSTOMERACCOUNT eq 'x')") == (
        "LEVEL__num ge @p0 and CUSTOMERACCOUNT ne @p1",
        {"p0": 5.0, "p1": "x"},
    )
    # ...on optional fields a missing property would be lost, so the constraint is dropped.
    assert c("not (QTY lt 5)") == ("", {})
    assert c("NAME ne 'x'") == ("", {})
    assert c("NAME ne 'x' and QTY eq 1") == ("QTY__num eq @p0", {"p0": 1.0})
    assert c("NAME ne 'x' or QTY eq 1") == ("", {})
    assert c("NAME eq null") == ("", {})


def test_compile_respects_the_15_comparison_limit() -> None:
    many_and = " and ".join(f"LEVEL ne {i}" for i in range(20))
    text, params = c(many_and)
    assert text.count("@") == 15 and len(params) == 15
    assert c(" or ".join(f"LEVEL eq {i}" for i in range(16))) == ("", {})
    fifteen = " or ".join(f"LEVEL eq {i}" for i in range(15))
    assert c(fifteen)[0].count("@") == 15
    # An `and` keeps the conditions that fit and drops an `or` group that does not.
    text, params = c("NAME eq 'a' and (" + " or ".join(f"LEVEL eq {i}" for i in range(15)) + ")")
    assert (text, params) == ("NAME eq @p0", {"p0": "a"})


def test_compile_never_puts_values_into_the_text() -> None:
    text, params = c("NAME eq 'x'' or PartitionKey ne ''' and CUSTOMERACCOUNT eq '@p0'")
    assert text == "NAME eq @p0 and CUSTOMERACCOUNT eq @p1"
    assert params == {"p0": "x' or PartitionKey ne '", "p1": "@p0"}


def test_compiled_output_through_azure_data_tables_substitution() -> None:
    serialize = pytest.importorskip("azure.data.tables._serialize")
    substitute = serialize._parameter_filter_substitution

    text, params = c("NAME eq 'x'' or PartitionKey ne ''' and CUSTOMERACCOUNT eq '@p0'")
    # The malicious literal stays one quoted OData string; nothing it contains is re-substituted.
    assert substitute(params, text) == "NAME eq 'x'' or PartitionKey ne ''' and CUSTOMERACCOUNT eq '@p0'"

    text, params = c(
        "(QTY eq 0 or QTY eq 1 or LEVEL eq 5000000000) and BLOCKED eq false "
        "and MODIFIEDAT ge 2024-01-31T10:00:00Z and CREDITLIMIT ge 1"
    )
    assert substitute(params, text) == (
        "( QTY__num eq 0.0 or QTY__num eq 1.0 or LEVEL__num eq 5000000000.0 ) and BLOCKED eq false "
        "and MODIFIEDAT ge datetime'2024-01-31T10:00:00.000000Z' and CREDITLIMIT__num ge 1.0"
    )
    # Int filters never produce an integer literal (Int32 `5` or Int64 `5L`), only plain Doubles,
    # up to the largest int compiled server-side.
    for value in (0, 1, -1, 2, 2**31, 3000000000, -(2**53) + 1, 2**53 - 1):
        text, params = c(f"LEVEL ge {value}")
        assert substitute(params, text) == f"LEVEL__num ge {float(value)}"
        assert re.fullmatch(r"LEVEL__num ge -?\d+\.0", substitute(params, text))
    # Wrapped by a caller with spaces, as documented, the placeholders still substitute.
    assert substitute(params, f"PartitionKey ge @pk and ( {text} )".replace("@pk", "'usmf-'")).endswith(
        "1.0 )"
    )


def test_param_prefix() -> None:
    assert compile_filter(p("QTY eq 1"), param_prefix="f") == ("QTY__num eq @f0", {"f0": 1.0})
    with pytest.raises(ValueError):
        compile_filter(p("QTY eq 1"), param_prefix="p )")


# ---------------------------------------------------------------- the compiled query is a superset


def _encode(record: dict) -> dict:
    """A record as the entity store writes it (see the storage conventions in filters.py)."""
    from azure.data.tables import EdmType, EntityProperty

    from shared.storage.entity_repo import NUM_SUFFIX

    row: dict[str, object] = {}
    for f in ENTITY.fields:
        v = record.get(f.name)
        if v is None:
            continue
        if f.type == "int":
            row[f.name] = EntityProperty(v, EdmType.INT64)
            row[f.name + NUM_SUFFIX] = float(v)
        elif f.type == "decimal":
            row[f.name] = str(v)
            row[f.name + NUM_SUFFIX] = float(v)
        elif f.type == "date":
            row[f.name] = v.isoformat()
        else:
            row[f.name] = v
    row["company"] = record["company"]
    return row


def test_the_emulated_rows_are_what_the_store_writes() -> None:
    from shared.storage.entity_repo import encode_record

    record = {**_random_record(random.Random(1)), "QTY": 7, "CREDITLIMIT": Decimal("1.5"), "NAME": None}
    stored = encode_record(ENTITY, record, record["company"], 4, datetime(2024, 1, 1, tzinfo=UTC))
    for key in ("PartitionKey", "RowKey", "SysModifiedAt"):
        del stored[key]
    assert stored == _encode(record)
    assert stored["QTY__num"] == 7.0 and type(stored["QTY__num"]) is float


def _property_type(value: object) -> str:
    """The Edm type a stored property has."""
    if hasattr(value, "edm_type"):
        return str(value.edm_type.value)  # type: ignore[union-attr]
    if isinstance(value, bool):
        return "Edm.Boolean"
    if isinstance(value, int):
        return "Edm.Int32"
    if isinstance(value, float):
        return "Edm.Double"
    if isinstance(value, datetime):
        return "Edm.DateTime"
    assert isinstance(value, str), value
    return "Edm.String"


def _literal_type(name: str, params: dict[str, object]) -> str:
    """The Edm type of the literal azure-data-tables writes for a parameter."""
    from azure.data.tables._serialize import _parameter_filter_substitution

    literal = _parameter_filter_substitution(params, f"@{name}")
    if literal.startswith("'"):
        return "Edm.String"
    if literal.startswith("datetime'"):
        return "Edm.DateTime"
    if isinstance(params[name], bool):
        return "Edm.Boolean"
    if literal.endswith("L"):
        return "Edm.Int64"
    if re.fullmatch(r"-?\d+", literal):
        return "Edm.Int32"  # what the service reads `5` (or, beyond 32 bits, fails to read) as
    assert re.fullmatch(r"-?\d+\.\d+", literal), literal
    return "Edm.Double"


def _table_eval(text: str, params: dict[str, object], row: dict) -> bool:
    """A tiny Azure Table $filter evaluator for the shape compile_filter emits.

    Like the service: a comparison on a missing property is false, and so is one whose literal has
    another Edm type than the property (an Int64 property never equals the Int32 literal `5`).
    """
    if not text:
        return True
    tokens = text.split(" ")
    pos = 0

    def parse_or() -> bool:
        nonlocal pos
        result = parse_and()
        while pos < len(tokens) and tokens[pos] == "or":
            pos += 1
            result = parse_and() or result
        return result

    def parse_and() -> bool:
        nonlocal pos
        result = parse_atom()
        while pos < len(tokens) and tokens[pos] == "and":
            pos += 1
            result = parse_atom() and result
        return result

    def parse_atom() -> bool:
        nonlocal pos
        if tokens[pos] == "(":
            pos += 1
            result = parse_or()
            assert tokens[pos] == ")"
            pos += 1
            return result
        prop, op, ref = tokens[pos : pos + 3]
        pos += 3
        if prop not in row or _property_type(row[prop]) != _literal_type(ref[1:], params):
            return False
        a, b = row[prop], params[ref[1:]]
        a = getattr(a, "value", a)
        return {
            "eq": a == b,
            "ne": a != b,
            "gt": a > b,  # type: ignore[operator]
            "ge": a >= b,  # type: ignore[operator]
            "lt": a < b,  # type: ignore[operator]
            "le": a <= b,  # type: ignore[operator]
        }[op]

    result = parse_or()
    assert pos == len(tokens)
    return result


_POOLS: dict[str, list[tuple[object, str]]] = {
    "CUSTOMERACCOUNT": [("A", "'A'"), ("B", "'B'"), ("b", "'b'")],
    "NAME": [(None, "null"), ("Contoso", "'Contoso'"), ("Fabrikam", "'Fabrikam'")],
    "CREDITLIMIT": [
        (None, "null"),
        (Decimal("0.1"), "0.1"),
        (Decimal("0.10000000000000001"), "0.10000000000000001"),  # same Double as 0.1
        (Decimal("5"), "5"),
        (Decimal("-2.5"), "-2.5"),
    ],
    "QTY": [
        (None, "null"),
        (0, "0"),
        (1, "1"),
        (7, "7"),
        (3000000000, "3000000000"),
        (2**53 + 1, str(2**53 + 1)),
    ],
    "LEVEL": [(1, "1"), (2, "2"), (-3000000000, "-3000000000"), (2**53, str(2**53))],
    "BLOCKED": [(None, "null"), (True, "true"), (False, "false")],
    "CREATED": [(None, "null"), (date(2024, 1, 30), "2024-01-30"), (date(2024, 1, 31), "2024-01-31")],
    "MODIFIEDAT": [
        (None, "null"),
        (datetime(2024, 1, 31, tzinfo=UTC), "2024-01-31T00:00:00Z"),
        (datetime(2024, 1, 31, 10, tzinfo=UTC), "2024-01-31T11:00:00+01:00"),
    ],
    "PARTYID": [
        (None, "null"),
        ("6f9619ff-8b86-d011-b42d-00c04fc964ff", "'{6F9619FF-8B86-D011-B42D-00C04FC964FF}'"),
    ],
    "STATUS": [(None, "null"), ("Active", "'active'"), ("Closed", "'Closed'")],
    "company": [("usmf", "'USMF'"), ("demf", "'demf'")],
}


def _random_filter(rng: random.Random, depth: int = 0) -> str:
    roll = rng.random()
    if depth < 3 and roll < 0.25:
        return f"({_random_filter(rng, depth + 1)} and {_random_filter(rng, depth + 1)})"
    if depth < 3 and roll < 0.45:
        return f"({_random_filter(rng, depth + 1)} or {_random_filter(rng, depth + 1)})"
    if depth < 3 and roll < 0.55:
        return f"not ({_random_filter(rng, depth + 1)})"
    name = rng.choice(list(_POOLS))
    value, literal = rng.choice(_POOLS[name])
    ftype = next((f.type for f in ENTITY.fields if f.name == name), "string")
    ops = (
        ["eq", "ne"]
        if literal == "null" or ftype in ("bool", "guid", "enum")
        else ["eq", "ne", "gt", "ge", "lt", "le"]
    )
    return f"{name} {rng.choice(ops)} {literal}"


def _random_record(rng: random.Random) -> dict:
    return {name: rng.choice(pool)[0] for name, pool in _POOLS.items()}


def test_the_compiled_query_never_loses_a_matching_record() -> None:
    rng = random.Random(20240131)
    records = [_random_record(rng) for _ in range(60)]
    rows = [_encode(r) for r in records]
    checked = matched = narrowed = 0
    for _ in range(400):
        expr = p(_random_filter(rng))
        text, params = compile_filter(expr)
        server_kept = 0
        for record, row in zip(records, rows, strict=True):
            exact = evaluate(expr, record)
            server = _table_eval(text, params, row)
            checked += 1
            matched += exact
            server_kept += server
            assert server or not exact, (format_filter(expr), text, params, record)
        narrowed += server_kept < len(records)
    # The check is not vacuous: many records match, and the server side does filter.
    assert matched > checked // 10
    assert narrowed > 100


def test_the_emulator_rejects_what_the_service_rejects() -> None:
    # The bug the Double shadow fixes: an Int64 property against the Int32 literal `7` matches nothing.
    row = _encode({"CUSTOMERACCOUNT": "A", "QTY": 7, "LEVEL": 1, "company": "usmf"})
    assert not _table_eval("QTY eq @p0", {"p0": 7}, row)
    assert _table_eval("QTY eq @p0", {"p0": 2**40}, {"QTY": row["QTY"].__class__(2**40, row["QTY"].edm_type)})
    assert _table_eval(*c("QTY eq 7"), row)
    assert not _table_eval(*c("QTY eq 8"), row)


def test_datetime_params_are_timezone_aware() -> None:
    # azure-data-tables converts naive datetimes with the machine's local zone; ours carry UTC.
    _, params = c("MODIFIEDAT ge 2024-01-31T10:00:00")
    (value,) = params.values()
    assert isinstance(value, datetime) and value.utcoffset() == timedelta(0)
    assert value == datetime(2024, 1, 31, 10, tzinfo=timezone.utc)  # noqa: UP017
