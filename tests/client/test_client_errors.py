"""Errors a partner can act on, over real HTTP: 401 and 403 explained, an unknown job, 429 with Retry-After
honoured, and connection resets (tools/faultproxy in front of the local host) retried without duplicates."""

from __future__ import annotations

import http.server
import json
import threading
import uuid
from urllib.parse import urlsplit

import pytest

from tests.client.conftest import ImportJob, csv_rows

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]


def test_401_names_the_audience_to_fix(api, d365ri, tmp_path, key_dir):
    from tests.conftest import TENANT
    from tools.devtoken import make_token

    job = ImportJob(api)
    token = make_token(job.app, key_dir=key_dir, tenant_id=TENANT, audience="https://wrong.example/")
    file = tmp_path / "a.csv"
    file.write_bytes(csv_rows(["A"]))
    run = d365ri("enqueue", job.activity, file, "--entity", job.label, token=token)
    assert run.code == 3, run.err
    assert "HTTP 401" in run.err and "'https://wrong.example/'" in run.err and "AUTH_AUDIENCES" in run.err
    assert token not in run.err + run.out  # never the token itself


def test_403_names_the_application_and_what_to_grant(api, d365ri, tmp_path):
    job = ImportJob(api)
    stranger = str(uuid.uuid4())
    file = tmp_path / "a.csv"
    file.write_bytes(csv_rows(["A"]))
    run = d365ri("enqueue", job.activity, file, "--entity", job.label, "--json", app=stranger)
    assert run.code == 3
    assert f"application {stranger} is not allowed on the recurring job {job.activity}" in run.err
    assert "authorizationPolicy" in run.err
    assert json.loads(run.out)["error"]["code"] == "ApplicationNotAuthorized"

    check = d365ri("check", job.activity, "--json", app=stranger)
    assert check.code == 3 and check.json()["job"].startswith("refused")
    ok = d365ri("check", job.activity, "--json", app=job.app)
    assert ok.code == 0, ok.err
    assert {k: ok.json()[k] for k in ("root", "job", "application")} == {
        "root": 200,
        "job": "allowed",
        "application": job.app,
    }


def test_an_unknown_job_is_explained_not_retried(api, d365ri, tmp_path):
    file = tmp_path / "a.csv"
    file.write_bytes(csv_rows(["A"]))
    run = d365ri("enqueue", str(uuid.uuid4()), file, "--entity", "x", app=str(uuid.uuid4()))
    assert run.code == 1
    assert "UnknownActivity" in run.err and "no recurring job has this activity ID" in run.err
    assert "retrying" not in run.err


class Throttling(http.server.BaseHTTPRequestHandler):
    """Answers the first enqueue with 429 Retry-After: 1, then 200 with a message ID, as D365 does."""

    seen: list[tuple[str, str | None]] = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).seen.append((self.path, self.headers.get("x-ms-dyn-externalidentifier")))
        if len(type(self).seen) == 1:
            self.send_response(429)
            self.send_header("Retry-After", "1")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps(str(uuid.UUID(int=7))).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_429_waits_for_retry_after_and_sends_the_same_file_again(d365ri, tmp_path, make_token):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Throttling)
    Throttling.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        file = tmp_path / "a.csv"
        file.write_bytes(b"x")
        base = f"http://127.0.0.1:{server.server_address[1]}"
        job = str(uuid.uuid4())
        run = d365ri("enqueue", job, file, "--entity", "E", "--json", token=make_token(), base_url=base)
    finally:
        server.shutdown()
        server.server_close()
    assert run.code == 0, run.err
    assert run.json()["messageId"] == str(uuid.UUID(int=7))
    assert "Retry-After" in run.err and "waiting 1.0 s" in run.err
    assert Throttling.seen == [(f"/api/connector/enqueue/{job}?entity=E", "a.csv")] * 2


def test_connection_resets_are_retried_and_never_make_a_duplicate(api, app_host, d365ri, tmp_path):
    from tests.support.faultproxy import FaultProxy

    job = ImportJob(api, processOnArrival=False)
    proxy = FaultProxy(urlsplit(app_host.url).port, tmp_path / "proxy", seed=11, reset_rate=0.5)
    try:
        files = []
        for n in range(6):
            files.append(tmp_path / f"{n}.csv")
            files[-1].write_bytes(csv_rows([f"N{n}"]))
        run = d365ri(
            "enqueue",
            job.activity,
            *files,
            "--entity",
            job.label,
            "--retries",
            "12",
            "--json",
            app=job.app,
            base_url=f"http://127.0.0.1:{proxy.port}",
        )
        stats = proxy.stats()
    finally:
        proxy.stop()
    assert run.code == 0, run.err
    assert stats["resets_after"] >= 1 and stats["resets_before"] >= 1, stats  # both kinds happened
    assert "network error" in run.err
    sent = run.json()
    messages = job.messages()
    assert sorted(m["messageId"] for m in messages) == sorted(r["messageId"] for r in sent)
    assert sorted(m["externalIdentifier"] for m in messages) == [f"{n}.csv" for n in range(6)]
