"""The OData service root of /data: the service document (`GET /data`) and the CSDL (`GET /data/$metadata`).

Every action reply's `@odata.context` points at `/data/$metadata`; clients and OData tooling read it for the
entity sets, their keys and the DMF actions (shared/odata/metadata.py builds it). Function names start with
`data_service`: they sort before the data entity sets' `odata_entity_set*` functions (HOST.md: first match in
function-name order), whose route excludes `$metadata` anyway.
"""

from __future__ import annotations

import azure.functions as func

from shared.api.http import endpoint, public_base_url

bp = func.Blueprint()


def _may_read(principal) -> None:
    """Any application that may use some part of /data."""
    from shared.services import app_access

    app_access.require_any(principal)


def _entities():
    from shared.services.registry import config_service

    return config_service().list_entities()


@bp.route(route="data", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="caller")
def data_service_document(req: func.HttpRequest, principal) -> func.HttpResponse:
    import json

    from shared.api.odata_actions import ODATA_JSON
    from shared.odata.metadata import service_document

    _may_read(principal)
    body = service_document(public_base_url(req), _entities())
    return func.HttpResponse(
        json.dumps(body), status_code=200, headers={"Content-Type": ODATA_JSON, "OData-Version": "4.0"}
    )


@bp.route(route="data/$metadata", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="caller")
def data_service_metadata(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.odata.metadata import build_metadata

    _may_read(principal)
    return func.HttpResponse(
        build_metadata(_entities()),
        status_code=200,
        headers={"Content-Type": "application/xml", "OData-Version": "4.0"},
    )
