"""Issue 12, class 5, over the local host: an ended execution never answers "" from GetExportedPackageUrl.

Clients poll while the answer is "" (RIS: up to 100 times after GetExecutionSummaryStatus said Succeeded,
Job.Export/Export.cs), so "" must mean "not ready yet" and nothing else. A package-API export always
produces a package, also of zero rows and also on a job that prevents uploads of zero records (that option
governs the recurring dequeue queue only); an execution that will never have a package answers an error.
"""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from datetime import UTC, datetime

import pytest
import requests

from tests.support.packages import simple_entity

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

ACTION = "/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities."
TERMINAL = {"Succeeded", "PartiallySucceeded", "Failed", "Canceled"}


def action(api, name: str, token: str, body: dict) -> requests.Response:
    return api.call(
        "POST", ACTION + name, token, data=json.dumps(body), headers={"Content-Type": "application/json"}
    )


def value(api, name: str, token: str, body: dict):
    resp = action(api, name, token, body)
    assert resp.status_code == 200, f"{name}: {resp.status_code} {resp.text}"
    return resp.json()["value"]


class ExportJob:
    def __init__(self, api, *, fmt: str = "CSV", **job) -> None:
        self.api = api
        self.entity = api.unique("Ent")
        self.label = f"Zero rows {self.entity[3:]}"
        api.ok("PUT", f"/api/manage/entities/{self.entity}", json=simple_entity(self.label))
        self.project = api.unique("Exp")
        api.ok(
            "PUT",
            f"/api/manage/projects/{self.project}",
            json={"operation": "export", "entities": [{"entity": self.entity, "format": fmt}]},
        )
        self.app = str(uuid.uuid4())
        self.activity = api.ok(
            "POST",
            "/api/manage/jobs",
            json={
                "name": self.project,
                "project": self.project,
                "company": "usmf",
                "authorizationPolicy": [{"applicationId": self.app, "enabled": True}],
                **job,
            },
        )["activityId"]
        self.token = api.make_token(self.app)

    def write(self, rows: list[dict]) -> None:
        from shared.services.registry import config_service, entity_repo

        entity = config_service().get_entity(self.entity)
        at = datetime.now(UTC)
        encoded = [entity_repo().encode(entity, r, "usmf", at) for r in rows]
        assert not entity_repo().upsert_rows(entity, encoded).failed

    def export(self) -> tuple[str, str]:
        execution_id = f"urls-{uuid.uuid4()}"
        body = {"definitionGroupId": self.project, "executionId": execution_id, "legalEntityId": "usmf"}
        assert value(self.api, "ExportToPackage", self.token, body) == execution_id
        deadline = time.monotonic() + 90
        while (status := self.status(execution_id)) not in TERMINAL:
            assert time.monotonic() < deadline, status
            time.sleep(0.25)
        return execution_id, status

    def status(self, execution_id: str) -> str:
        return value(self.api, "GetExecutionSummaryStatus", self.token, {"executionId": execution_id})

    def package_url(self, execution_id: str) -> requests.Response:
        return action(self.api, "GetExportedPackageUrl", self.token, {"executionId": execution_id})


def test_a_package_api_export_of_zero_rows_is_ready_despite_prevent_upload(api):
    """The issue's example: with preventUploadWhenZeroRecords, the URL stayed "" forever."""
    ex = ExportJob(api, preventUploadWhenZeroRecords=True)
    execution_id, status = ex.export()
    assert status == "Succeeded"
    resp = ex.package_url(execution_id)
    assert resp.status_code == 200, resp.text
    url = resp.json()["value"]
    assert url.startswith("http"), url
    package = requests.get(url, timeout=60)  # no token (PROTOCOL §7)
    assert package.status_code == 200
    with zipfile.ZipFile(io.BytesIO(package.content)) as zf:
        assert set(zf.namelist()) == {"Manifest.xml", "PackageHeader.xml", f"{ex.label}.csv"}
        assert zf.read(f"{ex.label}.csv") == b"CODE,NAME,AMOUNT\r\n"  # an empty entity file: its header only

    # The option still governs the recurring queue: a run of zero rows offers nothing to dequeue.
    assert api.admin("POST", f"/api/manage/jobs/{ex.activity}/run").status_code == 202
    deadline = time.monotonic() + 90
    while True:
        runs = api.ok("GET", f"/api/manage/jobs/{ex.activity}/runs")["value"]
        manual = [r for r in runs if r["trigger"] == "manual"]
        if manual and manual[0]["status"] in ("Ended", "Error"):
            break
        assert time.monotonic() < deadline, runs
        time.sleep(0.25)
    assert manual[0]["status"] == "Ended" and manual[0]["fileUploaded"] is False
    assert api.call("GET", f"/api/connector/dequeue/{ex.activity}", ex.token).status_code == 204


def test_a_failed_export_answers_a_clear_error_not_an_empty_url(api):
    fmt = api.unique("Ascii")
    api.ok("PUT", f"/api/manage/formats/{fmt}", json={"kind": "csv", "encoding": "ascii"})
    ex = ExportJob(api, fmt=fmt)
    ex.write([{"CODE": "C1", "NAME": "Café", "AMOUNT": None}])  # not encodable in ASCII: the export fails
    execution_id, status = ex.export()
    assert status == "Failed"
    resp = ex.package_url(execution_id)
    assert resp.status_code == 409, resp.text
    error = resp.json()["error"]
    assert error["code"] == "ExecutionFailed"
    assert "failed, so it has no package" in error["message"] and "ascii" in error["message"], error


def test_an_import_execution_has_no_exported_package(api):
    from tests.support.packages import build_package, csv_entity

    activity, app, entity = api.import_job(simple_entity(), mode="package")
    project = api.ok("GET", f"/api/manage/jobs/{activity}")["project"]
    token = api.make_token(app)
    written = json.loads(value(api, "GetAzureWriteUrl", token, {"uniqueFileName": "p.zip"}))
    data = build_package([csv_entity(entity, "e.csv")], {"e.csv": b"CODE,NAME,AMOUNT\r\nI1,x,1\r\n"})
    assert requests.put(written["BlobUrl"], data=data, headers={"x-ms-blob-type": "BlockBlob"}, timeout=60).ok
    execution_id = f"urls-import-{uuid.uuid4()}"
    body = {"packageUrl": written["BlobUrl"], "definitionGroupId": project, "executionId": execution_id}
    assert value(api, "ImportFromPackage", token, body) == execution_id
    # At once, while it may still run, and after it ended: the same clear error, never "".
    for _ in range(2):
        resp = action(api, "GetExportedPackageUrl", token, {"executionId": execution_id})
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "NotAnExport", resp.text
        deadline = time.monotonic() + 90
        while value(api, "GetExecutionSummaryStatus", token, {"executionId": execution_id}) not in TERMINAL:
            assert time.monotonic() < deadline
            time.sleep(0.25)


def test_a_package_removed_by_retention_answers_gone(api):
    ex = ExportJob(api)
    ex.write([{"CODE": "R1", "NAME": "Retained", "AMOUNT": None}])
    execution_id, status = ex.export()
    assert status == "Succeeded"
    assert ex.package_url(execution_id).status_code == 200
    from shared.storage import names
    from shared.storage.factory import get_clients

    run = api.ok("GET", f"/api/manage/jobs/{ex.activity}/runs")["value"][0]
    assert run["executionId"] == execution_id
    get_clients().container(names.CONTAINER_OUTBOUND).delete_blob(f"{ex.activity}/{execution_id}.zip")
    resp = ex.package_url(execution_id)
    assert resp.status_code == 410 and resp.json()["error"]["code"] == "PackageNoLongerAvailable", resp.text
