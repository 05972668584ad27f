"""The partner client (client/, package d365ri) against the local host over real HTTP.

The client is its own package: these tests import it from client/src when it is not installed (the Makefile
installs it editable), and run it in-process through `d365ri.cli.main` or as `python -m d365ri` processes
(watch restarts). It talks to the app only over HTTP; tests may read the app's state through the
management API to check what the client did.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

CLIENT_SRC = Path(__file__).resolve().parents[2] / "client" / "src"
if str(CLIENT_SRC) not in sys.path:
    sys.path.insert(0, str(CLIENT_SRC))


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


@pytest.fixture
def client_home(tmp_path, monkeypatch) -> Path:
    """A fresh per-user folder (config, token cache), and no D365RI_* variables from outside."""
    for key in list(os.environ):
        if key.startswith("D365RI_"):
            monkeypatch.delenv(key)
    home = tmp_path / "d365ri-home"
    monkeypatch.setenv("D365RI_HOME", str(home))
    return home


@pytest.fixture
def d365ri(api, client_home, monkeypatch):
    """Run the CLI in this process: d365ri(*argv, app=<application ID>|None, token=<jwt>) -> Run."""
    from d365ri.cli import main

    def run(*argv: str, app: str | None = None, token: str | None = None, base_url: str | None = None) -> Run:
        if app or token:
            monkeypatch.setenv("D365RI_TOKEN", token or api.make_token(app))
        monkeypatch.setenv("D365RI_BASE_URL", base_url or api.base)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in argv])
        return Run(code, out.getvalue(), err.getvalue())

    return run


def client_process(
    api, app: str, *argv: str, env: dict | None = None, home: Path
) -> subprocess.CompletedProcess:
    """`python -m d365ri ...` in a process of its own (for crashes and restarts).

    $CLIENT_TEST_PYTHON runs it with another interpreter that has the client's dependencies (for example a
    Python 3.10 virtualenv with `pip install ./client`), the client's source still coming from client/src.
    """
    full = {k: v for k, v in os.environ.items() if not k.startswith("D365RI_")}
    full.update(
        PYTHONPATH=str(CLIENT_SRC) + os.pathsep + full.get("PYTHONPATH", ""),
        D365RI_HOME=str(home),
        D365RI_BASE_URL=api.base,
        D365RI_TOKEN=api.make_token(app),
        **(env or {}),
    )
    return subprocess.run(
        [os.environ.get("CLIENT_TEST_PYTHON") or sys.executable, "-m", "d365ri", *map(str, argv)],
        env=full,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def entity_body(label: str | None = None) -> dict:
    body = {
        "keys": ["CODE"],
        "fields": [
            {"name": "CODE", "type": "string", "maxLength": 20},
            {"name": "NAME", "type": "string"},
            {"name": "AMOUNT", "type": "decimal"},
        ],
    }
    if label:
        body["label"] = label
    return body


def csv_rows(codes, *, bad: set[str] = frozenset()) -> bytes:
    lines = ["CODE,NAME,AMOUNT"]
    for code in codes:
        lines.append(f"{code},Name {code},{'not-a-number' if code in bad else '12.50'}")
    return ("\r\n".join(lines) + "\r\n").encode()


def job_messages(api, activity: str) -> list[dict]:
    return api.ok("GET", f"/api/manage/jobs/{activity}/messages", params={"top": 500})["value"]


def wait_until(check, timeout: float = 90.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached in {timeout} s")


class ImportJob:
    """An entity, an import project over it, and a file job (process on arrival) for a new application."""

    def __init__(self, api, **job) -> None:
        self.api = api
        self.entity = api.unique("Cli")
        self.label = f"Client rows {self.entity[3:]}"
        job.setdefault("processOnArrival", True)
        self.activity, self.app, _ = api.import_job(entity_body(self.label), entity=self.entity, **job)
        self.project = api.ok("GET", f"/api/manage/jobs/{self.activity}")["project"]

    def messages(self) -> list[dict]:
        return job_messages(self.api, self.activity)

    def codes(self) -> list[str]:
        return sorted(r["CODE"] for r in self.api.records(self.entity, company="usmf"))


class ExportJob:
    """An entity with rows, an export project over it and a job authorized for a new application."""

    def __init__(self, api, codes, *, app: str | None = None) -> None:
        self.api = api
        self.entity = api.unique("Cle")
        api.ok(
            "PUT", f"/api/manage/entities/{self.entity}", json=entity_body(f"Client export {self.entity[3:]}")
        )
        self.project = api.unique("Exp")
        api.ok(
            "PUT",
            f"/api/manage/projects/{self.project}",
            json={"operation": "export", "entities": [{"entity": self.entity, "format": "CSV"}]},
        )
        self.app = app or str(uuid.uuid4())
        self.activity = api.ok(
            "POST",
            "/api/manage/jobs",
            json={
                "name": self.project,
                "project": self.project,
                "company": "usmf",
                "authorizationPolicy": [{"applicationId": self.app, "enabled": True}],
            },
        )["activityId"]
        from datetime import UTC, datetime
        from decimal import Decimal

        from shared.services.registry import config_service, entity_repo

        entity = config_service().get_entity(self.entity)
        at = datetime.now(UTC)
        rows = [{"CODE": c, "NAME": f"Name {c}", "AMOUNT": Decimal("1.5")} for c in codes]
        assert (
            not entity_repo()
            .upsert_rows(entity, [entity_repo().encode(entity, r, "usmf", at) for r in rows])
            .failed
        )

    def runs(self) -> list[dict]:
        return self.api.ok("GET", f"/api/manage/jobs/{self.activity}/runs", params={"top": 200})["value"]

    def run_now(self, times: int = 1) -> None:
        """Export now `times` times and wait until each run has put its file on the outbound queue."""
        known = {r["executionId"] for r in self.runs()}
        for _ in range(times):
            assert self.api.admin("POST", f"/api/manage/jobs/{self.activity}/run").status_code == 202

        def ended():
            new = [r for r in self.runs() if r["executionId"] not in known]
            return len(new) == times and all(r["status"] in ("Ended", "Error") for r in new)

        wait_until(ended, what="export runs")

    def messages(self) -> list[dict]:
        return job_messages(self.api, self.activity)
