"""Watch mode against the local host: an input folder sent in order and filed by outcome (a bad file included),
an output folder filled by dequeue, and restarts after a crash at the worst moments with nothing sent twice
and nothing lost (D365RI_FAULT_EXIT ends the client process abruptly at a named step)."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.client.conftest import ExportJob, ImportJob, client_process, csv_rows

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]


def events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_watch_sends_in_order_files_by_outcome_and_receives_exports(api, d365ri, tmp_path):
    imp = ImportJob(api)
    exp = ExportJob(api, ["W1"], app=imp.app)  # one partner application on both jobs
    exp.run_now()
    inbox, outbox = tmp_path / "outbox", tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "1-good.csv").write_bytes(csv_rows(["G1", "G2"]))
    (inbox / "2-bad-rows.csv").write_bytes(csv_rows(["B1", "B2"], bad={"B2"}))
    (inbox / "3-empty.csv").write_bytes(b"")
    (inbox / "4-good.csv").write_bytes(csv_rows(["G3"]))
    (inbox / ".hidden.csv").write_bytes(csv_rows(["H1"]))
    (inbox / "5-partial.csv.part").write_bytes(b"still being written")

    run = d365ri(
        "watch",
        "--input",
        inbox,
        "--job",
        imp.activity,
        "--entity",
        imp.label,
        "--output",
        outbox,
        "--export-job",
        exp.activity,
        "--settle",
        "0",
        "--interval",
        "0.2",
        "--until-idle",
        "--json",
        app=imp.app,
    )
    assert run.code == 0, run.err
    log = events(run.out)
    sent = [e["file"] for e in log if e["event"] == "sent"]
    assert sent == ["1-good.csv", "2-bad-rows.csv", "4-good.csv"]
    done = {e["file"]: e["outcome"] for e in log if e["event"] == "done"}
    assert done == {
        "1-good.csv": "ok",
        "2-bad-rows.csv": "errors",
        "3-empty.csv": "failed",
        "4-good.csv": "ok",
    }

    assert sorted(p.name for p in (inbox / "success").iterdir()) == ["1-good.csv", "4-good.csv"]
    errors = sorted(p.name for p in (inbox / "error").iterdir())
    assert errors == [
        "2-bad-rows.csv",
        "2-bad-rows.csv.status.json",
        "3-empty.csv",
        "3-empty.csv.status.json",
    ]
    bad = json.loads((inbox / "error" / "2-bad-rows.csv.status.json").read_text())
    assert bad["status"] == "ProcessedWithErrors" and any("not-a-number" in e for e in bad["errors"])
    empty = json.loads((inbox / "error" / "3-empty.csv.status.json").read_text())
    assert empty["status"] == "Refused" and empty["code"] == "EmptyBody"
    # Hidden and partial files are not touched.
    assert sorted(
        p.name
        for p in inbox.iterdir()
        if p.is_file() and p.name != ".d365ri-watch.json" and not p.name.endswith(".lock")
    ) == [".hidden.csv", "5-partial.csv.part"]

    assert imp.codes() == ["B1", "G1", "G2", "G3"]
    assert len(imp.messages()) == 3  # the empty file was refused, nothing else twice
    [received] = [e for e in log if e["event"] == "received"]
    assert (outbox / received["file"].split("/")[-1]).exists()
    assert [m["status"] for m in exp.messages()] == ["Acked"]
    state = json.loads((inbox / ".d365ri-watch.json").read_text())
    assert state["uploads"] == {} and all(d["acked"] for d in state["downloads"].values())


def watch_args(imp: ImportJob, inbox, mode: str = "--until-idle") -> list:
    return [
        "watch",
        "--input",
        inbox,
        "--job",
        imp.activity,
        "--entity",
        imp.label,
        "--settle",
        "0",
        "--interval",
        "0.2",
        mode,
        "--json",
    ]


@pytest.mark.parametrize("crash_at", ["after-enqueue:2", "after-move:1"])
def test_a_crash_in_watch_mode_then_a_restart_sends_nothing_twice_and_loses_nothing(api, tmp_path, crash_at):
    """after-enqueue: the server has the file, the client has not recorded the message ID (the retry must be
    recognized as the same file); after-move: the file is filed, the state not yet updated."""
    imp = ImportJob(api)
    inbox = tmp_path / "outbox"
    inbox.mkdir()
    codes = [f"R{i}" for i in range(1, 5)]
    for n, code in enumerate(codes, start=1):
        (inbox / f"{n}.csv").write_bytes(csv_rows([code]))
    home = tmp_path / "home"

    crashed = client_process(
        api, imp.app, *watch_args(imp, inbox), env={"D365RI_FAULT_EXIT": crash_at}, home=home
    )
    assert crashed.returncode == 70, crashed.stderr  # died at the fault point
    first = events(crashed.stdout)
    assert any(e["event"] == "sent" for e in first) or crash_at.startswith("after-enqueue")
    assert not (inbox / "success").exists() or len(list((inbox / "success").iterdir())) < len(codes)

    restarted = client_process(api, imp.app, *watch_args(imp, inbox), home=home)
    assert restarted.returncode == 0, restarted.stderr

    assert sorted(p.name for p in (inbox / "success").iterdir()) == [f"{n}.csv" for n in range(1, 5)]
    assert not (inbox / "error").exists()
    messages = imp.messages()
    assert sorted(m["externalIdentifier"] for m in messages) == [f"{n}.csv" for n in range(1, 5)]  # one each
    assert imp.codes() == codes
    assert json.loads((inbox / ".d365ri-watch.json").read_text())["uploads"] == {}


def test_a_crash_between_download_and_ack_acks_on_restart_without_a_second_copy(api, tmp_path):
    exp = ExportJob(api, ["D1"])
    exp.run_now(times=2)
    outbox = tmp_path / "inbox"
    home = tmp_path / "home"
    args = [
        "watch",
        "--output",
        outbox,
        "--export-job",
        exp.activity,
        "--interval",
        "0.2",
        "--until-idle",
        "--json",
    ]

    crashed = client_process(api, exp.app, *args, env={"D365RI_FAULT_EXIT": "after-download:1"}, home=home)
    assert crashed.returncode == 70, crashed.stderr
    assert len([p for p in outbox.iterdir() if p.suffix == ".zip"]) == 1
    assert sorted(m["status"] for m in exp.messages()) == ["Dequeued", "Enqueued"]

    restarted = client_process(api, exp.app, *args, home=home)
    assert restarted.returncode == 0, restarted.stderr
    log = events(restarted.stdout)
    assert [e["event"] for e in log if e["event"] in ("acked", "received")] == ["acked", "received"]
    assert len([p for p in outbox.iterdir() if p.suffix == ".zip"]) == 2
    assert sorted(m["status"] for m in exp.messages()) == ["Acked", "Acked"]


def test_a_second_watch_on_the_same_state_refuses_to_run(api, d365ri, tmp_path):
    from d365ri.files import exclusive_lock

    imp = ImportJob(api)
    inbox = tmp_path / "outbox"
    inbox.mkdir()
    with exclusive_lock(inbox / ".d365ri-watch.json.lock"):
        run = d365ri(*watch_args(imp, inbox, "--once"), app=imp.app)
    assert run.code == 1 and "another d365ri watch is running" in run.err


def test_a_message_the_server_no_longer_knows_goes_to_error_with_the_reason(api, d365ri, tmp_path):
    imp = ImportJob(api)
    inbox = tmp_path / "outbox"
    inbox.mkdir()
    (inbox / "old.csv").write_bytes(csv_rows(["O1"]))
    stat = (inbox / "old.csv").stat()
    state = {
        "version": 1,
        "downloads": {},
        "uploads": {
            "old.csv": {
                "state": "sent",
                "path": "enqueue",
                "messageId": str(uuid.uuid4()),
                "size": stat.st_size,
                "mtime": stat.st_mtime,
                "externalId": "old.csv",
            }
        },
    }
    (inbox / ".d365ri-watch.json").write_text(json.dumps(state))
    run = d365ri(*watch_args(imp, inbox, "--once"), app=imp.app)
    assert run.code == 0, run.err
    report = json.loads((inbox / "error" / "old.csv.status.json").read_text())
    assert report["status"] == "Unknown" and "MessageNotFound" in report["error"]
    assert (inbox / "error" / "old.csv").exists() and not imp.messages()  # not sent again either


def test_order_by_time_sends_the_oldest_file_first(api, d365ri, tmp_path):
    import os

    imp = ImportJob(api, processOnArrival=False)
    inbox = tmp_path / "outbox"
    inbox.mkdir()
    for name, age in (("a.csv", 10), ("m.csv", 30), ("z.csv", 20)):
        (inbox / name).write_bytes(csv_rows([name[0].upper()]))
        old = time.time() - age
        os.utime(inbox / name, (old, old))
    run = d365ri(*watch_args(imp, inbox, "--once"), "--order", "time", app=imp.app)
    assert run.code == 0, run.err
    assert [e["file"] for e in events(run.out) if e["event"] == "sent"] == ["m.csv", "z.csv", "a.csv"]
    # Not terminal yet (the job processes on its schedule): the files wait in the input folder, recorded as sent.
    state = json.loads((inbox / ".d365ri-watch.json").read_text())
    assert {n: e["state"] for n, e in state["uploads"].items()} == {
        "a.csv": "sent",
        "m.csv": "sent",
        "z.csv": "sent",
    }
    assert sorted(p.name for p in inbox.iterdir() if p.suffix == ".csv") == ["a.csv", "m.csv", "z.csv"]
