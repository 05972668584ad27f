"""OData key predicates as D365 clients write them (shared/odata/keys.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shared.errors import ValidationError
from shared.odata.keys import SINGLE, format_key, parse_key

ENUM = "Microsoft.Dynamics.DataEntities.DMFOperationType"


@pytest.mark.parametrize(
    ("predicate", "expected"),
    [
        ("('usmf')", {SINGLE: "usmf"}),
        ("(%27usmf%27)", {SINGLE: "usmf"}),  # percent-encoded, as some clients send it
        (f"(Name='Group A',OperationType={ENUM}'Export')", {"Name": "Group A", "OperationType": "Export"}),
        (
            "(dataAreaId='usmf',CustomerGroupId='O''Brien')",
            {"dataAreaId": "usmf", "CustomerGroupId": "O'Brien"},
        ),
        ("(Name='a,b)c')", {"Name": "a,b)c"}),  # delimiters inside a quoted value are text
        ("(RecId=5637144576)", {"RecId": 5637144576}),
        ("(Amount=-1.25)", {"Amount": Decimal("-1.25")}),
        ("(Id=1B4E28BA-2FA1-11D2-883F-0016D3CCA427)", {"Id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427"}),
        ("(Flag=true,Other=null)", {"Flag": True, "Other": None}),
    ],
)
def test_parse_key(predicate, expected):
    assert parse_key(predicate) == expected


@pytest.mark.parametrize(
    ("predicate", "why"),
    [
        ("Name='x'", "in parentheses"),
        ("()", "empty"),
        ("(Name='x)", "never closed"),
        ("(Name='a',Name='b')", "given twice"),
        ("('a',Name='b')", "unexpected"),
        ("(Name='a' junk)", "unexpected"),
        ("(Name=)", "no value"),
        ("(Name='a',)", "property name"),
        ("(" + "A" * 5000 + ")", "longer than"),
    ],
)
def test_a_malformed_key_is_a_400_naming_why(predicate, why):
    with pytest.raises(ValidationError) as caught:
        parse_key(predicate)
    assert caught.value.code == "InvalidKey"
    assert why in str(caught.value)


def test_format_key_round_trips():
    values = {"Name": "it's", "OperationType": (ENUM, "Import"), "Level": 2, "On": False}
    text = format_key(values)
    assert text == f"(Name='it''s',OperationType={ENUM}'Import',Level=2,On=false)"
    assert parse_key(text) == {"Name": "it's", "OperationType": "Import", "Level": 2, "On": False}
    assert format_key({SINGLE: "usmf"}) == "('usmf')"
