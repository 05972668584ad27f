"""What the end-to-end benchmarks share: the app under the local host on an Azurite, with dev tokens.

    with local_app(extra_env={...}) as app:
        app.put("/api/manage/entities/E", {...})
        jobs = app.import_and_export_jobs("E")
        requests.post(app.base + "/api/connector/enqueue/...", headers=app.partner)

Benchmarks import this with the repository root on sys.path (each bench script puts it there).
"""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TENANT = "00000000-0000-0000-0000-00000000a11c"
AUDIENCE = "api://recurring-integrations-local"
COMPANY = "usmf"  # the legal entity of the benches' jobs
NEVER = "0 0 0 1 1 *"  # a timer schedule that does not fire during a benchmark


@dataclass
class LocalApp:
    base: str
    keys: Path
    azurite: Any
    work: Path
    app_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    env: dict[str, str] = field(default_factory=dict)
    workers: list[Any] = field(default_factory=list)  # queue-function hosts (split mode)

    def start_workers(self, count: int) -> None:
        """Start `count` more host processes running only the queue functions (`--functions queues`), as Flex
        Consumption scales queue functions on instances of their own; returns once each has started."""
        from tests.devhost.hostproc import HostProcess

        started = [
            HostProcess(
                REPO,
                self.env,
                self.work / "logs",
                "--functions",
                "queues",
                name=f"worker{len(self.workers) + i}",
            )
            for i in range(count)
        ]
        self.workers.extend(started)
        for host in started:
            host.wait_started(60)

    def stop_workers(self) -> None:
        while self.workers:
            self.workers.pop().stop()

    def token(self, app_id: str | None = None, *, admin: bool = False, minutes: int = 240) -> str:
        from tools.devtoken import make_token

        return make_token(
            app_id or self.app_id,
            key_dir=self.keys,
            tenant_id=TENANT,
            audience=AUDIENCE,
            admin=admin,
            minutes=minutes,
        )

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(str(uuid.uuid4()), admin=True)}"}

    @property
    def partner(self) -> dict[str, str]:
        """Headers of the partner application that every job made here authorizes."""
        return {"Authorization": f"Bearer {self.token()}"}

    def put(self, path: str, body: dict) -> dict:
        """PUT a configuration document (POST for /api/manage/jobs); raises on an error reply."""
        import requests

        method = "POST" if path.endswith("/jobs") else "PUT"
        resp = requests.request(method, self.base + path, json=body, headers=self.admin, timeout=60)
        resp.raise_for_status()
        return resp.json() if resp.content else {}

    def job(self, project: str, **fields: Any) -> str:
        """A job of `project` authorizing the partner application; its activity ID."""
        body = {"name": project, "project": project, "company": COMPANY, **fields}
        body["authorizationPolicy"] = [{"applicationId": self.app_id}]
        return self.put("/api/manage/jobs", body)["activityId"]

    def import_and_export_jobs(self, entity: str, **import_fields: Any) -> tuple[str, str]:
        """An import and an export project over `entity`, a job of each: (import activity ID, export's)."""
        for operation in ("import", "export"):
            self.put(
                f"/api/manage/projects/{entity}{operation.capitalize()}",
                {"operation": operation, "entities": [{"entity": entity}]},
            )
        return self.job(f"{entity}Import", **import_fields), self.job(f"{entity}Export")


@contextlib.contextmanager
def local_app(
    *,
    extra_env: dict[str, str] | None = None,
    storage: Callable[[Any, Path], str] | None = None,
    name: str = "bench",
    workers: int | None = None,
) -> Iterator[LocalApp]:
    """Azurite in memory and the app under `python -m tools.devhost`. `storage(azurite, work_dir)` may give
    the connection string the app uses instead (for example through fault proxies).

    `workers`: None runs every function in one process; a number runs the app split as Flex Consumption does, one
    process with `--functions http` and that many with `--functions queues` (more: LocalApp.start_workers)."""
    from shared.auth.keys import ensure_local_keys
    from tests.devhost.hostproc import HostProcess, clean_env
    from tools.azurite import start_azurite

    with tempfile.TemporaryDirectory() as tmp, start_azurite(in_memory=True) as azurite:
        work = Path(tmp)
        keys = work / "keys"
        ensure_local_keys(keys)
        env = clean_env(
            AzureWebJobsStorage=azurite.connection_string,
            AUTH_MODE="local",
            AUTH_TENANT_ID=TENANT,
            AUTH_AUDIENCES=AUDIENCE,
            AUTH_LOCAL_KEY_DIR=str(keys),
            SCHEDULER_SCHEDULE=NEVER,
            POISON_SWEEP_SCHEDULE=NEVER,
            **(extra_env or {}),
        )
        if storage is not None:
            env["AzureWebJobsStorage"] = storage(azurite, work)
        app = LocalApp(base="", keys=keys, azurite=azurite, work=work, env=env)
        split = ("--functions", "http") if workers is not None else ()
        host = HostProcess(REPO, env, work / "logs", *split, name=name)
        try:
            app.base = host.wait_started(60)
            # Every company a job names must be a configured legal entity (issue 13).
            app.put(f"/api/manage/legalEntities/{COMPANY}", {"name": COMPANY.upper()})
            if workers:
                app.start_workers(workers)
            yield app
        finally:
            app.stop_workers()
            host.stop()
