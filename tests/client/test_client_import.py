"""Sending files with d365ri against the local host: enqueue → Processed, retries without duplicates, exit codes
by outcome, rejected records and execution errors, and the package API path for files over the enqueue limit
(by the profile's size and on the server's 413)."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.client.conftest import ImportJob, csv_rows

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]


def test_enqueue_waits_for_processed_and_a_retry_makes_no_duplicate(api, d365ri, tmp_path):
    job = ImportJob(api)
    file = tmp_path / "customers-1.csv"
    file.write_bytes(csv_rows(["A1", "B2", "C3"]))

    run = d365ri("enqueue", job.activity, file, "--entity", job.label, "--wait", "--json", app=job.app)
    assert run.code == 0, run.err
    result = run.json()
    assert result["status"] == "Processed" and result["path"] == "enqueue"
    assert result["externalId"] == "customers-1.csv"
    assert job.codes() == ["A1", "B2", "C3"]

    # The same file again (a retry after a lost reply): the first message ID, nothing stored twice.
    again = d365ri("enqueue", job.activity, file, "--entity", job.label, "--json", app=job.app)
    assert again.code == 0, again.err
    assert again.json()["messageId"] == result["messageId"]
    messages = job.messages()
    assert [m["messageId"] for m in messages] == [result["messageId"]]
    assert messages[0]["externalIdentifier"] == "customers-1.csv"

    status = d365ri("status", result["messageId"], "--json", app=job.app)
    assert status.code == 0 and status.json()["status"] == "Processed"


def test_rejected_records_and_errors_end_with_exit_code_10(api, d365ri, tmp_path):
    job = ImportJob(api)
    file = tmp_path / "bad-amounts.csv"
    file.write_bytes(csv_rows(["G1", "B1", "G2"], bad={"B1"}))
    errors_dir = tmp_path / "rejected"

    run = d365ri(
        "enqueue",
        job.activity,
        file,
        "--entity",
        job.label,
        "--wait",
        "--errors-dir",
        errors_dir,
        "--json",
        app=job.app,
    )
    assert run.code == 10, run.err
    report = run.json()
    assert report["status"] == "ProcessedWithErrors" and report["outcome"] == "errors"
    assert report["executionId"]
    assert any("not-a-number" in e for e in report["errors"]), report["errors"]
    [rejected] = report["rejected"]
    saved = (errors_dir / rejected["file"].split("/")[-1]).read_text()
    assert "B1" in saved and "G1" not in saved
    assert [e["entity"] for e in report["entities"]] and report["entities"][0]["stagingErrors"] == 1
    assert job.codes() == ["G1", "G2"]

    # status --job gives the same outcome and per-entity counts; a table without --json.
    table = d365ri("status", report["messageId"], "--job", job.activity, app=job.app)
    assert table.code == 10
    assert "ProcessedWithErrors" in table.out and "not-a-number" in table.out


def test_a_file_that_cannot_be_read_fails_with_exit_code_11(api, d365ri, tmp_path):
    job = ImportJob(api)
    file = tmp_path / "not-csv.csv"
    file.write_bytes(b"\x00\x01\x02 this is not a CSV file with the entity's columns\r\n")
    run = d365ri("enqueue", job.activity, file, "--entity", job.label, "--wait", "--json", app=job.app)
    assert run.code == 11, run.out + run.err
    assert run.json()["status"] == "PreProcessingError"


def test_several_files_are_sent_in_the_order_given(api, d365ri, tmp_path):
    job = ImportJob(api, processOnArrival=False)
    files = []
    for name, code in (("b.csv", "B"), ("a.csv", "A"), ("c.csv", "C")):
        (tmp_path / name).write_bytes(csv_rows([code]))
        files.append(tmp_path / name)
    run = d365ri("enqueue", job.activity, *files, "--entity", job.label, "--json", app=job.app)
    assert run.code == 0, run.err
    sent = run.json()
    assert [r["externalId"] for r in sent] == ["b.csv", "a.csv", "c.csv"]
    assert len({r["messageId"] for r in sent}) == 3


def big_csv(rows: int, width: int = 1000) -> bytes:
    """`rows` rows of about `width` bytes: a file over the tests' 8 MiB MAX_ENQUEUE_BYTES that imports quickly."""
    filler = "x" * width
    lines = ["CODE,NAME,AMOUNT"] + [f"L{i:06d},{filler},1" for i in range(rows)]
    return ("\r\n".join(lines) + "\r\n").encode()


def test_a_file_over_the_servers_limit_switches_to_the_package_api_on_413(api, app_env, d365ri, tmp_path):
    job = ImportJob(api)
    file = tmp_path / "big.csv"
    file.write_bytes(big_csv(9000))
    assert file.stat().st_size > int(app_env["MAX_ENQUEUE_BYTES"])

    # Without the data project the client cannot switch: it says what to pass.
    run = d365ri("enqueue", job.activity, file, "--entity", job.label, "--json", app=job.app)
    assert run.code == 2 and "--project" in run.err

    run = d365ri(
        "enqueue",
        job.activity,
        file,
        "--entity",
        job.label,
        "--project",
        job.project,
        "--wait",
        "--json",
        app=job.app,
    )
    assert run.code == 0, run.err
    result = run.json()
    assert result["path"] == "package" and result["status"] == "Succeeded"
    assert "switching to the package API" in run.err
    assert len(job.codes()) == 9000

    # Sent again (a retry of the whole command): the same execution, not imported twice.
    again = d365ri(
        "enqueue", job.activity, file, "--entity", job.label, "--project", job.project, "--json", app=job.app
    )
    assert again.code == 0, again.err
    assert again.json()["executionId"] == result["executionId"] and again.json()["alreadyImported"] is True
    assert len(job.messages()) == 1


def test_the_profile_size_limit_sends_through_the_package_api_without_a_413(
    api, d365ri, tmp_path, client_home, monkeypatch
):
    """Also the block upload (Put Block + Put Block List), made to cut this small package into blocks."""
    from d365ri import transfer
    from d365ri.http import Transport

    monkeypatch.setattr(transfer, "SINGLE_PUT_MAX", 4096)
    monkeypatch.setattr(transfer, "BLOCK_SIZE", 4096)
    sent = []
    request = Transport.request

    def spy(self, method, url, **kw):
        sent.append((method, url.split("?", 1)[-1] if "comp=" in url else url.rsplit("/", 1)[-1]))
        return request(self, method, url, **kw)

    monkeypatch.setattr(Transport, "request", spy)
    job = ImportJob(api)
    config = client_home / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(
        json.dumps(
            {
                "profiles": {
                    "local": {
                        "baseUrl": api.base,
                        "auth": "token",
                        "maxEnqueueBytes": 1000,
                        "jobs": {
                            "rows": {
                                "activityId": "{" + job.activity.upper() + "}",
                                "entity": job.label,
                                "company": "usmf",
                                "project": job.project,
                            }
                        },
                    }
                }
            }
        )
    )
    file = tmp_path / "medium.csv"
    rows = [f"L{i:06d},{uuid.uuid4().hex * 3},1" for i in range(200)]  # does not compress to under 4 KiB
    file.write_bytes(("CODE,NAME,AMOUNT\r\n" + "\r\n".join(rows) + "\r\n").encode())
    run = d365ri("enqueue", "rows", file, "--wait", "--json", app=job.app)
    assert run.code == 0, run.err
    result = run.json()
    assert result["path"] == "package" and result["status"] == "Succeeded"
    assert "switching" not in run.err  # decided by size, before any upload
    assert len(job.codes()) == 200
    blocks = [q for m, q in sent if "comp=block&" in q]
    assert len(blocks) >= 2 and [q for m, q in sent if "comp=blocklist" in q]
    assert not any(u.startswith("Microsoft.Dynamics.DataEntities.GetMessageStatus") for _, u in sent)
    status = d365ri("status", "--execution", result["executionId"], "--json", app=job.app)
    assert status.code == 0 and status.json()["status"] == "Succeeded"


def test_package_import_and_rejected_records_through_the_package_api(api, d365ri, tmp_path):
    from tests.support.packages import build_package, csv_entity

    job = ImportJob(api, mode="package")
    package = tmp_path / "rows.zip"
    package.write_bytes(
        build_package([csv_entity(job.entity, "rows.csv")], {"rows.csv": csv_rows(["P1", "X1"], bad={"X1"})})
    )
    execution_id = f"cli-{uuid.uuid4()}"
    run = d365ri(
        "import-package",
        package,
        "--project",
        job.project,
        "--legal-entity",
        "usmf",
        "--execution-id",
        execution_id,
        "--errors-dir",
        tmp_path / "errs",
        "--json",
        app=job.app,
    )
    assert run.code == 10, run.err
    report = run.json()
    assert report["executionId"] == execution_id and report["status"] == "PartiallySucceeded"
    assert any("not-a-number" in e for e in report["errors"])
    assert "X1" in (tmp_path / "errs").joinpath(report["rejected"][0]["file"].split("/")[-1]).read_text()
    assert job.codes() == ["P1"]

    # Not a package: refused before anything is sent.
    bad = d365ri(
        "import-package",
        tmp_path / "errs" / report["rejected"][0]["file"].split("/")[-1],
        "--project",
        job.project,
        app=job.app,
    )
    assert bad.code == 2 and "not a data package" in bad.err
