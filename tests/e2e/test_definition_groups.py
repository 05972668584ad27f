"""Definition groups over OData and the DMF actions around them (issue 13), driven as real D365 clients do.

Create the data project (POST DataManagementDefinitionGroups, then DataManagementDefinitionGroupDetails), export it
with no recurring job, delete it by its OData key; import a package into a group made up for the run; the Async,
Preview, Delta and List actions, reExecute, ResetVersionToken; the duplicate POST status; $metadata.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import requests

from tests.e2e.test_package_api import action, build_package, upload, value, wait_status
from tests.support.packages import simple_entity

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

GROUPS = "/data/DataManagementDefinitionGroups"
DETAILS = "/data/DataManagementDefinitionGroupDetails"
ENUM = "Microsoft.Dynamics.DataEntities.DMFOperationType"


def group_key(name: str, operation: str = "Export") -> str:
    return f"(Name='{name}',OperationType={ENUM}'{operation}')"


def entity_with_rows(api, rows: list[dict]) -> tuple[str, str]:
    """A new entity holding `rows` in usmf: (name, label)."""
    from shared.services.registry import config_service, entity_repo

    name = api.unique("Ent")
    label = f"Group entity {name[3:]}"
    api.ok("PUT", f"/api/manage/entities/{name}", json=simple_entity(label))
    entity = config_service().get_entity(name)
    at = datetime.now(UTC)
    if rows:
        assert (
            not entity_repo()
            .upsert_rows(entity, [entity_repo().encode(entity, r, "usmf", at) for r in rows])
            .failed
        )
    return name, label


def create_group(api, name: str, operation: str, label: str, token: str | None = None) -> None:
    token = token or api.admin_token
    resp = api.call(
        "POST",
        GROUPS,
        token,
        json={  # as a PowerShell client posts it, with D365 properties this app keeps nothing of
            "Name": name,
            "OperationType": operation,
            "Description": "made by a client",
            "ProjectCategory": "Configuration",
            "GenerateDataPackage": "No",
        },
    )
    assert resp.status_code == 201, resp.text
    assert resp.headers["Location"].endswith(GROUPS + group_key(name, operation).replace("'", "'"))
    body = resp.json()
    assert body["Name"] == name and body["OperationType"] == operation
    assert body["@odata.context"].endswith("/data/$metadata#DataManagementDefinitionGroups/$entity")
    resp = api.call(
        "POST",
        DETAILS,
        token,
        json={
            "DefinitionGroupId": name,
            "EntityName": label,
            "SourceFormat": "CSV",
            "ExecutionUnit": 1,
            "LevelInExecutionUnit": 1,
            "SequenceInLevel": 1,
            "DefaultRefreshType": "FullPush",
            "AutoGenerateMapping": "Yes",
        },
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["EntityName"] == label
    assert "Location" in resp.headers


def download(api, token: str, execution_id: str) -> dict[str, bytes]:
    url = value(api, "GetExportedPackageUrl", token, {"executionId": execution_id})
    resp = requests.get(url, timeout=60)
    assert resp.status_code == 200, resp.text
    with zipfile.ZipFile(io.BytesIO(resp.content)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def test_a_client_creates_a_group_exports_it_without_a_job_and_deletes_it_by_key(api):
    entity, label = entity_with_rows(api, [{"CODE": "G1", "NAME": "One", "AMOUNT": Decimal("1.5")}])
    name = api.unique("ClientGroup")
    create_group(api, name, "Export", label)

    # The group is the data project: the management API shows it, with no job.
    project = api.ok("GET", f"/api/manage/projects/{name}")
    assert project["operation"] == "export" and [e["entity"] for e in project["entities"]] == [entity]

    token = api.admin_token
    execution_id = value(api, "ExportToPackage", token, {"definitionGroupId": name, "packageName": "p",
                                                          "executionId": "", "reExecute": False,
                                                          "legalEntityId": "usmf"})  # fmt: skip
    assert wait_status(api, token, execution_id) == "Succeeded"
    files = download(api, token, execution_id)
    assert files[f"{label}.csv"] == b"CODE,NAME,AMOUNT\r\nG1,One,1.5\r\n"

    listed = api.ok("GET", GROUPS, params={"$filter": f"Name eq '{name}'", "$select": "Name,OperationType"})
    assert listed["value"] == [{"Name": name, "OperationType": "Export"}]
    assert listed["@odata.context"].endswith("#DataManagementDefinitionGroups(Name,OperationType)")
    one = api.ok("GET", GROUPS + group_key(name))
    assert one["Description"] == "made by a client"
    details = api.ok("GET", DETAILS, params={"$filter": f"DefinitionGroupId eq '{name}'", "$top": "5"})[
        "value"
    ]
    assert [(d["EntityName"], d["ExecutionUnit"], d["SequenceInLevel"]) for d in details] == [(label, 1, 1)]

    resp = api.admin("DELETE", GROUPS + group_key(name))
    assert resp.status_code == 204, resp.text
    assert api.admin("GET", GROUPS + group_key(name)).status_code == 404
    assert api.admin("GET", f"/api/manage/projects/{name}").status_code == 404


def test_a_duplicate_post_answers_400_and_an_import_and_export_group_may_share_a_name(api):
    _, label = entity_with_rows(api, [])
    name = api.unique("Twin")
    create_group(api, name, "Export", label)
    again = api.admin("POST", GROUPS, json={"Name": name, "OperationType": "Export"})
    assert again.status_code == 400 and again.json()["error"]["code"] == "RecordAlreadyExists", again.text
    dup = api.admin("POST", DETAILS, json={"DefinitionGroupId": name, "EntityName": label})
    assert dup.status_code == 400 and dup.json()["error"]["code"] == "RecordAlreadyExists", dup.text

    create_group(api, name, "Import", label)
    # The management API says which it means once the name is shared.
    ambiguous = api.admin("GET", f"/api/manage/projects/{name}")
    assert ambiguous.status_code == 409 and ambiguous.json()["error"]["code"] == "AmbiguousProject"
    assert (
        api.ok("GET", f"/api/manage/projects/{name}", params={"operation": "import"})["operation"] == "import"
    )
    # The single-value key is ambiguous too; the compound key is not.
    assert api.admin("GET", f"{GROUPS}('{name}')").status_code == 409
    assert api.ok("GET", GROUPS + group_key(name, "Import"))["OperationType"] == "Import"
    assert (
        api.admin("PATCH", GROUPS + group_key(name, "Import"), json={"Description": "x"}).status_code == 204
    )
    assert api.ok("GET", f"/api/manage/projects/{name}", params={"operation": "import"})["description"] == "x"
    assert api.admin("DELETE", GROUPS + group_key(name, "Import")).status_code == 204
    assert api.ok("GET", f"/api/manage/projects/{name}")["operation"] == "export"
    # A bad key is a 400 naming the problem.
    bad = api.admin("GET", f"{GROUPS}(Name='{name}'")
    assert bad.status_code in (400, 404)


def test_import_a_package_into_a_group_made_up_for_the_run(api):
    entity, label = entity_with_rows(api, [])
    token = api.admin_token
    package = build_package({entity: b"CODE,NAME,AMOUNT\r\nN1,New,3\r\n"}, project="Anything")
    url = upload(api, token, package)
    group = api.unique("RunGroup")
    execution_id = value(
        api,
        "ImportFromPackageAsync",
        token,
        {"packageUrl": url, "definitionGroupId": group, "executionId": "", "execute": True, "overWrite": True,
         "legalEntityId": "usmf", "failOnError": True, "runAsyncWithoutBatch": True, "thresholdToRunInBatch": 0},
    )  # fmt: skip
    assert wait_status(api, token, execution_id) == "Succeeded"
    assert [r["CODE"] for r in api.records(entity, company="usmf")] == ["N1"]
    # The group now exists, made from the manifest.
    project = api.ok("GET", f"/api/manage/projects/{group}")
    assert project["operation"] == "import" and project["name"] == group  # spelt as the client sent it
    assert [(e["entity"], e["format"]) for e in project["entities"]] == [(entity, "CSV")]
    rows = value(api, "GetEntityExecutionSummaryStatusList", token, {"executionId": execution_id})
    assert [(r["EntityName"], r["Status"], r["TotalRecords"], r["ErrorRecords"]) for r in rows] == [
        (label, "Succeeded", 1, 0)
    ]
    assert (
        value(api, "GetImportStagingErrorFileUrl", token, {"executionId": execution_id, "entityName": label})
        == ""
    )


def test_async_preview_delta_reexecute_and_reset_version_token(api):
    entity, label = entity_with_rows(
        api, [{"CODE": f"R{i}", "NAME": f"Row {i}", "AMOUNT": Decimal(i)} for i in range(1, 4)]
    )
    name = api.unique("Delta")
    create_group(api, name, "Export", label)
    token = api.admin_token
    body = {"definitionGroupId": name, "packageName": "p", "executionId": "", "reExecute": False,
            "legalEntityId": "usmf"}  # fmt: skip

    first = value(api, "ExportToPackageAsync", token, body)
    assert wait_status(api, token, first) == "Succeeded"
    assert download(api, token, first)[f"{label}.csv"].count(b"\r\n") == 4
    rows = value(api, "GetEntityExecutionSummaryStatusList", token, {"executionId": first})
    assert [(r["EntityName"], r["Status"], r["TotalRecords"]) for r in rows] == [(label, "Succeeded", 3)]
    # The summary page of a group's execution is its group job's run history.
    page = value(api, "GetExecutionSummaryPageUrl", token, {"executionId": first})
    assert "/api/manage/jobs/group~export~" in page
    assert first in [r["executionId"] for r in api.ok("GET", page.removeprefix(api.base))["value"]]

    preview = value(api, "ExportToPackagePreview", token, {**body, "exportPreviewCount": 2})
    assert wait_status(api, token, preview) == "Succeeded"
    assert download(api, token, preview)[f"{label}.csv"].count(b"\r\n") == 3

    # Nothing changed since the last export: the delta is empty.
    delta = value(api, "ExportToPackageDelta", token, body)
    assert wait_status(api, token, delta) == "Succeeded"
    assert download(api, token, delta)[f"{label}.csv"].count(b"\r\n") == 1
    # After ResetVersionToken the entity exports in full again.
    reset = {"definitionGroupId": name, "entityName": label, "sourceName": ""}
    assert value(api, "ResetVersionToken", token, reset) is True
    full = value(api, "ExportToPackageDelta", token, body)
    assert wait_status(api, token, full) == "Succeeded"
    assert download(api, token, full)[f"{label}.csv"].count(b"\r\n") == 4

    # reExecute with the ID of an ended execution runs it again: the new rows are in its new package.
    from shared.services.registry import config_service, entity_repo

    stored = config_service().get_entity(entity)
    row = entity_repo().encode(
        stored, {"CODE": "R9", "NAME": "Late", "AMOUNT": Decimal(9)}, "usmf", datetime.now(UTC)
    )
    assert not entity_repo().upsert_rows(stored, [row]).failed
    again = value(api, "ExportToPackage", token, {**body, "executionId": first, "reExecute": True})
    assert again == first
    assert wait_status(api, token, first) == "Succeeded"
    assert b"R9,Late,9" in download(api, token, first)[f"{label}.csv"]
    # Without reExecute the same ID is the same execution (not run again).
    assert value(api, "ExportToPackage", token, {**body, "executionId": first}) == first


def test_actions_this_app_does_not_offer_answer_400_with_a_code(api):
    token = api.admin_token
    for name, code in (
        ("ImportFromDMTPackage", "DmtPackageNotSupported"),
        ("InitializeDataManagement", "InitializeDataManagementNotSupported"),
        ("InitializeDataManagementAsync", "InitializeDataManagementNotSupported"),
        ("ExportFromPackage", "ExportFromPackageNotSupported"),
    ):
        resp = action(api, name, token, {})
        assert resp.status_code == 400 and resp.json()["error"]["code"] == code, (name, resp.text)


def test_get_entity_sequence_and_the_service_document(api):
    entity, label = entity_with_rows(api, [])
    assert value(api, "GetEntitySequence", api.admin_token, {"listOfDataEntities": entity}) == label
    doc = api.ok("GET", "/data")
    sets = {v["name"] for v in doc["value"]}
    assert {"DataManagementDefinitionGroups", "DataManagementDefinitionGroupDetails", entity} <= sets
    resp = api.admin("GET", "/data/$metadata")
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("application/xml")
    assert b'Name="ExportToPackageDelta"' in resp.content
    assert api.call("GET", "/data/$metadata", None).status_code == 401


def test_a_partner_on_no_job_of_the_project_cannot_use_a_project_that_jobs_govern(api):
    """A project that recurring jobs use stays governed by their policies; a group without jobs by app_access."""
    activity, app, _ = api.import_job(simple_entity(), mode="package")
    project = api.ok("GET", f"/api/manage/jobs/{activity}")["project"]
    other = str(uuid.uuid4())
    api.import_job(
        simple_entity(), mode="package", authorizationPolicy=[{"applicationId": other, "enabled": True}]
    )
    resp = action(api, "ExportToPackageAsync", api.make_token(other), {"definitionGroupId": project})
    assert resp.status_code in (400, 403), resp.text
    assert json.loads(resp.text)["error"]["code"] in ("ApplicationNotAuthorized", "WrongProjectOperation")


def test_a_partner_exports_a_group_without_a_job_and_only_it_sees_the_execution(api):
    """A group no job uses is run on its group job: the starting application sees its execution, another
    application gets the answers of an unknown execution ID (execution_access)."""
    _, partner, _ = api.import_job(simple_entity(), mode="package")
    _, stranger, _ = api.import_job(simple_entity(), mode="package")
    entity, label = entity_with_rows(api, [{"CODE": "P1", "NAME": "Partner", "AMOUNT": Decimal(1)}])
    name = api.unique("PartnerGroup")
    token = api.make_token(partner)
    # Managing definition groups takes an application registration (app_access), not a job's policy.
    refused = api.call("POST", GROUPS, token, json={"Name": name, "OperationType": "Export"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "ApplicationNotAuthorized"
    registration = {
        "name": "Partner",
        "capabilities": ["export", "manageDefinitionGroups"],
        "legalEntities": ["usmf"],
    }
    api.ok("PUT", f"/api/manage/applications/{partner}", json=registration)
    create_group(api, name, "Export", label, token=token)
    execution_id = value(api, "ExportToPackage", token, {"definitionGroupId": name, "legalEntityId": "usmf"})
    assert wait_status(api, token, execution_id) == "Succeeded"
    assert b"P1,Partner,1" in download(api, token, execution_id)[f"{label}.csv"]
    other = api.make_token(stranger)
    assert value(api, "GetExecutionSummaryStatus", other, {"executionId": execution_id}) == "Unknown"
    resp = action(api, "GetExportedPackageUrl", other, {"executionId": execution_id})
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "ExecutionNotFound"
    assert api.call("DELETE", GROUPS + group_key(name), token).status_code == 204


def test_a_real_d365_package_imports_into_a_new_group_made_from_its_manifest(api):
    """microsoft/Dynamics-AX-Integration's usmf_asset-major-types-01.zip (a package D365 exported: EXCEL, one
    entity) imported into a group name made up for the run: the group comes from Manifest.xml."""
    from tests.conftest import d365_fixture

    data = d365_fixture("ms-sample-asset-major-types", "usmf_asset-major-types-01.zip").read_bytes()
    entity = api.unique("AssetMajorType")
    api.ok(
        "PUT",
        f"/api/manage/entities/{entity}",
        json={
            "label": "Fixed asset major type",
            "keys": ["MAJORTYPEID"],
            "fields": [{"name": "MAJORTYPEID", "type": "string"}, {"name": "DESCRIPTION", "type": "string"}],
        },
    )
    try:
        token = api.admin_token
        url = upload(api, token, data, "usmf_asset-major-types-01.zip")
        group = api.unique("AssetRun")
        body = {"packageUrl": url, "definitionGroupId": group, "executionId": "", "legalEntityId": "usmf"}
        execution_id = value(api, "ImportFromPackage", token, body)
        assert wait_status(api, token, execution_id) == "Succeeded"
        assert len(api.records(entity, company="usmf")) == 11
        project = api.ok("GET", f"/api/manage/projects/{group}")
        assert project["operation"] == "import" and project["description"] == "Asset-Major-Types"
        [pe] = project["entities"]
        assert (pe["entity"], pe["format"], pe["sequence"]) == (entity, "EXCEL", 1)
        assert sorted((m["source"], m["target"]) for m in pe["mapping"]) == [
            ("DESCRIPTION", "DESCRIPTION"),
            ("MAJORTYPEID", "MAJORTYPEID"),
        ]
        detail = api.ok("GET", f"{DETAILS}(DefinitionGroupId='{group}',EntityName='Fixed asset major type')")
        assert (detail["SourceFormat"], detail["ExecutionUnit"], detail["SequenceInLevel"]) == ("EXCEL", 1, 1)
        assert api.admin("DELETE", GROUPS + group_key(group, "Import")).status_code == 204
    finally:
        # Labels are unique across entities: leave none behind for other tests of the session.
        api.admin("DELETE", f"/api/manage/entities/{entity}?force=true")


def test_rejected_records_show_in_the_entity_status_list_and_the_staging_error_file(api):
    entity, label = entity_with_rows(api, [])
    token = api.admin_token
    url = upload(
        api, token, build_package({entity: b"CODE,NAME,AMOUNT\r\nOK1,Good,1\r\nBAD1,Bad,not a number\r\n"})
    )
    group = api.unique("Rejects")
    body = {"packageUrl": url, "definitionGroupId": group, "executionId": "", "legalEntityId": "usmf"}
    execution_id = value(api, "ImportFromPackage", token, body)
    assert wait_status(api, token, execution_id) == "PartiallySucceeded"
    rows = value(api, "GetEntityExecutionSummaryStatusList", token, {"executionId": execution_id})
    assert [(r["Status"], r["TotalRecords"], r["SuccessRecords"], r["ErrorRecords"]) for r in rows] == [
        ("PartiallySucceeded", 2, 1, 1)
    ]
    assert rows[0]["ExecutionStartDateTime"] and rows[0]["ExecutionEndDateTime"]
    staging = value(
        api, "GetImportStagingErrorFileUrl", token, {"executionId": execution_id, "entityName": label}
    )
    resp = requests.get(staging, timeout=30)  # a SAS URL: no token
    assert resp.status_code == 200 and b"BAD1" in resp.content and b"OK1" not in resp.content


def test_import_into_the_name_of_an_export_group_makes_an_import_group_beside_it(api):
    entity, label = entity_with_rows(api, [])
    name = api.unique("Both")
    create_group(api, name, "Export", label)
    token = api.admin_token
    url = upload(api, token, build_package({entity: b"CODE,NAME,AMOUNT\r\nS1,Same,1\r\n"}))
    body = {"packageUrl": url, "definitionGroupId": name, "executionId": "", "legalEntityId": "usmf"}
    assert wait_status(api, token, value(api, "ImportFromPackage", token, body)) == "Succeeded"
    operations = {
        g["OperationType"] for g in api.ok("GET", GROUPS, params={"$filter": f"Name eq '{name}'"})["value"]
    }
    assert operations == {"Import", "Export"}
