"""The package REST API end to end (PROTOCOL §6-§8), driven the way PSI drives D365.

GetAzureWriteUrl → PUT the package to the SAS URL without a token → ImportFromPackage → poll
GetExecutionSummaryStatus → read the rows back; errors and error-key files; ExportToPackage → poll →
GetExportedPackageUrl fetched without a token; authorization and upload-URL checks.
"""

from __future__ import annotations

import csv
import io
import json
import time
import urllib.parse
import uuid
import zipfile
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import requests

from shared.formats.package_manifest import Manifest, ManifestEntity, PackageHeader
from shared.formats.package_writer import PackageWriter
from tests.support.packages import simple_entity

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

ACTION = "/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities."
TERMINAL = {"Succeeded", "PartiallySucceeded", "Failed", "Canceled"}


# Helpers -------------------------------------------------------------------------------------------
def build_package(files: dict[str, bytes], project: str = "PackageApiTest") -> bytes:
    """A D365 data package: one CSV file per entity (entity name -> CSV), Manifest.xml, PackageHeader.xml."""
    buf = io.BytesIO()
    entities = []
    with PackageWriter(buf) as writer:
        for n, (entity, data) in enumerate(files.items(), start=1):
            file_name = f"{entity}.csv"
            writer.add_entity_file(file_name, data)
            entities.append(
                ManifestEntity(
                    entity_name=entity, input_file_path=file_name, source_format="CSV", sequence_in_level=n
                )
            )
        writer.close(Manifest(project, entities=entities), PackageHeader(description=project))
    return buf.getvalue()


def action(api, name: str, token: str | None, body) -> requests.Response:
    data = body if isinstance(body, str) else json.dumps(body)
    return api.call("POST", ACTION + name, token, data=data, headers={"Content-Type": "application/json"})


def value(api, name: str, token: str, body):
    resp = action(api, name, token, body)
    assert resp.status_code == 200, f"{name}: {resp.status_code} {resp.text}"
    reply = resp.json()
    assert set(reply) == {"@odata.context", "value"}, reply  # the flat envelope
    return reply["value"]


def upload(api, token: str, data: bytes, file_name: str = "package.zip") -> str:
    """GetAzureWriteUrl, then PUT the bytes with no Authorization header; the BlobUrl."""
    raw = value(api, "GetAzureWriteUrl", token, {"uniqueFileName": file_name})
    assert isinstance(raw, str)
    written = json.loads(raw)
    assert set(written) == {"BlobId", "BlobUrl"}
    blob_id = written["BlobId"]
    assert blob_id.startswith("{") and blob_id.endswith("}") and uuid.UUID(blob_id)
    url = written["BlobUrl"]
    assert f"/uploads/{uuid.UUID(blob_id)}/" in urllib.parse.urlsplit(url).path
    resp = requests.put(url, data=data, headers={"x-ms-blob-type": "BlockBlob"}, timeout=60)
    assert resp.status_code == 201, resp.text
    return url


def wait_status(api, token: str, execution_id: str, timeout: float = 90.0) -> str:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = value(api, "GetExecutionSummaryStatus", token, {"executionId": execution_id})
        assert status in {"NotRun", "Executing", *TERMINAL}, status
        if status in TERMINAL:
            return status
        time.sleep(0.25)
    raise AssertionError(f"execution {execution_id} still {status} after {timeout}s")


def package_import_job(api, *, label: str | None = None) -> tuple[str, str, str, str]:
    """An entity, an import project over it and a package job for a new app: (activity, app, entity, project)."""
    activity, app, entity = api.import_job(simple_entity(label), mode="package")
    project = api.ok("GET", f"/api/manage/jobs/{activity}")["project"]
    return activity, app, entity, project


class ExportJob:
    """An entity with rows, an export project over it and a job authorized for a new application."""

    def __init__(self, api, rows: list[dict]) -> None:
        self.entity = api.unique("Ent")
        self.label = f"Package api {self.entity[3:]}"
        api.ok("PUT", f"/api/manage/entities/{self.entity}", json=simple_entity(self.label))
        self.project = api.unique("Exp")
        api.ok(
            "PUT",
            f"/api/manage/projects/{self.project}",
            json={"operation": "export", "entities": [{"entity": self.entity, "format": "CSV"}]},
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
            },
        )["activityId"]
        self.token = api.make_token(self.app)
        from shared.services.registry import config_service, entity_repo

        entity = config_service().get_entity(self.entity)
        at = datetime.now(UTC)
        result = entity_repo().upsert_rows(
            entity, [entity_repo().encode(entity, r, "usmf", at) for r in rows]
        )
        assert not result.failed


CSV_OK = b"CODE,NAME,AMOUNT\r\nA1,Alpha,10.50\r\nB2,Beta,20\r\n"


# Import ------------------------------------------------------------------------------------------
def test_upload_import_poll_and_read_records(api):
    activity, app, entity, project = package_import_job(api)
    token = api.make_token(app)
    url = upload(api, token, build_package({entity: CSV_OK}), "Customer groups 2024-06-01.zip")
    # The write URL writes; it does not read.
    assert requests.get(url, timeout=30).status_code == 403

    execution_id = f"PSI-{uuid.uuid4()}"
    # PSI's single-quoted body.
    body = (
        f"{{'packageUrl':'{url}','definitionGroupId':'{project}','executionId':'{execution_id}',"
        "'execute':True,'overwrite':True,'legalEntityId':'USMF'}"
    )
    assert value(api, "ImportFromPackage", token, body) == execution_id
    assert wait_status(api, token, execution_id) == "Succeeded"

    records = {r["CODE"]: r for r in api.records(entity, company="usmf")}
    assert sorted(records) == ["A1", "B2"]
    assert records["A1"]["NAME"] == "Alpha" and Decimal(records["A1"]["AMOUNT"]) == Decimal("10.50")

    assert json.loads(value(api, "GetExecutionErrors", token, {"executionId": execution_id})) == []
    keys = {"executionId": execution_id, "entityName": entity}
    assert value(api, "GenerateImportTargetErrorKeysFile", token, keys) is False
    assert value(api, "GetImportTargetErrorKeysFileUrl", token, keys) == ""
    # An import has no exported package: a clear error, never the "" of "not ready yet" (issue 12, class 5).
    resp = action(api, "GetExportedPackageUrl", token, {"executionId": execution_id})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "NotAnExport", resp.text

    # The execution is a package message of the job, run under the client's execution ID.
    messages = api.ok("GET", f"/api/manage/jobs/{activity}/messages")["value"]
    assert len(messages) == 1
    message = messages[0]
    assert message["executionId"] == execution_id and message["status"] == "Processed"
    assert message["company"] == "usmf" and message["externalIdentifier"] == "Customer_groups_2024-06-01.zip"
    runs = api.ok("GET", f"/api/manage/jobs/{activity}/runs")["value"]
    assert [(r["executionId"], r["trigger"]) for r in runs] == [(execution_id, "package-api")]
    page = value(api, "GetExecutionSummaryPageUrl", token, {"executionId": execution_id})
    assert page == f"{api.base}/api/manage/messages/{message['messageId']}"

    # The same call again answers the same execution and imports nothing twice.
    assert value(api, "ImportFromPackage", token, body) == execution_id
    assert len(api.ok("GET", f"/api/manage/jobs/{activity}/messages")["value"]) == 1
    # A quoted, braced or re-cased ID finds the execution too.
    assert value(api, "GetExecutionSummaryStatus", token, f"{{'executionId':'\"{execution_id}\"'}}") == (
        "Succeeded"
    )


def test_generated_and_guid_execution_ids(api):
    _, app, entity, project = package_import_job(api)
    token = api.make_token(app)
    url = upload(api, token, build_package({entity: CSV_OK}))
    body = {"packageUrl": url, "definitionGroupId": project, "executionId": "", "legalEntityId": "usmf"}
    generated = value(api, "ImportFromPackage", token, body)
    assert str(uuid.UUID(generated)) == generated
    assert wait_status(api, token, generated) == "Succeeded"
    braced = "{" + generated.upper() + "}"
    assert value(api, "GetExecutionSummaryStatus", token, {"executionId": braced}) == "Succeeded"


def test_bad_rows_partially_succeed_with_errors_and_error_keys_files(api):
    activity, app, first, project = package_import_job(api)
    second = api.unique("Ent")
    api.ok("PUT", f"/api/manage/entities/{second}", json=simple_entity())
    token = api.make_token(app)
    package = build_package(
        {
            first: b"CODE,NAME,AMOUNT\r\nA1,Alpha,10\r\nA2,Bad,not-a-number\r\nA3,Gamma,3\r\n",
            second: b"CODE,NAME,AMOUNT\r\nB1,Beta,1\r\nB2,Worse,x\r\n",
        }
    )
    url = upload(api, token, package)
    execution_id = f"bad-rows-{uuid.uuid4()}"
    body = {"packageUrl": url, "definitionGroupId": project, "executionId": execution_id, "legalEntityId": ""}
    assert value(api, "ImportFromPackage", token, body) == execution_id
    assert wait_status(api, token, execution_id) == "PartiallySucceeded"
    assert {r["CODE"] for r in api.records(first, company="usmf")} == {"A1", "A3"}

    errors = json.loads(value(api, "GetExecutionErrors", token, {"executionId": execution_id}))
    assert isinstance(errors, list) and len(errors) == 2
    assert any(first in e and "line 3" in e and "not-a-number" in e for e in errors), errors
    assert any(second in e for e in errors), errors

    for entity, code in ((first, "A2"), (second, "B2")):
        keys = {"executionId": execution_id, "entityName": entity}
        assert value(api, "GenerateImportTargetErrorKeysFile", token, keys) is True
        file_url = value(api, "GetImportTargetErrorKeysFileUrl", token, keys)
        assert file_url.startswith("http")
        resp = requests.get(file_url, timeout=30)  # no Authorization header
        assert resp.status_code == 200, resp.text
        rows = list(csv.reader(io.StringIO(resp.content.decode("utf-8"))))
        assert rows[0] == ["Entity", "Line", "Reason", "Values"]
        assert [(r[0], json.loads(r[3])["CODE"]) for r in rows[1:]] == [(entity, code)]  # that entity only
        assert (
            requests.put(file_url, data=b"x", headers={"x-ms-blob-type": "BlockBlob"}, timeout=30).status_code
            == 403
        )
    other = {"executionId": execution_id, "entityName": "NoSuchEntity"}
    assert value(api, "GenerateImportTargetErrorKeysFile", token, other) is False
    assert value(api, "GetImportTargetErrorKeysFileUrl", token, other) == ""


def test_unreadable_package_fails(api):
    _, app, _, project = package_import_job(api)
    token = api.make_token(app)
    url = upload(api, token, b"this is not a zip")
    execution_id = f"broken-{uuid.uuid4()}"
    body = {"packageUrl": url, "definitionGroupId": project, "executionId": execution_id}
    assert value(api, "ImportFromPackage", token, body) == execution_id
    assert wait_status(api, token, execution_id) == "Failed"
    errors = json.loads(value(api, "GetExecutionErrors", token, {"executionId": execution_id}))
    assert errors and all(isinstance(e, str) for e in errors)


# Export ------------------------------------------------------------------------------------------
def test_export_to_package_and_download_without_token(api):
    ex = ExportJob(
        api,
        [
            {"CODE": "E1", "NAME": "Export one", "AMOUNT": Decimal("1.25")},
            {"CODE": "E2", "NAME": "Export, two", "AMOUNT": None},
        ],
    )
    execution_id = f"export-{uuid.uuid4()}"
    body = (
        f"{{'definitionGroupId':'{ex.project}','packageName':'my export','executionId':'{execution_id}',"
        "'reExecute':False,'legalEntityId':'USMF'}"
    )
    assert value(api, "ExportToPackage", ex.token, body) == execution_id
    assert wait_status(api, ex.token, execution_id) == "Succeeded"

    url = value(api, "GetExportedPackageUrl", ex.token, {"executionId": execution_id})
    assert url.startswith("http")
    resp = requests.get(url, timeout=60)  # no Authorization header
    assert resp.status_code == 200, resp.text
    assert "my_export.zip" in resp.headers.get("Content-Disposition", "")
    with zipfile.ZipFile(io.BytesIO(resp.content)) as zf:
        names = set(zf.namelist())
        assert names == {"Manifest.xml", "PackageHeader.xml", f"{ex.label}.csv"}
        data = zf.read(f"{ex.label}.csv")
    assert data == b'CODE,NAME,AMOUNT\r\nE1,Export one,1.25\r\nE2,"Export, two",\r\n'
    # The read URL reads; it does not write.
    assert (
        requests.put(url, data=b"x", headers={"x-ms-blob-type": "BlockBlob"}, timeout=30).status_code == 403
    )

    # No outbound message is offered for a package API export; the run carries the execution ID.
    assert api.ok("GET", f"/api/manage/jobs/{ex.activity}/messages")["value"] == []
    runs = api.ok("GET", f"/api/manage/jobs/{ex.activity}/runs")["value"]
    assert [(r["executionId"], r["trigger"], r["status"]) for r in runs] == [
        (execution_id, "package-api", "Ended")
    ]
    assert json.loads(value(api, "GetExecutionErrors", ex.token, {"executionId": execution_id})) == []
    page = value(api, "GetExecutionSummaryPageUrl", ex.token, {"executionId": execution_id})
    assert page == f"{api.base}/api/manage/jobs/{ex.activity}/runs"
    # A retried call is the same execution, not a second run.
    assert value(api, "ExportToPackage", ex.token, body) == execution_id
    assert len(api.ok("GET", f"/api/manage/jobs/{ex.activity}/runs")["value"]) == 1


def test_export_for_another_legal_entity_is_refused(api):
    ex = ExportJob(api, [])
    body = {"definitionGroupId": ex.project, "legalEntityId": "demf", "executionId": ""}
    resp = action(api, "ExportToPackage", ex.token, body)
    # A legal entity the caller may not use is answered as one that does not exist (issue 13, item 5).
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "UnknownLegalEntity"
    assert resp.json()["error"]["message"].endswith("may use are: usmf")


# Authorization and validation ---------------------------------------------------------------------
def test_authorization(api):
    _, app, entity, project = package_import_job(api)
    _, other_app, _, other_project = package_import_job(api)
    token, other_token = api.make_token(app), api.make_token(other_app)
    stranger = api.make_token(str(uuid.uuid4()))

    assert action(api, "GetAzureWriteUrl", None, {"uniqueFileName": "x.zip"}).status_code == 401
    resp = action(api, "GetAzureWriteUrl", stranger, {"uniqueFileName": "x.zip"})
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "ApplicationNotAuthorized"

    url = upload(api, token, build_package({entity: CSV_OK}))
    # Not on a job of the other project: 403. (A project that does not exist is a new definition group, made
    # from the package as D365 does, for applications app_access allows: tests/e2e/test_definition_groups.py.)
    body = {"packageUrl": url, "definitionGroupId": other_project, "executionId": ""}
    resp = action(api, "ImportFromPackage", token, body)
    assert resp.status_code == 403, resp.text
    resp = action(api, "ImportFromPackage", token, {"packageUrl": url, "definitionGroupId": "bad/name"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "InvalidDefinitionGroupId", resp.text
    ex = ExportJob(api, [])
    resp = action(api, "ExportToPackage", token, {"definitionGroupId": ex.project})
    assert resp.status_code == 403, resp.text

    # An execution of one project is not another project's application's to see: it answers as an
    # unknown ID would (test_execution_access.py checks every action byte for byte).
    execution_id = f"auth-{uuid.uuid4()}"
    body = {"packageUrl": url, "definitionGroupId": project, "executionId": execution_id}
    assert value(api, "ImportFromPackage", token, body) == execution_id
    assert value(api, "GetExecutionSummaryStatus", other_token, {"executionId": execution_id}) == "Unknown"
    for name in ("GetExecutionErrors", "GetExecutionSummaryPageUrl"):
        resp = action(api, name, other_token, {"executionId": execution_id})
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "ExecutionNotFound", (
            name,
            resp.text,
        )
    # The admin sees everything, and may import into any project with an enabled import job.
    assert value(api, "GetExecutionSummaryStatus", api.admin_token, {"executionId": execution_id}) in {
        "NotRun",
        "Executing",
        "Succeeded",
    }
    assert wait_status(api, token, execution_id) == "Succeeded"
    admin_exec = value(
        api,
        "ImportFromPackage",
        api.admin_token,
        {"packageUrl": url, "definitionGroupId": other_project, "executionId": ""},
    )
    assert wait_status(api, other_token, admin_exec) == "Succeeded"
    resp = action(
        api, "ImportFromPackage", api.admin_token, {"packageUrl": url, "definitionGroupId": "No such"}
    )
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "InvalidDefinitionGroupId"

    # The wrong kind of project.
    resp = action(api, "ImportFromPackage", ex.token, {"packageUrl": url, "definitionGroupId": ex.project})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "WrongProjectOperation"


def test_only_the_application_that_asked_for_the_upload_url_imports_it(api):
    app, partner = str(uuid.uuid4()), str(uuid.uuid4())
    policy = [{"applicationId": a, "enabled": True} for a in (app, partner)]
    activity, _, entity = api.import_job(simple_entity(), mode="package", authorizationPolicy=policy)
    project = api.ok("GET", f"/api/manage/jobs/{activity}")["project"]
    token, partner_token = api.make_token(app), api.make_token(partner)

    url = upload(api, token, build_package({entity: CSV_OK}))
    # Both applications are on the project's job, but the upload is the requester's.
    body = {"packageUrl": url, "definitionGroupId": project, "executionId": ""}
    resp = action(api, "ImportFromPackage", partner_token, body)
    assert resp.status_code == 403, resp.text
    assert resp.json()["error"]["code"] == "UploadNotYours"
    assert partner in resp.json()["error"]["message"]
    assert wait_status(api, token, value(api, "ImportFromPackage", token, body)) == "Succeeded"
    # An upload URL that GetAzureWriteUrl never handed out, in the right shape: no requester on record.
    forged = url.replace(url.split("/uploads/")[1].split("/")[0], str(uuid.uuid4()))
    resp = action(api, "ImportFromPackage", token, {**body, "packageUrl": forged})
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "UploadNotYours", resp.text


def test_package_url_must_be_one_of_our_uploads(api):
    _, app, entity, project = package_import_job(api)
    token = api.make_token(app)
    url = upload(api, token, build_package({entity: CSV_OK}))
    parts = urllib.parse.urlsplit(url)
    blob_path = parts.path
    # Handed out, but nothing was PUT there.
    never_uploaded = json.loads(value(api, "GetAzureWriteUrl", token, {"uniqueFileName": "p.zip"}))["BlobUrl"]
    cases = {
        "https://evil.example.com" + blob_path + "?" + parts.query: "InvalidPackageUrl",
        "http://169.254.169.254/metadata/instance": "InvalidPackageUrl",
        urllib.parse.urlunsplit(
            parts._replace(path=blob_path.replace("/uploads/", "/inbound/"))
        ): "InvalidPackageUrl",
        urllib.parse.urlunsplit(
            parts._replace(path=blob_path.replace("/uploads/", "/uploads/../outbound/"))
        ): ("InvalidPackageUrl"),
        "file:///etc/passwd": "InvalidPackageUrl",
        urllib.parse.urlunsplit(
            parts._replace(path=blob_path.rsplit("/", 1)[0] + "/..")
        ): "InvalidPackageUrl",
        urllib.parse.urlunsplit(
            parts._replace(path=blob_path.rsplit("/", 1)[0] + "/%2e")
        ): "InvalidPackageUrl",
        "not a url": "InvalidPackageUrl",
        never_uploaded: "PackageNotUploaded",
        "": "MissingParameter",
    }
    for package_url, code in cases.items():
        body = {"packageUrl": package_url, "definitionGroupId": project, "executionId": ""}
        resp = action(api, "ImportFromPackage", token, body)
        assert resp.status_code == 400, (package_url, resp.text)
        assert resp.json()["error"]["code"] == code, (package_url, resp.text)
    # Without the SAS query the URL still names our blob (it is never fetched).
    bare = urllib.parse.urlunsplit(parts._replace(query=""))
    body = {"packageUrl": bare, "definitionGroupId": project, "executionId": ""}
    assert wait_status(api, token, value(api, "ImportFromPackage", token, body)) == "Succeeded"


def test_unknown_executions_and_bad_bodies(api):
    _, app, _, project = package_import_job(api)
    token = api.make_token(app)
    unknown = {"executionId": f"nope-{uuid.uuid4()}"}
    assert value(api, "GetExecutionSummaryStatus", token, unknown) == "Unknown"
    for name in ("GetExecutionErrors", "GetExportedPackageUrl", "GetExecutionSummaryPageUrl"):
        resp = action(api, name, token, unknown)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "ExecutionNotFound", name
    for name in ("GenerateImportTargetErrorKeysFile", "GetImportTargetErrorKeysFileUrl"):
        assert action(api, name, token, {**unknown, "entityName": "X"}).status_code == 404
    assert action(api, "GetExecutionSummaryStatus", token, {}).status_code == 400
    assert action(api, "GetExecutionSummaryStatus", token, "not json").status_code == 400
    assert action(api, "ImportFromPackage", token, "[1]").status_code == 400
    raw = value(api, "GetAzureWriteUrl", token, "{'uniqueFileName':'../../etc/passwd'}")
    path = urllib.parse.urlsplit(json.loads(raw)["BlobUrl"]).path
    assert path.endswith("/etc_passwd") and ".." not in path
    url = json.loads(raw)["BlobUrl"]
    body = {"packageUrl": url, "definitionGroupId": project, "executionId": "bad/execution#id"}
    resp = action(api, "ImportFromPackage", token, body)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "InvalidExecutionId"


# SAS signing without a host: the managed-identity path and its key cache --------------------------
class _FakeBlobService:
    """Stands in for a BlobServiceClient built on a token credential (no account key)."""

    account_name = "stexample"
    url = "https://stexample.blob.core.windows.net/"

    def __init__(self) -> None:
        self.key_requests = []
        self.credential = object()

    def get_blob_client(self, container, blob):
        from azure.storage.blob import BlobClient

        return BlobClient(self.url, container, blob)

    def get_user_delegation_key(self, key_start_time, key_expiry_time):
        import base64

        from azure.storage.blob import UserDelegationKey

        self.key_requests.append((key_start_time, key_expiry_time))
        key = UserDelegationKey()
        key.signed_oid = "11111111-1111-1111-1111-111111111111"
        key.signed_tid = "22222222-2222-2222-2222-222222222222"
        key.signed_start = key_start_time.strftime("%Y-%m-%dT%H:%M:%SZ")
        key.signed_expiry = key_expiry_time.strftime("%Y-%m-%dT%H:%M:%SZ")
        key.signed_service = "b"
        key.signed_version = "2021-08-06"
        key.value = base64.b64encode(b"k" * 32).decode()
        return key


class _FakeClients:
    def __init__(self, *, identity: bool) -> None:
        self.blob_service = _FakeBlobService()
        self.uses_identity = identity


def test_user_delegation_sas_under_managed_identity():
    from shared.storage import sas

    clients = _FakeClients(identity=True)
    read = sas.read_url(
        clients, "outbound", "job/run.zip", content_disposition='attachment; filename="a.zip"'
    )
    write = sas.write_url(clients, "uploads", "0f0e/p.zip")
    assert len(clients.blob_service.key_requests) == 1  # the key is cached and reused
    for url, permission, path in ((read, "r", "/outbound/job/run.zip"), (write, "cw", "/uploads/0f0e/p.zip")):
        parts = urllib.parse.urlsplit(url)
        query = dict(urllib.parse.parse_qsl(parts.query))
        assert parts.scheme == "https" and parts.path == path
        assert query["sp"] == permission and query["spr"] == "https" and query["sr"] == "b"
        assert query["skoid"] == "11111111-1111-1111-1111-111111111111"  # a user-delegation SAS
        assert query["sig"]
        lifetime = datetime.fromisoformat(query["se"].replace("Z", "+00:00")) - datetime.now(UTC)
        assert 0 < lifetime.total_seconds() <= 3600
    assert (
        dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(read).query))["rscd"]
        == 'attachment; filename="a.zip"'
    )


def test_sas_needs_a_key_or_an_identity():
    from shared.storage import sas

    with pytest.raises(sas.SasError):
        sas.read_url(_FakeClients(identity=False), "outbound", "x.zip")
    with pytest.raises(ValueError):
        sas.read_url(_FakeClients(identity=True), "outbound", "x.zip", lifetime=sas.MAX_LIFETIME * 2)
