"""The entity sets DataManagementDefinitionGroups and DataManagementDefinitionGroupDetails (D365's data projects).

GET a collection ($filter, $select, $top, $skip), GET / PATCH / DELETE one by its OData key, POST → 201 with the
entity and a `Location` header. A group is keyed by Name and OperationType, as in D365
(`(Name='x',OperationType=Microsoft.Dynamics.DataEntities.DMFOperationType'Export')`; `('x')` or `(Name='x')`
when the name is not shared); a detail by DefinitionGroupId and EntityName (the entity's label or name), with an
optional OperationType. A POST that repeats an existing key answers 400 `RecordAlreadyExists`, as D365 does
(its clients read 400 or 409 as "exists already"). The work is definition_groups' (one model with projects).

Function names start with `data_groups` / `data_group_details`: the host tries routes in function-name order
(HOST.md), and these sort before the data entity sets' `odata_entity_set*` functions, whose route excludes
these names anyway.

Writes with a body are `auth="partner"` (a caller on no job's policy is refused before its body is read, issue
17) and then app_access's MANAGE_DEFINITION_GROUPS; reads and deletes are `auth="caller"` and app_access only.
"""

from __future__ import annotations

import azure.functions as func

from shared.api.http import empty_response, endpoint, public_base_url, read_json
from shared.api.odata_actions import ODATA_JSON
from shared.errors import ConflictError, ValidationError

bp = func.Blueprint()

GROUPS = "DataManagementDefinitionGroups"
DETAILS = "DataManagementDefinitionGroupDetails"
ENUM_OPERATION = "Microsoft.Dynamics.DataEntities.DMFOperationType"
GROUP_TYPES = {"Name": "string", "OperationType": "string", "Description": "string", "ProjectCategory": "string",
               "GenerateDataPackage": "string"}  # fmt: skip
DETAIL_TYPES = {
    "DefinitionGroupId": "string",
    "EntityName": "string",
    "TargetEntity": "string",
    "OperationType": "string",
    "SourceFormat": "string",
    "ExecutionUnit": "int",
    "LevelInExecutionUnit": "int",
    "SequenceInLevel": "int",
    "DefaultRefreshType": "string",
    "ExcelSheetName": "string",
}


def _groups():
    from shared.services.definition_groups import DefinitionGroups
    from shared.services.registry import config_service

    return DefinitionGroups(config_service())


def _may_read(principal) -> None:
    """Reading groups: applications that may manage groups, export or import."""
    from shared.services import app_access

    app_access.require_any(
        principal, app_access.MANAGE_DEFINITION_GROUPS, app_access.EXPORT, app_access.IMPORT
    )


def _may_write(principal) -> None:
    from shared.services import app_access

    app_access.require(principal, app_access.MANAGE_DEFINITION_GROUPS)


def _json(body: dict, status: int = 200, headers: dict | None = None) -> func.HttpResponse:
    import json

    return func.HttpResponse(
        json.dumps(body, ensure_ascii=False),
        status_code=status,
        headers={"Content-Type": ODATA_JSON, "OData-Version": "4.0", **(headers or {})},
    )


def _context(req, set_name: str, select: list[str] | None = None, entity: bool = False) -> str:
    suffix = f"({','.join(select)})" if select else ""
    return f"{public_base_url(req)}/data/$metadata#{set_name}{suffix}{'/$entity' if entity else ''}"


def _collection(req, set_name: str, rows: list[dict], types: dict) -> func.HttpResponse:
    from shared.odata import collection_query

    rows, select, count = collection_query.apply(rows, dict(req.params), set_name=set_name, properties=types)
    body: dict = {"@odata.context": _context(req, set_name, select)}
    if count is not None:
        body["@odata.count"] = count
    body["value"] = rows
    return _json(body)


def _group_key(req) -> tuple[str, str | None]:
    """(name, operation or None) of the key in the route: `('x')`, `(Name='x')` or `(Name='x',OperationType=…)`."""
    from shared.odata.keys import SINGLE, parse_key
    from shared.services.definition_groups import operation_of

    values = parse_key("(" + req.route_params.get("key", "") + ")")
    lowered = {k.lower(): v for k, v in values.items()}
    extra = sorted(set(lowered) - {"", "name", "operationtype"})
    if extra:
        raise ValidationError(f"{GROUPS} has no key property {', '.join(extra)}", code="InvalidKey")
    name = lowered.get("name", lowered.get(SINGLE))
    if not isinstance(name, str) or not name:
        raise ValidationError(f"the key of {GROUPS} needs Name", code="InvalidKey")
    operation = lowered.get("operationtype")
    return name, operation_of(operation) if operation is not None else None


def _detail_key(req) -> tuple[str, str, str | None]:
    from shared.odata.keys import parse_key
    from shared.services.definition_groups import operation_of

    values = parse_key("(" + req.route_params.get("key", "") + ")")
    lowered = {k.lower(): v for k, v in values.items()}
    extra = sorted(set(lowered) - {"definitiongroupid", "entityname", "operationtype"})
    if extra:
        raise ValidationError(
            f"{DETAILS} has no key property {', '.join(extra) or '(unnamed)'}", code="InvalidKey"
        )
    group, entity = lowered.get("definitiongroupid"), lowered.get("entityname")
    if not isinstance(group, str) or not isinstance(entity, str) or not group or not entity:
        raise ValidationError(
            f"the key of {DETAILS} is (DefinitionGroupId='…',EntityName='…')", code="InvalidKey"
        )
    operation = lowered.get("operationtype")
    return group, entity, operation_of(operation) if operation is not None else None


def _group_location(req, view: dict) -> str:
    from shared.odata.keys import format_key

    key = format_key({"Name": view["Name"], "OperationType": (ENUM_OPERATION, view["OperationType"])})
    return f"{public_base_url(req)}/data/{GROUPS}{key}"


def _detail_location(req, view: dict) -> str:
    from shared.odata.keys import format_key

    key = format_key({"DefinitionGroupId": view["DefinitionGroupId"], "EntityName": view["EntityName"]})
    return f"{public_base_url(req)}/data/{DETAILS}{key}"


def _created(req, set_name: str, view: dict, location: str) -> func.HttpResponse:
    body = {"@odata.context": _context(req, set_name, entity=True), **view}
    return _json(body, 201, {"Location": location, "OData-EntityId": location})


def _exists_as_400(exc: ConflictError) -> ValidationError:
    """D365 answers a POST of an existing key with 400 (the X++ insert fails: "The record already exists")."""
    return ValidationError(exc.message, code="RecordAlreadyExists")


def _route(path: str, methods: list[str]):
    return bp.route(route=path, methods=methods, auth_level=func.AuthLevel.ANONYMOUS)


# Groups ----------------------------------------------------------------------------------------------------
@_route(f"data/{GROUPS}", ["GET"])
@endpoint(auth="caller")
def data_groups_list(req: func.HttpRequest, principal) -> func.HttpResponse:
    _may_read(principal)
    return _collection(req, GROUPS, _groups().list_groups(), GROUP_TYPES)


@_route(f"data/{GROUPS}", ["POST"])
@endpoint(auth="partner")
def data_groups_create(req: func.HttpRequest, principal) -> func.HttpResponse:
    _may_write(principal)
    try:
        view, _ = _groups().create_group(read_json(req, lenient_quotes=True))
    except ConflictError as exc:
        if exc.code != "ProjectExists":
            raise
        raise _exists_as_400(exc) from None
    return _created(req, GROUPS, view, _group_location(req, view))


@_route(f"data/{GROUPS}({{key}})", ["GET"])
@endpoint(auth="caller")
def data_groups_get(req: func.HttpRequest, principal) -> func.HttpResponse:
    _may_read(principal)
    name, operation = _group_key(req)
    view = _groups().get_group(name, operation)
    return _json({"@odata.context": _context(req, GROUPS, entity=True), **view})


@_route(f"data/{GROUPS}({{key}})", ["PATCH"])
@endpoint(auth="partner")
def data_groups_patch(req: func.HttpRequest, principal) -> func.HttpResponse:
    _may_write(principal)
    name, operation = _group_key(req)
    _groups().patch_group(name, operation, read_json(req, lenient_quotes=True))
    return empty_response(204)


@_route(f"data/{GROUPS}({{key}})", ["DELETE"])
@endpoint(auth="caller")
def data_groups_delete(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.errors import NotFoundError

    _may_write(principal)
    name, operation = _group_key(req)
    if not _groups().delete_group(name, operation):
        raise NotFoundError(f"the definition group {name!r} does not exist", code="ProjectNotFound")
    return empty_response(204)


# Details ---------------------------------------------------------------------------------------------------
@_route(f"data/{DETAILS}", ["GET"])
@endpoint(auth="caller")
def data_group_details_list(req: func.HttpRequest, principal) -> func.HttpResponse:
    _may_read(principal)
    return _collection(req, DETAILS, _groups().list_details(), DETAIL_TYPES)


@_route(f"data/{DETAILS}", ["POST"])
@endpoint(auth="partner")
def data_group_details_create(req: func.HttpRequest, principal) -> func.HttpResponse:
    _may_write(principal)
    try:
        view = _groups().create_detail(read_json(req, lenient_quotes=True))
    except ConflictError as exc:
        if exc.code != "DetailExists":
            raise
        raise _exists_as_400(exc) from None
    return _created(req, DETAILS, view, _detail_location(req, view))


@_route(f"data/{DETAILS}({{key}})", ["GET"])
@endpoint(auth="caller")
def data_group_details_get(req: func.HttpRequest, principal) -> func.HttpResponse:
    _may_read(principal)
    group, entity, operation = _detail_key(req)
    view = _groups().get_detail(group, entity, operation)
    return _json({"@odata.context": _context(req, DETAILS, entity=True), **view})


@_route(f"data/{DETAILS}({{key}})", ["PATCH"])
@endpoint(auth="partner")
def data_group_details_patch(req: func.HttpRequest, principal) -> func.HttpResponse:
    _may_write(principal)
    group, entity, operation = _detail_key(req)
    _groups().patch_detail(group, entity, operation, read_json(req, lenient_quotes=True))
    return empty_response(204)


@_route(f"data/{DETAILS}({{key}})", ["DELETE"])
@endpoint(auth="caller")
def data_group_details_delete(req: func.HttpRequest, principal) -> func.HttpResponse:
    _may_write(principal)
    group, entity, operation = _detail_key(req)
    _groups().delete_detail(group, entity, operation)
    return empty_response(204)
