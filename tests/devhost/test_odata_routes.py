"""Which function serves each /data path when the definition group routes live beside the data entity sets
(issue 13): the host tries routes in function-name order and the first match wins (HOST.md; Router models
FunctionMetadataManager's OrdinalIgnoreCase order and WebJobsRouteBuilder's first match).

The entity sets' function (`odata_entity_set`, shared/api/odata_entity_sets.py) has a route whose regex excludes
`$metadata` and `DataManagementDefinitionGroup*`: the definition group, service and action routes keep their
paths and the entity sets get every other collection.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.devhost.app_loader import index_functions
from tools.devhost.http_server import Router
from tools.devhost.routes import split_path

KEY = "(Name='G1',OperationType=Microsoft.Dynamics.DataEntities.DMFOperationType'Export')"


@pytest.fixture(scope="module")
def app_functions():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTH_MODE", "local")
        mp.delenv("WEBSITE_INSTANCE_ID", raising=False)
        import function_app
        from tools.devhost.app_loader import get_functions_once

        functions = get_functions_once(function_app.app)
    return [f for f in functions if f.get_trigger().get_binding_name() == "httpTrigger"]


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/data", "data_service_document"),
        ("GET", "/data/$metadata", "data_service_metadata"),
        ("GET", "/data/%24metadata", "data_service_metadata"),
        ("GET", "/data/DataManagementDefinitionGroups", "data_groups_list"),
        ("POST", "/data/DataManagementDefinitionGroups", "data_groups_create"),
        ("GET", "/data/DataManagementDefinitionGroups" + KEY, "data_groups_get"),
        ("PATCH", "/data/DataManagementDefinitionGroups" + KEY, "data_groups_patch"),
        ("DELETE", "/data/DataManagementDefinitionGroups" + KEY, "data_groups_delete"),
        ("GET", "/data/DataManagementDefinitionGroups('G1')", "data_groups_get"),
        ("GET", "/data/DataManagementDefinitionGroupDetails", "data_group_details_list"),
        ("POST", "/data/DataManagementDefinitionGroupDetails", "data_group_details_create"),
        (
            "GET",
            "/data/DataManagementDefinitionGroupDetails(DefinitionGroupId='G1',EntityName='A b')",
            "data_group_details_get",
        ),  # fmt: skip
        (
            "DELETE",
            "/data/DataManagementDefinitionGroupDetails(DefinitionGroupId='G1',EntityName='A')",
            "data_group_details_delete",
        ),  # fmt: skip
        (
            "POST",
            "/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities.ExportToPackage",
            "export_to_package",
        ),  # fmt: skip
        (
            "POST",
            "/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities.ExportToPackageDelta",
            "export_to_package_delta",
        ),  # fmt: skip
        ("GET", "/data/CustomerGroups", "odata_entity_set"),
        ("GET", "/data/CustomerGroups(dataAreaId='usmf',CustomerGroupId='10')", "odata_entity_set"),
    ],
)
def test_each_data_path_reaches_its_function(app_functions, method, path, expected):
    index = index_functions(app_functions, route_prefix="", root=Path("."))
    assert not index.errors, index.errors
    function, _ = Router(index.http).resolve(method, split_path(path))
    assert function is not None and function.name == expected, (path, function and function.name)


def test_no_definition_group_route_is_shadowed(app_functions):
    index = index_functions(app_functions, route_prefix="", root=Path("."))
    shadowed = [s.function for s in Router(index.http).shadowed()]
    assert not [n for n in shadowed if n.startswith(("data_", "odata_entity_set"))], shadowed
