"""Int filters against a real Azurite: rows store ints as Int64, yet small-int filters must find them.

azure-data-tables renders an int parameter that fits 32 bits as an Int32 literal (`2`, not `2L`), and
the Table service never finds an Int64 property equal to an Int32 literal; filters therefore compare
through the Double shadow `<FIELD>__num` stored beside every int.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

pytestmark = pytest.mark.azurite

ENTITY = {
    "label": "Int filter probe",
    "companySpecific": False,
    "keys": ["ID"],
    "fields": [
        {"name": "ID", "type": "string"},
        {"name": "N", "type": "int"},
        {"name": "LEVEL", "type": "int", "required": True},
    ],
}
ROWS = [
    {"ID": "a", "N": 1, "LEVEL": 1},
    {"ID": "b", "N": 2, "LEVEL": 2},
    {"ID": "c", "N": 3_000_000_000, "LEVEL": -3_000_000_000},
    {"ID": "d", "N": None, "LEVEL": 2**53 + 1},  # N is not stored at all
]


@pytest.fixture(scope="module")
def entity(app_env):
    from shared.services.registry import config_service, entity_repo

    name = f"IntF{uuid.uuid4().hex[:8]}"
    entity = config_service().upsert_entity(name, ENTITY).value
    repo = entity_repo()
    rows = [repo.encode(entity, r, None, datetime.now(UTC)) for r in ROWS]
    result = repo.upsert_rows(entity, rows)
    assert not result.failed, result.failed
    return entity


def _ids(entity, filter_text: str) -> list[str]:
    from shared.services.records import list_records

    records, token, _ = list_records(entity.name, company=None, filter_text=filter_text, top=1000)
    assert token is None
    return sorted(r["ID"] for r in records)


def _server_ids(entity, filter_text: str) -> list[str]:
    """What the Table query alone returns, before evaluate() re-checks it."""
    from shared.services.records import build_query
    from shared.services.registry import entity_repo

    query, params, _ = build_query(entity, company=None, filter_text=filter_text)
    assert query, filter_text  # the filter is really sent to the service
    rows, _ = entity_repo().list_page(entity, query, params, top=1000)
    return sorted(r["ID"] for r in rows)


@pytest.mark.parametrize(
    "filter_text,expected",
    [
        ("N eq 2", ["b"]),
        ("N gt 1", ["b", "c"]),
        ("N ge 3000000000", ["c"]),
        ("N lt 3000000000", ["a", "b"]),
        ("N eq 1 or N eq 3000000000", ["a", "c"]),
        ("LEVEL ne 2", ["a", "c", "d"]),  # required: `ne` runs on the server, exactly
        ("LEVEL lt 0", ["c"]),
        ("LEVEL gt 2", ["d"]),
    ],
)
def test_int_filters_find_their_rows(entity, filter_text: str, expected: list[str]) -> None:
    assert _ids(entity, filter_text) == expected
    # The server side alone is already exact for these (|value| < 2**53): no row was lost there and
    # none is left for evaluate() to drop.
    assert _server_ids(entity, filter_text) == expected


def test_filters_the_server_cannot_run_are_exact_too(entity) -> None:
    assert _ids(entity, "N ne 2") == ["a", "c", "d"]  # optional: a missing value is unequal to 2
    assert _ids(entity, "N eq null") == ["d"]
    assert _ids(entity, f"LEVEL eq {2**53 + 1}") == ["d"]  # beyond 2**53 only evaluate() decides
    assert _ids(entity, f"LEVEL eq {2**53}") == []
    assert _ids(entity, "not (N le 1)") == ["b", "c", "d"]


def test_rows_carry_the_double_shadow(entity) -> None:
    from shared.services.registry import entity_repo

    rows = {r["ID"]: r for r in entity_repo().iter_rows(entity)}
    assert rows["b"]["N__num"] == 2.0 and isinstance(rows["b"]["N__num"], float)
    assert rows["c"]["N__num"] == 3_000_000_000.0
    assert "N__num" not in rows["d"] and "N" not in rows["d"]
