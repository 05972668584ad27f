"""Management API for operations: messages, runs, error files, "run now", and imported entity records."""

from __future__ import annotations

import azure.functions as func

from shared.api.http import decode_continuation, endpoint, int_param, json_response, next_link, parse_guid
from shared.errors import NotFoundError, ValidationError

bp = func.Blueprint()

MAX_COMPANY_PARAM = 64  # legal entity IDs are at most 10 characters (shared.domain.limits); generous


def _job_id(req) -> str:
    """A job's activity ID (a GUID), or a definition group's group job ID (`group~export~name~usmf`, whose runs
    and messages GetExecutionSummaryPageUrl points to; shared/services/definition_groups.py)."""
    from shared.services.definition_groups import group_job_from_id

    raw = (req.route_params.get("activityId") or "").strip().lower()
    if group_job_from_id(raw) is not None:
        return raw
    return parse_guid(req.route_params["activityId"], "activity ID")


@bp.route(route="api/manage/jobs/{activityId}/messages", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def list_job_messages(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.domain.statuses import MESSAGE_STATUSES
    from shared.services.message_views import message_summary
    from shared.services.registry import config_service, message_repo

    job = config_service().get_job(_job_id(req))
    wanted = [s.strip() for s in (req.params.get("status") or "").split(",") if s.strip()]
    by_lower = {s.lower(): s for s in MESSAGE_STATUSES}
    for s in wanted:
        if s.lower() not in by_lower:
            raise ValidationError(f"status {s!r} is not a message status; use {', '.join(MESSAGE_STATUSES)}")
    # Newest first, as the spec and D365's "Manage messages" show them (the message partition is in enqueue
    # order; its newest-first index is read instead).
    page, token = message_repo().list_newest_first(
        job.activity_id,
        statuses=[by_lower[s.lower()] for s in wanted] or None,
        page_size=int_param(req, "top", 100),
        continuation=decode_continuation(req.params.get("continuation")),
    )
    return json_response({"value": [message_summary(m) for m in page], "nextLink": next_link(req, token)})


@bp.route(route="api/manage/jobs/{activityId}/runs", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def list_job_runs(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.services.message_views import run_summary
    from shared.services.registry import config_service, run_repo

    job = config_service().get_job(_job_id(req))
    page, token = run_repo().list_runs(
        job.activity_id,
        page_size=int_param(req, "top", 50),
        continuation=decode_continuation(req.params.get("continuation")),
    )
    return json_response({"value": [run_summary(r) for r in page], "nextLink": next_link(req, token)})


@bp.route(route="api/manage/jobs/{activityId}/run", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def run_job_now(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.domain.statuses import TRIGGER_MANUAL
    from shared.services.registry import config_service, scheduler

    job = config_service().get_job(parse_guid(req.route_params["activityId"], "activity ID"), fresh=True)
    if not job.enabled:
        raise ValidationError(f"the job {job.name!r} is disabled", code="JobDisabled")
    from shared.services.registry import export_service

    problem = export_service().legal_entity_problem(job, None)
    if problem:
        raise ValidationError(problem, code="LegalEntityRequired")
    queued = scheduler().run_job(job, TRIGGER_MANUAL)
    return json_response({"activityId": job.activity_id, "queued": queued}, 202)


@bp.route(route="api/manage/messages/{messageId}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def get_message(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.services.registry import message_repo

    msg = message_repo().get_by_id(parse_guid(req.route_params["messageId"], "message ID"))
    return json_response(_detail(msg))


def _detail(msg: dict) -> dict:
    """The message detail, with the message an in-order job's waiting message waits behind."""
    from shared.services.message_actions import waiting_behind
    from shared.services.message_views import message_detail
    from shared.services.registry import config_service, message_repo

    out = message_detail(msg)
    out["waitingBehind"] = waiting_behind(messages=message_repo(), config=config_service(), msg=msg)
    return out


def _who(principal) -> str:
    return str(principal.claims.get("preferred_username") or principal.claims.get("name") or principal.app_id)


@bp.route(
    route="api/manage/messages/{messageId}/reprocess", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS
)
@endpoint(auth="admin")
def reprocess_message(req: func.HttpRequest, principal) -> func.HttpResponse:
    """A message in PreProcessingError or PostProcessingFailed back to Enqueued, dispatched (202); 409 else."""
    from shared.services.message_actions import reprocess
    from shared.services.registry import config_service, dispatcher, message_repo

    msg = reprocess(
        messages=message_repo(),
        config=config_service(),
        dispatcher=dispatcher(),
        message_id=parse_guid(req.route_params["messageId"], "message ID"),
        by=_who(principal),
    )
    return json_response(_detail(msg), 202)


@bp.route(
    route="api/manage/messages/{messageId}/cancel", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS
)
@endpoint(auth="admin")
def cancel_message(req: func.HttpRequest, principal) -> func.HttpResponse:
    """An Enqueued message ends PostProcessingFailed with canceled: true (200); 409 when not Enqueued."""
    from shared.services.message_actions import cancel
    from shared.services.registry import message_repo

    msg = cancel(
        messages=message_repo(),
        message_id=parse_guid(req.route_params["messageId"], "message ID"),
        by=_who(principal),
    )
    return json_response(_detail(msg))


@bp.route(
    route="api/manage/messages/{messageId}/errors", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS
)
@endpoint(auth="admin")
def get_message_errors(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.services.registry import errors_container, message_repo

    msg = message_repo().get_by_id(parse_guid(req.route_params["messageId"], "message ID"))
    if not msg.get("ErrorFile"):
        raise NotFoundError("the message has no rejected records", code="NoErrorFile")
    data = errors_container().download_blob(msg["ErrorFile"]).readall()
    return func.HttpResponse(
        data,
        mimetype="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{msg["MessageId"]}-errors.csv"'},
    )


@bp.route(route="api/manage/entities/{name}/records", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def list_entity_records(req: func.HttpRequest, principal) -> func.HttpResponse:
    from shared.services.records import list_records

    company = req.params.get("company")
    if company and len(company) > MAX_COMPANY_PARAM:
        # It becomes a key range in the Table query's URL; storage refuses a URL that long (431, a 500 here).
        raise ValidationError(
            f"company must have at most {MAX_COMPANY_PARAM} characters", code="InvalidParameter"
        )
    records, token, warnings = list_records(
        req.route_params["name"],
        company=company,
        filter_text=req.params.get("filter"),
        top=int_param(req, "top", 100),
        continuation=decode_continuation(req.params.get("continuation")),
    )
    body = {"value": records, "nextLink": next_link(req, token)}
    if warnings:  # stored values that no longer fit their field's type (shown as null)
        body["warnings"] = warnings
    return json_response(body)
