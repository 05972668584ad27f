"""A small HTTP client for the tests: admin calls, partner calls, waiting for a terminal status."""

from __future__ import annotations

import os
import time
import uuid

import requests

TERMINAL = {"Processed", "ProcessedWithErrors", "PreProcessingError", "PostProcessingFailed"}
STATUS_ACTION = "/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities.GetMessageStatus"


class ApiClient:
    def __init__(
        self, base_url: str, *, admin_token: str, make_token, worker=None, master_key: str | None = None
    ) -> None:
        self.base = base_url.rstrip("/")
        self.admin_token = admin_token
        self.make_token = make_token
        self.http = requests.Session()
        # The host process that runs the queue and timer functions (tests/conftest.py worker_host): the HTTP
        # host itself in single mode, another process in split mode. Admin invokes of those go there, and
        # its log says when they are done (tests/devhost/hostproc.py HostProcess).
        self.worker = worker
        # The local host's master key (DEVHOST_MASTER_KEY, set by the app_env fixture), which admin invokes need.
        self.master_key = os.environ.get("DEVHOST_MASTER_KEY", "") if master_key is None else master_key

    def url(self, path: str) -> str:
        return self.base + path

    def admin(self, method: str, path: str, **kw) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.admin_token}", **kw.pop("headers", {})}
        return self.http.request(method, self.url(path), headers=headers, timeout=60, **kw)

    def call(self, method: str, path: str, token: str | None, **kw) -> requests.Response:
        headers = dict(kw.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.request(method, self.url(path), headers=headers, timeout=60, **kw)

    def ok(self, method: str, path: str, **kw) -> dict:
        resp = self.admin(method, path, **kw)
        assert resp.status_code < 300, f"{method} {path} -> {resp.status_code} {resp.text}"
        return resp.json() if resp.content else {}

    # Configuration helpers ------------------------------------------------------------------
    def unique(self, prefix: str) -> str:
        return f"{prefix}{uuid.uuid4().hex[:8]}"

    def import_job(
        self,
        entity_body: dict,
        *,
        entity: str | None = None,
        fmt: str = "CSV",
        mapping=None,
        transforms=None,
        **job,
    ) -> tuple[str, str, str]:
        """Creates an entity, an import project and a job authorized for a new app: (activityId, app, entity)."""
        entity = entity or self.unique("Ent")
        self.ok("PUT", f"/api/manage/entities/{entity}", json=entity_body)
        project = self.unique("Imp")
        pe = {"entity": entity, "format": fmt}
        if mapping:
            pe["mapping"] = mapping
        if transforms:
            pe["transforms"] = transforms
        self.ok("PUT", f"/api/manage/projects/{project}", json={"operation": "import", "entities": [pe]})
        app = str(uuid.uuid4())
        body = {
            "name": project,
            "project": project,
            "company": "usmf",
            "authorizationPolicy": [{"applicationId": app, "enabled": True}],
            **job,
        }
        self.ensure_legal_entity(body.get("company"))
        created = self.ok("POST", "/api/manage/jobs", json=body)
        return created["activityId"], app, entity

    def ensure_legal_entity(self, legal_entity: str | None) -> None:
        """A job's company must be a configured legal entity: create it when it is not (hosts on a storage of
        their own, as the fault tests run, have none)."""
        if legal_entity and self.admin("GET", f"/api/manage/legalEntities/{legal_entity}").status_code == 404:
            self.ok("PUT", f"/api/manage/legalEntities/{legal_entity}", json={"name": legal_entity.upper()})

    # Connector helpers -------------------------------------------------------------------------
    def enqueue(
        self,
        activity_id: str,
        app: str,
        data: bytes,
        *,
        entity: str | None = None,
        company=None,
        external_id: str | None = None,
        headers=None,
    ) -> requests.Response:
        params = {}
        if entity:
            params["entity"] = entity
        if company:
            params["company"] = company
        hdrs = dict(headers or {})
        if external_id:
            hdrs["x-ms-dyn-externalidentifier"] = external_id
        return self.call(
            "POST",
            f"/api/connector/enqueue/{activity_id}",
            self.make_token(app),
            params=params,
            data=data,
            headers=hdrs,
        )

    def status(self, app: str, message_id: str) -> str:
        resp = self.call("POST", STATUS_ACTION, self.make_token(app), data=f"{{'messageId':'{message_id}'}}")
        assert resp.status_code == 200, resp.text
        return resp.json()["value"]

    def run_scheduler(self, timeout: float = 120.0) -> None:
        """Run scheduler_tick once and wait until it has finished.

        The host answers the admin invoke with 202 before the function runs (FunctionsController.Invoke), so
        completion is its "Executed 'Functions.scheduler_tick' (...)" log line on the worker host.
        """
        assert self.worker is not None, "run_scheduler needs the host process that runs the timers (worker)"
        done = r"Executed 'Functions\.scheduler_tick' \("
        before = self.worker.count_log(done)
        resp = self.http.post(
            f"{self.worker.url}/admin/functions/scheduler_tick",
            json={"input": ""},
            headers={"x-functions-key": self.master_key},
            timeout=timeout,
        )
        assert resp.status_code == 202, resp.text
        self.worker.wait_for_log(done, count=before + 1, timeout=timeout)

    def wait_terminal(self, app: str, message_id: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            status = self.status(app, message_id)
            if status in TERMINAL:
                return status
            time.sleep(0.2)
        raise AssertionError(f"message {message_id} still {status} after {timeout}s")

    def message(self, message_id: str) -> dict:
        return self.ok("GET", f"/api/manage/messages/{message_id}")

    def records(self, entity: str, **params) -> list[dict]:
        out, path = [], f"/api/manage/entities/{entity}/records"
        resp = self.ok("GET", path, params=params)
        out.extend(resp["value"])
        while resp.get("nextLink"):
            resp = self.http.get(
                resp["nextLink"], headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=60
            ).json()
            out.extend(resp["value"])
        return out
