"""Options that do not apply are refused on write and reported on read; the connector answers a job of the
wrong direction with a 400 in both directions (issue 12, class 8)."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.test_config_api import ENTITY, error_of


def setup_pair(api) -> dict:
    """An entity, an import and an export project over it, and one job of each for a new application."""
    entity = api.unique("Opt")
    api.ok("PUT", f"/api/manage/entities/{entity}", json=ENTITY)
    imp, exp = api.unique("OptImp"), api.unique("OptExp")
    api.ok(
        "PUT", f"/api/manage/projects/{imp}", json={"operation": "import", "entities": [{"entity": entity}]}
    )
    api.ok(
        "PUT", f"/api/manage/projects/{exp}", json={"operation": "export", "entities": [{"entity": entity}]}
    )
    app = str(uuid.uuid4())
    policy = [{"applicationId": app, "enabled": True}]
    imp_job = api.ok(
        "POST", "/api/manage/jobs", json={"name": imp, "project": imp, "authorizationPolicy": policy}
    )
    exp_job = api.ok(
        "POST", "/api/manage/jobs", json={"name": exp, "project": exp, "authorizationPolicy": policy}
    )
    return {"entity": entity, "imp": imp, "exp": exp, "app": app, "imp_job": imp_job, "exp_job": exp_job}


@pytest.fixture(scope="module")
def pair(api):
    return setup_pair(api)


@pytest.mark.parametrize(
    ("option", "side"),
    [
        ({"processOnArrival": True}, "exp"),
        ({"processInOrder": True}, "exp"),
        ({"monitoring": {"unit": "minutes", "interval": 5}}, "exp"),
        ({"mode": "file"}, "exp"),
        ({"preventUploadWhenZeroRecords": True}, "imp"),
        ({"incremental": True}, "imp"),
        ({"redeliveryMinutes": 45}, "imp"),
    ],
)
def test_an_option_of_the_other_side_is_a_400_naming_it(api, pair, option, side):
    field = next(iter(option))
    body = {"name": "x", "project": pair[side], **option}
    for method, path in [("POST", "/api/manage/jobs"), ("PUT", f"/api/manage/jobs/{uuid.uuid4()}")]:
        resp = api.admin(method, path, json=body)
        assert resp.status_code == 400, resp.text
        error = error_of(resp)
        assert error["code"] == "OptionNotApplicable" and f"{field} does not apply" in error["message"], error
    job = pair[f"{side}_job"]["activityId"]
    resp = api.admin("PATCH", f"/api/manage/jobs/{job}", json=option)
    assert resp.status_code == 400 and error_of(resp)["code"] == "OptionNotApplicable", resp.text
    # The same option is accepted on the side it belongs to.
    other = "imp" if side == "exp" else "exp"
    assert api.ok("PATCH", f"/api/manage/jobs/{pair[f'{other}_job']['activityId']}", json=option)
    api.ok("PATCH", f"/api/manage/jobs/{pair[f'{other}_job']['activityId']}", json={field: None})


def test_an_export_job_is_a_package_job_and_reads_back_cleanly(api, pair):
    job = api.ok("GET", f"/api/manage/jobs/{pair['exp_job']['activityId']}")
    assert job["mode"] == "package" and job["warnings"] == []
    # GET, edit, PUT: the read-only warnings member is sent back and ignored.
    job["description"] = "edited"
    assert api.ok("PUT", f"/api/manage/jobs/{job['activityId']}", json=job)["description"] == "edited"


def test_moving_a_job_to_a_project_of_the_other_side_judges_every_option(api, pair):
    resp = api.admin(
        "POST", "/api/manage/jobs", json={"name": "x", "project": pair["imp"], "processOnArrival": True}
    )
    assert resp.status_code == 201, resp.text
    resp = api.admin("PATCH", f"/api/manage/jobs/{resp.json()['activityId']}", json={"project": pair["exp"]})
    assert resp.status_code == 400 and "processOnArrival does not apply" in error_of(resp)["message"]


def test_a_project_change_that_leaves_a_job_with_dead_options_is_refused(api, pair):
    project = api.unique("OptFlip")
    api.ok(
        "PUT",
        f"/api/manage/projects/{project}",
        json={"operation": "import", "entities": [{"entity": pair["entity"]}]},
    )
    job = api.ok(
        "POST", "/api/manage/jobs", json={"name": project, "project": project, "processOnArrival": True}
    )
    resp = api.admin("PATCH", f"/api/manage/projects/{project}", json={"operation": "export"})
    assert resp.status_code == 400, resp.text
    error = error_of(resp)
    assert error["code"] == "OptionNotApplicable" and job["activityId"] in error["message"], error


@pytest.mark.parametrize(
    ("operation", "entity", "field"),
    [
        ("export", {"transforms": ["T"]}, "entities[0].transforms"),
        ("import", {"format": "CSV", "sheet": "Sheet1"}, "entities[0].sheet"),
        (
            "export",
            {"mapping": [{"source": "A", "target": "CUSTOMERGROUPID", "default": "x"}]},
            "entities[0].mapping[0].default",
        ),
    ],
)
def test_project_options_that_do_not_apply(api, pair, operation, entity, field):
    if "transforms" in entity:
        xslt = (
            b'<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
            b'<xsl:template match="/"><x/></xsl:template></xsl:stylesheet>'
        )
        api.ok("PUT", "/api/manage/transforms/T", data=xslt, headers={"Content-Type": "application/xml"})
    body = {"operation": operation, "entities": [{"entity": pair["entity"], **entity}]}
    resp = api.admin("PUT", f"/api/manage/projects/{api.unique('OptP')}", json=body)
    assert resp.status_code == 400, resp.text
    error = error_of(resp)
    assert error["code"] == "OptionNotApplicable" and f"{field} does not apply" in error["message"], error
    no_guard = {"operation": "import", "neutralizeFormulas": False, "entities": [{"entity": pair["entity"]}]}
    resp = api.admin("PUT", f"/api/manage/projects/{api.unique('OptP')}", json=no_guard)
    assert resp.status_code == 400 and "neutralizeFormulas does not apply" in error_of(resp)["message"]


def test_a_stored_job_with_dead_options_still_loads_and_says_so(api, pair):
    """A document written before these checks: stored straight through the repository, as an old version did."""
    from shared.domain.config import job_to_json, parse_job
    from shared.services.registry import config_service

    activity = str(uuid.uuid4())
    doc = job_to_json(
        parse_job(
            activity,
            {
                "name": "old",
                "project": pair["exp"],
                "processOnArrival": True,
                "authorizationPolicy": [{"applicationId": pair["app"], "enabled": True}],
            },
        )
    )
    config_service()._repo.write("job", activity, doc, None)
    job = api.ok("GET", f"/api/manage/jobs/{activity}")
    assert any(w.startswith("processOnArrival does not apply") for w in job["warnings"]), job
    assert any(j["activityId"] == activity for j in api.ok("GET", "/api/manage/jobs")["value"])
    # A change that does not touch the stored option goes through; the option stays reported.
    assert api.ok("PATCH", f"/api/manage/jobs/{activity}", json={"description": "still here"})
    # The connector still serves it as the export job it is.
    resp = api.call("GET", f"/api/connector/dequeue/{activity}", api.make_token(pair["app"]))
    assert resp.status_code == 204, resp.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/connector/dequeue/{id}"),
        ("GET", "/api/connector/download/{id}?correlation-id=3f2c1b7e-5d4a-4c9b-8e21-0a6b9c7d5e43"),
        ("POST", "/api/connector/ack/{id}"),
    ],
)
def test_the_export_side_of_the_connector_on_an_import_job_is_NotAnExportJob(api, pair, method, path):
    token = api.make_token(pair["app"])
    body = {"CorrelationId": str(uuid.uuid4()), "PopReceipt": "x"} if method == "POST" else None
    resp = api.call(method, path.format(id=pair["imp_job"]["activityId"]), token, json=body)
    assert resp.status_code == 400, resp.text
    assert error_of(resp)["code"] == "NotAnExportJob"
    # ...as the import side on an export job is NotAnImportJob.
    resp = api.enqueue(pair["exp_job"]["activityId"], pair["app"], b"A\n1\n", entity=pair["entity"])
    assert resp.status_code == 400 and error_of(resp)["code"] == "NotAnImportJob", resp.text


def test_format_settings_that_its_kind_ignores(api):
    name = api.unique("OptF")
    resp = api.admin("PUT", f"/api/manage/formats/{name}", json={"kind": "excel", "delimiter": ";"})
    assert resp.status_code == 400, resp.text
    error = error_of(resp)
    assert error["code"] == "OptionNotApplicable" and "delimiter does not apply" in error["message"], error
    created = api.ok("PUT", f"/api/manage/formats/{name}", json={"kind": "csv", "delimiter": ";"})
    assert created["warnings"] == []
    resp = api.admin("PATCH", f"/api/manage/formats/{name}", json={"kind": "json"})
    assert resp.status_code == 400 and "delimiter does not apply" in error_of(resp)["message"], resp.text
    assert (
        api.ok("PATCH", f"/api/manage/formats/{name}", json={"kind": "json", "delimiter": None})["kind"]
        == "json"
    )


def test_package_mode_refuses_a_project_whose_transforms_would_not_run(api, pair):
    xslt = (
        b'<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
        b'<xsl:template match="/"><x/></xsl:template></xsl:stylesheet>'
    )
    api.ok("PUT", "/api/manage/transforms/T", data=xslt, headers={"Content-Type": "application/xml"})
    project = api.unique("OptPkg")
    body = {
        "operation": "import",
        "entities": [{"entity": pair["entity"], "format": "CSV", "transforms": ["T"]}],
    }
    api.ok("PUT", f"/api/manage/projects/{project}", json=body)  # a file job transforms any input
    assert api.ok("POST", "/api/manage/jobs", json={"name": "f", "project": project, "mode": "file"})
    resp = api.admin("POST", "/api/manage/jobs", json={"name": "p", "project": project, "mode": "package"})
    assert resp.status_code == 400, resp.text
    error = error_of(resp)
    assert error["code"] == "OptionNotApplicable" and "mode does not apply" in error["message"], error
    assert "entities[0].transforms" in error["message"]
