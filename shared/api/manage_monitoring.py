"""Management API for watching jobs (admin only): each job's backlog and last run, and its queue-load samples.

What the workspace's Jobs and Monitoring pages show, and what the other endpoints cannot give without
reading every message: `GET /api/manage/backlog` and `GET /api/manage/jobs/{activityId}/queueload`.
"""

from __future__ import annotations

import azure.functions as func

from shared.api.http import decode_continuation, endpoint, int_param, json_response, next_link, parse_guid

bp = func.Blueprint()

# Counting stops here (10 pages of 1,000): the page shows "10000+" instead of scanning a huge backlog.
MAX_COUNTED = 10_000
DEFAULT_SINCE_HOURS = 24


@bp.route(route="api/manage/backlog", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="admin")
def list_job_backlogs(req: func.HttpRequest, principal) -> func.HttpResponse:
    """{"value": [{"activityId", "waiting", "waitingCapped", "oldestEnqueuedAt", "oldestAgeSeconds",
    "lastRun": Run | null}], "nextLink": null}, one entry per job. `waiting` counts the job's messages in
    `Enqueued` (imports not yet picked up, or export files not yet dequeued), at most MAX_COUNTED
    (`waitingCapped` then true); ages are whole seconds from now."""
    from concurrent.futures import ThreadPoolExecutor

    from shared.services.registry import config_service

    jobs = config_service().list_jobs()
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(jobs)))) as pool:
        value = list(pool.map(_backlog, [job.activity_id for job in jobs]))
    return json_response({"value": value, "nextLink": None})


def _backlog(activity_id: str) -> dict:
    from shared.domain.statuses import ENQUEUED
    from shared.services.message_views import run_summary
    from shared.services.registry import message_repo, run_repo
    from shared.storage.message_repo import iso, now_utc

    waiting, oldest, token = 0, None, None
    while waiting < MAX_COUNTED:
        # Enqueue order (time-ordered row keys): the first waiting message is the oldest.
        page, token = message_repo().list_messages(
            activity_id, statuses=[ENQUEUED], page_size=1000, continuation=token, select=["EnqueuedAt"]
        )
        if oldest is None and page:
            oldest = page[0].get("EnqueuedAt")
        waiting += len(page)
        if not token:
            break
    runs, _ = run_repo().list_runs(activity_id, page_size=1)  # newest first
    return {
        "activityId": activity_id,
        "waiting": min(waiting, MAX_COUNTED),
        "waitingCapped": bool(token) or waiting > MAX_COUNTED,
        "oldestEnqueuedAt": iso(oldest),
        "oldestAgeSeconds": int((now_utc() - oldest).total_seconds()) if oldest else None,
        "lastRun": run_summary(runs[0]) if runs else None,
    }


def queueload_row_key(at) -> str:
    """The row key Scheduler.sample_backlog gives a sample taken at `at`: newest first."""
    return f"{10**20 - int(at.timestamp() * 1_000_000):020d}"


@bp.route(
    route="api/manage/jobs/{activityId}/queueload", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS
)
@endpoint(auth="admin")
def list_job_queueload(req: func.HttpRequest, principal) -> func.HttpResponse:
    """The monitoring recurrence's samples of the job's backlog, newest first, since `since` (ISO-8601,
    default 24 hours ago): {"value": [{"sampledAt", "waiting", "oldestAgeSeconds"}], "nextLink"}.
    Errors: 400 InvalidId, InvalidParameter; 404 for an unknown job."""
    from datetime import timedelta

    from shared.domain.config import parse_datetime
    from shared.errors import ValidationError
    from shared.services.registry import config_service
    from shared.storage import names
    from shared.storage.factory import get_clients
    from shared.storage.message_repo import iso, now_utc

    job = config_service().get_job(parse_guid(req.route_params["activityId"], "activity ID"))
    since_text = req.params.get("since")
    if since_text and len(since_text) > 40:
        raise ValidationError("since must be an ISO-8601 date-time", code="InvalidParameter")
    since = parse_datetime(since_text, "since") if since_text else None
    since = since or now_utc() - timedelta(hours=DEFAULT_SINCE_HOURS)
    table = get_clients().table(names.TABLE_QUEUE_LOAD)
    pager = table.query_entities(
        "PartitionKey eq @job and RowKey le @until",
        parameters={"job": job.activity_id, "until": queueload_row_key(since)},
        results_per_page=int_param(req, "top", 500),
        select=["SampledAt", "Waiting", "OldestAgeSeconds"],
    ).by_page(continuation_token=decode_continuation(req.params.get("continuation")))
    value = [
        {
            "sampledAt": iso(row.get("SampledAt")),
            "waiting": row.get("Waiting"),
            "oldestAgeSeconds": row.get("OldestAgeSeconds"),
        }
        for row in next(pager, [])
    ]
    return json_response({"value": value, "nextLink": next_link(req, pager.continuation_token)})
