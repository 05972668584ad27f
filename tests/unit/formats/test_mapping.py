"""Field mapping: explicit and automatic, defaults, keys, and every reason a row is rejected."""

from __future__ import annotations

import datetime as dt
import io
import time
from decimal import Decimal
from pathlib import Path

import pytest

from shared.domain.schema import BUILTIN_FORMATS, Entity, Field
from shared.formats.mapping import MappedRow, build_mapper
from shared.formats.readers import ERROR_KEY, read_rows

CSV = BUILTIN_FORMATS["CSV"]

GROUPS = Entity(
    name="CustomerGroups",
    label="Customer groups",
    keys=("CUSTOMERGROUPID",),
    fields=(
        Field("CUSTOMERGROUPID", "string", required=True, max_length=10),
        Field("DESCRIPTION", "string", max_length=60),
        Field("PAYMENTTERMS", "enum", values=("Net30", "Net60")),
        Field("CREDITLIMIT", "decimal"),
        Field("ACTIVE", "bool"),
    ),
)

RATES = Entity(
    name="ExchangeRates",
    label="Exchange rates",
    keys=("RATETYPENAME", "FROMCURRENCY", "TOCURRENCY", "STARTDATE"),
    company_specific=False,
    fields=(
        Field("RateTypeName", "string", max_length=20),
        Field("FromCurrency", "string", max_length=3),
        Field("ToCurrency", "string", max_length=3),
        Field("StartDate", "date"),
        Field("EndDate", "date"),
        Field("ConversionFactor", "enum", values=("One", "Ten", "Hundred")),
        Field("Rate", "decimal", required=True),
    ),
)


def test_automatic_mapping_is_case_insensitive_and_uses_the_entity_spelling() -> None:
    mapper = build_mapper(GROUPS, ["customergroupid", "Description", "PaymentTerms"], None, CSV)
    result = mapper.map_row({"customergroupid": "10", "Description": "Wholesale", "PaymentTerms": "net30"})
    assert result == MappedRow(
        {"CUSTOMERGROUPID": "10", "DESCRIPTION": "Wholesale", "PAYMENTTERMS": "Net30"}, []
    )
    assert result.ok and result.reason == ""


def test_fields_without_a_column_are_left_out_and_extra_columns_ignored() -> None:
    mapper = build_mapper(GROUPS, ["CUSTOMERGROUPID", "UNUSED"], None, CSV)
    assert mapper.map_row({"CUSTOMERGROUPID": "10", "UNUSED": "x"}).record == {"CUSTOMERGROUPID": "10"}
    assert mapper.unmapped_columns(["CUSTOMERGROUPID", "UNUSED"]) == ["UNUSED"]


def test_explicit_mapping_and_defaults() -> None:
    mapping = [
        {"source": "GROUP", "target": "CUSTOMERGROUPID", "default": None},
        {"source": "TERMS", "target": "paymentterms", "default": "Net60"},
        {"source": None, "target": "ACTIVE", "default": True},
        {"source": "LIMIT", "target": "CREDITLIMIT", "default": 100},
    ]
    mapper = build_mapper(GROUPS, ["GROUP", "TERMS", "LIMIT", "DESCRIPTION"], mapping, CSV)
    assert mapper.map_row({"GROUP": "10", "TERMS": "", "LIMIT": "2500.50", "DESCRIPTION": "d"}).record == {
        "CUSTOMERGROUPID": "10",
        "PAYMENTTERMS": "Net60",
        "ACTIVE": True,
        "CREDITLIMIT": Decimal("2500.50"),
        "DESCRIPTION": "d",
    }
    assert mapper.map_row({"GROUP": "11", "TERMS": "net30", "LIMIT": "  ", "DESCRIPTION": ""}).record == {
        "CUSTOMERGROUPID": "11",
        "PAYMENTTERMS": "Net30",
        "ACTIVE": True,
        "CREDITLIMIT": Decimal("100"),  # blank text counts as empty, so the default applies
        "DESCRIPTION": None,
    }


def test_explicit_source_matches_columns_case_insensitively() -> None:
    mapper = build_mapper(GROUPS, ["group"], [{"source": "GROUP", "target": "CUSTOMERGROUPID"}], CSV)
    assert mapper.map_row({"group": "7"}).record == {"CUSTOMERGROUPID": "7"}
    assert mapper.missing_sources(["group"]) == []
    assert mapper.missing_sources(["OTHER"]) == ["GROUP"]


def test_unknown_target_fails_at_build_time() -> None:
    with pytest.raises(ValueError) as info:
        build_mapper(GROUPS, ["X"], [{"source": "X", "target": "NOPE", "default": None}], CSV)
    assert str(info.value) == (
        "mapping target 'NOPE' is not a field of entity 'CustomerGroups'; its fields are "
        "CUSTOMERGROUPID, DESCRIPTION, PAYMENTTERMS, CREDITLIMIT, ACTIVE"
    )


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        (
            [{"source": "A", "target": "DESCRIPTION"}, {"source": "B", "target": "description"}],
            "the field DESCRIPTION is the target of more than one mapping item",
        ),
        ([{"source": "A"}], "mapping item 1 has no target field"),
        ([{"target": "DESCRIPTION"}], "mapping item 1 (DESCRIPTION) has neither a source nor a default"),
        (
            [{"source": "A", "target": "ACTIVE", "default": "perhaps"}],
            "the default value for ACTIVE is not valid: ACTIVE: 'perhaps' is not a yes/no value",
        ),
        (["A->B"], "mapping item 1 must be an object"),
    ],
)
def test_invalid_mappings(mapping: list, message: str) -> None:
    with pytest.raises(ValueError) as info:
        build_mapper(GROUPS, ["A", "B"], mapping, CSV)
    assert str(info.value).startswith(message)


def test_all_reasons_of_a_row_are_collected() -> None:
    mapper = build_mapper(GROUPS, ["CUSTOMERGROUPID", "PAYMENTTERMS", "CREDITLIMIT", "ACTIVE"], None, CSV)
    result = mapper.map_row(
        {"CUSTOMERGROUPID": "", "PAYMENTTERMS": "Net90", "CREDITLIMIT": "1,000", "ACTIVE": "y"}
    )
    assert result.record is None
    assert result.errors == [
        "CUSTOMERGROUPID is required",
        "PAYMENTTERMS: 'Net90' is not one of Net30, Net60",
        "CREDITLIMIT: '1,000' is not a decimal number (use '.' as the decimal separator and no thousands separators)",
        "ACTIVE: 'y' is not a yes/no value (use true/false, yes/no or 1/0)",
    ]
    assert result.reason.startswith("CUSTOMERGROUPID is required; PAYMENTTERMS:")


def test_missing_key_field_rejects_the_row() -> None:
    entity = Entity("E", "E", fields=(Field("ID"), Field("NAME")), keys=("ID",))
    mapper = build_mapper(entity, ["ID", "NAME"], None, CSV)
    assert mapper.map_row({"ID": "", "NAME": "x"}).errors == ["ID is required (it is part of the key)"]
    no_column = build_mapper(entity, ["NAME"], None, CSV)
    assert no_column.map_row({"NAME": "x"}).errors == [
        "ID is required (it is part of the key); no column of the file maps to it"
    ]


def test_reader_error_marker_rejects_the_row() -> None:
    mapper = build_mapper(GROUPS, ["CUSTOMERGROUPID"], None, CSV)
    result = mapper.map_row(
        {"CUSTOMERGROUPID": "1", ERROR_KEY: "row has 3 values but the header has 5 columns"}
    )
    assert result == MappedRow(None, ["row has 3 values but the header has 5 columns"])


def test_without_columns_each_row_shape_is_planned_lazily() -> None:
    mapper = build_mapper(GROUPS, None, None, BUILTIN_FORMATS["JSON"])
    assert mapper.map_row({"customerGroupId": "1", "creditLimit": "5"}).record == {
        "CUSTOMERGROUPID": "1",
        "CREDITLIMIT": Decimal("5"),
    }
    assert mapper.map_row({"CUSTOMERGROUPID": "2", "Active": "true"}).record == {
        "CUSTOMERGROUPID": "2",
        "ACTIVE": True,
    }
    assert mapper.map_row({"DESCRIPTION": "no key"}).errors == [
        "CUSTOMERGROUPID is required; no column of the file maps to it"
    ]


def test_real_d365_exchange_rates_map_completely(d365: Path) -> None:
    path = d365 / "kiko-exchange-rates-csv" / "RI_CurEx_Export-Exchange rates.csv"
    with path.open("rb") as stream:
        rows = list(read_rows(stream, CSV))
    mapper = build_mapper(RATES, list(rows[0][1]), None, CSV)
    mapped = [mapper.map_row(values) for _, values in rows]
    assert all(m.ok for m in mapped), [m.errors for m in mapped if not m.ok][:3]
    assert mapped[0].record == {
        "RateTypeName": "Average",
        "FromCurrency": "EUR",
        "ToCurrency": "USD",
        "StartDate": dt.date(2011, 1, 31),
        "EndDate": dt.date(2011, 2, 27),
        "ConversionFactor": "One",
        "Rate": Decimal("1.3357400000000000"),
    }
    assert mapper.unmapped_columns(list(rows[0][1])) == ["RATETYPEDESCRIPTION"]


def test_mapping_is_fast_enough_for_bulk_imports() -> None:
    mapper = build_mapper(
        GROUPS, ["CUSTOMERGROUPID", "DESCRIPTION", "PAYMENTTERMS", "CREDITLIMIT", "ACTIVE"], None, CSV
    )
    row = {
        "CUSTOMERGROUPID": "10",
        "DESCRIPTION": "Wholesale",
        "PAYMENTTERMS": "Net30",
        "CREDITLIMIT": "10.5",
        "ACTIVE": "Yes",
    }
    started = time.perf_counter()
    for _ in range(20_000):
        mapper.map_row(row)
    # A loose bound (benchmarks measure precisely): a plan must not be rebuilt per row.
    assert time.perf_counter() - started < 2.0


def test_csv_to_records_end_to_end() -> None:
    data = b"CUSTOMERGROUPID,DESCRIPTION,PAYMENTTERMS\n10,Wholesale,Net30\n,Missing key,Net60\n20,Bad terms,Net90\n30,Short\n"
    rows = list(read_rows(io.BytesIO(data), CSV))
    mapper = build_mapper(GROUPS, [c for c in rows[0][1] if c != ERROR_KEY], None, CSV)
    outcome = [(line, mapper.map_row(values)) for line, values in rows]
    assert [(line, m.record, m.errors) for line, m in outcome] == [
        (2, {"CUSTOMERGROUPID": "10", "DESCRIPTION": "Wholesale", "PAYMENTTERMS": "Net30"}, []),
        (3, None, ["CUSTOMERGROUPID is required"]),
        (4, None, ["PAYMENTTERMS: 'Net90' is not one of Net30, Net60"]),
        (5, None, ["row has 2 values but the header has 3 columns"]),
    ]


def test_columns_that_feed_no_field_are_listed_not_lost_unseen() -> None:
    """Issue 12: unmapped columns are not imported (as in D365) but the mapper lists them for the message."""
    columns = ["CUSTOMERGROUPID", "NOTES", "description", "Extra"]
    mapper = build_mapper(GROUPS, columns, [{"source": "Extra", "target": "CREDITLIMIT"}], CSV)
    assert mapper.unmapped() == ["NOTES"]  # description maps by name, Extra explicitly
    # Formats without a header (XML, JSON): every new row shape adds its unmapped keys, once.
    free = build_mapper(GROUPS, None, None, CSV)
    for row in ({"CUSTOMERGROUPID": "1", "A": "x"}, {"CUSTOMERGROUPID": "2", "B": "y", "A": "z"}):
        assert free.map_row(row).ok
    free.map_row({"CUSTOMERGROUPID": "3", "C": "w", ERROR_KEY: "bad row"})  # a rejected row adds nothing
    assert free.unmapped() == ["A", "B"] and not free.unmapped_more
    many = build_mapper(GROUPS, ["CUSTOMERGROUPID", *(f"X{i}" for i in range(30))], None, CSV)
    assert many.unmapped() == [f"X{i}" for i in range(20)] and many.unmapped_more
