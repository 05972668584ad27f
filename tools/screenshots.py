"""Screenshots of every workspace page from a demo run, for the README, and the pages' load times.

    python -m tools.screenshots [--out docs/images] [--chromium /usr/bin/chromium]

Starts an in-memory Azurite and the app under the local host (the same pieces as `make run`), loads the demo
configuration (examples/config), and makes demo data through the public APIs only: files enqueued by the demo
partner (one with rejected records), an export run, and a batch job whose queue load the real scheduler
samples between bursts of files (so the monitoring chart shows real samples, the threshold crossing and the
early dispatch it causes). Then Debian's Chromium (Playwright; never a downloaded browser) opens each page,
signed in through the link `make run` prints, and saves `workspace-<page>.png`. Load times are from
navigation start to the page showing its data (the `workspace-ready` performance mark), cold (empty cache) and
warm (revalidated with ETags: 304s).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tools import demo

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "docs" / "images"
BATCH_JOB_ID = "8b2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
HEADER = "CUSTOMERGROUPID,DESCRIPTION,PAYMENTTERMS,CREDITLIMIT,CLEARINGPERIODDAYS,ISBLOCKED,VALIDFROM\r\n"
DEMO_XSLT = b"""<?xml version="1.0" encoding="utf-8"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <!-- Renames the partner's <Group> elements to the entity's CUSTOMERGROUPID. -->
  <xsl:template match="@*|node()"><xsl:copy><xsl:apply-templates select="@*|node()"/></xsl:copy></xsl:template>
  <xsl:template match="Group"><CUSTOMERGROUPID><xsl:value-of select="."/></CUSTOMERGROUPID></xsl:template>
</xsl:stylesheet>
"""


class Demo:
    """The app under the local host on an in-memory Azurite, with demo data made through its APIs."""

    def __init__(self, workdir: Path) -> None:
        from tools.azurite import start_azurite

        self.azurite = start_azurite(in_memory=True, log_path=workdir / "azurite.log")
        self.master_key = f"shots-{uuid.uuid4().hex}"
        env = {
            **os.environ,
            "AzureWebJobsStorage": self.azurite.connection_string,
            "DEVHOST_MASTER_KEY": self.master_key,
            # The script drives the timers itself, so the samples come when it wants them.
            "SCHEDULER_SCHEDULE": "0 0 0 1 1 *",
            "POISON_SWEEP_SCHEDULE": "0 0 0 1 1 *",
            "PYTHONUNBUFFERED": "1",
        }
        self.out = (workdir / "host.out").open("w+", encoding="utf-8")
        self.host = subprocess.Popen(
            [sys.executable, "-m", "tools.devhost", "--port", "0"],
            cwd=REPO_ROOT,
            env=env,
            stdout=self.out,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.url = self._wait_banner()
        self.admin = demo.dev_token(demo.ADMIN_APP_ID, admin=True, minutes=120)
        self.partner = demo.dev_token(demo.DEMO_APP_ID, minutes=120)

    def _wait_banner(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.out.flush()
            found = re.search(r"^Host started: (http://\S+)$", Path(self.out.name).read_text(), re.MULTILINE)
            if found:
                return found.group(1)
            if self.host.poll() is not None:
                raise RuntimeError(f"the local host exited:\n{Path(self.out.name).read_text()[-3000:]}")
            time.sleep(0.1)
        raise RuntimeError("the local host did not start")

    def close(self) -> None:
        if self.host.poll() is None:
            self.host.send_signal(2)
            try:
                self.host.wait(15)
            except subprocess.TimeoutExpired:
                self.host.kill()
        self.out.close()
        self.azurite.stop()

    # HTTP --------------------------------------------------------------------------------------------
    def call(
        self, method: str, path: str, *, token: str | None = None, body=None, headers=None
    ) -> tuple[int, bytes]:
        import urllib.error
        import urllib.request

        data = json.dumps(body).encode() if isinstance(body, dict) else body
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {token or self.admin}")
        if isinstance(body, dict):
            request.add_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def ok(self, method: str, path: str, **kw):
        status, body = self.call(method, path, **kw)
        if status >= 300:
            raise RuntimeError(f"{method} {path} -> {status} {body[:300]!r}")
        return json.loads(body) if body else None

    def enqueue(self, job: str, name: str, rows: list[str]) -> str:
        data = (HEADER + "".join(r + "\r\n" for r in rows)).encode()
        path = f"/api/connector/enqueue/{job}?entity=Customer%20groups&company=usmf"
        return self.ok(
            "POST", path, token=self.partner, body=data, headers={"x-ms-dyn-externalidentifier": name}
        )

    def wait(self, what: str, check, timeout: float = 90.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = check()
            if result:
                return result
            time.sleep(0.3)
        raise RuntimeError(f"timed out waiting for {what}")

    def terminal(self, message_id: str) -> str:
        terminal = {"Processed", "ProcessedWithErrors", "PreProcessingError", "PostProcessingFailed"}
        return self.wait(
            f"message {message_id}",
            lambda: (s := self.ok("GET", f"/api/manage/messages/{message_id}")["status"]) in terminal and s,
        )

    def scheduler_tick(self) -> None:
        """The real timer function, through the host's admin invoke (202 at once; done when the log says)."""
        before = Path(self.out.name).read_text().count("Executed 'Functions.scheduler_tick'")
        status, body = self.call(
            "POST",
            "/admin/functions/scheduler_tick",
            body=b'{"input":""}',
            headers={"x-functions-key": self.master_key, "Content-Type": "application/json"},
        )
        if status != 202:
            raise RuntimeError(f"admin invoke -> {status} {body!r}")
        self.wait(
            "the scheduler tick",
            lambda: Path(self.out.name).read_text().count("Executed 'Functions.scheduler_tick'") > before,
        )

    def forget_monitoring_claim(self, job: str) -> None:
        """Let the next tick sample again now: each monitoring due time is claimed once per job, in the
        schedule table (shared/services/scheduler.py), and the demo cannot wait a minute between samples."""
        from azure.data.tables import TableClient

        from shared.storage import names

        table = TableClient.from_connection_string(self.azurite.connection_string, names.TABLE_SCHEDULE)
        with contextlib.suppress(Exception):
            table.delete_entity(job, "monitoring")

    # The demo data -------------------------------------------------------------------------------------
    def make_data(self) -> dict:
        demo.load_config(self.url, self.admin, demo.CONFIG_DIR, log=lambda line: None)
        self.ok(
            "PUT",
            "/api/manage/transforms/RenameGroups",
            body=DEMO_XSLT,
            headers={"Content-Type": "application/xslt+xml"},
        )
        self.ok(
            "PUT",
            f"/api/manage/jobs/{BATCH_JOB_ID}",
            body={
                "name": "Customer groups, batched",
                "description": "Files wait until the backlog crosses the threshold (or Process now)",
                "project": "CustomerGroupsImport",
                "company": "usmf",
                "monitoring": {"unit": "minutes", "interval": 1, "backlogThreshold": 8},
                "authorizationPolicy": [{"applicationId": demo.DEMO_APP_ID, "enabled": True}],
            },
        )
        # Files on the demo import job (processed on arrival), one with rejected records.
        good = [
            (
                "groups-2024-05-01.csv",
                [
                    "10,Wholesale customers,Net30,25000.00,14,No,2024-01-01",
                    "20,Retail customers,Net10,1500.50,7,No,2024-01-01",
                ],
            ),
            ("groups-2024-05-02.csv", ['30,"Export customers, EU",Net60,100000.00,30,No,2024-07-01']),
            (
                "groups-2024-05-03.csv",
                ["40,Intercompany,Net30,,0,Yes,2023-10-15", "50,Staff,Net10,500,0,No,2024-02-01"],
            ),
        ]
        ids = [self.enqueue(demo.IMPORT_JOB_ID, name, rows) for name, rows in good]
        failed = self.enqueue(
            demo.IMPORT_JOB_ID,
            "groups-2024-05-04.csv",
            [
                "60,Distributors,Net45,2000,10,No,2024-03-01",
                "70,Online,Net30,lots,5,No,2024-03-01",
                "80,Partners,Net30,750,5,No,2024-03-01",
            ],
        )
        for message_id in [*ids, failed]:
            self.terminal(message_id)
        # The batched job: bursts of files, a monitoring sample after each (the third crosses the threshold).
        n = 0
        for burst in (2, 3, 4, 0, 2, 3):
            for _ in range(burst):
                n += 1
                self.enqueue(
                    BATCH_JOB_ID,
                    f"batch-{n:03d}.csv",
                    [f"B{n:03d},Batch group {n},Net30,{n}00,1,No,2024-04-01"],
                )
            self.forget_monitoring_claim(BATCH_JOB_ID)
            self.scheduler_tick()
            time.sleep(1.0)
            self.wait("the early dispatch", lambda: not self._processing(BATCH_JOB_ID))
        # An export run.
        self.ok("POST", f"/api/manage/jobs/{demo.EXPORT_JOB_ID}/run")
        self.wait(
            "the export run",
            lambda: any(
                r["status"] in ("Ended", "Error")
                for r in self.ok("GET", f"/api/manage/jobs/{demo.EXPORT_JOB_ID}/runs")["value"]
            ),
        )
        return {"failed": failed}

    def _processing(self, job: str) -> bool:
        page = self.ok("GET", f"/api/manage/jobs/{job}/messages?status=Preprocessing,Processing")
        return bool(page["value"])


def shoot(
    base_url: str, admin_token: str, out: Path, chromium: str, failed_message: str
) -> list[tuple[str, float, float]]:
    """Each page's screenshot; returns (page, cold ms, warm ms)."""
    from playwright.sync_api import sync_playwright

    from tools.run_local import workspace_link

    ws = base_url + "/workspace"
    pages = [
        ("jobs", "/jobs"),
        ("job-settings", f"/jobs/{demo.IMPORT_JOB_ID}"),
        ("new-job", "/jobs/new"),
        ("messages", f"/jobs/{demo.IMPORT_JOB_ID}/messages"),
        ("message", f"/messages/{failed_message}"),
        ("runs", f"/jobs/{demo.EXPORT_JOB_ID}/runs"),
        ("monitoring", f"/jobs/{BATCH_JOB_ID}/monitoring"),
        ("config-entities", "/config/entities"),
        ("config-entity", "/config/entities/CustomerGroups"),
        ("config-formats", "/config/formats"),
        ("config-transform", "/config/transforms/RenameGroups"),
        ("config-projects", "/config/projects"),
        ("config-project", "/config/projects/CustomerGroupsExport"),
    ]
    out.mkdir(parents=True, exist_ok=True)
    timings = []
    args = ["--headless", "--no-sandbox", "--disable-background-networking"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=args)
        context = browser.new_context(
            viewport={"width": 1280, "height": 800}, locale="en-GB", timezone_id="Europe/Paris"
        )
        page = context.new_page()
        page.goto(workspace_link(base_url, admin_token))
        page.wait_for_selector("main[aria-busy=false]")
        for name, path in pages:
            runs = []
            for _ in range(2):  # cold (first visit of its data), then warm (files revalidated: 304)
                page.goto(ws + path)
                page.wait_for_selector("main[aria-busy=false]")
                runs.append(page.evaluate("performance.getEntriesByName('workspace-ready').pop().startTime"))
            if name == "message":
                page.get_by_role("heading", name="Errors").scroll_into_view_if_needed()
            page.screenshot(
                path=str(out / f"workspace-{name}.png"), full_page=name in ("job-settings", "message")
            )
            timings.append((name, runs[0], runs[1]))
            print(f"  {name:18s} {runs[0]:7.0f} ms cold  {runs[1]:7.0f} ms warm", flush=True)
        narrow = browser.new_context(viewport={"width": 420, "height": 800}, locale="en-GB")
        small = narrow.new_page()
        small.goto(workspace_link(base_url, admin_token))
        small.wait_for_selector("main[aria-busy=false]")
        small.goto(ws + f"/jobs/{demo.IMPORT_JOB_ID}/messages")
        small.wait_for_selector("main[aria-busy=false]")
        small.screenshot(path=str(out / "workspace-narrow-messages.png"))
        signed_out = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
        signed_out.goto(ws + "/")
        signed_out.wait_for_selector("main[aria-busy=false]")
        signed_out.screenshot(path=str(out / "workspace-sign-in.png"))
        browser.close()
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.screenshots", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
    args = parser.parse_args(argv)
    if not Path(args.chromium).is_file():
        print(f"{args.chromium} is missing: apt-get install chromium", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="shots-") as tmp:
        print("Starting Azurite and the local host...", flush=True)
        app = Demo(Path(tmp))
        try:
            print(f"Making demo data on {app.url} ...", flush=True)
            data = app.make_data()
            print(f"Screenshots into {args.out}:", flush=True)
            timings = shoot(app.url, app.admin, args.out, args.chromium, data["failed"])
        finally:
            app.close()
    cold = [t[1] for t in timings]
    warm = [t[2] for t in timings]
    print(
        f"Page load to data shown: median {statistics.median(cold):.0f} ms cold, {statistics.median(warm):.0f} ms "
        f"warm; slowest {max(cold):.0f} ms ({max(timings, key=lambda t: t[1])[0]})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
