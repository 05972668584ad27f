"""Pure parts of definition groups: sequence packing, group job IDs, OperationType values, and the OData query
options of the in-memory sets (shared/services/definition_groups.py, shared/odata/collection_query.py)."""

from __future__ import annotations

import pytest

from shared.errors import ValidationError
from shared.odata import collection_query
from shared.services import definition_groups as dg


def test_sequence_packs_unit_level_and_sequence_in_order():
    assert dg.pack_sequence(1, 1, 1) == 1
    assert dg.unpack_sequence(1) == (1, 1, 1)
    assert dg.unpack_sequence(3) == (1, 1, 3)  # what the management API writes reads as unit 1, level 1
    packed = [dg.pack_sequence(u, lv, s) for u, lv, s in [(1, 1, 2), (1, 2, 1), (2, 1, 0), (10, 10, 99)]]
    assert packed == sorted(packed) and packed[-1] <= 10_000
    for value in packed:
        assert dg.pack_sequence(*dg.unpack_sequence(value)) == value
    for bad in [(0, 1, 1), (11, 1, 1), (1, 11, 1), (1, 1, 100), (1, 1, True)]:
        with pytest.raises(ValidationError) as err:
            dg.pack_sequence(*bad)
        assert err.value.code == "SequenceOutOfRange"


def test_group_job_ids_round_trip():
    job = dg.group_job("export", "MyGroup", "USMF")
    assert job.activity_id == "group~export~mygroup~usmf" and job.company == "usmf" and job.mode == "package"
    back = dg.group_job_from_id(job.activity_id)
    assert (back.operation, back.project, back.company) == ("export", "mygroup", "usmf")
    assert dg.group_job_from_id("group~import~g~").company is None
    assert dg.group_job_from_id("6f0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d") is None
    assert dg.group_job_from_id("group~delete~g~") is None
    assert dg.job_operation(job) == "export"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Export", "export"),
        ("import", "import"),
        ("Microsoft.Dynamics.DataEntities.DMFOperationType'Import'", "import"),
    ],
)
def test_operation_type_values(value, expected):
    assert dg.operation_of(value) == expected


def test_an_unknown_operation_type_is_400():
    with pytest.raises(ValidationError) as err:
        dg.operation_of("Both")
    assert err.value.code == "InvalidOperationType"


ROWS = [
    {"Name": "A", "OperationType": "Export", "Description": "x"},
    {"Name": "B", "OperationType": "Import", "Description": "y"},
    {"Name": "C", "OperationType": "Export", "Description": "z"},
]
TYPES = {"Name": "string", "OperationType": "string", "Description": "string"}


def query(**params):
    return collection_query.apply(ROWS, params, set_name="S", properties=TYPES)


def test_filter_select_top_skip_count():
    enum = "OperationType eq Microsoft.Dynamics.DataEntities.DMFOperationType'Export'"
    rows, select, count = query(**{"$filter": enum})
    assert [r["Name"] for r in rows] == ["A", "C"] and select is None and count is None
    params = {"$filter": "Name eq 'B' or Name eq 'C'", "$select": "name", "$top": "1", "$count": "true"}
    rows, select, count = query(**params)
    assert rows == [{"Name": "B"}] and select == ["Name"] and count == 2
    rows, _, _ = query(**{"$skip": "2", "cross-company": "true"})
    assert [r["Name"] for r in rows] == ["C"]


@pytest.mark.parametrize(
    "params",
    [
        {"$filter": "Nope eq 1"},
        {"$select": "Nope"},
        {"$top": "-1"},
        {"$orderby": "Name"},
        {"$filter": "Name eq"},
    ],
)
def test_bad_query_options_are_400(params):
    with pytest.raises(ValidationError):
        query(**params)
