"""The import path exactly as D365 clients drive it (PROTOCOL §1, §2, §4): RIS, PSI, errors, order, retries."""

from __future__ import annotations

import csv
import io
import json
import os
import time
import urllib.parse
import uuid
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import d365_fixture

STATUS = "/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities.GetMessageStatus"
EXEC_ID = "/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities.GetExecutionIdByMessageId"

CG = {
    "label": "Customer groups",
    "keys": ["CUSTOMERGROUPID"],
    "fields": [
        {"name": "CUSTOMERGROUPID", "type": "string", "maxLength": 10},
        {"name": "DESCRIPTION", "type": "string", "maxLength": 60},
        {"name": "PAYMENTTERMS", "type": "enum", "values": ["Net30", "Net60"]},
        {"name": "CREDITLIMIT", "type": "decimal"},
        {"name": "ISBLOCKED", "type": "bool"},
    ],
}
HEADER = "CUSTOMERGROUPID,DESCRIPTION,PAYMENTTERMS,CREDITLIMIT,ISBLOCKED\r\n"


def csv_bytes(rows: list[str]) -> bytes:
    return (HEADER + "".join(r + "\r\n" for r in rows)).encode()


def ris_enqueue(
    api, activity, app, data: bytes, name="groups.csv", query="entity=Customer+groups&company=usmf"
):
    """RIS: no Content-Type, entity form-encoded with '+', the file name as external identifier."""
    return api.http.post(
        api.url(f"/api/connector/enqueue/{activity}?{query}"),
        data=data,
        headers={"Authorization": f"Bearer {api.make_token(app)}", "x-ms-dyn-externalidentifier": name},
        timeout=60,
    )


def error_code(resp) -> str:
    return resp.json()["error"]["code"]


# RIS and PSI ---------------------------------------------------------------------------------------


def test_ris_style_enqueue_and_status_with_the_quoted_id(api):
    activity, app, entity = api.import_job(CG, processOnArrival=True)
    resp = ris_enqueue(api, activity, app, csv_bytes(["10,Wholesale,Net30,1000.50,No"]))
    assert resp.status_code == 200
    raw = resp.text  # RIS keeps the raw body, quotes included, and sends it back
    assert raw.startswith('"') and raw.endswith('"')
    message_id = json.loads(raw)
    assert "Content-Type" not in resp.request.headers
    token = api.make_token(app)
    deadline = time.monotonic() + 60
    while True:
        status = api.http.post(
            api.url(STATUS), json={"messageId": raw}, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        assert status.status_code == 200
        assert status.headers["Content-Type"].startswith("application/json; odata.metadata=minimal")
        value = status.json()["value"]
        if value == "Processed" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert value == "Processed"
    assert status.json()["@odata.context"].endswith("/data/$metadata#Edm.String")
    legacy = api.http.get(
        api.url(f"/api/connector/jobstatus/{activity}"),
        params={"jobId": raw},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert legacy.status_code == 200
    state = legacy.json()
    assert state["DataJobStatus"]["DataJobState"] == "Processed"
    assert state["DataJobStatus"]["ExternalIdentifier"] == "groups.csv"
    assert state["ExecutionDetail"][0]["EntityName"] == entity
    assert state["ExecutionDetail"][0]["TargetRecords"] == 1
    msg = api.message(message_id)
    assert msg["externalIdentifier"] == "groups.csv"
    assert msg["company"] == "usmf"
    assert [t["status"] for t in msg["transitions"]] == [
        "Enqueued",
        "Preprocessing",
        "Processing",
        "Processed",
    ]
    execution = api.http.post(
        api.url(EXEC_ID),
        json={"_messageId": message_id},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ).json()["value"]
    runs = api.ok("GET", f"/api/manage/jobs/{activity}/runs")["value"]
    assert execution in [r["executionId"] for r in runs]
    record = api.records(entity, company="usmf")[0]
    assert record == {
        "CUSTOMERGROUPID": "10",
        "DESCRIPTION": "Wholesale",
        "PAYMENTTERMS": "Net30",
        "CREDITLIMIT": "1000.50",
        "ISBLOCKED": False,
        "company": "usmf",
    }


def test_psi_style_single_quoted_status_polled_until_terminal(api):
    activity, app, entity = api.import_job(CG, processOnArrival=True)
    resp = api.call(
        "POST",
        f"/api/connector/enqueue/{activity}",
        api.make_token(app),
        params={"entity": entity},
        data=csv_bytes(["20,Retail,Net60,5,Yes"]),
        headers={"Content-Type": "application/zip"},
    )
    assert resp.status_code == 200
    message_id = resp.json()
    assert api.wait_terminal(app, message_id) == "Processed"  # wait_terminal sends {'messageId':'…'}
    # the job's default company applies when the call names none
    assert api.records(entity, company="usmf")[0]["ISBLOCKED"] is True


def test_activity_id_in_any_spelling(api):
    activity, app, _ = api.import_job(CG)
    for variant in (activity.upper(), "{" + activity + "}", "%7B" + activity.upper() + "%7D"):
        resp = ris_enqueue(api, variant, app, csv_bytes([f"{uuid.uuid4().hex[:8]},x,Net30,1,No"]))
        assert resp.status_code == 200, (variant, resp.text)


# Refusals ------------------------------------------------------------------------------------------


def test_no_token_is_401(api):
    activity, _, _ = api.import_job(CG)
    resp = api.call("POST", f"/api/connector/enqueue/{activity}?entity=x", None, data=b"x")
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"] == "Bearer"


def test_expired_token_is_401(api, make_token):
    activity, app, _ = api.import_job(CG)
    resp = api.call(
        "POST", f"/api/connector/enqueue/{activity}?entity=x", make_token(app, minutes=-10), data=b"x"
    )
    assert resp.status_code == 401
    assert "expired" in resp.json()["error"]["message"]


def test_application_not_on_the_policy_is_403(api, make_token):
    activity, _, _ = api.import_job(CG)
    resp = api.call(
        "POST", f"/api/connector/enqueue/{activity}?entity=Customer+groups", make_token(), data=b"x"
    )
    assert resp.status_code == 403
    assert error_code(resp) == "ApplicationNotAuthorized"


def test_disabled_policy_entry_is_403(api):
    activity, app, _ = api.import_job(CG)
    job = api.ok("GET", f"/api/manage/jobs/{activity}")
    job["authorizationPolicy"][0]["enabled"] = False
    api.ok("PUT", f"/api/manage/jobs/{activity}", json=job)
    assert ris_enqueue(api, activity, app, csv_bytes(["1,a,Net30,1,No"])).status_code == 403


@pytest.mark.parametrize(
    "activity", ["00000000-0000-0000-0000-000000000000", "5d1c2a7e-0b7e-4f3c-9a41-3f0c2b8e9d11", "not-a-guid"]
)
def test_unknown_activity_is_500_with_a_json_error(api, make_token, activity):
    # D365 answers 500; RIS's "Validate connection" probes the zero GUID and reads 500 as access OK.
    resp = api.call("POST", f"/api/connector/enqueue/{activity}", make_token(), data=b"x")
    assert resp.status_code == 500
    assert error_code(resp) == "UnknownActivity"


def test_disabled_job_is_400(api):
    activity, app, _ = api.import_job(CG, enabled=False)
    resp = ris_enqueue(api, activity, app, csv_bytes(["1,a,Net30,1,No"]))
    assert resp.status_code == 400 and error_code(resp) == "JobDisabled"


def test_file_job_needs_a_known_entity(api):
    activity, app, _ = api.import_job(CG)
    missing = ris_enqueue(api, activity, app, b"x", query="company=usmf")
    assert missing.status_code == 400 and error_code(missing) == "EntityRequired"
    unknown = ris_enqueue(api, activity, app, b"x", query="entity=Vendors")
    assert unknown.status_code == 400 and error_code(unknown) == "UnknownEntity"


def test_too_large_is_413_and_points_to_the_package_api(api):
    activity, app, _ = api.import_job(CG)
    resp = ris_enqueue(api, activity, app, b"x" * (8 * 1024 * 1024 + 1))
    assert resp.status_code == 413
    assert "GetAzureWriteUrl" in resp.json()["error"]["message"]


def test_a_repeated_enqueue_returns_the_original_message(api):
    activity, app, _ = api.import_job(CG)
    data = csv_bytes(["1,a,Net30,1,No"])
    first = ris_enqueue(api, activity, app, data, name="same.csv").json()
    assert ris_enqueue(api, activity, app, data, name="same.csv").json() == first
    assert ris_enqueue(api, activity, app, data + b"2,b,Net30,1,No\r\n", name="same.csv").json() != first
    last = ris_enqueue(api, activity, app, data, name="other.csv").json()
    assert last != first
    listed = api.ok("GET", f"/api/manage/jobs/{activity}/messages")["value"]
    assert len(listed) == 3
    # Newest first (docs/openapi.yaml, list messages), across pages too.
    assert listed[0]["messageId"] == last and listed[-1]["messageId"] == first
    page = api.ok("GET", f"/api/manage/jobs/{activity}/messages", params={"top": 2})
    assert [m["messageId"] for m in page["value"]] == [m["messageId"] for m in listed[:2]]
    link = urllib.parse.urlsplit(page["nextLink"])
    rest = api.admin("GET", f"{link.path}?{link.query}")
    assert [m["messageId"] for m in rest.json()["value"]] == [listed[2]["messageId"]]


# Outcomes ------------------------------------------------------------------------------------------


def test_mixed_good_and_bad_records(api):
    activity, app, entity = api.import_job(CG, processOnArrival=True)
    data = csv_bytes(
        [
            "10,Good one,Net30,10.5,No",
            "11,Bad terms,Net90,1,No",
            "12,Bad number,Net30,abc,No",
            "THIS-KEY-IS-TOO-LONG,x,Net30,1,No",
            ",No key,Net30,1,No",
            "13,Good two,net60,,yes",
            "14,short row",
        ]
    )
    message_id = ris_enqueue(api, activity, app, data).json()
    assert api.wait_terminal(app, message_id) == "ProcessedWithErrors"
    detail = api.message(message_id)
    assert detail["counts"][entity] == {"read": 7, "written": 2, "rejected": 5}
    assert "Net90" in detail["errorSummary"]
    records = {r["CUSTOMERGROUPID"]: r for r in api.records(entity, company="usmf")}
    assert set(records) == {"10", "13"}
    assert records["13"]["PAYMENTTERMS"] == "Net60"
    errors = api.admin("GET", detail["errorFile"])
    assert errors.status_code == 200 and errors.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(errors.text)))
    by_line = {int(r["Line"]): r for r in rows}
    assert set(by_line) == {3, 4, 5, 6, 8}  # line numbers in the file, header = line 1
    assert "Net90" in by_line[3]["Reason"] and json.loads(by_line[3]["Values"])["PAYMENTTERMS"] == "Net90"
    assert "CREDITLIMIT" in by_line[4]["Reason"]
    assert "CUSTOMERGROUPID" in by_line[5]["Reason"]
    listed = api.ok("GET", f"/api/manage/jobs/{activity}/messages", params={"status": "ProcessedWithErrors"})
    assert [m["messageId"] for m in listed["value"]] == [message_id]
    assert (
        api.ok("GET", f"/api/manage/jobs/{activity}/messages", params={"status": "Processed"})["value"] == []
    )


def test_unreadable_file_is_preprocessing_error_and_writes_nothing(api):
    activity, app, entity = api.import_job(CG, processOnArrival=True)
    data = csv_bytes(["10,ok,Net30,1,No"]) + b"\xff\xfe\x00junk\r\n"
    message_id = ris_enqueue(api, activity, app, data).json()
    assert api.wait_terminal(app, message_id) == "PreProcessingError"
    assert "byte" in api.message(message_id)["errorSummary"]
    assert api.records(entity, company="usmf") == []  # nothing half-imported


def test_kiko_exchange_rates_real_d365_csv(api):
    path = d365_fixture("kiko-exchange-rates-csv", "RI_CurEx_Export-Exchange rates.csv")
    entity_body = {
        "label": "Exchange rates",
        "keys": ["RATETYPENAME", "FROMCURRENCY", "TOCURRENCY", "STARTDATE"],
        "fields": [
            {"name": "RATETYPENAME", "type": "string"},
            {"name": "FROMCURRENCY", "type": "string", "maxLength": 3},
            {"name": "TOCURRENCY", "type": "string", "maxLength": 3},
            {"name": "STARTDATE", "type": "datetime"},
            {"name": "CONVERSIONFACTOR", "type": "enum", "values": ["One", "Ten", "Hundred", "Thousand"]},
            {"name": "ENDDATE", "type": "datetime"},
            {"name": "RATE", "type": "decimal"},
            {"name": "RATETYPEDESCRIPTION", "type": "string"},
        ],
    }
    activity, app, entity = api.import_job(entity_body, processOnArrival=True)
    data = path.read_bytes()
    lines = data.decode().splitlines()
    message_id = api.enqueue(activity, app, data, entity="Exchange rates", external_id=path.name).json()
    assert api.wait_terminal(app, message_id) == "Processed"
    records = api.records(entity, company="usmf", top=1000)
    assert len(records) == len(lines) - 1
    first = next(
        r
        for r in records
        if r["STARTDATE"] == "2011-01-31T00:00:00Z"
        and r["RATETYPENAME"] == "Average"
        and r["FROMCURRENCY"] == "EUR"
        and r["TOCURRENCY"] == "USD"
    )
    assert first["RATE"] == "1.3357400000000000"  # exact, scale kept
    assert first["ENDDATE"] == "2011-02-27T00:00:00Z"
    leading_dot = [ln.split(",") for ln in lines[1:] if ",." in ln]
    assert leading_dot, "the fixture has decimals without a leading zero"
    sample = leading_dot[0]
    match = next(
        r
        for r in records
        if r["FROMCURRENCY"] == sample[1]
        and r["TOCURRENCY"] == sample[2]
        and r["STARTDATE"] == datetime.strptime(sample[3], "%Y-%m-%d %H:%M:%S").strftime("%Y-%m-%dT%H:%M:%SZ")
        and r["RATETYPENAME"] == sample[0]
    )
    assert match["RATE"] == "0" + sample[6]
    # filter and paging through the records API
    page = api.ok(
        "GET",
        f"/api/manage/entities/{entity}/records",
        params={"company": "usmf", "filter": "FROMCURRENCY eq 'EUR' and RATE gt 1.3", "top": 5},
    )
    assert len(page["value"]) <= 5 and page["nextLink"]
    assert all(r["FROMCURRENCY"] == "EUR" and float(r["RATE"]) > 1.3 for r in page["value"])
    bad = api.admin("GET", f"/api/manage/entities/{entity}/records", params={"filter": "NOPE eq 1"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidFilter"


# Order, scheduling and retries ----------------------------------------------------------------------


def test_twenty_files_on_an_in_order_job(api):
    activity, app, entity = api.import_job(CG, processInOrder=True)
    ids = []
    for i in range(20):
        rows = [f"ORDER,file {i},Net30,{i},No", f"F{i},file {i},Net30,{i},No"]
        if i == 7:
            rows.append("BAD,x,NetXX,1,No")  # a failing record must not let later files overtake
        ids.append(ris_enqueue(api, activity, app, csv_bytes(rows), name=f"f{i}.csv").json())
    assert all(api.status(app, m) == "Enqueued" for m in ids[:3])  # nothing happens before dispatch
    api.ok("POST", f"/api/manage/jobs/{activity}/run")
    finals = [api.wait_terminal(app, m, timeout=120) for m in ids]
    assert finals[7] == "ProcessedWithErrors"
    assert all(s == "Processed" for i, s in enumerate(finals) if i != 7)
    # the shared key holds the last file's value: files were applied in enqueue order
    order = {r["CUSTOMERGROUPID"]: r for r in api.records(entity, company="usmf", top=100)}["ORDER"]
    assert order["DESCRIPTION"] == "file 19"
    spans = []
    for m in ids:
        t = {x["status"]: x["at"] for x in api.message(m)["transitions"]}
        spans.append((t["Preprocessing"], t[api.message(m)["status"]]))
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert end <= start, "a message started before the previous one ended"


def test_scheduler_dispatches_a_due_time_once(api):
    activity, app, _ = api.import_job(CG, recurrence={"unit": "minutes", "interval": 1})
    ids = [
        ris_enqueue(api, activity, app, csv_bytes([f"{i},x,Net30,1,No"]), name=f"s{i}.csv").json()
        for i in range(3)
    ]
    api.run_scheduler()
    api.run_scheduler()  # the same due time: nothing more is dispatched
    assert [api.wait_terminal(app, m) for m in ids] == ["Processed"] * 3
    runs = api.ok("GET", f"/api/manage/jobs/{activity}/runs")["value"]
    assert len(runs) == 3
    assert {r["trigger"] for r in runs} == {"recurrence"}
    assert all(r["status"] == "Ended" for r in runs)
    assert sorted(m for r in runs for m in r["messages"]) == sorted(ids)


def test_monitoring_dispatches_when_the_backlog_crosses_the_threshold(api, app_env):
    activity, app, _ = api.import_job(
        CG, monitoring={"unit": "minutes", "interval": 1, "backlogThreshold": 2}
    )
    first = ris_enqueue(api, activity, app, csv_bytes(["1,x,Net30,1,No"]), name="m1.csv").json()
    ids = [first, ris_enqueue(api, activity, app, csv_bytes(["2,x,Net30,1,No"]), name="m2.csv").json()]
    api.run_scheduler()
    assert [api.wait_terminal(app, m) for m in ids] == ["Processed"] * 2
    assert {r["trigger"] for r in api.ok("GET", f"/api/manage/jobs/{activity}/runs")["value"]} == {
        "monitoring"
    }
    from azure.data.tables import TableClient

    from shared.storage import names

    table = TableClient.from_connection_string(app_env["AzureWebJobsStorage"], names.TABLE_QUEUE_LOAD)
    samples = list(table.query_entities("PartitionKey eq @j", parameters={"j": activity}))
    assert samples and samples[0]["Waiting"] == 2 and samples[0]["OldestAgeSeconds"] >= 0


def test_a_crash_midway_is_retried_without_duplicates(api, app_env):
    activity, app, entity = api.import_job(CG, processOnArrival=True)
    rows = [f"K{i:05d},row {i},Net30,{i}.25,No" for i in range(4500)]  # > 2 chunks of 2000
    armed = Path(app_env["DEV_FAULT_FAIL_ONCE_DIR"]) / "armed"
    armed.touch()
    try:
        message_id = ris_enqueue(api, activity, app, csv_bytes(rows)).json()
        assert api.wait_terminal(app, message_id, timeout=180) == "Processed"
    finally:
        os.remove(armed)
    detail = api.message(message_id)
    assert detail["attempts"] == 2  # failed once after the first chunk, then completed
    assert detail["counts"][entity] == {"read": 4500, "written": 4500, "rejected": 0}
    records = api.records(entity, company="usmf", top=1000)
    assert len(records) == 4500
    assert len({r["CUSTOMERGROUPID"] for r in records}) == 4500
