"""A job bound to a legal entity imports only into it: a partner cannot write into another company's data by
naming it in the enqueue `company` parameter. A malformed legal entity ID is a 400, never a partition key."""

from __future__ import annotations

from tests.e2e.test_import_protocol import CG, csv_bytes


def test_enqueue_into_another_legal_entity_is_refused(api):
    activity, app, entity = api.import_job(CG, processOnArrival=True)  # company usmf
    data = csv_bytes(["LE1,x,Net30,1,No"])
    other = api.enqueue(activity, app, data, entity="Customer groups", company="demf")
    assert other.status_code == 403, other.text
    assert other.json()["error"]["code"] == "LegalEntityNotAllowed"
    bad = api.enqueue(activity, app, data, entity="Customer groups", company="us/mf")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidLegalEntity"

    same = api.enqueue(activity, app, data, entity="Customer groups", company="USMF")
    assert same.status_code == 200
    assert api.wait_terminal(app, same.json()) == "Processed"
    assert [r["company"] for r in api.records(entity, company="usmf")] == ["usmf"]
    assert api.records(entity, company="demf") == []


def test_a_job_without_a_legal_entity_takes_the_one_named(api):
    activity, app, entity = api.import_job(CG, processOnArrival=True, company=None)
    resp = api.enqueue(
        activity, app, csv_bytes(["LE2,x,Net30,1,No"]), entity="Customer groups", company="demf"
    )
    assert resp.status_code == 200, resp.text
    assert api.wait_terminal(app, resp.json()) == "Processed"
    assert [r["CUSTOMERGROUPID"] for r in api.records(entity, company="demf")] == ["LE2"]
