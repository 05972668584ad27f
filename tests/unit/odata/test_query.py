"""Query options of the data entity sets (shared/odata/query.py), the $skiptoken (shared/odata/skiptoken.py) and
the record JSON (shared/odata/payload.py)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from shared.domain.config import parse_entity
from shared.errors import ValidationError
from shared.odata import skiptoken
from shared.odata.payload import dumps_collection, dumps_entity
from shared.odata.query import (
    MAX_PAGE_SIZE,
    filter_company,
    max_page_size,
    parse_key_options,
    parse_query,
)

ENTITY = parse_entity(
    "CustGroups",
    {
        "keys": ["GROUP", "SUB"],
        "fields": [
            {"name": "GROUP", "type": "string"},
            {"name": "SUB", "type": "string"},
            {"name": "NAME", "type": "string"},
            {"name": "LIMIT", "type": "decimal"},
        ],
    },
)
INT_KEYED = parse_entity(
    "Numbers", {"keys": ["N"], "fields": [{"name": "N", "type": "int"}], "companySpecific": False}
)


def bad(params, entity=ENTITY) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        parse_query(params, entity)
    return info.value


def test_the_supported_options_are_parsed():
    q = parse_query(
        {
            "$filter": "dataAreaId eq 'USMF' and NAME eq 'x'",
            "$select": "name, dataareaid",
            "$top": "5",
            "$skip": "10",
            "$count": "true",
            "$orderby": "dataAreaId, GROUP asc",
            "cross-company": "TRUE",
        },
        ENTITY,
    )
    assert q.company == "usmf" and q.filter_text.startswith("dataAreaId")
    assert q.select == ["NAME", "dataAreaId"]
    assert (q.top, q.skip, q.count, q.cross_company) == (5, 10, True, True)
    assert q.orderby == ["dataAreaId", "GROUP"]
    assert q.skiptoken is None


def test_option_names_ignore_case_and_may_omit_the_dollar():
    q = parse_query({"TOP": "3", "$Select": "NAME", "$SKIPTOKEN": "abc"}, ENTITY)
    assert (q.top, q.select, q.skiptoken) == (3, ["NAME"], "abc")


@pytest.mark.parametrize(
    ("params", "code", "words"),
    [
        ({"$expand": "Lines"}, "UnsupportedQueryOption", "$expand"),
        ({"$search": "x"}, "UnsupportedQueryOption", "$search"),
        ({"company": "usmf"}, "UnsupportedQueryOption", "company"),
        ({"$top": "-1"}, "InvalidQueryOption", "$top"),
        ({"$top": "1e3"}, "InvalidQueryOption", "$top"),
        ({"$skip": "x"}, "InvalidQueryOption", "$skip"),
        ({"$count": "yes"}, "InvalidQueryOption", "$count"),
        ({"cross-company": "1"}, "InvalidQueryOption", "cross-company"),
        ({"$select": "NOPE"}, "InvalidQueryOption", "NOPE"),
        ({"$filter": "NOPE eq 1"}, "InvalidFilter", "NOPE"),
        ({"$filter": "tolower(NAME) eq 'x'"}, "UnsupportedFilterFunction", "tolower"),
        ({"$orderby": "NAME"}, "InvalidQueryOption", "GROUP, SUB"),
        ({"$orderby": "SUB"}, "InvalidQueryOption", "GROUP, SUB"),
        ({"$orderby": "GROUP desc"}, "InvalidQueryOption", "desc"),
        ({"$orderby": "GROUP,GROUP"}, "InvalidQueryOption", "GROUP"),
        ({"$top": "1", "top": "2"}, "InvalidQueryOption", "twice"),
    ],
)
def test_bad_options_are_400_naming_what_is_wrong(params, code, words):
    error = bad(params)
    assert error.status == 400 and error.code == code
    assert words in error.message


def test_orderby_names_the_keys_and_refuses_keys_stored_as_text_of_numbers():
    assert parse_query({"$orderby": "group,Sub"}, ENTITY).orderby == ["GROUP", "SUB"]
    error = bad({"$orderby": "N"}, INT_KEYED)
    assert "int" in error.message


def test_the_company_comes_from_a_top_level_dataareaid_eq_only():
    def company(text):
        return filter_company(parse_query({"$filter": text}, ENTITY).expr)

    assert company("dataAreaId eq 'DEMF'") == "demf"
    assert company("NAME eq 'x' and company eq 'usmf'") == "usmf"
    assert company("dataAreaId eq 'usmf' or NAME eq 'x'") is None
    assert company("dataAreaId ne 'usmf'") is None


def test_canonical_binds_every_option_but_the_skiptoken():
    a = parse_query({"$top": "3", "$filter": "NAME eq 'x'", "$skiptoken": "t1"}, ENTITY)
    b = parse_query({"$filter": "NAME eq 'x'", "$top": "3", "$skiptoken": "t2"}, ENTITY)
    c = parse_query({"$filter": "NAME eq 'y'", "$top": "3"}, ENTITY)
    assert a.canonical == b.canonical != c.canonical


def test_a_key_lookup_takes_select_only():
    assert parse_key_options({"$select": "NAME"}, ENTITY).select == ["NAME"]
    with pytest.raises(ValidationError) as info:
        parse_key_options({"$top": "1"}, ENTITY)
    assert info.value.code == "UnsupportedQueryOption"


@pytest.mark.parametrize(
    ("header", "size"),
    [
        (None, None),
        ("return=minimal", None),
        ("odata.maxpagesize=50", 50),
        ('odata.include-annotations="*", odata.maxpagesize="7"', 7),
        ("odata.maxpagesize=0", 1),
        ("odata.maxpagesize=999999999", MAX_PAGE_SIZE),
    ],
)
def test_prefer_maxpagesize(header, size):
    assert max_page_size(header) == size


KEY = b"k" * 32


def test_a_skiptoken_round_trips_and_is_bound_to_its_query():
    fp = skiptoken.fingerprint("custgroups", "$top=3")
    state = {
        "f": fp,
        "t": {"PartitionKey": "1!8!dXNtZi0wMw--", "RowKey": None},
        "p": ["usmf-03", "a"],
        "r": 2,
    }
    token = skiptoken.encode(state, KEY)
    assert skiptoken.decode(token, KEY, fp) == state
    with pytest.raises(ValidationError) as info:
        skiptoken.decode(token, KEY, skiptoken.fingerprint("custgroups", "$top=4"))
    assert info.value.code == "InvalidSkipToken"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # the signature
        lambda t: ("e" if t[0] != "e" else "f") + t[1:],  # the payload
        lambda t: t.replace(".", ""),
        lambda t: "",
        lambda t: "x" * 9000,
        lambda t: "not base64!.@@",
    ],
)
def test_a_changed_skiptoken_is_400(tamper):
    fp = skiptoken.fingerprint("c", "")
    token = skiptoken.encode({"f": fp, "k": "a|b", "r": None}, KEY)
    with pytest.raises(ValidationError) as info:
        skiptoken.decode(tamper(token), KEY, fp)
    assert info.value.code == "InvalidSkipToken" and info.value.status == 400


def test_a_payload_resigned_with_another_key_is_refused():
    fp = skiptoken.fingerprint("c", "")
    forged = skiptoken.encode({"f": fp, "r": 10**9}, b"another key of enough length!!!!")
    with pytest.raises(ValidationError):
        skiptoken.decode(forged, KEY, fp)


def test_records_are_written_with_exact_decimals_and_iso_dates():
    record = {
        "dataAreaId": "usmf",
        "LIMIT": Decimal("12345678901234567890.123456789"),
        "ON": date(2024, 1, 31),
        "AT": datetime(2024, 1, 31, 10, 0, tzinfo=UTC),
        "NAME": 'Ünïcode "quoted"',
        "N": 7,
        "B": False,
        "NONE": None,
    }
    text = dumps_collection({"@odata.context": "ctx"}, [record], {"@odata.nextLink": "next"})
    assert '"LIMIT":12345678901234567890.123456789' in text
    parsed = json.loads(text, parse_float=Decimal)
    assert list(parsed) == ["@odata.context", "value", "@odata.nextLink"]
    assert parsed["value"][0] == {
        **record,
        "ON": "2024-01-31",
        "AT": "2024-01-31T10:00:00Z",
    }
    single = json.loads(dumps_entity({"@odata.context": "c"}, {"A": Decimal("1.50")}), parse_float=Decimal)
    assert single == {"@odata.context": "c", "A": Decimal("1.50")}


@pytest.mark.parametrize(
    ("company", "extra", "extra_params"),
    [("usmf", "", None), (None, "PartitionKey eq @pk and RowKey gt @rk", {"pk": "usmf-01", "rk": "a"})],
)
def test_a_segment_query_keeps_within_azures_15_comparisons(company, extra, extra_params):
    from shared.services.entity_sets import _segment_query

    text = " and ".join(f"NAME ne 'x{n}' and GROUP eq 'g{n}'" for n in range(12))
    expr = parse_query({"$filter": text}, ENTITY).expr
    query, params = _segment_query(company, expr, extra, extra_params)
    assert query.count("@") <= 15 and len(params) <= 15
    assert query.count("@") >= 12  # the filter still narrows as much as fits
