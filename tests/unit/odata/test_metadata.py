"""The CSDL of /data/$metadata (shared/odata/metadata.py), parsed with lxml and checked for the structure D365
clients and OData tooling rely on (OData 4.0 CSDL XML): edmx:Edmx Version 4.0, one Schema in
Microsoft.Dynamics.DataEntities, the EntityContainer and its EntitySets, entity keys (dataAreaId first for
company-specific entities), the DMF actions bound to the DataManagementDefinitionGroups collection, the enums."""

from __future__ import annotations

import pytest
from lxml import etree

from shared.domain.schema import Entity, Field
from shared.odata import dmf_catalog
from shared.odata.metadata import build_metadata, service_document

EDMX = "http://docs.oasis-open.org/odata/ns/edmx"
EDM = "http://docs.oasis-open.org/odata/ns/edm"
NS = {"edmx": EDMX, "edm": EDM}
NAMESPACE = "Microsoft.Dynamics.DataEntities"

CUSTOMER_GROUPS = Entity(
    name="CustomerGroups",
    label="Customer groups",
    fields=(
        Field("CUSTOMERGROUPID", required=True),
        Field("CREDITLIMIT", "decimal"),
        Field("ISBLOCKED", "bool"),
    ),
    keys=("CUSTOMERGROUPID",),
)
CURRENCIES = Entity(
    name="Currencies",
    label="Currencies",
    fields=(Field("CODE"), Field("NAME")),
    keys=("CODE",),
    company_specific=False,
)


@pytest.fixture(scope="module")
def root():
    return etree.fromstring(build_metadata([CUSTOMER_GROUPS, CURRENCIES]))


@pytest.fixture(scope="module")
def schema(root):
    schemas = root.findall("edmx:DataServices/edm:Schema", NS)
    assert len(schemas) == 1
    return schemas[0]


def test_edmx_version_4_and_the_d365_namespace(root, schema):
    assert root.tag == f"{{{EDMX}}}Edmx" and root.get("Version") == "4.0"
    assert schema.get("Namespace") == NAMESPACE


def test_entity_container_lists_the_group_sets_and_one_set_per_data_entity(schema):
    containers = schema.findall("edm:EntityContainer", NS)
    assert len(containers) == 1
    sets = {s.get("Name"): s.get("EntityType") for s in containers[0].findall("edm:EntitySet", NS)}
    assert sets == {
        "DataManagementDefinitionGroups": f"{NAMESPACE}.DataManagementDefinitionGroup",
        "DataManagementDefinitionGroupDetails": f"{NAMESPACE}.DataManagementDefinitionGroupDetail",
        "CustomerGroups": f"{NAMESPACE}.CustomerGroups",
        "Currencies": f"{NAMESPACE}.Currencies",
    }
    types = {t.get("Name") for t in schema.findall("edm:EntityType", NS)}
    for entity_type in sets.values():
        assert entity_type.removeprefix(NAMESPACE + ".") in types


def _keys(schema, type_name: str) -> list[str]:
    et = schema.find(f"edm:EntityType[@Name='{type_name}']", NS)
    return [ref.get("Name") for ref in et.findall("edm:Key/edm:PropertyRef", NS)]


def test_keys(schema):
    assert _keys(schema, "DataManagementDefinitionGroup") == ["Name", "OperationType"]
    assert _keys(schema, "DataManagementDefinitionGroupDetail") == ["DefinitionGroupId", "EntityName"]
    assert _keys(schema, "CustomerGroups") == ["dataAreaId", "CUSTOMERGROUPID"]
    assert _keys(schema, "Currencies") == ["CODE"]
    props = {
        p.get("Name"): (p.get("Type"), p.get("Nullable"))
        for p in schema.find("edm:EntityType[@Name='CustomerGroups']", NS).findall("edm:Property", NS)
    }
    assert props["dataAreaId"] == ("Edm.String", "false")
    assert props["CUSTOMERGROUPID"] == ("Edm.String", "false")
    assert props["CREDITLIMIT"] == ("Edm.Decimal", "true")
    assert props["ISBLOCKED"][0] == "Edm.Boolean"
    # Every key property is a property of its type.
    for et in schema.findall("edm:EntityType", NS):
        names = {p.get("Name") for p in et.findall("edm:Property", NS)}
        assert set(_keys(schema, et.get("Name"))) <= names


def test_every_dmf_action_is_bound_to_the_groups_collection(schema):
    actions = {a.get("Name"): a for a in schema.findall("edm:Action", NS)}
    assert set(actions) == set(dmf_catalog.ACTIONS)
    for name, (parameters, returns) in dmf_catalog.ACTIONS.items():
        action = actions[name]
        assert action.get("IsBound") == "true"
        params = action.findall("edm:Parameter", NS)
        assert params[0].get("Name") == "bindingParameter"
        assert params[0].get("Type") == f"Collection({NAMESPACE}.DataManagementDefinitionGroup)"
        assert [(p.get("Name"), p.get("Type")) for p in params[1:]] == list(parameters)
        ret = action.find("edm:ReturnType", NS)
        assert (ret.get("Type") if ret is not None else None) == returns
    export = [p.get("Name") for p in actions["ExportToPackage"].findall("edm:Parameter", NS)]
    assert export == [
        "bindingParameter",
        "definitionGroupId",
        "packageName",
        "executionId",
        "reExecute",
        "legalEntityId",
    ]
    imp = [p.get("Name") for p in actions["ImportFromPackageAsync"].findall("edm:Parameter", NS)][1:]
    assert imp[-3:] == ["failOnError", "runAsyncWithoutBatch", "thresholdToRunInBatch"]
    assert actions["GetExecutionSummaryStatus"].find("edm:ReturnType", NS).get("Type") == (
        f"{NAMESPACE}.DMFExecutionSummaryStatus"
    )


def test_enum_types(schema):
    enums = {
        e.get("Name"): [m.get("Name") for m in e.findall("edm:Member", NS)]
        for e in schema.findall("edm:EnumType", NS)
    }
    assert enums["DMFOperationType"] == ["Import", "Export"]
    assert enums["DMFExecutionSummaryStatus"] == [
        "Unknown",
        "NotRun",
        "Executing",
        "Succeeded",
        "PartiallySucceeded",
        "Failed",
        "Canceled",
    ]
    status = schema.find("edm:ComplexType[@Name='DMFEntityExecutionSummaryStatus']", NS)
    assert [p.get("Name") for p in status.findall("edm:Property", NS)][:2] == ["EntityName", "Status"]


def test_the_service_document_lists_every_set():
    doc = service_document("https://x.example", [CUSTOMER_GROUPS])
    assert doc["@odata.context"] == "https://x.example/data/$metadata"
    assert [v["name"] for v in doc["value"]] == [
        "DataManagementDefinitionGroups",
        "DataManagementDefinitionGroupDetails",
        "CustomerGroups",
    ]
    assert all(v["kind"] == "EntitySet" and v["url"] == v["name"] for v in doc["value"])


def test_an_entity_named_like_a_dmf_type_gets_a_type_name_of_its_own():
    clash = Entity(
        name="DMFOperationType", label="x", fields=(Field("K"),), keys=("K",), company_specific=False
    )
    root = etree.fromstring(build_metadata([clash]))
    names = [t.get("Name") for t in root.iter(f"{{{EDM}}}EntityType", f"{{{EDM}}}EnumType")]
    assert len(names) == len(set(names))
