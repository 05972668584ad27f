"""The D365 connector endpoints under /api/connector (PROTOCOL §1-§4): enqueue and the legacy job status."""

from __future__ import annotations

import json

import azure.functions as func

from shared.api.http import clean_id, endpoint, json_response, parse_guid, require_length
from shared.errors import AppError, NotFoundError

bp = func.Blueprint()


def _activity_id(req) -> str:
    from shared.services.enqueue_service import UnknownActivityError

    try:
        return parse_guid(req.route_params.get("activityId"), "activity ID")
    except AppError as exc:
        # D365 answers 500 for any activity it does not know, and RIS relies on it.
        raise UnknownActivityError(f"{exc.message}: no recurring job has this activity ID") from exc


@bp.route(route="api/connector/enqueue/{activityId}", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="caller", max_body=None)  # the file's limit is checked after the job's authorization
def enqueue(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.services.registry import enqueue_service

    require_length(req)
    message_id = enqueue_service().enqueue(
        _activity_id(req),
        principal,
        req.get_body() or b"",
        entity=req.params.get("entity"),
        company=req.params.get("company"),
        external_id=req.headers.get("x-ms-dyn-externalidentifier"),
    )
    # A JSON string literal, quotes included: RIS keeps the raw body and sends it back.
    return func.HttpResponse(json.dumps(message_id), status_code=200, mimetype="application/json")


@bp.route(route="api/connector/jobstatus/{activityId}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="caller")
def job_status(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.services.message_status import legacy_job_status
    from shared.services.registry import enqueue_service

    job = enqueue_service().get_job_for_caller(_activity_id(req), principal)
    message_id = parse_guid(clean_id(req.params.get("jobId")), "jobId")
    try:
        return json_response(legacy_job_status(job, message_id, principal))
    except NotFoundError as exc:
        raise NotFoundError(
            f"message {message_id} is not a message of this job", code="MessageNotFound"
        ) from exc
