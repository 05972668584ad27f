"""The app under the real host's rules (HOST.md): what a partner sees at the edges the host owns.

- Body size: the host refuses bodies above FUNCTIONS_REQUEST_BODY_SIZE_LIMIT itself, with no body
  (HttpRequestBodySizeMiddleware); the app's limit stays below it, so its own 413 names the package API.
- Bodies travel only with Content-Length (GrpcMessageConversionExtensions.ToRpcHttp, host issue #7930): a
  chunked enqueue gets the app's 411, not a misleading "empty body".
- An import error leaves the real host with zero functions; the app reports bad settings instead: every
  endpoint answers 503 naming the setting, and health is unhealthy.
"""

from __future__ import annotations

import pytest
import requests

from tests.conftest import REPO_ROOT
from tests.e2e.test_import_protocol import CG, csv_bytes


def error_of(resp) -> tuple[str, str]:
    body = resp.json()["error"]
    return body["code"], body["message"]


def test_a_body_between_the_app_and_host_limits_gets_the_apps_413(api):
    activity, app, _ = api.import_job(CG)
    resp = api.enqueue(activity, app, b"x" * (8 * 1024 * 1024 + 1), entity="Customer groups")
    assert resp.status_code == 413
    code, message = error_of(resp)
    assert code == "PayloadTooLarge" and "GetAzureWriteUrl" in message


def test_a_chunked_enqueue_is_told_to_send_the_length(api):
    activity, app, _ = api.import_job(CG)
    data = csv_bytes(["1,a,Net30,1,No"])

    def chunks():  # a generator body makes requests send Transfer-Encoding: chunked
        yield data[:10]
        yield data[10:]

    resp = api.call(
        "POST",
        f"/api/connector/enqueue/{activity}?entity=Customer%20groups",
        api.make_token(app),
        data=chunks(),
    )
    assert resp.status_code == 411, resp.text
    code, message = error_of(resp)
    assert code == "LengthRequired" and "Content-Length" in message
    # The same bytes with a length are accepted.
    assert api.enqueue(activity, app, data, entity="Customer groups").status_code == 200


def test_health_is_healthy_and_the_base_url_answers_200(api):
    health = requests.get(api.url("/api/health"), timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "healthy"
    root = requests.get(api.url("/"), timeout=10)
    assert root.status_code == 200 and root.json()["status"] == "ok"


@pytest.fixture(scope="module")
def misconfigured_host(app_env, tmp_path_factory):
    from tests.devhost.hostproc import HostProcess, clean_env

    env = clean_env(**{**app_env, "AUTH_MODE": "entra", "AUTH_TENANT_ID": "contoso"})
    host = HostProcess(REPO_ROOT, env, tmp_path_factory.mktemp("misconfigured"), name="misconfigured")
    try:
        host.wait_started()
        yield host
    finally:
        host.stop()


def test_a_misconfigured_app_says_which_setting_instead_of_going_silent(misconfigured_host, make_token):
    base = misconfigured_host.url
    health = requests.get(f"{base}/api/health", timeout=10)
    assert health.status_code == 503
    assert health.json()["status"] == "unhealthy"
    assert [p["setting"] for p in health.json()["problems"]] == ["AUTH_TENANT_ID"]

    for method, path in [
        ("GET", "/"),
        ("GET", "/api/manage/jobs"),
        ("POST", "/api/connector/enqueue/6f0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"),
        ("POST", "/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities.GetMessageStatus"),
    ]:
        resp = requests.request(
            method, base + path, headers={"Authorization": f"Bearer {make_token()}"}, data=b"{}", timeout=10
        )
        assert resp.status_code == 503, (path, resp.status_code, resp.text)
        code, message = error_of(resp)
        assert code == "Misconfigured" and "AUTH_TENANT_ID" in message, path
    assert "AUTH_TENANT_ID" in misconfigured_host.stderr  # and the log says why
