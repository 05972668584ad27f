"""Management API for configuration: entities, formats, transforms, projects and jobs (admin only)."""

from __future__ import annotations

import azure.functions as func

from shared.api.http import empty_response, endpoint, json_response, parse_guid, read_json, require_length
from shared.api.json_body import CONFIG_BODY_BYTES
from shared.errors import NotFoundError

bp = func.Blueprint()

# = config_service.MAX_TRANSFORM_BYTES (not imported here: it would load the service at cold start).
TRANSFORM_BODY_BYTES = 2 * 1024 * 1024


def _svc():
    from shared.services.registry import config_service

    return config_service()


def _saved(body: dict, created: bool):
    return json_response(body, 201 if created else 200)


def _deleted(existed: bool):
    return empty_response(204)


# Entities ------------------------------------------------------------------------------------------
@bp.route(route="api/manage/entities", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def list_entities(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.domain.config import entity_to_json

    return json_response({"value": [entity_to_json(e) for e in _svc().list_entities()], "nextLink": None})


@bp.route(route="api/manage/entities/{name}", methods=["PUT"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin", max_body=CONFIG_BODY_BYTES)
def put_entity(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.domain.config import entity_to_json

    entity, created = _svc().upsert_entity(req.route_params["name"], read_json(req))
    return _saved(entity_to_json(entity), created)


@bp.route(route="api/manage/entities/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def get_entity(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.domain.config import entity_to_json

    return json_response(entity_to_json(_svc().get_entity(req.route_params["name"])))


@bp.route(route="api/manage/entities/{name}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def delete_entity(req: func.HttpRequest, principal) -> func.HttpResponse:
    return _deleted(_svc().delete_entity(req.route_params["name"]))


# Formats -------------------------------------------------------------------------------------------
@bp.route(route="api/manage/formats", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def list_formats(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.domain.config import format_to_json

    return json_response({"value": [format_to_json(f) for f in _svc().list_formats()], "nextLink": None})


@bp.route(route="api/manage/formats/{name}", methods=["PUT"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin", max_body=CONFIG_BODY_BYTES)
def put_format(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.domain.config import format_to_json

    fmt, created = _svc().upsert_format(req.route_params["name"], read_json(req))
    return _saved(format_to_json(fmt), created)


@bp.route(route="api/manage/formats/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def get_format(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.domain.config import format_to_json

    return json_response(format_to_json(_svc().get_format(req.route_params["name"])))


@bp.route(route="api/manage/formats/{name}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def delete_format(req: func.HttpRequest, principal) -> func.HttpResponse:
    return _deleted(_svc().delete_format(req.route_params["name"]))


# Transforms ----------------------------------------------------------------------------------------
@bp.route(route="api/manage/transforms", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def list_transforms(req: func.HttpRequest, principal) -> func.HttpResponse:
    return json_response({"value": _svc().list_transforms(), "nextLink": None})


@bp.route(route="api/manage/transforms/{name}", methods=["PUT"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin", max_body=TRANSFORM_BODY_BYTES)
def put_transform(req: func.HttpRequest, principal) -> func.HttpResponse:
    name = req.route_params["name"]
    require_length(req)
    created = _svc().upsert_transform(name, req.get_body() or b"")
    return json_response({"name": name, "size": len(req.get_body() or b"")}, 201 if created else 200)


@bp.route(route="api/manage/transforms/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def get_transform(req: func.HttpRequest, principal) -> func.HttpResponse:
    return func.HttpResponse(_svc().get_transform(req.route_params["name"]), mimetype="application/xslt+xml")


@bp.route(route="api/manage/transforms/{name}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def delete_transform(req: func.HttpRequest, principal) -> func.HttpResponse:
    return _deleted(_svc().delete_transform(req.route_params["name"]))


# Projects ------------------------------------------------------------------------------------------
@bp.route(route="api/manage/projects", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def list_projects(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.domain.config import project_to_json

    return json_response({"value": [project_to_json(p) for p in _svc().list_projects()], "nextLink": None})


@bp.route(route="api/manage/projects/{name}", methods=["PUT"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin", max_body=CONFIG_BODY_BYTES)
def put_project(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.domain.config import project_to_json

    project, created = _svc().upsert_project(req.route_params["name"], read_json(req))
    return _saved(project_to_json(project), created)


@bp.route(route="api/manage/projects/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def get_project(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.domain.config import project_to_json

    return json_response(project_to_json(_svc().get_project(req.route_params["name"])))


@bp.route(route="api/manage/projects/{name}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def delete_project(req: func.HttpRequest, principal) -> func.HttpResponse:
    return _deleted(_svc().delete_project(req.route_params["name"]))


# Jobs ----------------------------------------------------------------------------------------------
@bp.route(route="api/manage/jobs", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin", max_body=CONFIG_BODY_BYTES)
def create_job(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.domain.config import job_to_json

    job = _svc().create_job(read_json(req))
    return json_response(job_to_json(job), 201, {"Location": f"/api/manage/jobs/{job.activity_id}"})


@bp.route(route="api/manage/jobs", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def list_jobs(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.domain.config import job_to_json

    return json_response({"value": [job_to_json(j) for j in _svc().list_jobs()], "nextLink": None})


@bp.route(route="api/manage/jobs/{activityId}", methods=["PUT"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin", max_body=CONFIG_BODY_BYTES)
def put_job(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.domain.config import job_to_json

    activity_id = parse_guid(req.route_params["activityId"], "activity ID")
    job, created = _svc().upsert_job(activity_id, read_json(req))
    return _saved(job_to_json(job), created)


@bp.route(route="api/manage/jobs/{activityId}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def get_job(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.domain.config import job_to_json

    activity_id = parse_guid(req.route_params["activityId"], "activity ID")
    return json_response(job_to_json(_svc().get_job(activity_id, fresh=True)))


@bp.route(route="api/manage/jobs/{activityId}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def delete_job(req: func.HttpRequest, principal) -> func.HttpResponse:
    activity_id = parse_guid(req.route_params["activityId"], "activity ID")
    return _deleted(_svc().delete_job(activity_id))


__all__ = ["bp", "NotFoundError"]
