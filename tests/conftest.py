"""Session fixtures: one in-memory Azurite, the real app under the local host, and token factories.

Tests that need storage or the host ask for these fixtures; pure unit tests never start anything.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "d365"
TENANT = "00000000-0000-0000-0000-00000000a11c"
AUDIENCE = "api://recurring-integrations-local"
ADMIN_APP = "a0000000-0000-0000-0000-00000000ad01"


def d365_fixture(*parts: str) -> Path:
    """A real D365 file from ../shared/fixtures/d365 (never copied into the repo), or skip."""
    path = FIXTURES.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"the D365 fixture {path} is absent (../shared/fixtures/d365 sits beside the checkout)")
    return path


@pytest.fixture(scope="session")
def azurite(tmp_path_factory) -> Iterator:
    from tools.azurite import start_azurite

    log = tmp_path_factory.mktemp("azurite") / "azurite.log"
    with start_azurite(in_memory=True, log_path=log) as process:
        yield process


@pytest.fixture(scope="session")
def key_dir(tmp_path_factory) -> Path:
    from shared.auth.keys import ensure_local_keys

    directory = tmp_path_factory.mktemp("keys")
    ensure_local_keys(directory)
    return directory


@pytest.fixture(scope="session")
def make_token(key_dir):
    from tools.devtoken import make_token as mint

    def factory(app_id: str | None = None, *, admin: bool = False, **kw) -> str:
        return mint(
            app_id or str(uuid.uuid4()),
            key_dir=key_dir,
            tenant_id=TENANT,
            audience=AUDIENCE,
            admin=admin,
            **kw,
        )

    return factory


@pytest.fixture(scope="session")
def app_env(azurite, key_dir, tmp_path_factory) -> dict[str, str]:
    """Settings of the app under test, applied to this process too (integration tests build services here)."""
    fault_dir = tmp_path_factory.mktemp("faults")
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "AUTH_MODE": "local",
        "AUTH_TENANT_ID": TENANT,
        "AUTH_AUDIENCES": AUDIENCE,
        "AUTH_ADMIN_ROLE": "Integrations.Admin",
        "AUTH_ADMIN_APPS": "",
        "AUTH_LOCAL_KEY_DIR": str(key_dir),
        "PUBLIC_BASE_URL": "",
        # Tests drive the scheduler themselves (POST /admin/functions/scheduler_tick); never on its own.
        "SCHEDULER_SCHEDULE": "0 0 0 1 1 *",
        # The local host's master key, which admin invokes need (ApiClient.run_scheduler sends it).
        "DEVHOST_MASTER_KEY": f"e2e-{uuid.uuid4().hex}",
        # The poison sweeper too: tests sweep themselves (or set a schedule of their own).
        "POISON_SWEEP_SCHEDULE": "0 0 0 1 1 *",
        "MAX_ENQUEUE_BYTES": str(8 * 1024 * 1024),
        "DEV_FAULT_FAIL_ONCE_DIR": str(fault_dir),
        # Every storage request of the app, one line each (shared/storage/call_log.py; tests/e2e/test_storage_calls.py).
        "DEV_STORAGE_CALL_LOG": str(tmp_path_factory.mktemp("calls") / "storage-calls.log"),
        # Exact incremental windows in tests; test_export_service checks the margin itself.
        "EXPORT_INCREMENTAL_OVERLAP_SECONDS": "0",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    seed_legal_entities()
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


# The demo's legal entities (tools.demo, examples/config/legalEntities): every company the tests name. A
# company must be a configured legal entity (issue 13, item 5); tests/e2e/test_legal_entities.py checks that.
TEST_LEGAL_ENTITIES = ("usmf", "demf", "dat")


def seed_legal_entities() -> None:
    """Creates TEST_LEGAL_ENTITIES in the session's storage (the settings app_env applied)."""
    from shared.services.registry import config_service

    for legal_entity in TEST_LEGAL_ENTITIES:
        config_service().upsert_legal_entity(legal_entity, {"name": legal_entity.upper()})


def host_mode() -> str:
    """E2E_HOST_MODE: "single" (default) runs the app in one host process; "split" runs it as Flex does."""
    mode = (os.environ.get("E2E_HOST_MODE") or "single").strip().lower()
    if mode not in ("single", "split"):
        raise pytest.UsageError(f"E2E_HOST_MODE must be single or split, not {mode!r}")
    return mode


@pytest.fixture(scope="session")
def app_hosts(app_env, tmp_path_factory) -> Iterator:
    """(HTTP host, worker host): the real function_app under `python -m tools.devhost`, over real HTTP.

    Single mode: one process runs everything, so both are the same. Split mode (E2E_HOST_MODE=split): two
    processes on the one Azurite, `--functions http` and `--functions queues timers`, sharing nothing in
    memory, as HTTP and the other functions run on separate instances on Flex Consumption.
    """
    from tests.devhost.hostproc import HostProcess, clean_env

    env = clean_env(**app_env)
    logs = tmp_path_factory.mktemp("apphost")
    if host_mode() == "single":
        hosts = [HostProcess(REPO_ROOT, env, logs, name="app")]
    else:
        hosts = [
            HostProcess(REPO_ROOT, env, logs, "--functions", "http", name="app-http"),
            HostProcess(REPO_ROOT, env, logs, "--functions", "queues", "timers", name="app-workers"),
        ]
    try:
        for host in hosts:
            host.wait_started()
        yield hosts[0], hosts[-1]
    finally:
        for host in hosts:
            host.stop()


@pytest.fixture(scope="session")
def app_host(app_hosts):
    """The host that serves the app's HTTP functions."""
    return app_hosts[0]


@pytest.fixture(scope="session")
def worker_host(app_hosts):
    """The host that runs the queue and timer functions (admin invokes of those go here)."""
    return app_hosts[1]


@pytest.fixture(scope="session")
def api(app_host, worker_host, make_token):
    from tests.support.client import ApiClient

    return ApiClient(
        app_host.url, admin_token=make_token(ADMIN_APP, admin=True), make_token=make_token, worker=worker_host
    )
