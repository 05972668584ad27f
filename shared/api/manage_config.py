"""Management API for configuration: entities, formats, transforms, projects and jobs (admin only).

Every GET of a document answers its `ETag`; PUT, PATCH and DELETE take `If-Match` (412 PreconditionFailed
when the document changed since that ETag was read; `*`: it must exist) and PUT takes `If-None-Match: *`
(create only). Writes answer the new ETag. Writes without If-Match apply to whatever is stored (last writer
wins); clients that read, change and write back should send it (shared/services/config_service.py).
PATCH is a JSON merge patch (RFC 7396) of the stored document, validated exactly as a PUT.
"""

from __future__ import annotations

import azure.functions as func

from shared.api.http import empty_response, endpoint, json_response, parse_guid, read_json, require_length
from shared.api.json_body import CONFIG_BODY_BYTES
from shared.errors import AppError, NotFoundError, ValidationError

bp = func.Blueprint()

# = config_service.MAX_TRANSFORM_BYTES (not imported here: it would load the service at cold start).
TRANSFORM_BODY_BYTES = 2 * 1024 * 1024


def _svc():
    from shared.services.registry import config_service

    return config_service()


# RFC 7396's media type, and plain JSON, which many clients send for any JSON body.
PATCH_TYPES = ("application/merge-patch+json", "application/json")


def _saved(body: dict, saved):
    """201 or 200 with the document and its new ETag (`saved`: config_service.Saved)."""
    return json_response(body, 201 if saved.created else 200, {"ETag": saved.etag})


def _versioned(body: dict, versioned):
    return json_response(body, 200, {"ETag": versioned.etag})


def _job_body(job) -> dict:
    """A job as one document's reply shows it: with `warnings`, what a job stored before writes checked which
    options apply holds that does nothing (empty for anything written since)."""
    from shared.domain.config import job_to_json

    return {**job_to_json(job), "warnings": _svc().job_warnings(job)}


def _project_body(project) -> dict:
    """A project as one document's reply shows it, with `warnings` (see _job_body)."""
    from shared.domain.config import project_to_json

    return {**project_to_json(project), "warnings": _svc().project_warnings(project)}


def _format_body(fmt) -> dict:
    """A format as one document's reply shows it, with `warnings` (see _job_body)."""
    from shared.domain.config import format_option_problems, format_to_json

    return {
        **format_to_json(fmt),
        "warnings": [f"{n} does not apply: {w}" for n, w in format_option_problems(fmt)],
    }


def _deleted(existed: bool):
    return empty_response(204)


def _conditions(req: func.HttpRequest) -> dict:
    """The request's If-Match and If-None-Match, as the service's keyword arguments."""
    return {"if_match": req.headers.get("If-Match"), "if_none_match": req.headers.get("If-None-Match")}


def _if_match(req: func.HttpRequest) -> str | None:
    return req.headers.get("If-Match")


def _operation(req: func.HttpRequest) -> str | None:
    """`?operation=import|export`: which project a name means when an import and an export project share it
    (projects are keyed by name and operation, as D365's definition groups); optional otherwise."""
    return req.params.get("operation") or None


def _read_patch(req: func.HttpRequest):
    """The merge patch: a JSON body sent as application/merge-patch+json or application/json (no
    Content-Type: read as JSON). 415 UnsupportedMediaType for anything else."""
    content_type = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type and content_type not in PATCH_TYPES:
        raise AppError(
            f"a PATCH body is a JSON merge patch (RFC 7396): send it with Content-Type "
            f"{PATCH_TYPES[0]} or {PATCH_TYPES[1]}, not {content_type[:100]}",
            code="UnsupportedMediaType",
            status=415,
        )
    return read_json(req)


def _force(req: func.HttpRequest) -> bool:
    """`?force=true`: change an entity that has records although they cannot follow the change."""
    raw = (req.params.get("force") or "false").strip().lower()
    if raw not in ("true", "false"):
        raise ValidationError("force must be true or false", code="InvalidParameter")
    return raw == "true"


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

    saved = _svc().upsert_entity(
        req.route_params["name"], read_json(req), force=_force(req), **_conditions(req)
    )
    return _saved(entity_to_json(saved.value), saved)


@bp.route(route="api/manage/entities/{name}", methods=["PATCH"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin", max_body=CONFIG_BODY_BYTES)
def patch_entity(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.domain.config import entity_to_json

    saved = _svc().patch_entity(
        req.route_params["name"], _read_patch(req), force=_force(req), if_match=_if_match(req)
    )
    return _saved(entity_to_json(saved.value), saved)


@bp.route(route="api/manage/entities/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def get_entity(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.domain.config import entity_to_json

    versioned = _svc().get_entity_versioned(req.route_params["name"])
    return _versioned(entity_to_json(versioned.value), versioned)


@bp.route(route="api/manage/entities/{name}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def delete_entity(req: func.HttpRequest, principal) -> func.HttpResponse:
    return _deleted(_svc().delete_entity(req.route_params["name"], if_match=_if_match(req)))


# Formats -------------------------------------------------------------------------------------------
@bp.route(route="api/manage/formats", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def list_formats(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.domain.config import format_to_json

    return json_response({"value": [format_to_json(f) for f in _svc().list_formats()], "nextLink": None})


@bp.route(route="api/manage/formats/{name}", methods=["PUT"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin", max_body=CONFIG_BODY_BYTES)
def put_format(req: func.HttpRequest, principal) -> func.HttpResponse:

    saved = _svc().upsert_format(req.route_params["name"], read_json(req), **_conditions(req))
    return _saved(_format_body(saved.value), saved)


@bp.route(route="api/manage/formats/{name}", methods=["PATCH"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin", max_body=CONFIG_BODY_BYTES)
def patch_format(req: func.HttpRequest, principal) -> func.HttpResponse:

    saved = _svc().patch_format(req.route_params["name"], _read_patch(req), if_match=_if_match(req))
    return _saved(_format_body(saved.value), saved)


@bp.route(route="api/manage/formats/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def get_format(req: func.HttpRequest, principal) -> func.HttpResponse:

    versioned = _svc().get_format_versioned(req.route_params["name"])
    return _versioned(_format_body(versioned.value), versioned)


@bp.route(route="api/manage/formats/{name}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def delete_format(req: func.HttpRequest, principal) -> func.HttpResponse:
    return _deleted(_svc().delete_format(req.route_params["name"], if_match=_if_match(req)))


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
    saved = _svc().upsert_transform(name, req.get_body() or b"", **_conditions(req))
    return _saved({"name": name, "size": saved.value["size"]}, saved)


@bp.route(route="api/manage/transforms/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def get_transform(req: func.HttpRequest, principal) -> func.HttpResponse:
    versioned = _svc().get_transform_versioned(req.route_params["name"])
    return func.HttpResponse(
        versioned.value, mimetype="application/xslt+xml", headers={"ETag": versioned.etag}
    )


@bp.route(route="api/manage/transforms/{name}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def delete_transform(req: func.HttpRequest, principal) -> func.HttpResponse:
    return _deleted(_svc().delete_transform(req.route_params["name"], if_match=_if_match(req)))


# Projects ------------------------------------------------------------------------------------------
@bp.route(route="api/manage/projects", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def list_projects(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.domain.config import project_to_json

    return json_response({"value": [project_to_json(p) for p in _svc().list_projects()], "nextLink": None})


@bp.route(route="api/manage/projects/{name}", methods=["PUT"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin", max_body=CONFIG_BODY_BYTES)
def put_project(req: func.HttpRequest, principal) -> func.HttpResponse:

    saved = _svc().upsert_project(
        req.route_params["name"], read_json(req), operation=_operation(req), **_conditions(req)
    )
    return _saved(_project_body(saved.value), saved)


@bp.route(route="api/manage/projects/{name}", methods=["PATCH"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin", max_body=CONFIG_BODY_BYTES)
def patch_project(req: func.HttpRequest, principal) -> func.HttpResponse:

    saved = _svc().patch_project(
        req.route_params["name"], _read_patch(req), operation=_operation(req), if_match=_if_match(req)
    )
    return _saved(_project_body(saved.value), saved)


@bp.route(route="api/manage/projects/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def get_project(req: func.HttpRequest, principal) -> func.HttpResponse:

    versioned = _svc().get_project_versioned(req.route_params["name"], _operation(req))
    return _versioned(_project_body(versioned.value), versioned)


@bp.route(route="api/manage/projects/{name}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def delete_project(req: func.HttpRequest, principal) -> func.HttpResponse:
    return _deleted(
        _svc().delete_project(req.route_params["name"], operation=_operation(req), if_match=_if_match(req))
    )


# Jobs ----------------------------------------------------------------------------------------------
@bp.route(route="api/manage/jobs", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin", max_body=CONFIG_BODY_BYTES)
def create_job(req: func.HttpRequest, principal) -> func.HttpResponse:

    saved = _svc().create_job(read_json(req))
    job = saved.value
    return json_response(
        _job_body(job), 201, {"Location": f"/api/manage/jobs/{job.activity_id}", "ETag": saved.etag}
    )


@bp.route(route="api/manage/jobs", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def list_jobs(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.domain.config import job_to_json

    return json_response({"value": [job_to_json(j) for j in _svc().list_jobs()], "nextLink": None})


@bp.route(route="api/manage/jobs/{activityId}", methods=["PUT"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin", max_body=CONFIG_BODY_BYTES)
def put_job(req: func.HttpRequest, principal) -> func.HttpResponse:

    activity_id = parse_guid(req.route_params["activityId"], "activity ID")
    saved = _svc().upsert_job(activity_id, read_json(req), **_conditions(req))
    return _saved(_job_body(saved.value), saved)


@bp.route(route="api/manage/jobs/{activityId}", methods=["PATCH"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin", max_body=CONFIG_BODY_BYTES)
def patch_job(req: func.HttpRequest, principal) -> func.HttpResponse:
    """`{"enabled": false}` alone disables the job; send the ETag of your GET in If-Match."""

    activity_id = parse_guid(req.route_params["activityId"], "activity ID")
    saved = _svc().patch_job(activity_id, _read_patch(req), if_match=_if_match(req))
    return _saved(_job_body(saved.value), saved)


@bp.route(route="api/manage/jobs/{activityId}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def get_job(req: func.HttpRequest, principal) -> func.HttpResponse:

    activity_id = parse_guid(req.route_params["activityId"], "activity ID")
    versioned = _svc().get_job_versioned(activity_id)
    return _versioned(_job_body(versioned.value), versioned)


@bp.route(route="api/manage/jobs/{activityId}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def delete_job(req: func.HttpRequest, principal) -> func.HttpResponse:
    activity_id = parse_guid(req.route_params["activityId"], "activity ID")
    return _deleted(_svc().delete_job(activity_id, if_match=_if_match(req)))


__all__ = ["bp", "NotFoundError"]
