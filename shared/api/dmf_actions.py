"""The rest of D365's DMF actions (issue 13): the Async, Preview and Delta variants, the per-entity status list,
the staging error file, ResetVersionToken, GetEntitySequence, and a clear 400 for what this app does not offer.

Same conventions as package_api: `POST /data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities.<X>`,
single-quoted bodies accepted, parameter names in any case, the flat `{"@odata.context", "value"}` reply. An
Async variant does the same work as its action (the work is always queued here) and answers the execution ID.
"""

from __future__ import annotations

import azure.functions as func

from shared.api.http import endpoint
from shared.api.odata_actions import ACTION_ROUTE, odata_value
from shared.api.package_api import _body, _require, _service, run_export, run_import
from shared.errors import ValidationError

bp = func.Blueprint()


def _action(name: str):
    return bp.route(route=ACTION_ROUTE + name, methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)


def _not_offered(req, code: str, message: str):
    """400 `code`: D365 has the action and this app does not offer it. The body is read first, as every action
    reads it, so a malformed body is named as such."""
    _body(req)
    raise ValidationError(message, code=code)


@_action("ImportFromPackageAsync")
@endpoint(auth="partner")
def import_from_package_async(req: func.HttpRequest, principal) -> func.HttpResponse:
    """ImportFromPackage's body plus overWrite, failOnError, runAsyncWithoutBatch, thresholdToRunInBatch
    (accepted: imports always run queued, as upserts)."""
    _require(principal, "import")
    return run_import(req, principal)


@_action("ExportToPackageAsync")
@endpoint(auth="partner")
def export_to_package_async(req: func.HttpRequest, principal) -> func.HttpResponse:
    _require(principal, "export")
    return run_export(req, principal)


@_action("ExportToPackagePreview")
@endpoint(auth="partner")
def export_to_package_preview(req: func.HttpRequest, principal) -> func.HttpResponse:
    _require(principal, "export")
    return run_export(req, principal, preview_count=_preview_count(req))


@_action("ExportToPackagePreviewAsync")
@endpoint(auth="partner")
def export_to_package_preview_async(req: func.HttpRequest, principal) -> func.HttpResponse:
    _require(principal, "export")
    return run_export(req, principal, preview_count=_preview_count(req))


def _preview_count(req):
    value = _body(req).get("exportpreviewcount")
    return 100 if value in (None, "") else value


@_action("ExportToPackageDelta")
@endpoint(auth="partner")
def export_to_package_delta(req: func.HttpRequest, principal) -> func.HttpResponse:
    """Only what changed since the group's last successful export (its incremental watermark; see
    ResetVersionToken)."""
    _require(principal, "export")
    return run_export(req, principal, delta=True)


@_action("ExportFromPackage")
@endpoint(auth="partner")
def export_from_package(req: func.HttpRequest, principal) -> func.HttpResponse:
    _require(principal, "export")
    _not_offered(
        req,
        "ExportFromPackageNotSupported",
        "ExportFromPackage (an export defined by a template package) is not offered here: create the export "
        "definition group (POST /data/DataManagementDefinitionGroups and DataManagementDefinitionGroupDetails) "
        "and call ExportToPackage",
    )


@_action("ImportFromDMTPackage")
@endpoint(auth="partner")
def import_from_dmt_package(req: func.HttpRequest, principal) -> func.HttpResponse:
    _require(principal, "import")
    _not_offered(
        req,
        "DmtPackageNotSupported",
        "ImportFromDMTPackage (Data Migration Toolkit packages) is not offered here: import a data package "
        "with ImportFromPackage",
    )


_NO_INITIALIZE = (
    "InitializeDataManagementNotSupported",
    "InitializeDataManagement (refreshing D365's entity list and framework parameters) has nothing to do "
    "here: data entities are configuration (/api/manage/entities) and are ready once saved",
)


@_action("InitializeDataManagement")
@endpoint(auth="partner")
def initialize_data_management(req: func.HttpRequest, principal) -> func.HttpResponse:
    _require(principal)
    _not_offered(req, *_NO_INITIALIZE)


@_action("InitializeDataManagementAsync")
@endpoint(auth="partner")
def initialize_data_management_async(req: func.HttpRequest, principal) -> func.HttpResponse:
    _require(principal)
    _not_offered(req, *_NO_INITIALIZE)


@_action("GetEntityExecutionSummaryStatusList")
@endpoint(auth="partner")
def get_entity_execution_summary_status_list(req: func.HttpRequest, principal) -> func.HttpResponse:
    _require(principal)
    from shared.odata.dmf_catalog import ENTITY_STATUS

    body = _body(req)
    rows = _service().entity_status_list(principal, body.get("executionid"))
    return odata_value(req, rows, edm=f"Collection({ENTITY_STATUS})")


@_action("GetImportStagingErrorFileUrl")
@endpoint(auth="partner")
def get_import_staging_error_file_url(req: func.HttpRequest, principal) -> func.HttpResponse:
    _require(principal)
    body = _body(req)
    return odata_value(
        req, _service().staging_error_file_url(principal, body.get("executionid"), body.get("entityname"))
    )


@_action("ResetVersionToken")
@endpoint(auth="partner")
def reset_version_token(req: func.HttpRequest, principal) -> func.HttpResponse:
    _require(principal, "export")
    body = _body(req)
    done = _service().reset_version_token(
        principal, body.get("definitiongroupid"), body.get("entityname"), body.get("sourcename")
    )
    return odata_value(req, done, edm="Edm.Boolean")


@_action("GetEntitySequence")
@endpoint(auth="partner")
def get_entity_sequence(req: func.HttpRequest, principal) -> func.HttpResponse:
    _require(principal)
    body = _body(req)
    return odata_value(req, _service().entity_sequence(principal, body.get("listofdataentities")))
