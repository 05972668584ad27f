"""The entity-set route keeps off every other /data path, by its regex (the host takes routes in function-name
order, first match wins: HOST.md), judged by the local host's ASP.NET route matcher (tools/devhost/routes.py)."""

from __future__ import annotations

import pytest

from shared.api.odata_entity_sets import ROUTE
from tools.devhost.routes import RouteTemplate, covers, split_path

TEMPLATE = RouteTemplate(ROUTE)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("/data/CustomerGroups", "CustomerGroups"),
        ("/DATA/customergroups", "customergroups"),
        ("/data/_Set1", "_Set1"),
        (
            "/data/CustomerGroups(dataAreaId='usmf',CUSTGROUP='a(b)')",
            "CustomerGroups(dataAreaId='usmf',CUSTGROUP='a(b)')",
        ),
        ("/data/CustomerGroups(%27usmf%27)", "CustomerGroups('usmf')"),
        ("/data/CustomerGroups(CODE='a%2Fb')", "CustomerGroups(CODE='a%2Fb')"),
    ],
)
def test_entity_sets_and_key_lookups_match(path, value):
    assert TEMPLATE.match(split_path(path)) == {"collection": value}


@pytest.mark.parametrize(
    "path",
    [
        "/data",
        "/data/$metadata",
        "/data/$batch",
        "/data/DataManagementDefinitionGroups",
        "/data/datamanagementdefinitiongroupdetails",
        "/data/DataManagementDefinitionGroups(Name='x',OperationType=Microsoft.Dynamics.DataEntities.DMFOperationType'Export')",
        "/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities.GetMessageStatus",
        "/data/CustomerGroups/Microsoft.Dynamics.DataEntities.Action",
        "/data/1Groups",
        "/data/Customer Groups",
        "/data/CustomerGroups(CODE='x'",
        "/api/health",
    ],
)
def test_other_paths_do_not(path):
    assert TEMPLATE.match(split_path(path)) is None


@pytest.mark.parametrize(
    "other",
    [
        "data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities.GetMessageStatus",
        "data/DataManagementDefinitionGroups",
        "data/DataManagementDefinitionGroupDetails",
        "data/$metadata",
        "data",
    ],
)
def test_it_shadows_none_of_the_other_data_routes(other):
    assert not covers(TEMPLATE, RouteTemplate(other))
