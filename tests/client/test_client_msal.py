"""MSAL sign-in against a local OpenID-compatible token endpoint (tests/client/tokenserver.py, no internet), with
the tokens it issues accepted by the app: client credentials with a secret and with a certificate, device code,
the per-user token cache (reused across runs, refreshed, 0600) and readable sign-in failures."""

from __future__ import annotations

import json
import os
import sys
import uuid

import pytest

from tests.client.conftest import ImportJob, csv_rows
from tests.client.tokenserver import TokenServer, self_signed
from tests.conftest import AUDIENCE, TENANT

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]


@pytest.fixture
def token_server(tmp_path, key_dir):
    server = TokenServer(tmp_path, key_dir=key_dir, tenant=TENANT)
    yield server
    server.stop()


def write_profile(home, server: TokenServer, base_url: str, **spec) -> None:
    home.mkdir(parents=True, exist_ok=True)
    profile = {
        "baseUrl": base_url,
        "tenant": TENANT,
        "authority": server.authority,
        "scope": f"{AUDIENCE}/.default",
        "caBundle": str(server.ca_path),
        **spec,
    }
    (home / "config.json").write_text(json.dumps({"defaultProfile": "local", "profiles": {"local": profile}}))


def test_client_secret_sign_in_is_accepted_by_the_app_and_cached(
    api, d365ri, tmp_path, client_home, token_server, monkeypatch
):
    client_id = str(uuid.uuid4())
    token_server.secrets[client_id] = "s3cret-value"
    monkeypatch.setenv("LOCAL_SECRET", "s3cret-value")
    write_profile(
        client_home, token_server, api.base, clientId=client_id, auth="secret", secretEnv="LOCAL_SECRET"
    )
    job = ImportJob(api, authorizationPolicy=[{"applicationId": client_id, "enabled": True}])
    file = tmp_path / "msal.csv"
    file.write_bytes(csv_rows(["M1"]))

    run = d365ri("enqueue", job.activity, file, "--entity", job.label, "--wait", "--json")
    assert run.code == 0, run.err
    assert run.json()["status"] == "Processed" and job.codes() == ["M1"]
    assert token_server.counts["client_credentials"] == 1

    # A new process (here: a new run) reads the cached token instead of asking again.
    login = d365ri("login", "--json")
    assert login.code == 0, login.err
    info = login.json()
    assert info["application"] == client_id and info["audience"] == AUDIENCE
    assert info["issuer"] == f"https://login.microsoftonline.com/{TENANT}/v2.0"
    assert token_server.counts["client_credentials"] == 1
    cache = client_home / "token-cache.json"
    assert cache.exists()
    if os.name == "posix":
        assert cache.stat().st_mode & 0o777 == 0o600
    assert "s3cret-value" not in run.out + run.err + login.out + login.err + cache.read_text()

    assert d365ri("logout").code == 0 and not cache.exists()


def test_a_wrong_secret_is_explained(api, d365ri, client_home, token_server, monkeypatch):
    client_id = str(uuid.uuid4())
    token_server.secrets[client_id] = "right"
    monkeypatch.setenv("LOCAL_SECRET", "wrong")
    write_profile(
        client_home, token_server, api.base, clientId=client_id, auth="secret", secretEnv="LOCAL_SECRET"
    )
    run = d365ri("login")
    assert run.code == 3
    assert "invalid_client" in run.err and "the client secret is wrong or expired" in run.err
    assert "wrong" not in run.err.replace("wrong or expired", "")

    monkeypatch.delenv("LOCAL_SECRET")
    run = d365ri("login")
    assert run.code == 3 and "LOCAL_SECRET is empty" in run.err


def test_certificate_sign_in(api, d365ri, tmp_path, client_home, token_server):
    from cryptography import x509

    client_id = str(uuid.uuid4())
    cert_path, key_path = self_signed(tmp_path, "client")
    token_server.certificates[client_id] = x509.load_pem_x509_certificate(cert_path.read_bytes()).public_key()
    pem = tmp_path / "client.pem"
    pem.write_bytes(key_path.read_bytes() + cert_path.read_bytes())
    write_profile(
        client_home, token_server, api.base, clientId=client_id, auth="certificate", certificateFile=str(pem)
    )
    job = ImportJob(api, authorizationPolicy=[{"applicationId": client_id, "enabled": True}])

    run = d365ri("check", job.activity, "--json")
    assert run.code == 0, run.err
    assert run.json()["job"] == "allowed" and run.json()["application"] == client_id
    assert token_server.counts["client_assertion"] == 1


def test_device_code_sign_in_then_cache_then_refresh(api, d365ri, client_home, token_server):
    client_id = str(uuid.uuid4())
    token_server.public_clients.add(client_id)
    token_server.access_seconds = 120  # under MSAL's 5-minute margin: the next run refreshes
    write_profile(client_home, token_server, api.base, clientId=client_id, auth="device-code")
    job = ImportJob(api, authorizationPolicy=[{"applicationId": client_id, "enabled": True}])

    first = d365ri("check", job.activity, "--json")
    assert first.code == 0, first.err
    assert "enter the code LOCAL-123" in first.err  # the person is told where to sign in
    assert first.json()["job"] == "allowed"
    assert token_server.counts["devicecode"] == 1

    second = d365ri("check", job.activity, "--json")
    assert second.code == 0, second.err
    assert "LOCAL-123" not in second.err
    assert token_server.counts["devicecode"] == 1 and token_server.counts["refresh_token"] == 1


def test_the_default_scope_is_the_base_url(client_home):
    from d365ri.config import load_profile

    profile = load_profile(
        client_home / "none.json", base_url="https://contoso.operations.dynamics.com/", env={}
    )
    assert profile.effective_scope == "https://contoso.operations.dynamics.com/.default"
    assert sys.modules["d365ri.config"].DEFAULT_AUTHORITY == "https://login.microsoftonline.com"


def test_an_unreachable_authority_is_a_network_error(api, d365ri, client_home, monkeypatch):
    import socket

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = client_home
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.json").write_text(
        json.dumps(
            {
                "profiles": {
                    "p": {
                        "baseUrl": api.base,
                        "tenant": TENANT,
                        "clientId": str(uuid.uuid4()),
                        "auth": "secret",
                        "authority": f"https://127.0.0.1:{port}",
                    }
                }
            }
        )
    )
    monkeypatch.setenv("D365RI_CLIENT_SECRET", "x")
    run = d365ri("login")
    assert run.code == 4 and "sign-in at https://127.0.0.1" in run.err and "Traceback" not in run.err
