"""The D365 connector's export side under /api/connector (PROTOCOL §3): dequeue, download and ack."""

from __future__ import annotations

import azure.functions as func

from shared.api.connector import _activity_id
from shared.api.http import empty_response, endpoint, json_response, public_base_url, read_json
from shared.api.json_body import ACTION_STRING_CHARS, JsonLimits, parse_text

bp = func.Blueprint()


def _job(req, principal):
    from shared.services.registry import enqueue_service

    # Unknown activity: 500 UnknownActivity (RIS's connection check relies on it); not mapped: 403; an
    # import job: 400 NotAnExportJob (as enqueue on an export job answers NotAnImportJob).
    return enqueue_service().get_export_job_for_caller(_activity_id(req), principal)


def _param(req, *names: str) -> str | None:
    wanted = {n.lower() for n in names}
    for key, value in req.params.items():
        if key.lower() in wanted and value:
            return value
    return None


@bp.route(route="api/connector/dequeue/{activityId}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="caller")
def connector_dequeue(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.services.registry import outbound_service

    reply = outbound_service().dequeue(_job(req, principal), public_base_url(req))
    if reply is None:
        return empty_response(204)  # nothing ready: RIS stops its dequeue loop on an empty 204
    return json_response(reply)


@bp.route(route="api/connector/download/{activityId}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="caller")
def connector_download(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.services.registry import outbound_service

    # Only the query parameters identify the file: clients rewrite the scheme, host and port.
    message, data = outbound_service().get_package(
        _job(req, principal),
        _param(req, "correlation-id", "correlationId", "correlation_id"),
        _param(req, "blob", "blobId"),
    )
    name = message.get("ExternalIdentifier") or f"{message['MessageId']}.zip"
    return func.HttpResponse(
        data,
        status_code=200,
        mimetype="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@bp.route(route="api/connector/ack/{activityId}", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="caller", max_body=None)  # read_json caps the body, after the job's authorization
def connector_ack(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.services.registry import outbound_service

    job = _job(req, principal)  # authorized on the job before the body is read
    body = read_json(req, lenient_quotes=True, max_string_chars=ACTION_STRING_CHARS)
    if isinstance(body, str):  # the reply re-sent as a JSON string holding the JSON object
        body = parse_text(body, JsonLimits(), lenient_quotes=True, what="the JSON string of the ack body")
    outbound_service().ack(job, body)
    return func.HttpResponse(b"", status_code=200)  # PSI requires exactly 200; acking twice is 200 too
