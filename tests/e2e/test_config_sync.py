"""Configuration as code (tools/config_sync.py) between two deployments: export, plan, apply, prune.

Two app instances, each under its own local host on its own in-memory Azurite, so that "test" and "prod"
share no storage and prune can never touch the session host that other test modules use. The tool runs in
this process through its main() and talks to both over real HTTP with real dev tokens (--token-file).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.client.tokenserver import TokenServer
from tests.conftest import ADMIN_APP, AUDIENCE, REPO_ROOT, TENANT
from tools import config_sync
from tools.demo import CONFIG_DIR, DEMO_APP_ID, EXPORT_JOB_ID, IMPORT_JOB_ID, load_config

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

ADMIN_CLIENT = "c0ffee00-0000-4000-8000-00000000ad02"  # the admin client application of the MSAL test

UPPER = b"""<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="@*|node()"><xsl:copy><xsl:apply-templates select="@*|node()"/></xsl:copy></xsl:template>
</xsl:stylesheet>
"""


@dataclass
class Deployment:
    url: str
    token: str

    def call(self, method: str, path: str, **kw) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        return requests.request(method, self.url + path, headers=headers, timeout=60, **kw)

    def ok(self, method: str, path: str, **kw) -> requests.Response:
        resp = self.call(method, path, **kw)
        assert resp.status_code < 300, f"{method} {path} -> {resp.status_code} {resp.text}"
        return resp


@pytest.fixture(scope="module")
def deployments(key_dir, make_token, tmp_path_factory) -> Iterator[tuple[Deployment, Deployment]]:
    """(test, prod): two app instances that share nothing but the signing key."""
    from tests.devhost.hostproc import HostProcess, clean_env
    from tools.azurite import start_azurite

    logs = tmp_path_factory.mktemp("config-sync")
    token = make_token(ADMIN_APP, admin=True, minutes=120)
    started: list = []
    try:
        found = []
        for name in ("test", "prod"):
            azurite = start_azurite(in_memory=True, log_path=logs / f"azurite-{name}.log")
            started.append(azurite)
            env = clean_env(
                AzureWebJobsStorage=azurite.connection_string,
                AUTH_MODE="local",
                AUTH_TENANT_ID=TENANT,
                AUTH_AUDIENCES=AUDIENCE,
                AUTH_ADMIN_ROLE="Integrations.Admin",
                AUTH_ADMIN_APPS=ADMIN_CLIENT,  # the automation's application: admin without the role
                AUTH_LOCAL_KEY_DIR=str(key_dir),
                SCHEDULER_SCHEDULE="0 0 0 1 1 *",
                POISON_SWEEP_SCHEDULE="0 0 0 1 1 *",
            )
            host = HostProcess(REPO_ROOT, env, logs, name=f"app-{name}")
            started.append(host)
            found.append(Deployment(host.wait_started(), token))
        yield found[0], found[1]
    finally:
        for item in reversed(started):
            item.stop()


@pytest.fixture(scope="module")
def source(deployments) -> Deployment:
    """ "test": the demo configuration plus a format, a transform and a project that uses both."""
    test, _ = deployments
    load_config(test.url, test.token, CONFIG_DIR, log=lambda line: None)
    test.ok(
        "PUT",
        "/api/manage/formats/Semicolon",
        json={"kind": "csv", "delimiter": ";", "dateFormat": "dd.MM.yyyy"},
    )
    test.ok(
        "PUT", "/api/manage/transforms/Identity", data=UPPER, headers={"Content-Type": "application/xslt+xml"}
    )
    test.ok(
        "PUT",
        "/api/manage/projects/SemicolonImport",
        json={
            "operation": "import",
            "entities": [{"entity": "Customer groups", "format": "Semicolon", "transforms": ["Identity"]}],
        },
    )
    return test


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def sync(tmp_path):
    """sync(command, *argv, deployment=...) runs the tool in this process with the deployment's token in a file."""

    def run(command: str, *argv, deployment: Deployment) -> Run:
        token_file = tmp_path / f"token-{uuid.uuid4().hex}"
        token_file.write_text(deployment.token)
        out, err = io.StringIO(), io.StringIO()
        args = [command, *map(str, argv), "--base-url", deployment.url, "--token-file", str(token_file)]
        code = config_sync.main(args, out=out, err=err)
        token_file.unlink()
        return Run(code, out.getvalue(), err.getvalue())

    return run


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def _plan_lines(out: str) -> list[str]:
    """The plan's change lines ("+ create entities/X (entities/X.json)"), without diffs and the summary."""
    return [
        line.strip() for line in out.splitlines() if line.startswith("  ") and not line.startswith("      ")
    ]


def test_export_writes_one_canonical_file_per_resource(source, sync, tmp_path, key_dir):
    out = tmp_path / "test-config"
    (out / "entities").mkdir(parents=True)
    (out / "entities" / "Gone.json").write_text("{}")  # a resource the deployment no longer has
    (out / "README.md").write_text("kept")

    first = sync("export", "--out", out, deployment=source)
    assert first.code == 0, first.err
    files = _files(out)
    assert sorted(files) == [
        "README.md",
        f"applications/{DEMO_APP_ID}.json",
        "entities/CustomerGroups.json",
        "formats/Semicolon.json",  # built-in formats are not configuration
        f"jobs/{IMPORT_JOB_ID}.json",
        f"jobs/{EXPORT_JOB_ID}.json",
        "legalEntities/dat.json",
        "legalEntities/demf.json",
        "legalEntities/usmf.json",
        "projects/CustomerGroupsExport.json",
        "projects/CustomerGroupsImport.json",
        "projects/SemicolonImport.json",
        "transforms/Identity.xslt",
    ]
    assert "removed entities/Gone.json" in first.out
    assert files["transforms/Identity.xslt"] == UPPER
    entity = json.loads(files["entities/CustomerGroups.json"])
    assert "name" not in entity and entity["label"] == "Customer groups"
    job = json.loads(files[f"jobs/{IMPORT_JOB_ID}.json"])
    assert "activityId" not in job and job["project"] == "CustomerGroupsImport"
    project = json.loads(files["projects/SemicolonImport.json"])
    assert project["entities"][0]["entity"] == "CustomerGroups"  # referenced by label, stored by name
    assert b"ETag" not in b"".join(files.values()) and b'W/"' not in b"".join(files.values())
    assert files["entities/CustomerGroups.json"].endswith(b"}\n")

    again = sync("export", "--out", out, deployment=source)
    assert again.code == 0, again.err
    assert _files(out) == files  # stable: an unchanged deployment exports the same bytes
    assert "0 written" in again.out and "12 unchanged" in again.out

    # `python -m tools.config_sync --dev-token` mints its token from the local key and settings.
    by_process = tmp_path / "by-process"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("D365RI_", "AUTH_"))}
    env.update(AUTH_LOCAL_KEY_DIR=str(key_dir), AUTH_TENANT_ID=TENANT, AUTH_AUDIENCES=AUDIENCE)
    done = subprocess.run(
        [sys.executable, "-m", "tools.config_sync", "export", "--out", str(by_process), "--dev-token"]
        + ["--base-url", source.url],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert _files(by_process) == {k: v for k, v in files.items() if k != "README.md"}

    # The hand-written demo documents leave defaults out; they are still no change against what they made.
    demo = sync("plan", CONFIG_DIR, deployment=source)
    assert demo.code == 0, demo.err
    assert "0 to create, 0 to update, 0 to delete, 9 unchanged" in demo.out


def test_promote_plan_apply_prune(source, deployments, sync, tmp_path):
    _, prod = deployments
    folder = tmp_path / "config"
    assert sync("export", "--out", folder, deployment=source).code == 0

    # A first apply creates everything, dependencies first.
    plan = sync("plan", folder, deployment=prod)
    assert plan.code == 0, plan.err
    assert _plan_lines(plan.out) == [
        "+ create legalEntities/dat (legalEntities/dat.json)",
        "+ create legalEntities/demf (legalEntities/demf.json)",
        "+ create legalEntities/usmf (legalEntities/usmf.json)",
        f"+ create applications/{DEMO_APP_ID} (applications/{DEMO_APP_ID}.json)",
        "+ create entities/CustomerGroups (entities/CustomerGroups.json)",
        "+ create formats/Semicolon (formats/Semicolon.json)",
        "+ create transforms/Identity (transforms/Identity.xslt)",
        "+ create projects/CustomerGroupsExport (projects/CustomerGroupsExport.json)",
        "+ create projects/CustomerGroupsImport (projects/CustomerGroupsImport.json)",
        "+ create projects/SemicolonImport (projects/SemicolonImport.json)",
        f"+ create jobs/{IMPORT_JOB_ID} (jobs/{IMPORT_JOB_ID}.json)",
        f"+ create jobs/{EXPORT_JOB_ID} (jobs/{EXPORT_JOB_ID}.json)",
    ]
    assert prod.call("GET", "/api/manage/entities/CustomerGroups").status_code == 404  # plan changed nothing
    applied = sync("apply", folder, deployment=prod)
    assert applied.code == 0, applied.err
    assert "Applied 12 change(s)." in applied.out

    mirror = tmp_path / "prod-config"
    assert sync("export", "--out", mirror, deployment=prod).code == 0
    assert _files(mirror) == _files(folder)  # prod now holds exactly what test holds
    again = sync("plan", folder, deployment=prod)
    assert "no changes" in again.out and "12 unchanged" in again.out

    # Change one file, add one, remove one: the plan shows exactly those.
    job_path = folder / "jobs" / f"{IMPORT_JOB_ID}.json"
    job = json.loads(job_path.read_text())
    job["description"] = "Promoted from test"
    job_path.write_text(json.dumps(job, indent=2) + "\n")
    (folder / "entities" / "Vendors.json").write_text(
        json.dumps(
            {"keys": ["VENDORID"], "fields": [{"name": "VENDORID"}, {"name": "NAME", "maxLength": 60}]}
        )
    )
    (folder / "jobs" / f"{EXPORT_JOB_ID}.json").unlink()

    plan = sync("plan", folder, deployment=prod)
    assert plan.code == 0, plan.err
    assert _plan_lines(plan.out) == [
        "+ create entities/Vendors (entities/Vendors.json)",
        f"~ update jobs/{IMPORT_JOB_ID} (jobs/{IMPORT_JOB_ID}.json)",
        f"= keep jobs/{EXPORT_JOB_ID}: not in the folder (--prune deletes it)",
    ]
    assert "1 to create, 1 to update, 0 to delete, 10 unchanged, 1 kept (not in the folder)" in plan.out
    diff = [line.strip() for line in plan.out.splitlines() if line.startswith("      ")]
    assert f"--- deployment jobs/{IMPORT_JOB_ID}" in diff and f"+++ jobs/{IMPORT_JOB_ID}.json" in diff
    changed = [line for line in diff if line[:1] in "+-" and not line.startswith(("---", "+++"))]
    assert changed == [
        '-  "description": "Partners enqueue customer groups as CSV; processed as soon as they arrive",',
        '+  "description": "Promoted from test",',
    ]

    applied = sync("apply", folder, deployment=prod)
    assert applied.code == 0, applied.err
    assert prod.ok("GET", f"/api/manage/jobs/{IMPORT_JOB_ID}").json()["description"] == "Promoted from test"
    assert prod.ok("GET", "/api/manage/entities/Vendors").json()["fields"][1]["maxLength"] == 60
    assert prod.ok("GET", f"/api/manage/jobs/{EXPORT_JOB_ID}").status_code == 200  # kept without --prune
    again = sync("plan", folder, deployment=prod)
    assert "0 to create, 0 to update, 0 to delete, 12 unchanged, 1 kept" in again.out

    # --dry-run and plan --prune show the delete and change nothing; apply --prune deletes.
    dry = sync("apply", folder, "--prune", "--dry-run", deployment=prod)
    assert f"- delete jobs/{EXPORT_JOB_ID}" in _plan_lines(dry.out)
    assert prod.call("GET", f"/api/manage/jobs/{EXPORT_JOB_ID}").status_code == 200
    pruned = sync("apply", folder, "--prune", deployment=prod)
    assert pruned.code == 0, pruned.err
    assert f"deleted jobs/{EXPORT_JOB_ID}" in pruned.out
    assert prod.call("GET", f"/api/manage/jobs/{EXPORT_JOB_ID}").status_code == 404
    final = sync("plan", folder, "--prune", deployment=prod)
    assert "no changes" in final.out and "0 to delete, 12 unchanged" in final.out
    assert source.call("GET", f"/api/manage/jobs/{EXPORT_JOB_ID}").status_code == 200  # test is untouched


def _prod_state(prod: Deployment) -> dict:
    return {kind: prod.ok("GET", f"/api/manage/{kind}").json()["value"] for kind in config_sync.KIND_NAMES}


def test_invalid_document_fails_with_its_file_name_and_changes_nothing(source, deployments, sync, tmp_path):
    _, prod = deployments
    folder = tmp_path / "config"
    assert sync("export", "--out", folder, deployment=source).code == 0
    (folder / "entities" / "Broken.json").write_text(
        json.dumps({"keys": ["ID"], "fields": [{"name": "ID", "type": "money"}]})
    )
    before = _prod_state(prod)

    plan = sync("plan", folder, deployment=prod)
    assert plan.code == 1
    assert "! invalid entities/Broken.json: fields[0].type 'money' is not a field type" in plan.out
    applied = sync("apply", folder, deployment=prod)
    assert applied.code == 1
    assert "error: entities/Broken.json: fields[0].type 'money' is not a field type" in applied.err
    assert "nothing was applied" in applied.err
    assert _prod_state(prod) == before

    (folder / "entities" / "Broken.json").write_text("{ not json")
    unreadable = sync("plan", folder, deployment=prod)
    assert unreadable.code == 1 and "error: entities/Broken.json: not valid JSON" in unreadable.err


def test_refused_document_reports_the_server_message_and_what_was_applied(
    source, deployments, sync, tmp_path
):
    _, prod = deployments
    folder = tmp_path / "config"
    assert sync("export", "--out", folder, deployment=source).code == 0
    # Valid on its own; the deployment refuses it because the entity it names exists nowhere.
    (folder / "projects" / "Orphan.json").write_text(
        json.dumps({"operation": "import", "entities": [{"entity": "NoSuchEntity"}]})
    )
    (folder / "entities" / "Carriers.json").write_text(
        json.dumps({"keys": ["ID"], "fields": [{"name": "ID"}]})
    )

    run = sync("apply", folder, deployment=prod)
    assert run.code == 1
    assert (
        "error: projects/Orphan.json: PUT /api/manage/projects/Orphan: HTTP 400 UnknownEntity: "
        "entities[0].entity: entity 'NoSuchEntity' does not exist" in run.err
    )
    assert "Applied before the failure (1): created entities/Carriers" in run.err
    assert prod.ok("GET", "/api/manage/entities/Carriers").status_code == 200
    assert prod.call("GET", "/api/manage/projects/Orphan").status_code == 404


def test_a_resource_changed_after_the_plan_is_not_overwritten(source, deployments, tmp_path):
    """Apply sends the ETag the plan read in If-Match: a change made in between is refused (412)."""
    _, prod = deployments
    folder = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, folder)
    for kind in ("legalEntities", "applications"):  # already there: the entity is the first change
        for file in sorted((folder / kind).glob("*.json")):
            prod.ok("PUT", f"/api/manage/{kind}/{file.stem}", json=json.loads(file.read_text()))
    prod.ok(
        "PUT",
        "/api/manage/entities/CustomerGroups",
        json=json.loads((folder / "entities" / "CustomerGroups.json").read_text()),
    )
    (folder / "entities" / "CustomerGroups.json").write_text(
        json.dumps(
            {**json.loads((folder / "entities" / "CustomerGroups.json").read_text()), "label": "Groups"}
        )
    )
    args = config_sync.build_parser().parse_args(
        ["plan", str(folder), "--base-url", prod.url, "--token-file", "x"]
    )
    token_file = tmp_path / "token"
    token_file.write_text(prod.token)
    args.token_file = str(token_file)
    deployment = config_sync.connect(args)
    plan = config_sync.make_plan(config_sync.read_folder(folder), config_sync.read_deployment(deployment))
    assert [(c.action, c.resource.label) for c in plan.changes][:1] == [("update", "entities/CustomerGroups")]

    prod.ok("PATCH", "/api/manage/entities/CustomerGroups", json={"label": "Changed meanwhile"})
    with pytest.raises(config_sync.ApplyError) as caught:
        config_sync.apply_plan(deployment, plan, log=lambda line: None)
    assert caught.value.path == "entities/CustomerGroups.json"
    assert "412 PreconditionFailed" in caught.value.message and caught.value.applied == []
    assert "run plan again" in str(caught.value)
    assert prod.ok("GET", "/api/manage/entities/CustomerGroups").json()["label"] == "Changed meanwhile"


def test_client_credentials_through_a_d365ri_profile(source, deployments, tmp_path, key_dir, monkeypatch):
    """Entra client credentials through MSAL (d365ri's sign-in), against a local OpenID token endpoint whose
    tokens the app accepts (tests/client/tokenserver.py); the secret is never printed."""
    _, prod = deployments
    server = TokenServer(tmp_path, key_dir=key_dir, tenant=TENANT)
    try:
        server.secrets[ADMIN_CLIENT] = "admin-s3cret"
        for key in [k for k in os.environ if k.startswith("D365RI_")]:
            monkeypatch.delenv(key)
        home = tmp_path / "d365ri-home"
        home.mkdir()
        monkeypatch.setenv("D365RI_HOME", str(home))
        monkeypatch.setenv("ADMIN_SECRET", "admin-s3cret")
        profile = {
            "baseUrl": prod.url,
            "tenant": TENANT,
            "clientId": ADMIN_CLIENT,
            "auth": "secret",
            "secretEnv": "ADMIN_SECRET",
            "authority": server.authority,
            "scope": f"{AUDIENCE}/.default",
            "caBundle": str(server.ca_path),
        }
        (home / "config.json").write_text(json.dumps({"profiles": {"prod": profile}}))

        out, err = io.StringIO(), io.StringIO()
        code = config_sync.main(["plan", str(CONFIG_DIR), "--profile", "prod"], out=out, err=err)
        assert code == 0, err.getvalue()
        assert out.getvalue().startswith(f"Plan for {prod.url}:")
        assert server.counts["client_credentials"] == 1
        assert "admin-s3cret" not in out.getvalue() + err.getvalue()

        monkeypatch.setenv("ADMIN_SECRET", "wrong")
        (home / "token-cache.json").unlink()
        out, err = io.StringIO(), io.StringIO()
        code = config_sync.main(["plan", str(CONFIG_DIR), "--profile", "prod"], out=out, err=err)
        assert code == 3, err.getvalue()
        assert f"application {ADMIN_CLIENT} in tenant {TENANT}" in err.getvalue()
    finally:
        server.stop()
