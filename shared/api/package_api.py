"""The package REST API (PROTOCOL §6): OData actions of /data/DataManagementDefinitionGroups, flat `value`.

Bodies may be single-quoted (PSI) and IDs quoted or braced. As in odata_actions, a caller on no job's policy
is refused before its body is read, and bodies and their strings are bounded. The work is package_api_service's.
"""

from __future__ import annotations

import azure.functions as func

from shared.api.http import endpoint, public_base_url, read_json
from shared.api.json_body import ACTION_STRING_CHARS
from shared.api.odata_actions import ACTION_ROUTE, odata_value
from shared.errors import ValidationError

bp = func.Blueprint()


def _body(req) -> dict:
    """The JSON object of the body with lower-cased keys (clients differ in casing)."""
    body = read_json(req, lenient_quotes=True, max_string_chars=ACTION_STRING_CHARS)
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object")
    return {str(k).lower(): v for k, v in body.items()}


def _service():
    from shared.services.registry import package_api_service

    return package_api_service()


def _require(principal, *capabilities: str) -> None:
    """403 before the body is read for a caller without the capability (app_access; after the endpoint's partner
    check, which refuses a caller on no job's policy, issue 17): the first of `capabilities` the caller has
    passes; none given means import or export. The legal entity the body names is checked by the service."""
    from shared.services import app_access

    app_access.require_any(principal, *(capabilities or (app_access.IMPORT, app_access.EXPORT)))


def run_import(req, principal) -> func.HttpResponse:
    """ImportFromPackage's work and reply, for it and its Async variant (shared/api/dmf_actions.py)."""
    body = _body(req)
    execution_id = _service().import_from_package(
        principal,
        package_url=body.get("packageurl"),
        definition_group_id=body.get("definitiongroupid"),
        execution_id=body.get("executionid"),
        legal_entity_id=body.get("legalentityid"),
    )
    return odata_value(req, execution_id)


def run_export(req, principal, **options) -> func.HttpResponse:
    """ExportToPackage's work and reply, for it and its variants; `options`: export_to_package's (delta,
    preview_count)."""
    body = _body(req)
    execution_id = _service().export_to_package(
        principal,
        definition_group_id=body.get("definitiongroupid"),
        package_name=body.get("packagename"),
        execution_id=body.get("executionid"),
        legal_entity_id=body.get("legalentityid"),
        re_execute=body.get("reexecute"),
        entity_list=body.get("entitylist"),
        **options,
    )
    return odata_value(req, execution_id)


def _action(name: str):
    return bp.route(route=ACTION_ROUTE + name, methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)


@_action("GetAzureWriteUrl")
@endpoint(auth="partner")
def get_azure_write_url(req: func.HttpRequest, principal) -> func.HttpResponse:
    _require(principal, "import")
    body = _body(req)
    return odata_value(req, _service().write_url(principal, body.get("uniquefilename")))


@_action("ImportFromPackage")
@endpoint(auth="partner")
def import_from_package(req: func.HttpRequest, principal) -> func.HttpResponse:
    _require(principal, "import")
    return run_import(req, principal)


@_action("ExportToPackage")
@endpoint(auth="partner")
def export_to_package(req: func.HttpRequest, principal) -> func.HttpResponse:
    _require(principal, "export")
    return run_export(req, principal)


@_action("GetExecutionSummaryStatus")
@endpoint(auth="partner")
def get_execution_summary_status(req: func.HttpRequest, principal) -> func.HttpResponse:
    body = _body(req)
    return odata_value(req, _service().summary_status(principal, body.get("executionid")))


@_action("GetExportedPackageUrl")
@endpoint(auth="partner")
def get_exported_package_url(req: func.HttpRequest, principal) -> func.HttpResponse:
    body = _body(req)
    return odata_value(req, _service().exported_package_url(principal, body.get("executionid")))


@_action("GetExecutionErrors")
@endpoint(auth="partner")
def get_execution_errors(req: func.HttpRequest, principal) -> func.HttpResponse:
    import json

    body = _body(req)
    errors = _service().execution_errors(principal, body.get("executionid"))
    return odata_value(req, json.dumps(errors, ensure_ascii=False))


@_action("GenerateImportTargetErrorKeysFile")
@endpoint(auth="partner")
def generate_import_target_error_keys_file(req: func.HttpRequest, principal) -> func.HttpResponse:
    body = _body(req)
    generated = _service().generate_error_keys_file(
        principal, body.get("executionid"), body.get("entityname")
    )
    return odata_value(req, generated, edm="Edm.Boolean")


@_action("GetImportTargetErrorKeysFileUrl")
@endpoint(auth="partner")
def get_import_target_error_keys_file_url(req: func.HttpRequest, principal) -> func.HttpResponse:
    body = _body(req)
    url = _service().error_keys_file_url(principal, body.get("executionid"), body.get("entityname"))
    return odata_value(req, url)


@_action("GetExecutionSummaryPageUrl")
@endpoint(auth="partner")
def get_execution_summary_page_url(req: func.HttpRequest, principal) -> func.HttpResponse:
    body = _body(req)
    return odata_value(
        req, _service().summary_page_url(principal, body.get("executionid"), public_base_url(req))
    )
