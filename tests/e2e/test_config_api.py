"""The configuration API over real HTTP: CRUD, validation that names the field, conflicts, and auth."""

from __future__ import annotations

import uuid

import pytest

ENTITY = {
    "label": "Customer groups",
    "companySpecific": True,
    "keys": ["CUSTOMERGROUPID"],
    "fields": [
        {"name": "CUSTOMERGROUPID", "type": "string", "required": True, "maxLength": 10},
        {"name": "PAYMENTTERMS", "type": "enum", "values": ["Net30", "Net60"]},
    ],
}


def error_of(resp) -> dict:
    body = resp.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    return body["error"]


def test_root_and_health_are_anonymous(api):
    assert api.call("GET", "/", None).status_code == 200
    assert api.call("GET", "/api/health", None).json()["status"] == "healthy"


@pytest.mark.parametrize(
    "path",
    [
        "/api/manage/jobs",
        "/api/manage/entities/X",
        "/api/connector/enqueue/00000000-0000-0000-0000-000000000000",
    ],
)
def test_everything_else_needs_a_token(api, path):
    resp = api.call("GET" if "manage" in path else "POST", path, None)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert error_of(resp)["code"] == "Unauthorized"


def test_invalid_token_is_401(api):
    resp = api.call("GET", "/api/manage/jobs", "garbage.token.here")
    assert resp.status_code == 401


def test_management_needs_the_admin_role(api, make_token):
    resp = api.call("GET", "/api/manage/jobs", make_token())
    assert resp.status_code == 403
    assert error_of(resp)["code"] == "NotAdministrator"


def test_entity_crud(api):
    name = api.unique("Cg")
    created = api.admin("PUT", f"/api/manage/entities/{name}", json=ENTITY)
    assert created.status_code == 201
    assert created.json()["keys"] == ["CUSTOMERGROUPID"]
    again = api.admin("PUT", f"/api/manage/entities/{name}", json={**ENTITY, "label": "Groups"})
    assert again.status_code == 200
    got = api.ok("GET", f"/api/manage/entities/{name}")
    assert got["label"] == "Groups"
    assert got["fields"][1]["values"] == ["Net30", "Net60"]
    assert name in [e["name"] for e in api.ok("GET", "/api/manage/entities")["value"]]
    assert api.admin("DELETE", f"/api/manage/entities/{name}").status_code == 204
    missing = api.admin("GET", f"/api/manage/entities/{name}")
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "EntityNotFound"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({**ENTITY, "fields": [{"name": "A", "type": "strng"}], "keys": ["A"]}, "fields[0].type"),
        ({**ENTITY, "keys": ["NOPE"]}, "keys: 'NOPE' is not among the fields"),
        ({**ENTITY, "fields": [{"name": "A", "type": "enum"}], "keys": ["A"]}, "fields[0].values"),
        ({**ENTITY, "extra": 1}, "unknown field(s) extra"),
        ({**ENTITY, "fields": []}, "fields must be a non-empty list"),
    ],
)
def test_entity_validation_names_the_field(api, body, fragment):
    resp = api.admin("PUT", f"/api/manage/entities/{api.unique('Bad')}", json=body)
    assert resp.status_code == 400
    assert fragment in error_of(resp)["message"]


def test_invalid_json_is_400(api):
    resp = api.admin("PUT", "/api/manage/entities/X1", data=b"{not json")
    assert resp.status_code == 400
    assert error_of(resp)["code"] == "InvalidJson"


def test_project_naming_a_missing_entity_is_400(api):
    resp = api.admin(
        "PUT",
        f"/api/manage/projects/{api.unique('P')}",
        json={"operation": "import", "entities": [{"entity": "DoesNotExist"}]},
    )
    assert resp.status_code == 400
    assert "entities[0].entity" in error_of(resp)["message"]


def test_project_resolves_entity_by_label_and_checks_mapping(api):
    name = api.unique("Cg")
    api.ok("PUT", f"/api/manage/entities/{name}", json={**ENTITY, "label": f"Label {name}"})
    bad = api.admin(
        "PUT",
        f"/api/manage/projects/{api.unique('P')}",
        json={
            "operation": "import",
            "entities": [{"entity": f"label {name}", "mapping": [{"source": "X", "target": "NOFIELD"}]}],
        },
    )
    assert bad.status_code == 400
    assert "mapping[0].target" in error_of(bad)["message"]
    project = api.unique("P")
    ok = api.ok(
        "PUT",
        f"/api/manage/projects/{project}",
        json={"operation": "import", "entities": [{"entity": f"label {name}"}]},
    )
    assert ok["entities"][0]["entity"] == name  # canonical name stored


def test_delete_entity_used_by_a_project_is_409(api):
    name = api.unique("Cg")
    api.ok("PUT", f"/api/manage/entities/{name}", json=ENTITY)
    api.ok(
        "PUT",
        f"/api/manage/projects/{api.unique('P')}",
        json={"operation": "import", "entities": [{"entity": name}]},
    )
    resp = api.admin("DELETE", f"/api/manage/entities/{name}")
    assert resp.status_code == 409
    assert error_of(resp)["code"] == "EntityInUse"


def test_job_lifecycle_and_validation(api):
    name = api.unique("Cg")
    api.ok("PUT", f"/api/manage/entities/{name}", json=ENTITY)
    project = api.unique("P")
    api.ok(
        "PUT", f"/api/manage/projects/{project}", json={"operation": "import", "entities": [{"entity": name}]}
    )
    app = str(uuid.uuid4())
    resp = api.admin(
        "POST",
        "/api/manage/jobs",
        json={
            "name": "demo",
            "project": project,
            "company": "USMF",
            "recurrence": {"unit": "hours", "interval": 2},
            "authorizationPolicy": [{"applicationId": app.upper(), "enabled": True}],
        },
    )
    assert resp.status_code == 201, resp.text
    job = resp.json()
    activity = job["activityId"]
    assert resp.headers["Location"].endswith(activity)
    assert job["company"] == "USMF"  # as written (issue 12); records and messages use "usmf"
    assert job["authorizationPolicy"][0]["applicationId"] == app  # canonical GUID
    assert job["redeliveryMinutes"] == 30 and job["processInOrder"] is False
    # GUIDs in the path: any case, braces, percent-encoded braces
    for variant in (activity.upper(), "{" + activity + "}", "%7B" + activity + "%7D"):
        assert api.ok("GET", f"/api/manage/jobs/{variant}")["activityId"] == activity
    assert activity in [j["activityId"] for j in api.ok("GET", "/api/manage/jobs")["value"]]
    updated = api.admin("PUT", f"/api/manage/jobs/{activity}", json={**job, "enabled": False})
    assert updated.status_code == 200 and updated.json()["enabled"] is False
    # deleting a project in use is refused
    assert api.admin("DELETE", f"/api/manage/projects/{project}").status_code == 409
    assert api.admin("DELETE", f"/api/manage/jobs/{activity}").status_code == 204
    assert api.admin("GET", f"/api/manage/jobs/{activity}").status_code == 404


@pytest.mark.parametrize(
    ("patch", "fragment"),
    [
        ({"project": "NoSuchProject"}, "project: project 'NoSuchProject' does not exist"),
        ({"recurrence": {"unit": "fortnights"}}, "recurrence.unit"),
        ({"recurrence": {"unit": "days", "interval": 0}}, "recurrence.interval must be between 1 and 10000"),
        ({"recurrence": {"start": "2026-02-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}}, "recurrence.end"),
        ({"authorizationPolicy": [{"applicationId": "not-a-guid"}]}, "authorizationPolicy[0].applicationId"),
        ({"mode": "batch"}, "mode"),
        ({"name": None}, "name is required"),
    ],
)
def test_job_validation_names_the_field(api, patch, fragment):
    name = api.unique("Cg")
    api.ok("PUT", f"/api/manage/entities/{name}", json=ENTITY)
    project = api.unique("P")
    api.ok(
        "PUT", f"/api/manage/projects/{project}", json={"operation": "import", "entities": [{"entity": name}]}
    )
    body = {"name": "j", "project": project, **patch}
    resp = api.admin("POST", "/api/manage/jobs", json=body)
    assert resp.status_code == 400, resp.text
    assert fragment in error_of(resp)["message"]


def test_formats_builtin_and_user_defined(api):
    assert api.ok("GET", "/api/manage/formats/csv-unicode")["encoding"] == "utf-16-le"
    assert api.admin("PUT", "/api/manage/formats/CSV", json={"kind": "csv"}).status_code == 409
    name = api.unique("Semi")
    fmt = api.ok(
        "PUT",
        f"/api/manage/formats/{name}",
        json={"kind": "csv", "delimiter": ";", "decimalSeparator": ",", "dateFormat": "dd.MM.yyyy"},
    )
    assert fmt["delimiter"] == ";" and fmt["dateFormat"] == "dd.MM.yyyy"  # as written (issue 12)
    bad = api.admin("PUT", f"/api/manage/formats/{api.unique('F')}", json={"kind": "csv", "delimiter": ";;"})
    assert bad.status_code == 400 and "delimiter" in error_of(bad)["message"]


def test_transforms_are_validated_and_stored(api):
    xslt = (
        b'<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
        b'<xsl:template match="/"><Document/></xsl:template></xsl:stylesheet>'
    )
    name = api.unique("T")
    assert api.admin("PUT", f"/api/manage/transforms/{name}", data=xslt).status_code == 201
    assert api.admin("GET", f"/api/manage/transforms/{name}").content == xslt
    bad = api.admin("PUT", f"/api/manage/transforms/{api.unique('T')}", data=b"<not-xslt/>")
    assert bad.status_code == 400 and error_of(bad)["code"] == "InvalidTransform"
    assert api.admin("DELETE", f"/api/manage/transforms/{name}").status_code == 204


# Bounded and meaningful values (issue 17): each violation is a 400 naming the field and the limit -----------


@pytest.mark.parametrize(
    ("body", "fragment", "code"),
    [
        (
            {**ENTITY, "label": "x" * 60_000},
            "label is 60000 characters long; the limit is 128",
            "ValueTooLong",
        ),
        (
            {
                **ENTITY,
                "fields": [
                    *ENTITY["fields"],
                    {"name": "E", "type": "enum", "values": list(map(str, range(5000)))},
                ],
            },
            "fields[2].values has 5000 items; the limit is 1000",
            "TooManyItems",
        ),
        (
            {**ENTITY, "fields": [*ENTITY["fields"], {"name": "S", "maxLength": 10**30}]},
            "fields[2].maxLength must be between 1 and 32768",
            "OutOfRange",
        ),
    ],
)
def test_entity_limits_are_400s_that_name_the_field_and_the_limit(api, body, fragment, code):
    resp = api.admin("PUT", f"/api/manage/entities/{api.unique('Big')}", json=body)
    assert resp.status_code == 400, resp.text
    error = error_of(resp)
    assert fragment in error["message"] and error["code"] == code
    assert len(error["message"]) < 400


@pytest.mark.parametrize("encoding", ["rot13", "base64", "zlib", "undefined"])
def test_formats_accept_text_encodings_only(api, encoding):
    resp = api.admin(
        "PUT", f"/api/manage/formats/{api.unique('F')}", json={"kind": "csv", "encoding": encoding}
    )
    assert resp.status_code == 400, resp.text
    assert error_of(resp)["code"] == "UnknownEncoding"
    assert f"encoding {encoding!r} is not a text encoding" in error_of(resp)["message"]


def test_formats_keep_a_text_encoding_as_written(api):
    name = api.unique("F")
    fmt = api.ok("PUT", f"/api/manage/formats/{name}", json={"kind": "csv", "encoding": "Latin-1"})
    assert fmt["encoding"] == "Latin-1"
    assert api.ok("GET", f"/api/manage/formats/{name}")["encoding"] == "Latin-1"


@pytest.mark.parametrize(
    ("patch", "fragment"),
    [
        ({"redeliveryMinutes": 10**18}, "redeliveryMinutes must be between 1 and 10080"),
        ({"recurrence": {"count": 10**12}}, "recurrence.count must be between 1 and 1000000"),
        (
            {"monitoring": {"backlogThreshold": 10**30}},
            "monitoring.backlogThreshold must be between 1 and 1000000",
        ),
        (
            {"recurrence": {"start": "0001-01-01T00:00:00+05:00"}},
            "recurrence.start must be between 2000-01-01",
        ),
        ({"company": "us/mf"}, "company 'us/mf' is not a legal entity ID"),
        ({"name": "n" * 129}, "name is 129 characters long; the limit is 128"),
        (
            {"authorizationPolicy": [{"applicationId": str(uuid.uuid4())}] * 101},
            "authorizationPolicy has 101 items",
        ),
    ],
)
def test_job_limits_are_400s_that_name_the_field_and_the_limit(api, patch, fragment):
    resp = api.admin("POST", "/api/manage/jobs", json={"name": "j", "project": "P", **patch})
    assert resp.status_code == 400, resp.text
    assert fragment in error_of(resp)["message"]


def test_project_limits_and_the_formula_option(api):
    name = api.unique("Cg")
    api.ok("PUT", f"/api/manage/entities/{name}", json=ENTITY)
    project = api.unique("P")
    body = {"operation": "export", "entities": [{"entity": name}]}
    assert api.ok("PUT", f"/api/manage/projects/{project}", json=body)["neutralizeFormulas"] is True
    off = api.ok("PUT", f"/api/manage/projects/{project}", json={**body, "neutralizeFormulas": False})
    assert off["neutralizeFormulas"] is False
    assert api.ok("GET", f"/api/manage/projects/{project}")["neutralizeFormulas"] is False
    for bad, fragment in [
        ({**body, "neutralizeFormulas": "no"}, "neutralizeFormulas must be true or false"),
        (
            {**body, "entities": [{"entity": name, "sheet": "s" * 32}]},
            "entities[0].sheet is 32 characters long",
        ),
        (
            {**body, "entities": [{"entity": f"E{i}"} for i in range(251)]},
            "entities has 251 items; the limit is 250",
        ),
    ]:
        resp = api.admin("PUT", f"/api/manage/projects/{project}", json=bad)
        assert resp.status_code == 400, resp.text
        assert fragment in error_of(resp)["message"]


# Issue 12: values and locale -----------------------------------------------------------------------------

LOCALE_FORMAT = {
    "kind": "csv",
    "delimiter": "tab",
    "textQualifier": "'",
    "encoding": "windows-1252",
    "headerRow": True,
    "dateFormat": "dd.MM.yyyy",
    "datetimeFormat": "dd.MM.yyyy HH:mm",
    "acceptIsoDates": False,
    "decimalSeparator": ",",
    "thousandsSeparator": ".",
    "trueValues": ["Ja", "J"],
    "falseValues": ["Nein", "N"],
}


def test_a_format_is_returned_exactly_as_it_was_put(api):
    name = api.unique("Loc")
    put = api.ok("PUT", f"/api/manage/formats/{name}", json=LOCALE_FORMAT)
    assert put == {"name": name, **LOCALE_FORMAT, "warnings": []}  # every setting applies to CSV
    assert api.ok("GET", f"/api/manage/formats/{name}") == put
    listed = [f for f in api.ok("GET", "/api/manage/formats")["value"] if f["name"] == name]
    assert listed == [{k: v for k, v in put.items() if k != "warnings"}]  # lists carry no warnings
    # A PATCH of one value leaves every other value as written.
    patched = api.ok(
        "PATCH", f"/api/manage/formats/{name}", json={"trueValues": ["Oui"], "falseValues": ["Non"]}
    )
    assert patched == {**put, "trueValues": ["Oui"], "falseValues": ["Non"]}
    assert api.ok("GET", f"/api/manage/formats/{name}")["dateFormat"] == "dd.MM.yyyy"


@pytest.mark.parametrize(
    ("body", "fragment", "code"),
    [
        ({"dateFormat": "DD.MM.YYYY"}, "dateFormat 'DD.MM.YYYY' is not usable", "InvalidDateFormat"),
        ({"datetimeFormat": "HH:mm"}, "datetimeFormat 'HH:mm' is not usable", "InvalidDateFormat"),
        ({"thousandsSeparator": "_"}, "thousandsSeparator must be empty (none)", "InvalidRequest"),
        ({"decimalSeparator": ",", "thousandsSeparator": ","}, "thousandsSeparator must differ", "InvalidRequest"),
        ({"trueValues": ["Ja"], "falseValues": ["ja"]}, "falseValues: ja cannot mean both", "InvalidRequest"),
        ({"trueValues": "Ja"}, "trueValues must be a non-empty list", "InvalidRequest"),
        ({"falseValues": [""]}, "falseValues[0] must be a non-empty string", "InvalidRequest"),
    ],
)  # fmt: skip
def test_format_value_settings_are_400s_that_name_the_field(api, body, fragment, code):
    resp = api.admin("PUT", f"/api/manage/formats/{api.unique('F')}", json={"kind": "csv", **body})
    assert resp.status_code == 400, resp.text
    error = error_of(resp)
    assert fragment in error["message"] and error["code"] == code, error


def _conversion_project(api, conversions, *, source="TERMS") -> tuple[str, object]:
    entity = api.unique("Ent")
    api.ok("PUT", f"/api/manage/entities/{entity}", json=ENTITY)
    name = api.unique("Prj")
    body = {
        "operation": "import",
        "entities": [
            {
                "entity": entity,
                "mapping": [
                    {"source": source, "target": "PAYMENTTERMS", "conversions": conversions},
                    {"source": None, "target": "CUSTOMERGROUPID", "default": "G1"},
                ],
            }
        ],
    }
    return name, api.admin("PUT", f"/api/manage/projects/{name}", json=body)


def test_project_value_conversions_are_kept_and_returned(api):
    conversions = [{"from": "30", "to": "Net30"}, {"from": " 60 ", "to": "Net60"}, {"from": "", "to": ""}]
    name, resp = _conversion_project(api, conversions)
    assert resp.status_code == 201, resp.text
    mapping = api.ok("GET", f"/api/manage/projects/{name}")["entities"][0]["mapping"]
    assert mapping[0]["conversions"] == conversions
    assert mapping[1]["source"] is None and mapping[1]["conversions"] == []


@pytest.mark.parametrize(
    ("conversions", "fragment", "code"),
    [
        ([{"from": "30", "to": "Net90"}],
         "entities[0].mapping[0].conversions: mapping item 1 (PAYMENTTERMS): conversion '30' -> 'Net90' is not "
         "valid: PAYMENTTERMS: 'Net90' is not one of Net30, Net60", "InvalidConversion"),
        ([{"from": "30", "to": "Net30"}, {"from": "30 ", "to": "Net60"}],
         "entities[0].mapping[0].conversions[1].from '30 ' is converted twice", "DuplicateConversion"),
        ([{"from": "30"}], "entities[0].mapping[0].conversions[0].to is required", "InvalidRequest"),
        ([{"to": "Net30", "value": "x"}], "entities[0].mapping[0].conversions[0]: unknown field(s) value",
         "InvalidRequest"),
    ],
)  # fmt: skip
def test_invalid_value_conversions_are_400s_that_name_the_field(api, conversions, fragment, code):
    _, resp = _conversion_project(api, conversions)
    assert resp.status_code == 400, resp.text
    error = error_of(resp)
    assert fragment in error["message"] and error["code"] == code, error
