"""Receiving files with d365ri against the local host: dequeue until 204 with atomic, size-checked writes and an
ack after each file is on disk; export through the package API."""

from __future__ import annotations

import zipfile

import pytest

from tests.client.conftest import ExportJob

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]


def test_dequeue_writes_every_waiting_file_then_acks_it_until_204(api, d365ri, tmp_path):
    job = ExportJob(api, ["E1", "E2"])
    job.run_now(times=2)
    inbox = tmp_path / "inbox"

    run = d365ri("dequeue", job.activity, "--out", inbox, "--json", app=job.app)
    assert run.code == 0, run.err
    files = run.json()["files"]
    assert len(files) == 2 and all(f["acked"] for f in files)
    on_disk = sorted(p.name for p in inbox.iterdir())
    assert on_disk == sorted(f"{f['correlationId']}.zip" for f in files)  # no temporary file left
    for f in files:
        path = inbox / f"{f['correlationId']}.zip"
        assert path.stat().st_size == f["size"]
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            assert "Manifest.xml" in names and any(n.endswith(".csv") for n in names)
            data = next(zf.read(n) for n in names if n.endswith(".csv"))
            assert b"E1" in data and b"E2" in data
    assert sorted(m["status"] for m in job.messages()) == ["Acked", "Acked"]

    # Nothing waiting: 204, no file, exit 0; a table without --json.
    empty = d365ri("dequeue", job.activity, "--out", inbox, app=job.app)
    assert empty.code == 0 and "(none)" in empty.out
    assert len(list(inbox.iterdir())) == 2


def test_dequeue_without_ack_leaves_the_file_to_come_again(api, d365ri, tmp_path):
    job = ExportJob(api, ["N1"])
    job.run_now()
    run = d365ri("dequeue", job.activity, "--out", tmp_path, "--no-ack", "--json", app=job.app)
    assert run.code == 0, run.err
    [item] = run.json()["files"]
    assert "acked" not in item
    assert [m["status"] for m in job.messages()] == ["Dequeued"]


def test_export_package_polls_the_execution_and_downloads_the_package(api, d365ri, tmp_path):
    job = ExportJob(api, ["X1", "X2", "X3"])
    run = d365ri(
        "export-package",
        job.project,
        "--legal-entity",
        "usmf",
        "--out",
        tmp_path / "exports",
        "--json",
        app=job.app,
    )
    assert run.code == 0, run.err
    report = run.json()
    assert report["status"] == "Succeeded" and report["size"] > 0
    with zipfile.ZipFile(report["file"]) as zf:
        csv = next(zf.read(n) for n in zf.namelist() if n.endswith(".csv"))
    assert all(code in csv for code in (b"X1", b"X2", b"X3"))
