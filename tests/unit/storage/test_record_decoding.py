"""Stored records read with the entity's current definition: values that no longer fit are None and reported.

After an entity change made with ?force=true (or an entity deleted and defined again over its old table),
a row holds values of the old types. Browsing (decode_record) and exports (conform_row, then the writers)
must never fail on them.
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from azure.data.tables import EdmType, EntityProperty

from shared.domain.config import parse_entity
from shared.domain.schema import BUILTIN_FORMATS
from shared.formats.writers import write_csv, write_excel, write_json, write_xml
from shared.storage.entity_repo import Misfits, conform_row, decode_record, encode_record, record_to_json

TYPES = ("string", "int", "decimal", "bool", "date", "datetime", "guid", "enum")
WHEN = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
# One record per type, as encode_record stores it.
VALUES = {
    "string": "hello",
    "int": 42,
    "decimal": Decimal("12.5"),
    "bool": True,
    "date": date(2024, 5, 6),
    "datetime": WHEN,
    "guid": "6f0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d",
    "enum": "Net30",
}


def entity_of(ftype: str):
    field = {"name": "V", "type": ftype}
    if ftype == "enum":
        field["values"] = ["Net30", "Net60"]
    return parse_entity("E", {"keys": ["K"], "fields": [{"name": "K"}, field], "companySpecific": False})


def stored_row(ftype: str) -> dict:
    return encode_record(entity_of(ftype), {"K": "k1", "V": VALUES[ftype]}, None, 4, WHEN)


@pytest.mark.parametrize("old", TYPES)
@pytest.mark.parametrize("new", TYPES)
def test_every_type_change_reads_without_failing(old, new):
    row = stored_row(old)
    misfits = Misfits()
    record = decode_record(entity_of(new), row, misfits)
    record_to_json(record)  # the browse reply
    value = record["V"]
    if value is None:
        assert misfits.counts == {"V": 1}
        (warning,) = misfits.warnings()
        assert warning.startswith(f"V ({new}): 1 stored value does not fit")
    else:
        assert not misfits
    if old == new:
        assert value is not None
    # Exports: conform_row, then every writer.
    export_misfits = Misfits()
    conformed = conform_row(entity_of(new), row, export_misfits)
    assert export_misfits.counts == misfits.counts
    columns = [(f, f.name) for f in entity_of(new).fields]
    for write in (write_csv, write_json, write_excel):
        write(io.BytesIO(), columns, BUILTIN_FORMATS["CSV"], [[conformed]])
    write_xml(io.BytesIO(), columns, BUILTIN_FORMATS["CSV"], [[conformed]], record="E", attributes=False)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("decimal", "int", None),  # '12.5'
        ("int", "decimal", Decimal(42)),
        ("int", "string", "42"),
        ("decimal", "string", "12.5"),
        ("bool", "string", "true"),
        ("datetime", "string", "2024-05-06T07:08:09Z"),
        ("datetime", "date", date(2024, 5, 6)),
        ("date", "datetime", datetime(2024, 5, 6, tzinfo=UTC)),
        ("string", "int", None),
        ("string", "bool", None),
        ("int", "bool", None),
        ("bool", "int", None),  # True is not the number 1
        ("string", "date", None),
    ],
)
def test_values_are_converted_only_when_they_fit(old, new, expected):
    assert decode_record(entity_of(new), stored_row(old))["V"] == expected


def test_text_that_fits_the_new_type_is_read_as_it():
    number = {"K": "k", "V": "17"}
    assert decode_record(entity_of("int"), number)["V"] == 17
    assert decode_record(entity_of("decimal"), number)["V"] == Decimal(17)
    assert decode_record(entity_of("bool"), {"K": "k", "V": "False"})["V"] is False
    assert decode_record(entity_of("decimal"), {"K": "k", "V": "NaN"})["V"] is None


def test_conform_row_returns_the_row_itself_when_everything_fits():
    for ftype in TYPES:
        row = stored_row(ftype)
        misfits = Misfits()
        assert conform_row(entity_of(ftype), row, misfits) is row
        assert not misfits


def test_an_int64_property_is_read_as_an_int():
    row = {"K": "k", "V": EntityProperty(2**40, EdmType.INT64)}
    assert decode_record(entity_of("int"), row)["V"] == 2**40
    assert decode_record(entity_of("string"), row)["V"] == str(2**40)


def test_warnings_count_per_field_and_show_the_first_value():
    misfits = Misfits()
    ent = entity_of("int")
    for value in ("1.5", "2.5", "x"):
        decode_record(ent, {"K": "k", "V": value}, misfits)
    assert misfits.warnings() == [
        "V (int): 3 stored values do not fit the field's type and are shown as null, e.g. '1.5'"
    ]
    assert misfits.warnings("written empty")[0].endswith("are written empty, e.g. '1.5'")


def test_filters_read_stored_values_as_browsing_does():
    """A filter must not match a record on a value that browsing shows as null (a decimal under an int)."""
    from shared.formats.filters import evaluate, parse_filter

    ent = entity_of("int")
    expr = parse_filter("V ge 7", ent)
    for stored, shown, matches in (("12.5", None, False), ("12.0", 12, True), ("7", 7, True)):
        assert decode_record(ent, {"K": "k", "V": stored})["V"] == shown
        assert evaluate(expr, {"K": "k", "V": stored}) is matches
