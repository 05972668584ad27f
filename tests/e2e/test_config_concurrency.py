"""Configuration is safe to change (issue 11, item 7), over real HTTP against the app under the local host.

- PATCH is a JSON merge patch (RFC 7396) of the stored document, validated like a PUT: `{"enabled": false}`
  alone disables a job;
- every document answers an ETag; PUT/PATCH/DELETE with a stale If-Match are 412 PreconditionFailed and
  change nothing; If-None-Match: * makes a PUT create-only;
- an entity change that stored records cannot follow is 409 EntityHasRecords with the count, unless
  ?force=true; browsing after a forced type change answers 200 with the values that no longer fit as null.
"""

from __future__ import annotations

import re
import uuid

import pytest

ENTITY = {
    "label": "Prices",
    "keys": ["CODE"],
    "fields": [
        {"name": "CODE", "type": "string"},
        {"name": "PRICE", "type": "decimal"},
        {"name": "NOTE", "type": "string"},
    ],
}
STRONG_ETAG = re.compile(r'^"[^"]+"$')


def error_of(resp, status: int, code: str) -> str:
    assert resp.status_code == status, f"{resp.status_code} {resp.text}"
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return body["error"]["message"]


def _job(api) -> tuple[str, dict, str]:
    """A new import job: (activity ID, its document, its ETag)."""
    activity, _, _ = api.import_job(ENTITY, description="before")
    resp = api.admin("GET", f"/api/manage/jobs/{activity}")
    assert resp.status_code == 200
    return activity, resp.json(), resp.headers["ETag"]


# ETags -------------------------------------------------------------------------------------------------
def test_every_document_answers_a_strong_etag_that_is_stable_across_reads_and_changes_on_writes(api):
    name = api.unique("Et")
    put = api.admin("PUT", f"/api/manage/entities/{name}", json=ENTITY)
    assert put.status_code == 201
    etag = put.headers["ETag"]
    assert STRONG_ETAG.match(etag), etag
    first = api.admin("GET", f"/api/manage/entities/{name}")
    second = api.admin("GET", f"/api/manage/entities/{name}")
    assert first.headers["ETag"] == second.headers["ETag"] == etag

    changed = api.admin("PUT", f"/api/manage/entities/{name}", json={**ENTITY, "label": "Other"})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag
    assert api.admin("GET", f"/api/manage/entities/{name}").headers["ETag"] == changed.headers["ETag"]

    fmt = api.unique("Fm")
    assert STRONG_ETAG.match(
        api.admin("PUT", f"/api/manage/formats/{fmt}", json={"delimiter": ";"}).headers["ETag"]
    )
    assert STRONG_ETAG.match(api.admin("GET", f"/api/manage/formats/{fmt}").headers["ETag"])
    assert STRONG_ETAG.match(api.admin("GET", "/api/manage/formats/CSV").headers["ETag"])  # built in
    project = api.unique("Pr")
    body = {"operation": "import", "entities": [{"entity": name}]}
    assert STRONG_ETAG.match(api.admin("PUT", f"/api/manage/projects/{project}", json=body).headers["ETag"])
    assert STRONG_ETAG.match(api.admin("GET", f"/api/manage/projects/{project}").headers["ETag"])
    created = api.admin("POST", "/api/manage/jobs", json={"name": "j", "project": project})
    assert created.status_code == 201 and STRONG_ETAG.match(created.headers["ETag"])
    job = api.admin("GET", created.headers["Location"])
    assert job.headers["ETag"] == created.headers["ETag"]


# PATCH -------------------------------------------------------------------------------------------------
def test_patching_enabled_alone_disables_a_job_and_keeps_everything_else(api):
    activity, before, etag = _job(api)
    resp = api.admin(
        "PATCH",
        f"/api/manage/jobs/{activity}",
        json={"enabled": False},
        headers={"If-Match": etag, "Content-Type": "application/merge-patch+json"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == {**before, "enabled": False}
    assert resp.headers["ETag"] != etag
    got = api.admin("GET", f"/api/manage/jobs/{activity}")
    assert got.json() == {**before, "enabled": False}
    assert got.headers["ETag"] == resp.headers["ETag"]

    # Without If-Match too (it applies to what is stored), and with plain application/json.
    again = api.admin("PATCH", f"/api/manage/jobs/{activity}", json={"enabled": True, "description": None})
    assert again.status_code == 200, again.text
    assert again.json() == {**before, "enabled": True, "description": ""}  # null removes: the default


def test_a_patch_is_validated_like_a_put(api):
    activity, before, _ = _job(api)
    path = f"/api/manage/jobs/{activity}"
    assert "mode" in error_of(api.admin("PATCH", path, json={"mode": "bogus"}), 400, "InvalidRequest")
    assert "unknown field(s) enabledd" in error_of(
        api.admin("PATCH", path, json={"enabledd": False}), 400, "InvalidRequest"
    )
    assert "project" in error_of(
        api.admin("PATCH", path, json={"project": "NoSuchProject"}), 400, "UnknownProject"
    )
    assert "must be a JSON object" in error_of(api.admin("PATCH", path, json=[1]), 400, "InvalidPatch")
    wrong_type = api.admin(
        "PATCH", path, data=b"enabled=false", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert "application/merge-patch+json" in error_of(wrong_type, 415, "UnsupportedMediaType")
    assert api.ok("GET", path) == before  # nothing of the above changed it

    missing = f"/api/manage/jobs/{uuid.uuid4()}"
    error_of(api.admin("PATCH", missing, json={"enabled": False}), 404, "JobNotFound")
    error_of(
        api.admin("PATCH", f"/api/manage/entities/{api.unique('No')}", json={"label": "x"}),
        404,
        "EntityNotFound",
    )


def test_entities_formats_and_projects_take_a_patch(api):
    name = api.unique("Pe")
    api.ok("PUT", f"/api/manage/entities/{name}", json=ENTITY)
    entity = api.ok("PATCH", f"/api/manage/entities/{name}", json={"label": "Patched"})
    assert entity["label"] == "Patched" and entity["keys"] == ["CODE"] and len(entity["fields"]) == 3

    fmt = api.unique("Pf")
    api.ok("PUT", f"/api/manage/formats/{fmt}", json={"delimiter": ";", "headerRow": False})
    patched = api.ok("PATCH", f"/api/manage/formats/{fmt}", json={"decimalSeparator": ","})
    assert (patched["delimiter"], patched["headerRow"], patched["decimalSeparator"]) == (";", False, ",")
    error_of(api.admin("PATCH", "/api/manage/formats/CSV", json={"delimiter": ";"}), 409, "BuiltInFormat")

    project = api.unique("Pp")
    api.ok(
        "PUT", f"/api/manage/projects/{project}", json={"operation": "import", "entities": [{"entity": name}]}
    )
    out = api.ok("PATCH", f"/api/manage/projects/{project}", json={"description": "nightly"})
    assert out["description"] == "nightly" and [e["entity"] for e in out["entities"]] == [name]
    bad = api.admin("PATCH", f"/api/manage/projects/{project}", json={"entities": [{"entity": "Nope"}]})
    assert "entities[0].entity" in error_of(bad, 400, "UnknownEntity")


# Optimistic concurrency ----------------------------------------------------------------------------------
def test_two_admins_racing_with_if_match_one_gets_412_and_nothing_is_lost(api):
    activity, before, etag = _job(api)
    path = f"/api/manage/jobs/{activity}"
    # Both read the same version; the first one's write lands.
    first = api.admin("PATCH", path, json={"enabled": False}, headers={"If-Match": etag})
    assert first.status_code == 200, first.text
    # The second one's full PUT, built on the stale read, would undo it: refused, nothing written.
    stale = {**before, "description": "second admin"}
    message = error_of(
        api.admin("PUT", path, json=stale, headers={"If-Match": etag}), 412, "PreconditionFailed"
    )
    assert "GET" in message and first.headers["ETag"] in message
    error_of(
        api.admin("PATCH", path, json={"description": "x"}, headers={"If-Match": etag}),
        412,
        "PreconditionFailed",
    )
    error_of(api.admin("DELETE", path, headers={"If-Match": etag}), 412, "PreconditionFailed")
    assert api.ok("GET", path) == {**before, "enabled": False}

    # Read again, reapply, send the new ETag: it lands, with the first admin's change kept.
    fresh = api.admin("GET", path)
    redo = api.admin(
        "PATCH", path, json={"description": "second admin"}, headers={"If-Match": fresh.headers["ETag"]}
    )
    assert redo.status_code == 200
    assert redo.json() == {**before, "enabled": False, "description": "second admin"}
    # Delete with the current ETag.
    assert api.admin("DELETE", path, headers={"If-Match": redo.headers["ETag"]}).status_code == 204
    assert api.admin("GET", path).status_code == 404


def test_if_none_match_star_creates_only_and_if_match_star_needs_the_document(api):
    name = api.unique("Inm")
    path = f"/api/manage/entities/{name}"
    error_of(api.admin("PUT", path, json=ENTITY, headers={"If-Match": "*"}), 412, "PreconditionFailed")
    assert api.admin("GET", path).status_code == 404

    created = api.admin("PUT", path, json=ENTITY, headers={"If-None-Match": "*"})
    assert created.status_code == 201
    again = api.admin("PUT", path, json={**ENTITY, "label": "overwritten"}, headers={"If-None-Match": "*"})
    assert "already exists" in error_of(again, 412, "PreconditionFailed")
    got = api.admin("GET", path)
    assert got.json()["label"] == "Prices" and got.headers["ETag"] == created.headers["ETag"]

    replaced = api.admin("PUT", path, json={**ENTITY, "label": "Any"}, headers={"If-Match": "*"})
    assert replaced.status_code == 200 and replaced.json()["label"] == "Any"


@pytest.mark.parametrize("kind", ["formats", "transforms"])
def test_stale_if_match_on_formats_and_transforms(api, kind):
    name = api.unique("St")
    path = f"/api/manage/{kind}/{name}"
    if kind == "formats":
        first = api.admin("PUT", path, json={"delimiter": ";"})
        second = api.admin("PUT", path, json={"delimiter": "|"}, headers={"If-Match": first.headers["ETag"]})
        stale = api.admin("PUT", path, json={"delimiter": ","}, headers={"If-Match": first.headers["ETag"]})
        assert api.ok("GET", path)["delimiter"] == "|"
    else:
        xslt = (
            b'<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
            b'<xsl:template match="/"><Document/></xsl:template></xsl:stylesheet>'
        )
        first = api.admin("PUT", path, data=xslt)
        second = api.admin(
            "PUT", path, data=xslt.replace(b"Document", b"Doc2"), headers={"If-Match": first.headers["ETag"]}
        )
        stale = api.admin("PUT", path, data=xslt, headers={"If-Match": first.headers["ETag"]})
        got = api.admin("GET", path)
        assert b"Doc2" in got.content and got.headers["ETag"] == second.headers["ETag"]
    assert first.status_code == 201 and second.status_code == 200
    error_of(stale, 412, "PreconditionFailed")
    error_of(
        api.admin("DELETE", path, headers={"If-Match": first.headers["ETag"]}), 412, "PreconditionFailed"
    )
    assert api.admin("DELETE", path, headers={"If-Match": second.headers["ETag"]}).status_code == 204
    assert api.admin("GET", path).status_code == 404


# Entity changes that stored records cannot follow --------------------------------------------------------
def _entity_with_records(api, rows: bytes) -> tuple[str, str]:
    """An entity with records imported through a job: (entity, the ETag of its definition)."""
    activity, app, entity = api.import_job(ENTITY, processOnArrival=True)
    resp = api.enqueue(activity, app, rows, entity=entity)
    assert resp.status_code == 200, resp.text
    assert api.wait_terminal(app, resp.json()) == "Processed"
    return entity, api.admin("GET", f"/api/manage/entities/{entity}").headers["ETag"]


def _with_field(name: str, ftype: str) -> dict:
    return {**ENTITY, "fields": [f if f["name"] != name else {**f, "type": ftype} for f in ENTITY["fields"]]}


def test_a_type_change_with_records_is_409_with_the_count_and_force_keeps_browsing_at_200(api):
    entity, etag = _entity_with_records(api, b"CODE,PRICE,NOTE\nA,12.5,x\nB,7,y\nC,,z\n")
    path = f"/api/manage/entities/{entity}"

    refused = api.admin("PUT", path, json=_with_field("PRICE", "int"))
    message = error_of(refused, 409, "EntityHasRecords")
    assert "3 records" in message and "PRICE changes type from decimal to int" in message
    assert "?force=true" in message
    error_of(api.admin("PATCH", path, json={"keys": ["CODE", "NOTE"]}), 409, "EntityHasRecords")
    error_of(api.admin("PATCH", path, json={"companySpecific": False}), 409, "EntityHasRecords")
    got = api.admin("GET", path)
    assert got.json()["fields"][1]["type"] == "decimal" and got.headers["ETag"] == etag  # nothing changed

    # Changes the records can follow are fine.
    added = {**ENTITY, "label": "Renamed", "fields": [*ENTITY["fields"], {"name": "EXTRA", "type": "int"}]}
    ok = api.admin("PUT", path, json=added, headers={"If-Match": etag})
    assert ok.status_code == 200, ok.text

    forced = api.admin(
        "PUT",
        path,
        params={"force": "true"},
        json=_with_field("PRICE", "int"),
        headers={"If-Match": ok.headers["ETag"]},
    )
    assert forced.status_code == 200, forced.text
    browse = api.admin("GET", f"{path}/records", params={"company": "usmf"})
    assert browse.status_code == 200, browse.text
    by_code = {r["CODE"]: r for r in browse.json()["value"]}
    assert (by_code["A"]["PRICE"], by_code["B"]["PRICE"], by_code["C"]["PRICE"]) == (None, 7, None)
    (warning,) = browse.json()["warnings"]
    assert warning.startswith("PRICE (int): 1 stored value does not fit") and "'12.5'" in warning
    filtered = api.admin("GET", f"{path}/records", params={"filter": "PRICE ge 7"})
    assert filtered.status_code == 200, filtered.text
    assert [r["CODE"] for r in filtered.json()["value"]] == ["B"]  # '12.5' is no int: it matches nothing

    # Every type the value cannot be read as: browsing still answers 200.
    for ftype in ("date", "datetime", "bool", "guid", "string"):
        api.ok("PUT", path, params={"force": "true"}, json=_with_field("PRICE", ftype))
        assert api.admin("GET", f"{path}/records").status_code == 200, ftype
    error_of(api.admin("PUT", path, params={"force": "maybe"}, json=ENTITY), 400, "InvalidParameter")


def test_an_entity_without_records_changes_freely(api):
    name = api.unique("Empty")
    path = f"/api/manage/entities/{name}"
    api.ok("PUT", path, json=ENTITY)
    changed = {**_with_field("PRICE", "int"), "keys": ["NOTE"], "companySpecific": False}
    assert api.admin("PUT", path, json=changed).status_code == 200
