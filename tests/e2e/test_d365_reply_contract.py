"""Issue 12, class 3: every reply shaped after a D365 contract carries a value of the contract's type in every
field, through the real local host, in every state we can reach (waiting, ended, failed, unknown).

D365 clients deserialize these replies into typed classes. RIS declares the jobstatus dates as
`System.DateTime`, the counts as `int` and the states as enums (microsoft/Recurring-Integrations-Scheduler,
Common/Contracts/DataJobStatus.cs, EntityExecutionStatus.cs, ContractEnums.cs), so a JSON null there throws,
and it reads every OData action's `value` with `jsonResponse["value"].ToString()` (Common/Helpers/
HttpClientHelper.cs), so a null `value` becomes "" and an URL action's answer `new Uri("")` fails. D365 has
no null for these: X++ strings are "" and an empty utcdatetime is 1900-01-01T00:00:00Z.

The only nulls a contract allows are the dequeue reply's FileDownLoadErrorMessage and, on a first
delivery, LastDequeueDateTime: D365 itself sends them so (PROTOCOL §3), and clients declare them
nullable (Microsoft's sample `dequeueResponse` types both as `object`).
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import pytest
import requests

from shared.services.package_api_service import package_message_id
from tests.support.d365_contract import ACTIONS, DEQUEUE, JOBSTATUS, violations
from tests.support.packages import build_package, csv_entity, simple_entity

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

ACTION = "/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities."
TERMINAL = {"Succeeded", "PartiallySucceeded", "Failed", "Canceled"}
BAD_ROWS = b"CODE,NAME,AMOUNT\r\nC1,Good,1\r\nC2,Bad,not-a-number\r\n"


def test_the_walker_finds_nulls_and_wrong_types():
    """The walker itself can fail: the issue's example (dates null while a message waits) is caught."""
    waiting = {
        "DataJobStatus": {
            "DataProject": "P",
            "DataJobIdentifier": "m",
            "ExternalIdentifier": None,
            "ExecutionIdentifier": "",
            "DataJobStartedDateTime": None,
            "DataJobCompletedDateTime": None,
            "DataJobState": "Preprocessing",
        },
        "ExecutionLog": "",
        "ExecutionDetail": [{"EntityName": "E", "StagingRecords": "3"}],
    }
    found = violations(waiting, JOBSTATUS)
    for fragment in (
        "$.DataJobStatus.ExternalIdentifier: null",
        "$.DataJobStatus.DataJobStartedDateTime: null where the contract has a datetime",
        "$.DataJobStatus.DataJobCompletedDateTime: null",
        "$.DataJobStatus.DataJobState: 'Preprocessing' is not one of the enum's names",
        "$.ExecutionDetail[0].Company: missing",
        "$.ExecutionDetail[0].StagingRecords: '3' is not a int",
    ):
        assert any(f.startswith(fragment) for f in found), (fragment, found)
    assert violations({"FileDownLoadErrorMessage": None}, {"FileDownLoadErrorMessage": "string?"}) == []


# Collecting every reply -----------------------------------------------------------------------------
class Replies:
    """The D365-shaped replies seen, each with the contract it must meet."""

    def __init__(self, api) -> None:
        self.api = api
        self.seen: list[tuple[str, object, object]] = []

    def add(self, what: str, resp: requests.Response, contract) -> object:
        assert resp.status_code == 200, f"{what}: {resp.status_code} {resp.text}"
        body = resp.json()
        self.seen.append((what, body, contract))
        return body

    def action(self, name: str, token: str, body: dict, what: str = "") -> object:
        resp = self.api.call(
            "POST", ACTION + name, token, data=json.dumps(body), headers={"Content-Type": "application/json"}
        )
        return self.add(f"{name} {what}".strip(), resp, ACTIONS[name])["value"]

    def jobstatus(self, activity: str, token: str, message_id: str, what: str) -> dict:
        resp = self.api.call(
            "GET", f"/api/connector/jobstatus/{activity}", token, params={"jobId": message_id}
        )
        return self.add(f"jobstatus {what}", resp, JOBSTATUS)

    def message_replies(self, activity: str, token: str, message_id: str, what: str) -> dict:
        self.action("GetMessageStatus", token, {"messageId": message_id}, what)
        self.action("GetExecutionIdByMessageId", token, {"_messageId": message_id}, what)
        return self.jobstatus(activity, token, message_id, what)

    def execution_replies(self, token: str, execution_id: str, entity: str, what: str) -> None:
        for name in ("GetExecutionSummaryStatus", "GetExecutionErrors", "GetExecutionSummaryPageUrl"):
            self.action(name, token, {"executionId": execution_id}, what)
        keys = {"executionId": execution_id, "entityName": entity}
        self.action("GenerateImportTargetErrorKeysFile", token, keys, what)
        self.action("GetImportTargetErrorKeysFileUrl", token, keys, what)

    def wait(self, token: str, execution_id: str) -> str:
        deadline = time.monotonic() + 90
        while (
            status := self.action("GetExecutionSummaryStatus", token, {"executionId": execution_id})
        ) not in (TERMINAL):
            assert time.monotonic() < deadline, status
            time.sleep(0.25)
        return status


def _write_rows(entity_name: str, codes: list[str]) -> None:
    from shared.services.registry import config_service, entity_repo

    entity = config_service().get_entity(entity_name)
    at = datetime.now(UTC)
    rows = [entity_repo().encode(entity, {"CODE": c, "NAME": c, "AMOUNT": None}, "usmf", at) for c in codes]
    assert not entity_repo().upsert_rows(entity, rows).failed


def test_every_d365_shaped_reply_has_no_null_where_the_contract_has_a_value_type(api):
    replies = Replies(api)

    # Connector import: a message that waits, then ends with rejected rows; jobstatus in both states.
    activity, app, entity = api.import_job(simple_entity(f"Contract {uuid.uuid4().hex[:6]}"))
    token = api.make_token(app)
    resp = api.enqueue(activity, app, BAD_ROWS, entity=entity)  # no external identifier: we have none
    assert resp.status_code == 200 and isinstance(resp.json(), str)
    message_id = resp.json()
    waiting = replies.message_replies(activity, token, message_id, "(waiting)")
    assert waiting["DataJobStatus"]["DataJobState"] == "Enqueued"
    assert waiting["DataJobStatus"]["DataJobStartedDateTime"] == "1900-01-01T00:00:00Z"
    assert waiting["DataJobStatus"]["DataJobCompletedDateTime"] == "1900-01-01T00:00:00Z"
    assert (
        waiting["DataJobStatus"]["ExternalIdentifier"] == ""
        and waiting["DataJobStatus"]["ExecutionIdentifier"] == ""
    )
    assert api.admin("POST", f"/api/manage/jobs/{activity}/run").status_code == 202
    assert api.wait_terminal(app, message_id) == "ProcessedWithErrors"
    ended = replies.message_replies(activity, token, message_id, "(ended)")
    assert ended["DataJobStatus"]["DataJobStartedDateTime"] != "1900-01-01T00:00:00Z"
    assert ended["ExecutionDetail"][0]["StagingErrorCount"] == 1
    run_id = replies.action("GetExecutionIdByMessageId", token, {"_messageId": message_id})
    replies.execution_replies(token, run_id, entity, "(recurring import run)")

    # Package API import: upload, import, every execution action; then one that fails (not a zip).
    pkg_activity, pkg_app, pkg_entity = api.import_job(simple_entity(), mode="package")
    project = api.ok("GET", f"/api/manage/jobs/{pkg_activity}")["project"]
    pkg_token = api.make_token(pkg_app)
    replies.action(
        "GetExecutionSummaryStatus", pkg_token, {"executionId": f"unknown-{uuid.uuid4()}"}, "(unknown)"
    )
    for data, expected in (
        (build_package([csv_entity(pkg_entity, "e.csv")], {"e.csv": BAD_ROWS}), "PartiallySucceeded"),
        (b"CODE,NAME\r\nnot,a package\r\n", "Failed"),
    ):
        written = json.loads(replies.action("GetAzureWriteUrl", pkg_token, {"uniqueFileName": "p.zip"}))
        put = requests.put(written["BlobUrl"], data=data, headers={"x-ms-blob-type": "BlockBlob"}, timeout=60)
        assert put.status_code == 201
        execution_id = f"contract-{uuid.uuid4()}"
        body = {"packageUrl": written["BlobUrl"], "definitionGroupId": project, "executionId": execution_id}
        replies.action("ImportFromPackage", pkg_token, body)
        replies.execution_replies(pkg_token, execution_id, pkg_entity, "(package import, early)")
        assert replies.wait(pkg_token, execution_id) == expected
        replies.execution_replies(pkg_token, execution_id, pkg_entity, f"(package import, {expected})")
        replies.message_replies(pkg_activity, pkg_token, package_message_id(execution_id), f"({expected})")

    # Package API export: early (maybe not ready: "") and ended (a URL).
    exp_entity = api.unique("Ent")
    api.ok(
        "PUT", f"/api/manage/entities/{exp_entity}", json=simple_entity(f"Contract export {exp_entity[3:]}")
    )
    exp_project = api.unique("Exp")
    api.ok(
        "PUT",
        f"/api/manage/projects/{exp_project}",
        json={"operation": "export", "entities": [{"entity": exp_entity, "format": "CSV"}]},
    )
    exp_app = str(uuid.uuid4())
    exp_activity = api.ok(
        "POST",
        "/api/manage/jobs",
        json={
            "name": exp_project,
            "project": exp_project,
            "company": "usmf",
            "authorizationPolicy": [{"applicationId": exp_app, "enabled": True}],
        },
    )["activityId"]
    exp_token = api.make_token(exp_app)
    _write_rows(exp_entity, ["X1", "X2"])
    execution_id = f"contract-export-{uuid.uuid4()}"
    body = {"definitionGroupId": exp_project, "executionId": execution_id, "legalEntityId": "usmf"}
    replies.action("ExportToPackage", exp_token, body)
    replies.action("GetExportedPackageUrl", exp_token, {"executionId": execution_id}, "(early)")
    assert replies.wait(exp_token, execution_id) == "Succeeded"
    url = replies.action("GetExportedPackageUrl", exp_token, {"executionId": execution_id}, "(ended)")
    assert url.startswith("http")
    replies.execution_replies(exp_token, execution_id, exp_entity, "(package export)")

    # Connector export: dequeue (a first delivery), the message replies of an export message, ack.
    assert api.admin("POST", f"/api/manage/jobs/{exp_activity}/run").status_code == 202
    deadline = time.monotonic() + 90
    while (resp := api.call("GET", f"/api/connector/dequeue/{exp_activity}", exp_token)).status_code == 204:
        assert time.monotonic() < deadline, "the export never offered a package"
        time.sleep(0.25)
    dequeued = replies.add("dequeue", resp, DEQUEUE)
    assert list(dequeued) == list(DEQUEUE)  # all six, exactly this casing and order
    replies.message_replies(exp_activity, exp_token, dequeued["CorrelationId"], "(export message)")
    ack = api.call(
        "POST",
        f"/api/connector/ack/{exp_activity}",
        exp_token,
        data=json.dumps(dequeued),
        headers={"Content-Type": "application/json"},
    )
    assert ack.status_code == 200

    problems = [f"{what}: {p}" for what, body, contract in replies.seen for p in violations(body, contract)]
    assert problems == []
    walked = {what.split(" ")[0] for what, _, _ in replies.seen}
    assert walked >= set(ACTIONS) | {"jobstatus", "dequeue"}, walked  # every contract was walked
