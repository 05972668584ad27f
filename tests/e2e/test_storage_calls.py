"""Storage calls per operation, pinned (issue 14): every request the app sends, counted by the local host's
processes (DEV_STORAGE_CALL_LOG, shared/storage/call_log.py), for the paths a partner drives most.

A change in a count fails with the old and new number of each operation that changed: update the pin when the
change is intended, and say why in the commit. The test process's own calls (its waits read storage through
the same factory) are left out by its process ID. Timings are never asserted.

The configuration's freshness check (`table:get config-version`) is the one time-bound read: an HTTP process
makes it at most once per CONFIG_CHECK_SECONDS, so it is pinned as a range; each work item makes it once.
"""

from __future__ import annotations

import os
import time

import pytest

from shared.storage import call_log
from tests.e2e.test_import_protocol import CG, csv_bytes

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

QUIET_SECONDS = 1.0  # no new line for this long: the app is done (background work is polled faster)
VERSION_READ = "table:get config-version"

# (a) One one-row file on a process-on-arrival job, from enqueue to Processed and its run ended.
ONE_ROW_ON_ARRIVAL = {
    # enqueue: the file and the index row by message ID (at once), then the row (created dispatched; its
    # newest-first index row is written by the grid's next listing), then the work item
    "blob:put inbound": 1,
    "table:upsert messageindex": 1,
    "table:insert messages": 1,
    "queue:send import-work": 1,
    # worker: the claim (a conditional MERGE with the item's ETag), the file, the batch, the terminal MERGE
    # (Processing and Processed with their times, the counts), the folded run's row
    "table:merge messages": 2,
    "blob:get inbound": 1,
    "table:batch ent*": 1,
    "table:upsert runs": 1,
}
# (b) An export run of a three-row table, from the run request to the run ended.
SMALL_EXPORT = {
    "blob:put outbound": 1,
    "queue:send export-work": 1,
    "table:get config": 2,
    "table:get messageindex": 1,
    "table:get runindex": 6,
    "table:get runs": 2,
    "table:insert messages": 1,  # the message (its newest-first index row: the next listing)
    "table:merge runs": 3,
    "table:query ent*": 1,
    "table:upsert messageindex": 1,  # by message ID
    "table:upsert runindex": 1,
    "table:upsert runs": 1,
}
# (c) One GetMessageStatus poll of a message the host already answered for.
STATUS_POLL = {"table:get messages": 1}


class Calls:
    """The app's storage calls between two quiet points of the log."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0

    def settle(self, quiet: float = QUIET_SECONDS, timeout: float = 60.0) -> None:
        """Wait until no line was added for `quiet` seconds, and start counting from there."""
        deadline = time.monotonic() + timeout
        size, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            now = os.path.getsize(self.path) if os.path.exists(self.path) else 0
            if now != size:
                size, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                break
            time.sleep(0.05)
        _, self.offset = call_log.read(self.path, 0)

    def take(self, quiet: float = QUIET_SECONDS) -> dict[str, int]:
        """The calls since the last settle, once the app is quiet again."""
        start = self.offset
        self.settle(quiet)
        counts, _ = call_log.read(self.path, start, exclude_pid=os.getpid())
        return dict(counts)


def assert_calls(actual: dict[str, int], expected: dict[str, int], version_reads: tuple[int, int]) -> None:
    """Exactly `expected` per operation, and between version_reads[0] and [1] configuration version reads."""
    reads = actual.pop(VERSION_READ, 0)
    assert actual == expected, call_log.describe_change(expected, actual)
    low, high = version_reads
    assert low <= reads <= high, f"{VERSION_READ}: {reads}, expected {low}..{high}"


@pytest.fixture
def calls(app_env) -> Calls:
    return Calls(app_env["DEV_STORAGE_CALL_LOG"])


def wait_until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_one_row_file_on_arrival(api, calls):
    from shared.services.registry import message_repo, run_repo

    activity, app, entity = api.import_job(CG, processOnArrival=True)
    data = csv_bytes(["10,Wholesale,Net30,1000.50,No"])
    # A first file warms the processes' configuration caches for this job; the second is measured.
    api.wait_terminal(app, api.enqueue(activity, app, data, entity=entity).json())
    calls.settle()
    resp = api.enqueue(activity, app, csv_bytes(["20,Retail,Net60,1,No"]), entity=entity)
    assert resp.status_code == 200, resp.text
    message_id = resp.json()

    def ended() -> bool:
        message = message_repo().find_by_id(message_id)
        if message is None or message.get("Status") != "Processed" or not message.get("RunId"):
            return False
        run = run_repo().find_run(message["RunId"])
        return run is not None and run.get("Status") == "Ended"

    wait_until(ended)
    actual = calls.take()
    print("one-row file on arrival:", dict(sorted(actual.items())))
    message = message_repo().find_by_id(message_id)
    assert [t["status"] for t in message["Transitions"]] == [
        "Enqueued",
        "Preprocessing",
        "Processing",
        "Processed",
    ]
    # The worker's check at the start of the item, and the enqueue request's when it falls due.
    assert_calls(actual, ONE_ROW_ON_ARRIVAL, (1, 3))

    # What the calls saved is still answered: the run (folded: the message's ID) and its execution.
    token = api.make_token(app)
    run_id = api.call(
        "POST",
        "/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities.GetExecutionIdByMessageId",
        token,
        json={"_messageId": message_id},
    ).json()["value"]
    assert run_id == message["RunId"]
    summary = api.call(
        "POST",
        "/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities.GetExecutionSummaryStatus",
        token,
        json={"executionId": run_id},
    )
    assert summary.json()["value"] == "Succeeded", summary.text
    [run] = [
        r for r in api.ok("GET", f"/api/manage/jobs/{activity}/runs")["value"] if r["executionId"] == run_id
    ]
    assert run["status"] == "Ended" and run["trigger"] == "on-arrival", run


def test_b_export_of_a_small_table(api, calls):
    from shared.services.registry import run_repo
    from tests.e2e.test_export import ROWS, Export

    ex = Export(api, rows=ROWS)
    ex.run_now()  # warms the caches
    known = {r["RunId"] for r in run_repo().list_runs(ex.activity, page_size=200)[0]}
    calls.settle()
    resp = api.admin("POST", f"/api/manage/jobs/{ex.activity}/run")
    assert resp.status_code == 202, resp.text

    def new_run() -> dict | None:
        runs = [r for r in run_repo().list_runs(ex.activity, page_size=200)[0] if r["RunId"] not in known]
        return runs[0] if runs and runs[0].get("Status") in ("Ended", "Error") else None

    wait_until(new_run)
    run = new_run()
    assert run["Status"] == "Ended", run
    actual = calls.take()
    print("export of a small table:", dict(sorted(actual.items())))
    assert_calls(actual, SMALL_EXPORT, (1, 3))


def test_c_a_status_poll_is_one_point_read(api, calls):
    activity, app, entity = api.import_job(CG, processOnArrival=True)
    message_id = api.enqueue(activity, app, csv_bytes(["30,Other,Net30,1,No"]), entity=entity).json()
    api.wait_terminal(app, message_id)
    calls.settle()
    assert api.status(app, message_id) == "Processed"
    actual = calls.take()
    print("status poll:", dict(sorted(actual.items())))
    # The configuration's freshness check may fall on this request: at most one.
    assert_calls(actual, STATUS_POLL, (0, 1))


def test_d_a_reprocessed_message_supersedes_its_folded_run(api):
    """The folded run of a failed on-arrival message is found by its ID after a reprocess, ends superseded by
    the new run, and its execution answers Failed."""
    from tests.e2e.test_message_actions import UNREADABLE

    activity, app, entity = api.import_job(CG, processOnArrival=True)
    message_id = api.enqueue(activity, app, UNREADABLE, entity=entity).json()
    assert api.wait_terminal(app, message_id) == "PreProcessingError"
    assert api.message(message_id)["executionId"] == message_id
    assert api.admin("POST", f"/api/manage/messages/{message_id}/reprocess").status_code == 202
    assert api.wait_terminal(app, message_id) == "PreProcessingError"
    retried = api.message(message_id)["executionId"]
    assert retried != message_id

    def runs() -> dict[str, dict]:
        return {r["executionId"]: r for r in api.ok("GET", f"/api/manage/jobs/{activity}/runs")["value"]}

    wait_until(lambda: runs().get(retried, {}).get("status") == "Error")
    first = runs()[message_id]
    assert first["status"] == "Error" and first["supersededBy"] == retried, first
    summary = api.call(
        "POST",
        "/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities.GetExecutionSummaryStatus",
        api.make_token(app),
        json={"executionId": message_id},
    )
    assert summary.json()["value"] == "Failed", summary.text
