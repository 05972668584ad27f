"""Operators acting on messages over HTTP (issue 11, item 6): reprocess a failed message, cancel a waiting
one, see what an in-order message waits behind, and a re-send after a failure is a new message."""

from __future__ import annotations

from tests.e2e.test_import_protocol import CG, csv_bytes, error_code, ris_enqueue

UNREADABLE = csv_bytes(["10,ok,Net30,1,No"]) + b"\xff\xfe\x00junk\r\n"
GOOD = csv_bytes(["10,ok,Net30,1,No"])


def test_a_failed_message_is_reprocessed_with_its_history(api):
    activity, app, _ = api.import_job(CG, processOnArrival=True)
    message_id = ris_enqueue(api, activity, app, UNREADABLE, name="bad.csv").json()
    assert api.wait_terminal(app, message_id) == "PreProcessingError"
    first_reason = api.message(message_id)["errorSummary"]

    resp = api.admin("POST", f"/api/manage/messages/{message_id}/reprocess")
    assert resp.status_code == 202, resp.text
    assert resp.json()["status"] == "Enqueued" and resp.json()["errorSummary"] in ("", None)
    assert api.wait_terminal(app, message_id) == "PreProcessingError"  # dispatched and processed again
    detail = api.message(message_id)
    assert detail["attempts"] == 2
    assert first_reason in detail["previousErrors"]
    assert [t["status"] for t in detail["transitions"]].count("Enqueued") == 2


def test_only_a_failed_message_can_be_reprocessed_and_only_by_an_admin(api):
    activity, app, _ = api.import_job(CG, processOnArrival=True)
    message_id = ris_enqueue(api, activity, app, GOOD).json()
    assert api.wait_terminal(app, message_id) == "Processed"
    resp = api.admin("POST", f"/api/manage/messages/{message_id}/reprocess")
    assert resp.status_code == 409 and error_code(resp) == "MessageNotFailed"
    partner = api.http.post(
        api.url(f"/api/manage/messages/{message_id}/reprocess"),
        headers={"Authorization": f"Bearer {api.make_token(app)}"},
        timeout=30,
    )
    assert partner.status_code == 403


def test_a_waiting_message_is_canceled_and_d365_sees_a_valid_status(api):
    activity, app, _ = api.import_job(CG)  # not processed on arrival: it waits
    message_id = ris_enqueue(api, activity, app, GOOD).json()
    resp = api.admin("POST", f"/api/manage/messages/{message_id}/cancel")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "PostProcessingFailed" and body["canceled"] is True
    assert "canceled by an administrator" in body["errorSummary"]
    assert api.wait_terminal(app, message_id) == "PostProcessingFailed"  # the D365 status action
    again = api.admin("POST", f"/api/manage/messages/{message_id}/cancel")
    assert again.status_code == 409 and error_code(again) == "MessageNotWaiting"
    # A canceled message can be reprocessed.
    assert api.admin("POST", f"/api/manage/messages/{message_id}/reprocess").status_code == 202


def test_an_in_order_message_says_what_it_waits_behind(api):
    activity, app, _ = api.import_job(CG, processInOrder=True)
    first = ris_enqueue(api, activity, app, GOOD, name="a.csv").json()
    second = ris_enqueue(api, activity, app, GOOD, name="b.csv").json()
    assert api.message(first)["waitingBehind"] is None
    assert api.message(second)["waitingBehind"] == {"messageId": first, "status": "Enqueued"}


def test_a_resend_after_a_failure_is_a_new_message_a_retry_of_live_work_is_not(api):
    activity, app, _ = api.import_job(CG, processOnArrival=True)
    failed = ris_enqueue(api, activity, app, UNREADABLE, name="same.csv").json()
    assert api.wait_terminal(app, failed) == "PreProcessingError"
    resent = ris_enqueue(api, activity, app, UNREADABLE, name="same.csv").json()
    assert resent != failed
    good = ris_enqueue(api, activity, app, GOOD, name="good.csv").json()
    assert api.wait_terminal(app, good) == "Processed"
    assert ris_enqueue(api, activity, app, GOOD, name="good.csv").json() == good  # succeeded: the same
