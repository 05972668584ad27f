"""Entity set names (shared/odata/names.py) and the entity's `publicCollectionName` (shared/domain/config.py)."""

from __future__ import annotations

import pytest

from shared.domain.config import entity_to_json, parse_entity
from shared.errors import ValidationError
from shared.odata.names import collection_name

BODY = {"keys": ["A"], "fields": [{"name": "A"}]}


def test_the_configured_name_is_the_collection_name_and_round_trips():
    entity = parse_entity("Cust-Groups", {**BODY, "publicCollectionName": "CustomerGroups"})
    assert collection_name(entity) == "CustomerGroups"
    assert entity_to_json(entity)["publicCollectionName"] == "CustomerGroups"
    doc = {k: v for k, v in entity_to_json(entity).items() if k != "name"}
    assert parse_entity("Cust-Groups", doc) == entity


def test_without_one_the_name_is_derived_and_not_written_back():
    entity = parse_entity("Cust-Groups", BODY)
    assert collection_name(entity) == "CustGroups"
    assert "publicCollectionName" not in entity_to_json(entity)
    assert parse_entity("Cust-Groups", {**BODY, "publicCollectionName": None}) == entity


@pytest.mark.parametrize(
    "name",
    ["1Groups", "Cust Groups", "Cust-Groups", "$metadata", "DataManagementDefinitionGroupsX", "a" * 129, 5],
)
def test_an_invalid_public_collection_name_is_400(name):
    with pytest.raises(ValidationError) as info:
        parse_entity("E", {**BODY, "publicCollectionName": name})
    assert info.value.status == 400
