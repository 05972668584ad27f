"""Who sees an execution, a message, a package and an error file (issue 17, Deliver 5), over the local host.

The rule is shared/services/execution_access.py: admins, the applications on the policy of the job that
ran it, and the application that started it while it may still use that job's legal entity. Anyone else
gets, byte for byte, the reply that the same ID got before it existed (status, content type and body), or
the reply of an unknown ID with that ID put in: an ID reveals nothing. The job-level checks of the
connector (403 for an activity ID the caller is not mapped to) are PROTOCOL §8.3 and stay as they are.
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
import zipfile
from datetime import UTC, datetime

import pytest
import requests

from shared.services.package_api_service import package_message_id
from tests.support.packages import build_package, csv_entity, simple_entity

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

ACTION = "/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities."
TERMINAL = {"Succeeded", "PartiallySucceeded", "Failed", "Canceled"}
EXECUTION_ACTIONS = (
    "GetExecutionSummaryStatus",
    "GetExportedPackageUrl",
    "GetExecutionErrors",
    "GenerateImportTargetErrorKeysFile",
    "GetImportTargetErrorKeysFileUrl",
    "GetExecutionSummaryPageUrl",
)
BAD_ROWS = b"CODE,NAME,AMOUNT\r\nA1,Alpha,10\r\nA2,Bad,not-a-number\r\n"


# Helpers -------------------------------------------------------------------------------------------
def action(api, name: str, token: str, body: dict) -> requests.Response:
    return api.call(
        "POST", ACTION + name, token, data=json.dumps(body), headers={"Content-Type": "application/json"}
    )


def value(api, name: str, token: str, body: dict):
    resp = action(api, name, token, body)
    assert resp.status_code == 200, f"{name}: {resp.status_code} {resp.text}"
    return resp.json()["value"]


def wait_status(api, token: str, execution_id: str, timeout: float = 90.0) -> str:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = value(api, "GetExecutionSummaryStatus", token, {"executionId": execution_id})
        if status in TERMINAL:
            return status
        time.sleep(0.25)
    raise AssertionError(f"execution {execution_id} still {status} after {timeout}s")


def reply(resp: requests.Response) -> tuple[int, str, bytes]:
    """What a caller learns from a reply: status, content type and body bytes."""
    return resp.status_code, resp.headers.get("Content-Type", ""), resp.content


def on_no_job(replies: dict[str, tuple]) -> bool:
    """An application on no job's policy is refused before its body is read: 403 ApplicationNotAuthorized
    from every action, whatever the ID (shared.api.http.require_partner), so it learns nothing either."""
    return all(r[0] == 403 and b'"ApplicationNotAuthorized"' in r[2] for r in replies.values())


def execution_replies(api, token: str, execution_id: str, entity: str) -> dict[str, tuple]:
    out = {}
    for name in EXECUTION_ACTIONS:
        body = {"executionId": execution_id}
        if "ErrorKeys" in name:
            body["entityName"] = entity
        out[name] = reply(action(api, name, token, body))
    return out


def message_replies(api, token: str, message_id: str, activity: str) -> dict[str, tuple]:
    """GetMessageStatus, GetExecutionIdByMessageId, and the legacy jobstatus on the caller's own job."""
    return {
        "GetMessageStatus": reply(action(api, "GetMessageStatus", token, {"messageId": message_id})),
        "GetExecutionIdByMessageId": reply(
            action(api, "GetExecutionIdByMessageId", token, {"_messageId": message_id})
        ),
        "jobstatus": reply(
            api.call("GET", f"/api/connector/jobstatus/{activity}", token, params={"jobId": message_id})
        ),
    }


def with_id(replies: dict[str, tuple], unknown: str, known: str) -> dict[str, tuple]:
    """The replies of an unknown ID with the known ID in its place (IDs of the same length)."""
    assert len(unknown) == len(known)
    return {k: (s, t, body.replace(unknown.encode(), known.encode())) for k, (s, t, body) in replies.items()}


def assert_unknown_shape(replies: dict[str, tuple]) -> None:
    """Guards the comparisons: the replies compared are those of an unknown ID, not some other refusal."""
    for name, (status, _, body) in replies.items():
        if name == "GetExecutionSummaryStatus":
            assert status == 200 and json.loads(body)["value"] == "Unknown", body
        else:
            assert status == 404, (name, body)
            assert json.loads(body)["error"]["code"] in ("ExecutionNotFound", "MessageNotFound"), body


class Project:
    """An entity and a data project over it, with jobs added one per partner."""

    def __init__(self, api, operation: str) -> None:
        self.api = api
        self.entity = api.unique("Ent")
        api.ok("PUT", f"/api/manage/entities/{self.entity}", json=simple_entity(f"Access {self.entity[3:]}"))
        self.name = api.unique("Acc")
        api.ok(
            "PUT",
            f"/api/manage/projects/{self.name}",
            json={"operation": operation, "entities": [{"entity": self.entity, "format": "CSV"}]},
        )

    def job(self, company: str | None, *apps: str, **fields) -> str:
        body = {
            "name": self.api.unique("Job"),
            "project": self.name,
            "company": company,
            "authorizationPolicy": [{"applicationId": a, "enabled": True} for a in apps],
            **fields,
        }
        return self.api.ok("POST", "/api/manage/jobs", json=body)["activityId"]

    def update_job(self, activity: str, **changes) -> None:
        job = self.api.ok("GET", f"/api/manage/jobs/{activity}")
        self.api.ok("PUT", f"/api/manage/jobs/{activity}", json={**job, **changes})

    def write_rows(self, company: str, codes: list[str]) -> None:
        from shared.services.registry import config_service, entity_repo

        entity = config_service().get_entity(self.entity)
        at = datetime.now(UTC)
        rows = [
            entity_repo().encode(entity, {"CODE": c, "NAME": c, "AMOUNT": None}, company, at) for c in codes
        ]
        assert not entity_repo().upsert_rows(entity, rows).failed


def new_app(api) -> tuple[str, str]:
    app = str(uuid.uuid4())
    return app, api.make_token(app)


def upload(api, token: str, data: bytes) -> str:
    written = json.loads(value(api, "GetAzureWriteUrl", token, {"uniqueFileName": "package.zip"}))
    resp = requests.put(written["BlobUrl"], data=data, headers={"x-ms-blob-type": "BlockBlob"}, timeout=60)
    assert resp.status_code == 201, resp.text
    return written["BlobUrl"]


def export(api, token: str, project: str, execution_id: str, legal_entity: str = "usmf") -> None:
    body = {"definitionGroupId": project, "executionId": execution_id, "legalEntityId": legal_entity}
    assert value(api, "ExportToPackage", token, body) == execution_id
    assert wait_status(api, token, execution_id) == "Succeeded"


def exported_codes(api, token: str, execution_id: str) -> set[str]:
    url = value(api, "GetExportedPackageUrl", token, {"executionId": execution_id})
    assert url.startswith("http"), url
    resp = requests.get(url, timeout=60)  # no Authorization header (PROTOCOL §7)
    assert resp.status_code == 200, resp.text
    with zipfile.ZipFile(io.BytesIO(resp.content)) as zf:
        [data] = [zf.read(n) for n in zf.namelist() if n.endswith(".csv")]
    return {row[0] for row in list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))[1:]}


# Imports: every execution action and every message read ---------------------------------------------
def test_an_import_of_another_job_answers_exactly_as_an_unknown_id(api):
    project = Project(api, "import")
    owner, owner_token = new_app(api)
    colleague, colleague_token = new_app(api)  # on the owner's job: the job's partners share its work
    other, other_token = new_app(api)  # same data project, its own job and legal entity
    owner_job = project.job("usmf", owner, colleague, mode="package")
    other_job = project.job("demf", other, mode="package")

    execution_id = f"access-{uuid.uuid4()}"
    message_id = package_message_id(execution_id)  # the package import's message (package_api_service)
    before = execution_replies(api, other_token, execution_id, project.entity)
    before_messages = message_replies(api, other_token, message_id, other_job)
    assert_unknown_shape(before | before_messages)

    url = upload(api, owner_token, build_package([csv_entity(project.entity, "e.csv")], {"e.csv": BAD_ROWS}))
    body = {"packageUrl": url, "definitionGroupId": project.name, "executionId": execution_id}
    assert value(api, "ImportFromPackage", owner_token, body) == execution_id
    assert wait_status(api, owner_token, execution_id) == "PartiallySucceeded"

    assert execution_replies(api, other_token, execution_id, project.entity) == before
    assert message_replies(api, other_token, message_id, other_job) == before_messages
    # The other job's partner is refused the owner's job itself (PROTOCOL §8.3), as before it existed.
    resp = api.call("GET", f"/api/connector/jobstatus/{owner_job}", other_token, params={"jobId": message_id})
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "ApplicationNotAuthorized"

    keys = {"executionId": execution_id, "entityName": project.entity}
    for token in (owner_token, colleague_token, api.admin_token):
        assert value(api, "GetExecutionSummaryStatus", token, {"executionId": execution_id}) == (
            "PartiallySucceeded"
        )
        errors = json.loads(value(api, "GetExecutionErrors", token, {"executionId": execution_id}))
        assert any("not-a-number" in e for e in errors), errors
        assert value(api, "GenerateImportTargetErrorKeysFile", token, keys) is True
        rejected = requests.get(value(api, "GetImportTargetErrorKeysFileUrl", token, keys), timeout=30)
        assert rejected.status_code == 200 and b"A2" in rejected.content
        # An import has no package: a clear error, never a "" that clients poll forever (issue 12, class 5).
        resp = action(api, "GetExportedPackageUrl", token, {"executionId": execution_id})
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "NotAnExport", resp.text
        assert value(api, "GetExecutionSummaryPageUrl", token, {"executionId": execution_id}).startswith(
            api.base + "/api/manage/"
        )
        assert value(api, "GetMessageStatus", token, {"messageId": message_id}) == "ProcessedWithErrors"
        assert value(api, "GetExecutionIdByMessageId", token, {"_messageId": message_id}) == execution_id
    resp = api.call("GET", f"/api/connector/jobstatus/{owner_job}", owner_token, params={"jobId": message_id})
    assert resp.status_code == 200 and resp.json()["DataJobStatus"]["ExecutionIdentifier"] == execution_id


def test_an_enqueued_message_of_another_job_answers_exactly_as_an_unknown_id(api):
    project = Project(api, "import")
    owner, owner_token = new_app(api)
    other, other_token = new_app(api)
    owner_job = project.job("usmf", owner, processOnArrival=True)
    other_job = project.job("demf", other, processOnArrival=True)

    resp = api.enqueue(owner_job, owner, BAD_ROWS, entity=project.entity)
    assert resp.status_code == 200, resp.text
    message_id = json.loads(resp.text)
    assert api.wait_terminal(owner, message_id) == "ProcessedWithErrors"
    run_id = value(api, "GetExecutionIdByMessageId", owner_token, {"_messageId": message_id})
    assert run_id

    # Server-made IDs cannot be asked about before they exist: compare with an unknown ID put in its place.
    unknown = str(uuid.uuid4())
    refused = message_replies(api, other_token, message_id, other_job)
    assert refused == with_id(message_replies(api, other_token, unknown, other_job), unknown, message_id)
    unknown_run = str(uuid.uuid4())
    assert len(run_id) == len(unknown_run)
    refused = execution_replies(api, other_token, run_id, project.entity)
    expected = with_id(execution_replies(api, other_token, unknown_run, project.entity), unknown_run, run_id)
    assert_unknown_shape(expected)
    assert refused == expected

    for token in (owner_token, api.admin_token):
        assert value(api, "GetMessageStatus", token, {"messageId": message_id}) == "ProcessedWithErrors"
        assert value(api, "GetExecutionSummaryStatus", token, {"executionId": run_id}) == "PartiallySucceeded"


# Exports: legal entities ----------------------------------------------------------------------------
def test_a_partner_refused_a_legal_entity_cannot_fetch_another_partners_package_of_it(api):
    project = Project(api, "export")
    project.write_rows("usmf", ["U1", "U2"])
    project.write_rows("demf", ["D1"])
    owner, owner_token = new_app(api)
    refused, refused_token = new_app(api)  # exports demf only
    anywhere, anywhere_token = new_app(api)  # a job of every legal entity, but not the job that ran it
    project.job("usmf", owner)
    project.job("demf", refused)
    project.job(None, anywhere)

    body = {"definitionGroupId": project.name, "executionId": "", "legalEntityId": "usmf"}
    resp = action(api, "ExportToPackage", refused_token, body)
    # A legal entity the caller may not use is answered as one that does not exist (issue 13, item 5).
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "UnknownLegalEntity"

    execution_id = f"access-{uuid.uuid4()}"
    before = {
        t: execution_replies(api, t, execution_id, project.entity) for t in (refused_token, anywhere_token)
    }
    assert_unknown_shape(before[refused_token])
    export(api, owner_token, project.name, execution_id)

    for token, replies in before.items():
        assert execution_replies(api, token, execution_id, project.entity) == replies
    assert exported_codes(api, owner_token, execution_id) == {"U1", "U2"}
    assert exported_codes(api, api.admin_token, execution_id) == {"U1", "U2"}


def test_the_starter_keeps_its_execution_only_while_it_may_use_that_legal_entity(api):
    project = Project(api, "export")
    project.write_rows("usmf", ["U1"])
    starter, starter_token = new_app(api)
    partner, partner_token = new_app(api)
    first = project.job("usmf", starter)
    second = project.job("demf", partner)

    execution_id = f"access-{uuid.uuid4()}"
    before = {
        t: execution_replies(api, t, execution_id, project.entity) for t in (starter_token, partner_token)
    }
    export(api, starter_token, project.name, execution_id)
    assert exported_codes(api, starter_token, execution_id) == {"U1"}

    # Off the job that ran it and on no other: refused before its body is read, whatever the ID.
    project.update_job(first, authorizationPolicy=[])
    assert on_no_job(execution_replies(api, starter_token, execution_id, project.entity))
    # On a job of the project for another legal entity: still nothing.
    policy = [{"applicationId": a, "enabled": True} for a in (partner, starter)]
    project.update_job(second, authorizationPolicy=policy)
    assert execution_replies(api, starter_token, execution_id, project.entity) == before[starter_token]
    # That job now exports usmf: the starter may start the same export again, so it sees its own.
    project.update_job(second, company="usmf")
    assert exported_codes(api, starter_token, execution_id) == {"U1"}
    # The other partner of that job did not start it and is not on the job that ran it.
    assert execution_replies(api, partner_token, execution_id, project.entity) == before[partner_token]
    # A disabled policy entry grants nothing.
    project.update_job(second, authorizationPolicy=[{"applicationId": starter, "enabled": False}])
    assert on_no_job(execution_replies(api, starter_token, execution_id, project.entity))


# The connector download is the job's own --------------------------------------------------------------
def test_connector_download_of_another_jobs_message_answers_as_an_unknown_one(api):
    project = Project(api, "export")
    project.write_rows("usmf", ["U1"])
    owner, owner_token = new_app(api)
    other, other_token = new_app(api)
    owner_job = project.job("usmf", owner)
    other_job = project.job("demf", other)

    assert api.admin("POST", f"/api/manage/jobs/{owner_job}/run").status_code == 202
    deadline = time.monotonic() + 90
    while (resp := api.call("GET", f"/api/connector/dequeue/{owner_job}", owner_token)).status_code == 204:
        assert time.monotonic() < deadline, "the export never offered a package"
        time.sleep(0.25)
    assert resp.status_code == 200, resp.text
    correlation = resp.json()["CorrelationId"]

    def download(activity: str, token: str, message_id: str) -> requests.Response:
        path = f"/api/connector/download/{activity}"
        return api.call("GET", path, token, params={"correlation-id": message_id})

    unknown = str(uuid.uuid4())
    expected = reply(download(other_job, other_token, unknown))
    assert expected[0] == 404 and json.loads(expected[2])["error"]["code"] == "MessageNotFound"
    got = reply(download(other_job, other_token, correlation))
    assert got == (expected[0], expected[1], expected[2].replace(unknown.encode(), correlation.encode()))
    resp = download(owner_job, other_token, correlation)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "ApplicationNotAuthorized"
    resp = download(owner_job, owner_token, correlation)
    assert resp.status_code == 200 and resp.content.startswith(b"PK")
