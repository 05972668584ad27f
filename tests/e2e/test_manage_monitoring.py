"""The two read endpoints the workspace's Jobs and Monitoring pages use (shared/api/manage_monitoring.py), over
HTTP against the local host: every job's backlog and last run, and a job's queue-load samples."""

from __future__ import annotations

import uuid

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

ENTITY = {
    "label": "Customer groups",
    "keys": ["CUSTOMERGROUPID"],
    "fields": [{"name": "CUSTOMERGROUPID", "type": "string"}, {"name": "DESCRIPTION", "type": "string"}],
}


def enqueue(api, activity, app, row: str) -> str:
    data = f"CUSTOMERGROUPID,DESCRIPTION\r\n{row}\r\n".encode()
    resp = api.enqueue(activity, app, data, entity="Customer groups", company="usmf")
    assert resp.status_code == 200, resp.text
    return resp.json()


def backlog_of(api, activity: str) -> dict:
    [entry] = [b for b in api.ok("GET", "/api/manage/backlog")["value"] if b["activityId"] == activity]
    return entry


def test_backlog_counts_waiting_messages_and_names_the_last_run(api):
    activity, app, _ = api.import_job(ENTITY)
    assert backlog_of(api, activity) == {
        "activityId": activity,
        "waiting": 0,
        "waitingCapped": False,
        "oldestEnqueuedAt": None,
        "oldestAgeSeconds": None,
        "lastRun": None,
    }
    first = enqueue(api, activity, app, "1,one")
    enqueue(api, activity, app, "2,two")
    entry = backlog_of(api, activity)
    assert (entry["waiting"], entry["waitingCapped"]) == (2, False)
    assert entry["oldestEnqueuedAt"] == api.message(first)["enqueuedAt"]
    assert entry["oldestAgeSeconds"] >= 0

    assert api.ok("POST", f"/api/manage/jobs/{activity}/run")["queued"] == 2
    api.wait_terminal(app, first)
    entry = backlog_of(api, activity)
    assert entry["waiting"] == 0 and entry["oldestAgeSeconds"] is None
    assert entry["lastRun"]["trigger"] == "manual"
    assert (
        entry["lastRun"]["executionId"]
        == api.ok("GET", f"/api/manage/jobs/{activity}/runs")["value"][0]["executionId"]
    )


def test_queueload_answers_the_schedulers_samples_newest_first(api, app_env):
    from azure.data.tables import TableClient

    from shared.storage import names

    activity, app, _ = api.import_job(
        ENTITY, monitoring={"unit": "minutes", "interval": 1, "backlogThreshold": 99}
    )
    schedule = TableClient.from_connection_string(app_env["AzureWebJobsStorage"], names.TABLE_SCHEDULE)
    for i in range(2):
        enqueue(api, activity, app, f"{i},x")
        schedule.delete_entity(activity, "monitoring")  # let the next tick take another sample now
        api.run_scheduler()
    samples = api.ok("GET", f"/api/manage/jobs/{activity}/queueload")["value"]
    assert [s["waiting"] for s in samples] == [2, 1]
    assert samples[0]["sampledAt"] > samples[1]["sampledAt"]
    assert all(s["oldestAgeSeconds"] >= 0 for s in samples)
    page = api.ok("GET", f"/api/manage/jobs/{activity}/queueload", params={"top": 1})
    assert len(page["value"]) == 1 and page["nextLink"]
    future = api.ok("GET", f"/api/manage/jobs/{activity}/queueload", params={"since": "2099-01-01T00:00:00Z"})
    assert future["value"] == []


def test_errors_are_4xx_with_the_envelope(api, make_token):
    activity, _, _ = api.import_job(ENTITY)
    for path, status, code in [
        (f"/api/manage/jobs/{uuid.uuid4()}/queueload", 404, None),
        (f"/api/manage/jobs/{activity}/queueload?since=yesterday", 400, None),
        (f"/api/manage/jobs/{activity}/queueload?top=0", 400, "InvalidParameter"),
        ("/api/manage/jobs/not-a-guid/queueload", 400, "InvalidId"),
    ]:
        resp = api.admin("GET", path)
        assert resp.status_code == status, (path, resp.text)
        assert resp.json()["error"]["message"]
        if code:
            assert resp.json()["error"]["code"] == code
    partner = make_token(str(uuid.uuid4()))
    for path in ("/api/manage/backlog", f"/api/manage/jobs/{activity}/queueload"):
        assert api.call("GET", path, partner).status_code == 403
        assert api.call("GET", path, None).status_code == 401
