"""The CSDL 4.0 document of /data/$metadata and the service document of /data (OData 4.0 CSDL XML, Part 3).

D365 clients (and OData tooling) read from it: the entity sets and their keys, the DMF actions bound to the
DataManagementDefinitionGroups collection (`IsBound="true"`, first parameter `bindingParameter`), the enums
DMFOperationType and DMFExecutionSummaryStatus. Every type lives in D365's namespace
Microsoft.Dynamics.DataEntities. Built with lxml from the configured data entities; pure code, no Azure.
"""

from __future__ import annotations

from shared.odata import dmf_catalog
from shared.odata.names import NAMESPACE, collection_name

EDMX_NS = "http://docs.oasis-open.org/odata/ns/edmx"
EDM_NS = "http://docs.oasis-open.org/odata/ns/edm"
CONTAINER = "Resources"
GROUP_TYPE = "DataManagementDefinitionGroup"
DETAIL_TYPE = "DataManagementDefinitionGroupDetail"
GROUP_SET = "DataManagementDefinitionGroups"
DETAIL_SET = "DataManagementDefinitionGroupDetails"
COMPANY_KEY = "dataAreaId"

_RESERVED_TYPES = {
    "DataManagementDefinitionGroup",
    "DataManagementDefinitionGroupDetail",
    "DMFOperationType",
    "DMFExecutionSummaryStatus",
    "DMFEntityExecutionSummaryStatus",
}
_EDM_TYPES = {
    "string": "Edm.String",
    "int": "Edm.Int64",
    "decimal": "Edm.Decimal",
    "bool": "Edm.Boolean",
    "date": "Edm.Date",
    "datetime": "Edm.DateTimeOffset",
    "guid": "Edm.Guid",
    "enum": "Edm.String",
}
_GROUP_PROPERTIES = (
    ("Name", "Edm.String", False),
    ("OperationType", f"{NAMESPACE}.DMFOperationType", False),
    ("Description", "Edm.String", True),
    ("ProjectCategory", "Edm.String", True),
    ("GenerateDataPackage", "Edm.String", True),
)
_DETAIL_PROPERTIES = (
    ("DefinitionGroupId", "Edm.String", False),
    ("EntityName", "Edm.String", False),
    ("TargetEntity", "Edm.String", True),
    ("OperationType", f"{NAMESPACE}.DMFOperationType", True),
    ("SourceFormat", "Edm.String", True),
    ("ExecutionUnit", "Edm.Int32", True),
    ("LevelInExecutionUnit", "Edm.Int32", True),
    ("SequenceInLevel", "Edm.Int32", True),
    ("DefaultRefreshType", "Edm.String", True),
    ("ExcelSheetName", "Edm.String", True),
)


def entity_type_name(entity) -> str:
    """The EntityType of a data entity: its name as an OData identifier (`Entity` appended when that is a name
    the schema already uses)."""
    import re

    name = re.sub(r"[^A-Za-z0-9_]", "", entity.name) or "Entity"
    if name[0].isdigit():
        name = f"_{name}"
    if name in _RESERVED_TYPES:
        name += "Entity"
    return name


def entity_sets(entities) -> list[str]:
    """The entity set names, in the order the service document lists them."""
    return [GROUP_SET, DETAIL_SET, *sorted(collection_name(e) for e in entities)]


def build_metadata(entities) -> bytes:
    """The CSDL XML of the service: the definition group sets, one set per configured data entity, the DMF
    actions and their enums."""
    from lxml import etree

    edmx = etree.Element(f"{{{EDMX_NS}}}Edmx", nsmap={"edmx": EDMX_NS}, Version="4.0")
    services = etree.SubElement(edmx, f"{{{EDMX_NS}}}DataServices")
    schema = etree.SubElement(services, f"{{{EDM_NS}}}Schema", nsmap={None: EDM_NS}, Namespace=NAMESPACE)

    def sub(parent, tag: str, **attrs):
        return etree.SubElement(parent, f"{{{EDM_NS}}}{tag}", **{k: str(v) for k, v in attrs.items()})

    for name, members in (
        ("DMFOperationType", dmf_catalog.OPERATION_TYPE_MEMBERS),
        ("DMFExecutionSummaryStatus", dmf_catalog.SUMMARY_STATUS_MEMBERS),
    ):
        enum = sub(schema, "EnumType", Name=name)
        for member, value in members:
            sub(enum, "Member", Name=member, Value=value)

    status = sub(schema, "ComplexType", Name="DMFEntityExecutionSummaryStatus")
    for name, edm in dmf_catalog.ENTITY_STATUS_PROPERTIES:
        sub(status, "Property", Name=name, Type=edm)

    def entity_type(name: str, keys: list[str], properties) -> None:
        et = sub(schema, "EntityType", Name=name)
        key = sub(et, "Key")
        for k in keys:
            sub(key, "PropertyRef", Name=k)
        for prop, edm, nullable in properties:
            sub(et, "Property", Name=prop, Type=edm, Nullable="true" if nullable else "false")

    entity_type(GROUP_TYPE, ["Name", "OperationType"], _GROUP_PROPERTIES)
    entity_type(DETAIL_TYPE, ["DefinitionGroupId", "EntityName"], _DETAIL_PROPERTIES)
    data_sets = []
    for entity in sorted(entities, key=lambda e: collection_name(e)):
        keys = ([COMPANY_KEY] if entity.company_specific else []) + list(entity.keys)
        key_upper = {k.upper() for k in entity.keys}
        props = [(COMPANY_KEY, "Edm.String", False)] if entity.company_specific else []
        props += [
            (f.name, _EDM_TYPES.get(f.type, "Edm.String"), not (f.required or f.name.upper() in key_upper))
            for f in entity.fields
        ]
        type_name = entity_type_name(entity)
        entity_type(type_name, keys, props)
        data_sets.append((collection_name(entity), type_name))

    binding = f"Collection({NAMESPACE}.{GROUP_TYPE})"
    for name, (parameters, returns) in dmf_catalog.ACTIONS.items():
        action = sub(schema, "Action", Name=name, IsBound="true")
        sub(action, "Parameter", Name="bindingParameter", Type=binding)
        for pname, ptype in parameters:
            sub(action, "Parameter", Name=pname, Type=ptype)
        if returns:
            sub(action, "ReturnType", Type=returns)

    container = sub(schema, "EntityContainer", Name=CONTAINER)
    sub(container, "EntitySet", Name=GROUP_SET, EntityType=f"{NAMESPACE}.{GROUP_TYPE}")
    sub(container, "EntitySet", Name=DETAIL_SET, EntityType=f"{NAMESPACE}.{DETAIL_TYPE}")
    for set_name, type_name in data_sets:
        sub(container, "EntitySet", Name=set_name, EntityType=f"{NAMESPACE}.{type_name}")
    return etree.tostring(edmx, xml_declaration=True, encoding="utf-8")


def service_document(base_url: str, entities) -> dict:
    """GET /data: every entity set, as OData JSON's service document lists them."""
    return {
        "@odata.context": f"{base_url}/data/$metadata",
        "value": [{"name": n, "kind": "EntitySet", "url": n} for n in entity_sets(entities)],
    }
