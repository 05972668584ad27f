"""Legal entities and application registrations (issue 13, item 5), over the local host.

Every company a caller names must be a configured legal entity it may use: 400 UnknownLegalEntity
otherwise, naming only the legal entities it may use, and nothing is stored. A job bound to a legal entity
imports only into it. The package API authorizes by application registration (admins always; an
unregistered application on a job's policy keeps its package-API access to that job's legal entity). An
export runs in one legal entity and never mixes legal entities in one file. The session's legal entities
usmf, demf and dat come from tests/conftest.py (TEST_LEGAL_ENTITIES), as the demo configuration has them.
"""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.test_execution_access import Project, action, exported_codes, new_app, value, wait_status
from tests.e2e.test_import_protocol import CG, csv_bytes

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

LEGAL = "/api/manage/legalEntities"
APPS = "/api/manage/applications"


def error_of(resp, status: int, code: str) -> str:
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code, resp.text
    return resp.json()["error"]["message"]


def new_legal_entity_id() -> str:
    return "t" + uuid.uuid4().hex[:3]


def register(api, app: str, capabilities: list[str], legal_entities) -> None:
    body = {"name": f"app {app[:8]}", "capabilities": capabilities, "legalEntities": legal_entities}
    api.ok("PUT", f"{APPS}/{app}", json=body)


# Legal entities -----------------------------------------------------------------------------------------
def test_legal_entities_are_created_listed_read_and_deleted(api):
    le = new_legal_entity_id()
    created = api.admin("PUT", f"{LEGAL}/{le.upper()}", json={"name": "Test company"})
    assert created.status_code == 201, created.text
    assert created.json() == {"id": le, "name": "Test company"} and created.headers["ETag"]
    read = api.admin("GET", f"{LEGAL}/{le}")
    assert read.json() == {"id": le, "name": "Test company"}
    assert read.headers["ETag"] == created.headers["ETag"]
    listed = api.ok("GET", LEGAL)["value"]
    assert {"usmf", "demf", "dat", le} <= {e["id"] for e in listed}
    error_of(
        api.admin("PUT", f"{LEGAL}/{le}", json={"name": "x"}, headers={"If-None-Match": "*"}),
        412,
        "PreconditionFailed",
    )
    renamed = api.admin(
        "PUT", f"{LEGAL}/{le}", json={"name": "Renamed"}, headers={"If-Match": read.headers["ETag"]}
    )
    assert renamed.status_code == 200 and renamed.json()["name"] == "Renamed"

    error_of(
        api.admin("PUT", f"{LEGAL}/abcde", json={"name": "x"}), 400, "InvalidLegalEntity"
    )  # 5 characters
    error_of(api.admin("PUT", f"{LEGAL}/{le}", json={"name": "x", "city": "y"}), 400, "InvalidRequest")

    activity, _, _ = api.import_job(CG, company=le)
    message = error_of(api.admin("DELETE", f"{LEGAL}/{le}"), 409, "LegalEntityInUse")
    assert "job" in message
    assert api.admin("DELETE", f"/api/manage/jobs/{activity}").status_code == 204
    app = str(uuid.uuid4())
    register(api, app, ["import"], [le])
    error_of(api.admin("DELETE", f"{LEGAL}/{le}"), 409, "LegalEntityInUse")
    assert api.admin("DELETE", f"{APPS}/{app}").status_code == 204

    assert api.admin("DELETE", f"{LEGAL}/{le}").status_code == 204
    error_of(api.admin("GET", f"{LEGAL}/{le}"), 404, "LegalEntityNotFound")
    assert api.admin("DELETE", f"{LEGAL}/{le}").status_code == 204
    assert le not in {e["id"] for e in api.ok("GET", LEGAL)["value"]}


def test_a_job_must_name_a_configured_legal_entity(api):
    activity, app, _ = api.import_job(CG)  # usmf
    job = api.ok("GET", f"/api/manage/jobs/{activity}")
    body = {k: v for k, v in job.items() if k != "warnings"}
    message = error_of(
        api.admin("PUT", f"/api/manage/jobs/{activity}", json={**body, "company": "Input"}),
        400,
        "UnknownLegalEntity",
    )
    assert "usmf" in message  # an admin sees every legal entity
    created = api.admin("POST", "/api/manage/jobs", json={**body, "activityId": None, "company": "zzzz"})
    error_of(created, 400, "UnknownLegalEntity")
    patched = api.admin("PATCH", f"/api/manage/jobs/{activity}", json={"company": "nope"})
    error_of(patched, 400, "UnknownLegalEntity")
    assert api.ok("GET", f"/api/manage/jobs/{activity}")["company"] == "usmf"


# Applications -------------------------------------------------------------------------------------------
def test_applications_are_registered_listed_read_and_deleted(api):
    app = str(uuid.uuid4())
    body = {
        "name": "Partner",
        "capabilities": ["import", "readDataEntities"],
        "legalEntities": ["USMF", "dat"],
    }
    created = api.admin("PUT", f"{APPS}/{{{app.upper()}}}", json=body)
    assert created.status_code == 201, created.text
    expected = {
        "applicationId": app,
        "name": "Partner",
        "enabled": True,
        "capabilities": ["import", "readDataEntities"],
        "legalEntities": ["dat", "usmf"],
    }
    assert created.json() == expected
    assert api.ok("GET", f"{APPS}/{app}") == expected
    assert expected in api.ok("GET", APPS)["value"]
    every = api.ok("PUT", f"{APPS}/{app}", json={**body, "enabled": False, "legalEntities": "*"})
    assert every["legalEntities"] == "*" and every["enabled"] is False

    error_of(
        api.admin("PUT", f"{APPS}/{app}", json={**body, "legalEntities": ["Input"]}),
        400,
        "UnknownLegalEntity",
    )
    error_of(
        api.admin("PUT", f"{APPS}/{app}", json={**body, "capabilities": ["delete"]}), 400, "UnknownCapability"
    )
    error_of(api.admin("PUT", f"{APPS}/not-a-guid", json=body), 400, "InvalidId")

    assert api.admin("DELETE", f"{APPS}/{app}").status_code == 204
    error_of(api.admin("GET", f"{APPS}/{app}"), 404, "ApplicationNotFound")


# Enqueue --------------------------------------------------------------------------------------------------
def test_enqueue_into_another_legal_entity_is_refused(api):
    activity, app, entity = api.import_job(CG, processOnArrival=True)  # company usmf
    data = csv_bytes(["LE1,x,Net30,1,No"])
    # demf exists, but this partner may use usmf only: answered as if demf did not exist.
    other = api.enqueue(activity, app, data, entity="Customer groups", company="demf")
    message = error_of(other, 400, "UnknownLegalEntity")
    assert message.endswith("may use are: usmf"), message
    bad = api.enqueue(activity, app, data, entity="Customer groups", company="us/mf")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidLegalEntity"

    same = api.enqueue(activity, app, data, entity="Customer groups", company="USMF")
    assert same.status_code == 200
    assert api.wait_terminal(app, same.json()) == "Processed"
    assert [r["company"] for r in api.records(entity, company="usmf")] == ["usmf"]
    assert api.records(entity, company="demf") == []

    # A partner that may see demf (it is on a demf job too) learns that this job imports usmf only.
    api.ok(
        "POST",
        "/api/manage/jobs",
        json={
            "name": api.unique("Demf"),
            "project": api.ok("GET", f"/api/manage/jobs/{activity}")["project"],
            "company": "demf",
            "authorizationPolicy": [{"applicationId": app, "enabled": True}],
        },
    )
    error_of(
        api.enqueue(activity, app, data, entity="Customer groups", company="demf"),
        403,
        "LegalEntityNotAllowed",
    )


def test_a_job_without_a_legal_entity_takes_the_one_named(api):
    activity, app, entity = api.import_job(CG, processOnArrival=True, company=None)
    resp = api.enqueue(
        activity, app, csv_bytes(["LE2,x,Net30,1,No"]), entity="Customer groups", company="demf"
    )
    assert resp.status_code == 200, resp.text
    assert api.wait_terminal(app, resp.json()) == "Processed"
    assert [r["CUSTOMERGROUPID"] for r in api.records(entity, company="demf")] == ["LE2"]


def test_a_company_that_is_not_a_legal_entity_is_refused_and_nothing_is_stored(api):
    from shared.services.registry import get_clients
    from shared.storage import names

    activity, app, entity = api.import_job(CG, processOnArrival=True, company=None)
    data = csv_bytes(["IN1,x,Net30,1,No"])
    # One client sent its input folder's name as the company.
    message = error_of(
        api.enqueue(activity, app, data, entity="Customer groups", company="Input"), 400, "UnknownLegalEntity"
    )
    assert "'Input'" in message and "usmf" in message and "demf" in message
    assert api.ok("GET", f"/api/manage/jobs/{activity}/messages")["value"] == []
    inbound = get_clients().container(names.CONTAINER_INBOUND)
    assert list(inbound.list_blobs(name_starts_with=f"{activity}/")) == []
    assert api.records(entity, company="input") == []

    # With a registration, a job of every legal entity takes only the registration's.
    register(api, app, ["import"], ["dat"])
    message = error_of(
        api.enqueue(activity, app, data, entity="Customer groups", company="demf"), 400, "UnknownLegalEntity"
    )
    assert message.endswith("may use are: dat"), message
    assert api.enqueue(activity, app, data, entity="Customer groups", company="dat").status_code == 200


# Package API ---------------------------------------------------------------------------------------------
def test_the_package_api_authorizes_by_application_registration(api):
    project = Project(api, "export")
    project.write_rows("usmf", ["U1", "U2"])
    project.write_rows("demf", ["D1"])
    project.job("usmf")  # no application on its policy
    project.job("demf")

    importer, importer_token = new_app(api)
    register(api, importer, ["import"], "*")
    body = {"definitionGroupId": project.name, "executionId": "", "legalEntityId": "usmf"}
    message = error_of(action(api, "ExportToPackage", importer_token, body), 403, "ApplicationNotAuthorized")
    assert "export" in message and f"/api/manage/applications/{importer}" in message

    exporter, exporter_token = new_app(api)
    register(api, exporter, ["export"], ["usmf"])
    refused = action(api, "ExportToPackage", exporter_token, {**body, "legalEntityId": "demf"})
    message = error_of(refused, 400, "UnknownLegalEntity")
    assert message.endswith("may use are: usmf"), message  # never learns that demf exists
    error_of(
        action(api, "ExportToPackage", exporter_token, {**body, "legalEntityId": "Input"}),
        400,
        "UnknownLegalEntity",
    )
    # Not on any job's policy: the registration alone lets it export usmf, and read its own execution.
    execution_id = f"le-{uuid.uuid4()}"
    assert (
        value(api, "ExportToPackage", exporter_token, {**body, "executionId": execution_id}) == execution_id
    )
    assert wait_status(api, exporter_token, execution_id) == "Succeeded"
    assert exported_codes(api, exporter_token, execution_id) == {"U1", "U2"}
    # Without legalEntityId: a job of a legal entity it may use (usmf), whichever job sorts first.
    plain = f"le-{uuid.uuid4()}"
    no_legal = {"definitionGroupId": project.name, "executionId": plain}
    assert value(api, "ExportToPackage", exporter_token, no_legal) == plain
    assert wait_status(api, exporter_token, plain) == "Succeeded"
    assert exported_codes(api, exporter_token, plain) == {"U1", "U2"}

    # Disabled: nothing, and GetAzureWriteUrl needs import.
    api.ok(
        "PUT",
        f"{APPS}/{exporter}",
        json={"capabilities": ["export"], "legalEntities": ["usmf"], "enabled": False},
    )
    error_of(action(api, "ExportToPackage", exporter_token, body), 403, "ApplicationNotAuthorized")
    error_of(
        action(api, "GetAzureWriteUrl", exporter_token, {"uniqueFileName": "p.zip"}),
        403,
        "ApplicationNotAuthorized",
    )
    assert "BlobUrl" in value(api, "GetAzureWriteUrl", importer_token, {"uniqueFileName": "p.zip"})


def test_an_unregistered_partner_keeps_its_jobs_legal_entities(api):
    project = Project(api, "export")
    project.write_rows("usmf", ["U1"])
    project.write_rows("demf", ["D1"])
    partner, token = new_app(api)
    project.job("demf", partner)
    body = {"definitionGroupId": project.name, "executionId": "", "legalEntityId": "usmf"}
    message = error_of(action(api, "ExportToPackage", token, body), 400, "UnknownLegalEntity")
    assert message.endswith("may use are: demf"), message
    execution_id = f"le-{uuid.uuid4()}"
    assert (
        value(api, "ExportToPackage", token, {**body, "legalEntityId": "DEMF", "executionId": execution_id})
        == execution_id
    )
    assert wait_status(api, token, execution_id) == "Succeeded"
    assert exported_codes(api, token, execution_id) == {"D1"}


# Export scoping ---------------------------------------------------------------------------------------------
def test_an_export_never_mixes_legal_entities(api):
    project = Project(api, "export")
    project.write_rows("usmf", ["U1"])
    project.write_rows("demf", ["D1", "D2"])
    project.write_rows("dat", ["X1"])
    anywhere = project.job(None)  # a job of every legal entity, used through legalEntityId
    token = api.admin_token

    body = {"definitionGroupId": project.name, "executionId": ""}
    message = error_of(action(api, "ExportToPackage", token, body), 400, "LegalEntityRequired")
    assert "company-specific" in message
    error_of(api.admin("POST", f"/api/manage/jobs/{anywhere}/run"), 400, "LegalEntityRequired")
    for legal, codes in (("demf", {"D1", "D2"}), ("usmf", {"U1"}), ("DAT", {"X1"})):
        execution_id = f"le-{uuid.uuid4()}"
        assert (
            value(
                api, "ExportToPackage", token, {**body, "executionId": execution_id, "legalEntityId": legal}
            )
            == execution_id
        )
        assert wait_status(api, token, execution_id) == "Succeeded"
        assert exported_codes(api, token, execution_id) == codes

    # A recurring export of a company-specific entity needs the job's company.
    job = {
        "name": api.unique("Job"),
        "project": project.name,
        "recurrence": {"unit": "hours", "interval": 1},
        "authorizationPolicy": [],
    }
    error_of(api.admin("POST", "/api/manage/jobs", json=job), 400, "LegalEntityRequired")
    error_of(
        api.admin("PATCH", f"/api/manage/jobs/{anywhere}", json={"recurrence": job["recurrence"]}),
        400,
        "LegalEntityRequired",
    )
    assert api.admin("POST", "/api/manage/jobs", json={**job, "company": "dat"}).status_code == 201
