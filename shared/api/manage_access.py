"""Management API for legal entities and application registrations (admin only; issue 13, item 5).

Like D365's legal entities and its "Microsoft Entra applications" page. GET answers the document's `ETag`;
PUT and DELETE take `If-Match` (412 when it changed since), PUT takes `If-None-Match: *` (create only), as
the other configuration documents (manage_config).
"""

from __future__ import annotations

import azure.functions as func

from shared.api.http import empty_response, endpoint, json_response, parse_guid, read_json
from shared.api.json_body import CONFIG_BODY_BYTES

bp = func.Blueprint()


def _svc():
    from shared.services.registry import config_service

    return config_service()


def _conditions(req: func.HttpRequest) -> dict:
    return {"if_match": req.headers.get("If-Match"), "if_none_match": req.headers.get("If-None-Match")}


def _saved(body: dict, saved):
    return json_response(body, 201 if saved.created else 200, {"ETag": saved.etag})


# Legal entities --------------------------------------------------------------------------------------
@bp.route(route="api/manage/legalEntities", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def list_legal_entities(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.domain.legal_entities import legal_entity_to_json

    value = [legal_entity_to_json(e) for e in _svc().list_legal_entities()]
    return json_response({"value": value, "nextLink": None})


@bp.route(route="api/manage/legalEntities/{id}", methods=["PUT"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin", max_body=CONFIG_BODY_BYTES)
def put_legal_entity(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.domain.legal_entities import legal_entity_to_json

    saved = _svc().upsert_legal_entity(req.route_params["id"], read_json(req), **_conditions(req))
    return _saved(legal_entity_to_json(saved.value), saved)


@bp.route(route="api/manage/legalEntities/{id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def get_legal_entity(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.domain.legal_entities import legal_entity_to_json

    versioned = _svc().get_legal_entity_versioned(req.route_params["id"])
    return json_response(legal_entity_to_json(versioned.value), 200, {"ETag": versioned.etag})


@bp.route(route="api/manage/legalEntities/{id}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def delete_legal_entity(req: func.HttpRequest, principal) -> func.HttpResponse:
    _svc().delete_legal_entity(req.route_params["id"], if_match=req.headers.get("If-Match"))
    return empty_response(204)


# Applications ----------------------------------------------------------------------------------------
@bp.route(route="api/manage/applications", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def list_applications(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.domain.applications import application_to_json

    value = [application_to_json(a) for a in _svc().list_applications()]
    return json_response({"value": value, "nextLink": None})


@bp.route(
    route="api/manage/applications/{applicationId}", methods=["PUT"], auth_level=func.AuthLevel.ANONYMOUS
)
@endpoint(auth="admin", max_body=CONFIG_BODY_BYTES)
def put_application(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.domain.applications import application_to_json

    app_id = parse_guid(req.route_params["applicationId"], "application ID")
    saved = _svc().upsert_application(app_id, read_json(req), **_conditions(req))
    return _saved(application_to_json(saved.value), saved)


@bp.route(
    route="api/manage/applications/{applicationId}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS
)
@endpoint(auth="admin")
def get_application(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.domain.applications import application_to_json

    versioned = _svc().get_application_versioned(
        parse_guid(req.route_params["applicationId"], "application ID")
    )
    return json_response(application_to_json(versioned.value), 200, {"ETag": versioned.etag})


@bp.route(
    route="api/manage/applications/{applicationId}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS
)
@endpoint(auth="admin")
def delete_application(req: func.HttpRequest, principal) -> func.HttpResponse:
    app_id = parse_guid(req.route_params["applicationId"], "application ID")
    _svc().delete_application(app_id, if_match=req.headers.get("If-Match"))
    return empty_response(204)
