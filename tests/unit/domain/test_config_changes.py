"""JSON merge patches (RFC 7396), entity changes stored records cannot follow, and If-Match / If-None-Match."""

from __future__ import annotations

import pytest

from shared.domain.config import parse_entity
from shared.domain.config_changes import merge_patch, patch_object, record_breaking_changes
from shared.errors import AppError, ValidationError
from shared.storage.config_repo import Preconditions, Stored, etag_of, parse_etags


# RFC 7396 Appendix A, every example.
@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_rfc_7396_examples(target, patch, result):
    assert merge_patch(target, patch) == result


def test_merge_patch_leaves_its_arguments_alone():
    target = {"a": {"b": 1}, "c": [1]}
    patch = {"a": {"b": None, "d": 2}}
    merge_patch(target, patch)
    assert target == {"a": {"b": 1}, "c": [1]} and patch == {"a": {"b": None, "d": 2}}


@pytest.mark.parametrize("patch", [[], "x", 1, None, True])
def test_a_patch_must_be_an_object(patch):
    with pytest.raises(ValidationError, match="must be a JSON object") as caught:
        patch_object(patch, "job")
    assert caught.value.code == "InvalidPatch"


BASE = {
    "keys": ["CODE"],
    "fields": [{"name": "CODE"}, {"name": "PRICE", "type": "decimal"}, {"name": "NOTE"}],
}


def entity(**changes) -> object:
    return parse_entity("Prices", {**BASE, **changes})


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"label": "Other"}, []),
        ({"fields": [*BASE["fields"], {"name": "EXTRA", "type": "int", "required": True}]}, []),
        ({"fields": BASE["fields"][:2]}, []),  # a non-key field removed: its stored values are ignored
        ({"fields": [{"name": "CODE", "maxLength": 5}, *BASE["fields"][1:]]}, []),
        (
            {"fields": [BASE["fields"][0], {"name": "PRICE", "type": "int"}, BASE["fields"][2]]},
            ["field PRICE changes type from decimal to int"],
        ),
        (
            {"fields": [BASE["fields"][0], {"name": "price", "type": "decimal"}, BASE["fields"][2]]},
            ["field PRICE is renamed to price (stored values keep the old name)"],
        ),
        ({"keys": ["CODE", "NOTE"]}, ["keys change from [CODE] to [CODE, NOTE]"]),
        (
            {"keys": ["NOTE"], "fields": BASE["fields"][1:]},  # the key field removed (renamed)
            ["keys change from [CODE] to [NOTE]"],
        ),
        ({"companySpecific": False}, ["companySpecific changes from true to false"]),
    ],
)
def test_changes_stored_records_cannot_follow(changes, expected):
    assert record_breaking_changes(entity(), entity(**changes)) == expected


def test_key_order_matters():
    two = entity(keys=["CODE", "NOTE"])
    assert record_breaking_changes(two, entity(keys=["NOTE", "CODE"])) == [
        "keys change from [CODE, NOTE] to [NOTE, CODE]"
    ]


# Preconditions -------------------------------------------------------------------------------------------
STORED = Stored({"name": "x"}, etag_of("W/\"datetime'2026-01-01T00%3A00%3A00Z'\""), "row")


def test_etags_are_strong_quoted_and_depend_on_the_row_etag():
    assert STORED.etag.startswith('"') and STORED.etag.endswith('"') and not STORED.etag.startswith("W/")
    assert etag_of("a") == etag_of("a") != etag_of("b")


@pytest.mark.parametrize(
    ("header", "tags"),
    [
        (None, None),
        ("  ", None),
        ("*", ("*",)),
        ('"a"', ('"a"',)),
        ('"a", W/"b" ,c', ('"a"', 'W/"b"', '"c"')),
    ],
)
def test_parse_etags(header, tags):
    assert parse_etags(header) == tags


def test_an_overlong_header_is_400():
    with pytest.raises(ValidationError) as caught:
        parse_etags('"' + "x" * 5000 + '"')
    assert caught.value.code == "InvalidPrecondition"


def precondition(pre: Preconditions, current) -> str | None:
    try:
        pre.check(current, "job 'x'")
    except AppError as exc:
        assert (exc.status, exc.code) == (412, "PreconditionFailed")
        return exc.message
    return None


def test_if_match():
    assert precondition(Preconditions.of(STORED.etag), STORED) is None
    assert precondition(Preconditions.of(f'"nope", {STORED.etag}'), STORED) is None
    assert precondition(Preconditions.of("*"), STORED) is None
    stale = precondition(Preconditions.of('"nope"'), STORED)
    assert "changed since you read it" in stale and STORED.etag in stale and "GET" in stale
    assert "does not exist" in precondition(Preconditions.of("*"), None)
    assert "does not exist" in precondition(Preconditions.of(STORED.etag), None)
    # A weak tag never matches (If-Match compares strongly, RFC 9110 §13.1.1).
    assert precondition(Preconditions.of("W/" + STORED.etag), STORED) is not None


def test_if_none_match():
    assert precondition(Preconditions.of(None, "*"), None) is None
    assert "already exists" in precondition(Preconditions.of(None, "*"), STORED)
    assert precondition(Preconditions.of(None, '"other"'), STORED) is None
    assert precondition(Preconditions.of(None, STORED.etag), STORED) is not None


def test_no_preconditions_allow_anything():
    assert not Preconditions.of(None, None).given
    assert precondition(Preconditions.of(None, None), None) is None
    assert precondition(Preconditions.of(None, None), STORED) is None
