"""Storage faults through real sockets: the app and the local host reach Azurite through fault proxies
(tools/faultproxy.py) that reset connections, before or after the service acted, and stall responses.

What must hold under them: a big import completes with exact counts and no duplicates (transient failures
are retried at the failed call or batch, shared/storage/retry.py, not by restarting the file), an export
run completes, and concurrent dequeuers never share a message (conditional writes recognize their own
write whose reply was lost, shared/storage/concurrency.py). Each test prints the faults it survived.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest

from tests.conftest import REPO_ROOT
from tests.devhost.hostproc import HostProcess, clean_env
from tests.support.client import ApiClient
from tests.support.faultproxy import FaultProxy, proxied_connection_string

pytestmark = [pytest.mark.azurite, pytest.mark.timeout(1800)]

# The figure; FAULT_IMPORT_ROWS lowers it for a quick local run.
IMPORT_ROWS = int(os.environ.get("FAULT_IMPORT_ROWS", "200000"))
RESET_RATE = 0.01  # of all storage requests, on every service
STALL_RATE = 0.002
STALL_SECONDS = 2.0

ENTITY = {
    "label": "Fault rows",
    "keys": ["ID"],
    "fields": [
        {"name": "ID", "type": "string", "maxLength": 20},
        {"name": "NAME", "type": "string"},
        {"name": "AMOUNT", "type": "decimal"},
    ],
}


@pytest.fixture(scope="module")
def faulty(app_env, tmp_path_factory):
    """An Azurite of this module, a fault proxy before each of its services, and the app under the local host
    reaching storage only through the proxies (the host's queue polling included)."""
    from tools.azurite import start_azurite

    work = tmp_path_factory.mktemp("faulty")
    with start_azurite(in_memory=True, log_path=work / "azurite.log") as azurite:
        proxies = {
            service: FaultProxy(getattr(azurite, f"{service}_port"), work / service, seed=11 + i)
            for i, service in enumerate(("blob", "queue", "table"))
        }
        env = clean_env(**{**app_env, "AzureWebJobsStorage": proxied_connection_string(azurite, proxies)})
        host = HostProcess(REPO_ROOT, env, work / "logs", name="faulty")
        try:
            host.wait_started(60)
            yield host, proxies
        finally:
            host.stop()
            for proxy in proxies.values():
                proxy.stop()


def set_faults(proxies: dict[str, FaultProxy], **rates: float) -> None:
    for proxy in proxies.values():
        proxy.set(**rates)


def fault_totals(proxies: dict[str, FaultProxy]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for proxy in proxies.values():
        for key, value in proxy.stats().items():
            totals[key] = totals.get(key, 0) + value
    return totals


def _log_lines(host: HostProcess, needle: str, limit: int = 30) -> list[str]:
    """The host's last `limit` log lines that mention `needle` (a run or message ID), for a failure message."""
    return [line for line in host.log.splitlines() if needle in line][-limit:]


def faults_since(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {key: after[key] - before.get(key, 0) for key in after}


def report(what: str, faults: dict[str, int]) -> None:
    resets = faults["resets_before"] + faults["resets_after"]
    rate = resets / max(1, faults["requests"])
    print(
        f"\n{what}: survived {resets} resets ({faults['resets_before']} before, {faults['resets_after']} "
        f"after the service acted) and {faults['stalls']} stalls in {faults['requests']} storage requests "
        f"({rate:.2%} reset)"
    )


@pytest.fixture(scope="module")
def api(faulty, make_token):
    host, _ = faulty
    return ApiClient(host.url, admin_token=make_token(str(uuid.uuid4()), admin=True), make_token=make_token)


def retrying(call, attempts: int = 8):
    """What RIS does: re-send on any non-2xx or network error (the dedup window makes it harmless)."""
    import requests

    for attempt in range(attempts):
        try:
            resp = call()
        except requests.RequestException:
            resp = None
        if resp is not None and resp.status_code < 500:
            return resp
        time.sleep(0.5 * (attempt + 1))
    raise AssertionError(f"still failing after {attempts} attempts: {resp and resp.text}")


def test_a_big_import_completes_with_exact_counts_under_resets(faulty, api):
    _, proxies = faulty
    activity, app, entity = api.import_job(ENTITY, processOnArrival=True)
    lines = ["ID,NAME,AMOUNT"] + [f"F{i:08d},row {i},{i}.{i % 100:02d}" for i in range(IMPORT_ROWS)]
    body = ("\r\n".join(lines) + "\r\n").encode()
    before = fault_totals(proxies)
    set_faults(proxies, reset_rate=RESET_RATE, stall_rate=STALL_RATE, stall_seconds=STALL_SECONDS)
    try:
        message_id = retrying(
            lambda: api.enqueue(activity, app, body, entity=entity, external_id="big-import.csv")
        ).json()
        deadline = time.monotonic() + 1200
        status = None
        while time.monotonic() < deadline:
            resp = retrying(
                lambda: api.call(
                    "POST",
                    "/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities.GetMessageStatus",
                    api.make_token(app),
                    json={"messageId": message_id},
                )
            )
            status = resp.json()["value"]
            if status in ("Processed", "ProcessedWithErrors", "PreProcessingError", "PostProcessingFailed"):
                break
            time.sleep(1)
    finally:
        set_faults(proxies, reset_rate=0, stall_rate=0)
    faults = faults_since(before, fault_totals(proxies))
    report(f"import of {IMPORT_ROWS} rows", faults)
    detail = api.message(message_id)
    assert status == "Processed", detail
    assert detail["counts"][entity] == {"read": IMPORT_ROWS, "written": IMPORT_ROWS, "rejected": 0}
    assert faults["resets_before"] + faults["resets_after"] > 0, "no fault was injected"
    records = api.records(entity, company="usmf", top=1000)
    assert len(records) == IMPORT_ROWS
    assert len({r["ID"] for r in records}) == IMPORT_ROWS  # no duplicates


def test_a_run_whose_recording_reply_was_lost_still_starts_and_ends(faulty, api):
    """The run's row is stored but the reply is lost (a reset after the service acted), and the SDK does not
    retry a MERGE: the write is retried at the call (run_repo.create_run), so the request answers 202 and the
    run ends, instead of a 500 that left a run Waiting for a work item that was never queued (found by the
    test below: one of 12 runs stayed Waiting)."""
    host, proxies = faulty
    api.ensure_legal_entity("usmf")  # this module's Azurite is its own
    entity = api.unique("Fr")
    api.ok("PUT", f"/api/manage/entities/{entity}", json={**ENTITY, "label": f"Fault run {entity}"})
    project = api.unique("FrP")
    api.ok(
        "PUT",
        f"/api/manage/projects/{project}",
        json={"operation": "export", "entities": [{"entity": entity}]},
    )
    job = api.ok(
        "POST",
        "/api/manage/jobs",
        json={"name": project, "project": project, "company": "usmf", "authorizationPolicy": []},
    )
    activity = job["activityId"]
    with proxies["table"].reset_after(r"^(MERGE|PATCH) /\S*/runs\("):
        resp = api.admin("POST", f"/api/manage/jobs/{activity}/run")
    assert resp.status_code == 202, resp.text
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = api.ok("GET", f"/api/manage/jobs/{activity}/runs")["value"]
        if runs and all(r["status"] in ("Ended", "Error") for r in runs):
            break
        time.sleep(0.5)
    assert [r["status"] for r in runs] == ["Ended"], (runs, _log_lines(host, activity))


def test_an_enqueue_whose_row_insert_reply_was_lost_is_accepted_once(faulty, api):
    """The message row is stored but the insert's reply is lost (a reset after the service acted); the insert is
    a POST, which the SDK does not retry: create_message retries it, finds the row it stored, and the enqueue
    answers 200 with the ID. The message is processed once and listed once, newest first."""
    host, proxies = faulty
    activity, app, entity = api.import_job(ENTITY, processOnArrival=True)  # its legal entity too
    with proxies["table"].reset_after(r"^POST /\S*/messages[ ?]"):
        resp = api.enqueue(activity, app, b"ID,NAME,AMOUNT\r\nE1,one,1\r\n", entity=entity)
    assert resp.status_code == 200, resp.text
    message_id = resp.json()
    assert api.wait_terminal(app, message_id, timeout=120) == "Processed"
    listed = api.ok("GET", f"/api/manage/jobs/{activity}/messages")["value"]
    assert [m["messageId"] for m in listed] == [message_id], (listed, _log_lines(host, message_id))


def test_an_export_completes_and_concurrent_dequeuers_never_share_under_resets(faulty, api):
    host, proxies = faulty
    entity = api.unique("Fx")
    api.ok("PUT", f"/api/manage/entities/{entity}", json={**ENTITY, "label": f"Fault export {entity}"})
    project = api.unique("FxP")
    api.ok(
        "PUT",
        f"/api/manage/projects/{project}",
        json={"operation": "export", "entities": [{"entity": entity}]},
    )
    importer, imp_app, _ = api.import_job(ENTITY, entity=entity, processOnArrival=True)
    rows = "ID,NAME,AMOUNT\r\n" + "".join(f"X{i:05d},x,{i}\r\n" for i in range(500))
    message = api.enqueue(importer, imp_app, rows.encode(), entity=entity).json()
    assert api.wait_terminal(imp_app, message, timeout=120) == "Processed"

    app = str(uuid.uuid4())
    job = api.ok(
        "POST",
        "/api/manage/jobs",
        json={
            "name": project,
            "project": project,
            "company": "usmf",
            "authorizationPolicy": [{"applicationId": app}],
        },
    )
    activity = job["activityId"]
    token = api.make_token(app)
    before = fault_totals(proxies)
    set_faults(proxies, reset_rate=RESET_RATE * 3, stall_rate=0)
    try:
        started = 0
        while started < 12:  # a 503 (the item could not be queued) ended its run in Error: run again
            if retrying(lambda: api.admin("POST", f"/api/manage/jobs/{activity}/run")).status_code == 202:
                started += 1
        # A liveness bound, not a timing: alone the runs end in about a minute; a whole-suite run on two busy
        # cores once needed more than 300 s (each reset costs a retry with backoff, or a redelivery after the
        # queue's 10 s visibility timeout).
        started_at = time.monotonic()
        deadline = started_at + 600
        while time.monotonic() < deadline:
            runs = retrying(lambda: api.admin("GET", f"/api/manage/jobs/{activity}/runs")).json()["value"]
            if all(r["status"] in ("Ended", "Error") for r in runs):
                break
            time.sleep(1)
        # Nothing left Waiting or Executing (the statuses first, so a failure shows them whole, with what the
        # host logged about each run left behind).
        stuck = [r for r in runs if r["status"] not in ("Ended", "Error")]
        assert not stuck, (
            [(r["status"], r["errors"]) for r in runs],
            stuck,
            {r["executionId"]: _log_lines(host, r["executionId"]) for r in stuck},
        )
        print(f"12 export runs ended within {time.monotonic() - started_at:.0f} s")
        failed_to_queue = [r for r in runs if r["status"] == "Error"]
        assert all("could not be queued" in " ".join(r["errors"]) for r in failed_to_queue), failed_to_queue
        runs = [r for r in runs if r["status"] == "Ended"]
        assert len(runs) == 12, runs
        assert all(r["totalRecords"] == 500 and r["fileUploaded"] for r in runs), runs
        expected = {m for r in runs for m in r["messages"]}
        assert len(expected) == len(runs)

        got: list[str] = []
        lock = threading.Lock()

        def dequeuer() -> None:
            import requests

            session = requests.Session()
            while True:
                try:
                    resp = session.get(
                        f"{api.base}/api/connector/dequeue/{activity}",
                        headers={"Authorization": f"Bearer {token}"},
                        timeout=60,
                    )
                except requests.RequestException:
                    continue
                if resp.status_code == 204:
                    return
                if resp.status_code != 200:
                    continue  # a 5xx from a reset: RIS tries again
                with lock:
                    got.append(resp.json()["CorrelationId"])

        threads = [threading.Thread(target=dequeuer) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
    finally:
        set_faults(proxies, reset_rate=0, stall_rate=0)
    faults = faults_since(before, fault_totals(proxies))
    report("12 exports and 8 concurrent dequeuers", faults)
    assert len(got) == len(set(got)), "a message was handed to two dequeuers"
    # A dequeue whose reply was lost hides its message until the redelivery timeout: never handed out twice,
    # and every message was handed out at most once.
    assert set(got) <= expected and len(got) >= len(expected) - faults["resets_after"]
