"""Issue 12, class 9, over the local host: every place that looks up a message or execution ID for a caller
answers an ID the caller may not see exactly as an unknown one (status, content type and body, with the ID
put in), so an ID reveals nothing.

tests/e2e/test_execution_access.py covers the package-API actions, GetMessageStatus and
GetExecutionIdByMessageId of import messages, and the connector download. This file covers the other
lookups: the connector ack (CorrelationId), jobstatus on the caller's own job, the message actions on
export messages, and the download's `blob` parameter. Manage endpoints are admin-only (an admin sees all).
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import pytest
import requests

from tests.support.packages import build_package, csv_entity, simple_entity

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

ACTION = "/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities."


def reply(resp: requests.Response) -> tuple[int, str, bytes]:
    return resp.status_code, resp.headers.get("Content-Type", ""), resp.content


def as_unknown(resp_for_unknown: requests.Response, unknown: str, known: str) -> tuple[int, str, bytes]:
    assert len(unknown) == len(known)
    status, kind, body = reply(resp_for_unknown)
    return status, kind, body.replace(unknown.encode(), known.encode())


def action(api, name: str, token: str, body: dict) -> requests.Response:
    return api.call(
        "POST", ACTION + name, token, data=json.dumps(body), headers={"Content-Type": "application/json"}
    )


class ExportProject:
    """An export project with one row in usmf and two jobs: the owner's and another partner's."""

    def __init__(self, api) -> None:
        self.api = api
        self.entity = api.unique("Ent")
        api.ok("PUT", f"/api/manage/entities/{self.entity}", json=simple_entity(f"Lookups {self.entity[3:]}"))
        self.project = api.unique("Exp")
        api.ok(
            "PUT",
            f"/api/manage/projects/{self.project}",
            json={"operation": "export", "entities": [{"entity": self.entity, "format": "CSV"}]},
        )
        from shared.services.registry import config_service, entity_repo

        entity = config_service().get_entity(self.entity)
        row = entity_repo().encode(
            entity, {"CODE": "L1", "NAME": "x", "AMOUNT": None}, "usmf", datetime.now(UTC)
        )
        assert not entity_repo().upsert_rows(entity, [row]).failed
        self.owner, self.other = str(uuid.uuid4()), str(uuid.uuid4())
        self.owner_token, self.other_token = api.make_token(self.owner), api.make_token(self.other)
        self.owner_job = self.job("usmf", self.owner)
        self.other_job = self.job("demf", self.other)

    def job(self, company: str, app: str) -> str:
        body = {
            "name": self.api.unique("Job"),
            "project": self.project,
            "company": company,
            "authorizationPolicy": [{"applicationId": app, "enabled": True}],
        }
        return self.api.ok("POST", "/api/manage/jobs", json=body)["activityId"]

    def dequeue_owner(self) -> dict:
        assert self.api.admin("POST", f"/api/manage/jobs/{self.owner_job}/run").status_code == 202
        deadline = time.monotonic() + 90
        path = f"/api/connector/dequeue/{self.owner_job}"
        while (resp := self.api.call("GET", path, self.owner_token)).status_code == 204:
            assert time.monotonic() < deadline, "the export never offered a package"
            time.sleep(0.25)
        assert resp.status_code == 200, resp.text
        return resp.json()


def test_ack_of_another_jobs_message_answers_as_an_unknown_one(api):
    ex = ExportProject(api)
    dequeued = ex.dequeue_owner()
    correlation = dequeued["CorrelationId"]
    unknown = str(uuid.uuid4())

    def ack(activity: str, token: str, correlation_id: str) -> requests.Response:
        body = {"CorrelationId": f'"{correlation_id}"', "PopReceipt": dequeued["PopReceipt"]}
        return api.call(
            "POST",
            f"/api/connector/ack/{activity}",
            token,
            data=json.dumps(body),
            headers={"Content-Type": "application/json"},
        )

    expected = as_unknown(ack(ex.other_job, ex.other_token, unknown), unknown, correlation)
    assert expected[0] == 404 and json.loads(expected[2])["error"]["code"] == "MessageNotFound"
    assert reply(ack(ex.other_job, ex.other_token, correlation)) == expected
    # The message is untouched: its owner still acks it.
    assert ack(ex.owner_job, ex.owner_token, correlation).status_code == 200


def test_jobstatus_and_message_actions_on_an_export_message_of_another_job(api):
    ex = ExportProject(api)
    correlation = ex.dequeue_owner()["CorrelationId"]
    unknown = str(uuid.uuid4())

    def replies(token: str, activity: str, message_id: str) -> dict:
        return {
            "jobstatus": reply(
                api.call("GET", f"/api/connector/jobstatus/{activity}", token, params={"jobId": message_id})
            ),
            "GetMessageStatus": reply(action(api, "GetMessageStatus", token, {"messageId": message_id})),
            "GetExecutionIdByMessageId": reply(
                action(api, "GetExecutionIdByMessageId", token, {"_messageId": message_id})
            ),
        }

    refused = replies(ex.other_token, ex.other_job, correlation)
    expected = {
        k: (s, t, b.replace(unknown.encode(), correlation.encode()))
        for k, (s, t, b) in replies(ex.other_token, ex.other_job, unknown).items()
    }
    assert all(status == 404 for status, _, _ in expected.values()), expected
    assert refused == expected
    owner = replies(ex.owner_token, ex.owner_job, correlation)
    assert (
        owner["GetMessageStatus"][0] == 200
        and json.loads(owner["GetMessageStatus"][2])["value"] == "Dequeued"
    )
    assert owner["jobstatus"][0] == 200


def test_the_download_blob_parameter_is_checked_only_after_the_message_is_the_callers(api):
    ex = ExportProject(api)
    dequeued = ex.dequeue_owner()
    correlation = dequeued["CorrelationId"]
    unknown = str(uuid.uuid4())

    def download(activity: str, token: str, correlation_id: str, blob: str) -> requests.Response:
        params = {"correlation-id": correlation_id, "blob": blob}
        return api.call("GET", f"/api/connector/download/{activity}", token, params=params)

    # Another job's message with a wrong blob: the reply of an unknown message, not "wrong blob".
    wrong_blob = str(uuid.uuid4())
    expected = as_unknown(download(ex.other_job, ex.other_token, unknown, wrong_blob), unknown, correlation)
    assert reply(download(ex.other_job, ex.other_token, correlation, wrong_blob)) == expected
    resp = download(ex.owner_job, ex.owner_token, correlation, wrong_blob)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "FileNotFound"


def test_an_execution_id_in_use_says_only_that_whoever_uses_it(api):
    """Clients choose execution IDs and they are unique, so a taken one shows; the reply says nothing more
    (not whose it is, nor whether it is an import or an export)."""
    ex = ExportProject(api)
    taken = f"lookups-{uuid.uuid4()}"
    body = {"definitionGroupId": ex.project, "executionId": taken, "legalEntityId": "usmf"}
    assert action(api, "ExportToPackage", ex.owner_token, body).status_code == 200

    activity, app, entity = api.import_job(simple_entity(), mode="package")
    project = api.ok("GET", f"/api/manage/jobs/{activity}")["project"]
    token = api.make_token(app)
    written = json.loads(action(api, "GetAzureWriteUrl", token, {"uniqueFileName": "p.zip"}).json()["value"])
    data = build_package([csv_entity(entity, "e.csv")], {"e.csv": b"CODE,NAME,AMOUNT\r\nI1,x,1\r\n"})
    assert requests.put(written["BlobUrl"], data=data, headers={"x-ms-blob-type": "BlockBlob"}, timeout=60).ok
    import_body = {"packageUrl": written["BlobUrl"], "definitionGroupId": project, "executionId": taken}
    resp = action(api, "ImportFromPackage", token, import_body)
    assert resp.status_code == 409, resp.text
    assert resp.json()["error"] == {
        "code": "ExecutionIdInUse",
        "message": f"the execution ID {taken!r} is already in use; send a new executionId",
    }
    mine = f"lookups-{uuid.uuid4()}"
    assert action(api, "ImportFromPackage", token, {**import_body, "executionId": mine}).status_code == 200
    resp = action(
        api, "ExportToPackage", ex.other_token, {**body, "executionId": mine, "legalEntityId": "demf"}
    )
    assert resp.status_code == 409 and resp.json()["error"] == {
        "code": "ExecutionIdInUse",
        "message": f"the execution ID {mine!r} is already in use; send a new executionId",
    }
