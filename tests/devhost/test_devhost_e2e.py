"""The local host as a subprocess over real HTTP and a real Azurite: routing, queues, timers, shutdown."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import signal
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import BinaryBase64EncodePolicy, QueueClient, TextBase64EncodePolicy

from tests.devhost.hostproc import HostProcess, clean_env
from tools.azurite import AzuriteProcess

pytestmark = [pytest.mark.azurite, pytest.mark.e2e]

GUID = "5f0c3a4e-1b2c-4d5e-8f90-123456789abc"


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def records(output_dir: Path, name: str) -> list[dict[str, Any]]:
    path = output_dir / name
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def queue(azurite: AzuriteProcess, name: str, policy: Any = None, *, create: bool = False) -> QueueClient:
    """A client for the queue; ``create`` for trigger queues, which the host never creates (QueueListener.cs)."""
    client = QueueClient.from_connection_string(azurite.connection_string, name, message_encode_policy=policy)
    if create:
        with contextlib.suppress(ResourceExistsError):
            client.create_queue()
    return client


def peek(client: QueueClient) -> list[str]:
    """Contents of visible messages; a queue the host has not created yet is empty."""
    try:
        return [m.content for m in client.peek_messages(max_messages=32)]
    except ResourceNotFoundError:
        return []


# --- HTTP ---------------------------------------------------------------------------------------------


def test_banner_lists_functions(sample_host: HostProcess) -> None:
    out = sample_host.stdout
    assert "echo: [GET,POST] /echo/{name}/{id:guid}" in out
    assert "empty_route: [GET] /empty_route" in out
    assert "work: queueTrigger work-items (AzureWebJobsStorage)" in out
    assert "tick: timerTrigger '*/1 * * * * *'" in out
    assert sample_host.master_key  # generated: DEVHOST_MASTER_KEY is not set


def test_route_and_query_params_are_decoded(sample_host: HostProcess) -> None:
    """Query values as ToRpcHttp passes them (GrpcMessageConversionExtensions.cs): repeats joined with ",",
    empty values dropped, "+" a space."""
    url = f"{sample_host.url}/echo/hello%20world/{GUID}?q=a+b&q=second&r=%2Fslash&empty="
    data = requests.get(url, timeout=5).json()
    assert data["method"] == "GET"
    assert data["route_params"] == {"name": "hello world", "id": GUID}
    assert data["params"] == {"q": "a b,second", "r": "/slash"}
    assert data["url"] == url


def test_routes_are_tried_in_function_name_order(sample_host: HostProcess) -> None:
    """No precedence: functions in name order (FunctionMetadataManager.cs), first match wins (the
    RouteCollection of WebJobsRouteBuilder.cs); thing_param comes before thing_special."""
    got = requests.get(f"{sample_host.url}/things/special", timeout=5).json()
    assert got == {"matched": "param", "name": "special", "method": "GET"}
    # thing_param takes only GET, so a POST goes on to the literal route.
    assert requests.post(f"{sample_host.url}/things/special", timeout=5).json()["matched"] == "literal"
    # Literal segments are case-insensitive.
    assert requests.post(f"{sample_host.url}/THINGS/Special", timeout=5).json()["matched"] == "literal"


def test_an_empty_route_is_the_function_name(sample_host: HostProcess) -> None:
    """ScriptHost.ValidateHttpFunction: route "" is served at /empty_route; "/" is the homepage
    (HomepageMiddleware.cs), HTML since AzureWebJobsDisableHomepage is not set."""
    assert requests.get(f"{sample_host.url}/empty_route", timeout=5).json() == {"matched": "empty_route"}
    home = requests.get(f"{sample_host.url}/", timeout=5)
    assert home.status_code == 200 and home.headers["Content-Type"] == "text/html"


def test_optional_parameter_and_catch_all(sample_host: HostProcess) -> None:
    assert requests.get(f"{sample_host.url}/items", timeout=5).json() == {"itemId": None}
    assert requests.get(f"{sample_host.url}/items/42", timeout=5).json() == {"itemId": "42"}
    data = requests.delete(f"{sample_host.url}/files/a/b%20c/d.txt", timeout=5).json()
    assert data == {"path": "a/b c/d.txt", "method": "DELETE"}
    assert requests.get(f"{sample_host.url}/files", timeout=5).json()["path"] is None


def test_unknown_route_and_failed_constraint_are_404(sample_host: HostProcess) -> None:
    """The end of the ASP.NET pipeline: 404 with an empty body."""
    for path in ("/nope", "/echo/x/not-a-guid", "/big/abc", "/big/99999999999"):
        response = requests.get(f"{sample_host.url}{path}", timeout=5)
        assert response.status_code == 404, path
        assert response.content == b"", path


def test_wrong_method_is_404_not_405(sample_host: HostProcess) -> None:
    """HttpMethodRouteConstraint makes a wrong method no match at all (WebScriptHostHttpRoutesManager.cs)."""
    for method in ("DELETE", "HEAD", "OPTIONS"):
        response = requests.request(method, f"{sample_host.url}/echo/x/{GUID}", timeout=5)
        assert response.status_code == 404 and response.content == b"", method
        assert "Allow" not in response.headers


def test_chunked_request_body_arrives_empty(sample_host: HostProcess) -> None:
    """GrpcMessageConversionExtensions.ToRpcHttp forwards a body only when Content-Length > 0 (host issue
    #7930): a chunked body reaches the function as b"", with its headers."""
    parts = [b"first,", b"second,", b"x" * 70000, "ünï".encode()]

    def body() -> Iterator[bytes]:
        yield from parts

    response = requests.post(f"{sample_host.url}/echo/chunked/{GUID}", data=body(), timeout=10)
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    data = response.json()
    assert data["body_length"] == 0
    assert data["headers"]["transfer-encoding"] == "chunked"


def test_content_length_body_and_large_response(sample_host: HostProcess) -> None:
    payload = b"a=1&b=two+words" + b"z" * 1_000_000
    data = requests.post(f"{sample_host.url}/echo/form/{GUID}", data=payload, timeout=10).json()
    assert data["body_length"] == len(payload)
    response = requests.get(f"{sample_host.url}/big/5000000", timeout=10)
    assert response.status_code == 200
    assert len(response.content) == 5_000_000
    assert response.headers["Content-Length"] == "5000000"


def test_exception_is_500_with_no_body_and_traceback_logged(sample_host: HostProcess) -> None:
    """ExceptionMiddleware.cs sets 500 and writes nothing; the log has the error and the Failed line."""
    response = requests.get(f"{sample_host.url}/boom", timeout=5)
    assert response.status_code == 500 and response.content == b""
    sample_host.wait_for_log(r"Executed 'Functions\.boom' \(Failed, Id=[0-9a-f-]+, Duration=\d+ms\)")
    wait_for(lambda: "RuntimeError: kaboom" in sample_host.stderr, 5, "traceback in stderr")
    assert "Traceback (most recent call last)" in sample_host.stderr


def test_async_function_with_context_and_headers(sample_host: HostProcess) -> None:
    response = requests.get(f"{sample_host.url}/async/world", timeout=5)
    assert response.status_code == 200
    assert response.text == "hello world from async_hello"
    assert response.headers["X-Sample"] == "yes"
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"


def test_keep_alive_reuses_the_connection(sample_host: HostProcess) -> None:
    parts = urlsplit(sample_host.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        conn.request("GET", "/things/special")
        first = conn.getresponse()
        assert first.status == 200
        first.read()
        sock = conn.sock
        conn.request("POST", f"/echo/x/{GUID}", body=b"again")
        second = conn.getresponse()
        assert json.loads(second.read())["body"] == "again"
        conn.request("GET", "/nope")
        assert conn.getresponse().status == 404
        assert conn.sock is sock
    finally:
        conn.close()


def test_requests_run_concurrently(sample_host: HostProcess) -> None:
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda _: requests.get(f"{sample_host.url}/slow", timeout=10), range(20)))
    assert all(r.status_code == 200 for r in results)
    assert max(r.json()["max_inflight"] for r in results) >= 2


def test_one_log_line_per_request(sample_host: HostProcess) -> None:
    requests.get(f"{sample_host.url}/things/special?log=1", timeout=5)
    wait_for(lambda: "GET /things/special?log=1 200 " in sample_host.stderr, 5, "request log line")


def test_settings_precedence_env_then_local_then_example(sample_host: HostProcess) -> None:
    data = requests.get(f"{sample_host.url}/settings", timeout=5).json()
    # Seen at import time: settings are applied before the app module is imported.
    assert data["import"] == {"SAMPLE_A": "env", "SAMPLE_B": "local", "SAMPLE_C": "example"}


# --- queues and timers ---------------------------------------------------------------------------------


def test_queue_trigger_decodes_base64_and_deletes(
    sample_host: HostProcess, devhost_azurite: AzuriteProcess, output_dir: Path
) -> None:
    texts = [f"hello {i} ünï {uuid.uuid4()}" for i in range(6)]
    sender = queue(devhost_azurite, "work-items", TextBase64EncodePolicy(), create=True)
    for text in texts:
        sender.send_message(text)
    binary = uuid.uuid4().bytes + b"\x00\xff"
    queue(devhost_azurite, "work-items", BinaryBase64EncodePolicy()).send_message(binary)

    expected = {t.encode().hex() for t in texts} | {binary.hex()}
    seen = wait_for(
        lambda: expected <= {r["body_hex"] for r in records(output_dir, "work.jsonl")} or None,
        15,
        "all queue messages processed",
    )
    assert seen
    processed = [r for r in records(output_dir, "work.jsonl") if r["body_hex"] in expected]
    assert all(r["dequeue_count"] == 1 for r in processed)
    wait_for(lambda: not peek(sender), 5, "messages deleted")


def test_failing_message_moves_to_poison_with_original_content(
    sample_host: HostProcess, devhost_azurite: AzuriteProcess, output_dir: Path
) -> None:
    body = f"bad-{uuid.uuid4()}"
    queue(devhost_azurite, "fail-items", TextBase64EncodePolicy(), create=True).send_message(body)
    poison = queue(devhost_azurite, "fail-items-poison")
    encoded = base64.b64encode(body.encode()).decode()
    wait_for(
        lambda: encoded in peek(poison),
        15,
        "message on fail-items-poison",
    )
    attempts = [r["dequeue_count"] for r in records(output_dir, "fail.jsonl") if r["body"] == body]
    assert attempts == [1, 2]  # maxDequeueCount is 2 in the sample host.json
    assert not peek(queue(devhost_azurite, "fail-items"))


def test_undecodable_message_is_poisoned_without_invoking(
    sample_host: HostProcess, devhost_azurite: AzuriteProcess
) -> None:
    raw = f"not base64 {uuid.uuid4()}!"
    queue(devhost_azurite, "work-items", create=True).send_message(raw)
    poison = queue(devhost_azurite, "work-items-poison")
    wait_for(lambda: raw in peek(poison), 15, "raw message poisoned")
    sample_host.wait_for_log("is not valid base64", timeout=5)  # logged once the move is done


def test_timer_fires_on_resolved_schedule(sample_host: HostProcess, output_dir: Path) -> None:
    ticks = wait_for(
        lambda: len(records(output_dir, "timer.jsonl")) >= 2 and records(output_dir, "timer.jsonl"), 6
    )
    assert all(t["past_due"] is False for t in ticks)
    # "*/1 * * * * *" fires on whole seconds.
    assert all(t["at"] % 1 < 0.3 for t in ticks)


# --- lifecycle -----------------------------------------------------------------------------------------


def test_sigint_finishes_in_flight_request_and_exits_0(
    devhost_azurite: AzuriteProcess, sample_root: Path, tmp_path: Path
) -> None:
    env = clean_env(AzureWebJobsStorage=devhost_azurite.connection_string, SAMPLE_OUTPUT_DIR=str(tmp_path))
    host = HostProcess(sample_root, env, tmp_path, name="sigint")
    try:
        url = host.wait_started()
        result: dict[str, Any] = {}

        def slow_call() -> None:
            result["response"] = requests.get(f"{url}/slow?sleep=1", timeout=10)

        caller = threading.Thread(target=slow_call)
        caller.start()
        time.sleep(0.4)  # the request is now inside the 1 s handler
        stopped_at = time.monotonic()
        host.proc.send_signal(signal.SIGINT)
        assert host.proc.wait(10) == 0
        assert time.monotonic() - stopped_at < 5
        caller.join(5)
        assert result["response"].status_code == 200
        assert "Host stopped." in host.stderr
    finally:
        host.stop(signal.SIGKILL)


def test_missing_schedule_setting_leaves_the_timer_out(tmp_path: Path) -> None:
    """An unresolved %SETTING% is a FunctionIndexingException for that function only
    (ScriptHost.HandleHostError): the host starts, logs "The 'tick' function is in error", runs the rest."""
    root = tmp_path / "app"
    root.mkdir()
    (root / "function_app.py").write_text(
        textwrap.dedent(
            """
            import azure.functions as func

            app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

            @app.timer_trigger(arg_name="timer", schedule="%NOT_CONFIGURED_SCHEDULE%")
            def tick(timer: func.TimerRequest) -> None:
                pass

            @app.route(route="up", methods=["GET"])
            def up(req: func.HttpRequest) -> func.HttpResponse:
                return func.HttpResponse("up")
            """
        ),
        encoding="utf-8",
    )
    host = HostProcess(root, clean_env(), tmp_path, name="bad")
    try:
        url = host.wait_started()
        assert "tick: in error:" in host.stdout and "NOT_CONFIGURED_SCHEDULE" in host.stdout
        host.wait_for_log(r"The 'tick' function is in error: .*NOT_CONFIGURED_SCHEDULE")
        assert requests.get(f"{url}/api/up", timeout=5).text == "up"
    finally:
        host.stop()


def test_an_import_error_leaves_a_running_host_with_zero_functions(tmp_path: Path) -> None:
    """The worker fails to index (python worker dispatcher._handle__functions_metadata_request); the host logs
    "Worker failed to index functions" (GrpcWorkerChannel.cs) and runs with no functions: 404 everywhere,
    204 at "/" with the homepage disabled. Not an exit."""
    root = tmp_path / "app"
    root.mkdir()
    (root / "function_app.py").write_text("raise RuntimeError('bad setting at import')\n", encoding="utf-8")
    host = HostProcess(root, clean_env(AzureWebJobsDisableHomepage="true"), tmp_path, name="noindex")
    try:
        url = host.wait_started()
        host.wait_for_log(r"Worker failed to index functions: .*bad setting at import")
        assert requests.get(f"{url}/api/anything", timeout=5).status_code == 404
        root_response = requests.get(f"{url}/", timeout=5)
        assert root_response.status_code == 204 and root_response.content == b""
        assert host.proc.poll() is None
    finally:
        assert host.stop() == 0


def test_admin_invoke_needs_the_master_key_and_answers_202_at_once(
    sample_host: HostProcess, output_dir: Path
) -> None:
    """FunctionsController.Invoke: [Authorize(Policy = AdminAuthLevel)] (the master key, from x-functions-key,
    which wins, or ?code=; AuthenticationLevelHandler.cs), else 401; then the body (no FunctionInvocation: 400)
    and the function (ScriptHost.GetFunctionOrNull, names ignore case: 404). It answers 202 (Accepted) with no
    body and runs the function in Task.Run; the "Executed 'Functions.<name>'" line says when it is done."""
    key = sample_host.master_key
    admin = f"{sample_host.url}/admin/functions"
    text = f"manual-{uuid.uuid4()}"
    for headers, query in [
        ({}, ""),
        ({"x-functions-key": "wrong"}, ""),
        ({"x-functions-key": "wrong"}, f"?code={key}"),
    ]:
        refused = requests.post(f"{admin}/work{query}", headers=headers, json={"input": text}, timeout=5)
        assert refused.status_code == 401 and refused.content == b"", (headers, query)
    assert text.encode().hex() not in {r["body_hex"] for r in records(output_dir, "work.jsonl")}

    def invoke(name: str, body: Any = None, **kw: Any) -> requests.Response:
        return requests.post(f"{admin}/{name}", headers={"x-functions-key": key}, json=body, timeout=5, **kw)

    done = sample_host.count_log(r"Executed 'Functions\.work' \(Succeeded")
    accepted = invoke("WORK", {"input": text})
    assert accepted.status_code == 202 and accepted.content == b""
    sample_host.wait_for_log(r"Executed 'Functions\.work' \(Succeeded", count=done + 1)
    assert text.encode().hex() in {r["body_hex"] for r in records(output_dir, "work.jsonl")}
    assert requests.post(f"{admin}/work?code={key}", json={"input": "q"}, timeout=5).status_code == 202

    assert invoke("tick", {}).status_code == 202
    assert invoke("nope", {}).status_code == 404
    assert invoke("work").status_code == 400  # no body
    assert invoke("echo", {}).status_code == 404  # HTTP functions are not run this way locally
    failed = sample_host.count_log(r"Executed 'Functions\.always_fails' \(Failed")
    assert invoke("always_fails", {"input": "x"}).status_code == 202  # the failure is not the caller's
    sample_host.wait_for_log(r"Executed 'Functions\.always_fails' \(Failed", count=failed + 1)


def test_every_invocation_logs_the_hosts_executed_line(sample_host: HostProcess) -> None:
    """FunctionInstanceLogger (azure-webjobs-sdk) logs "Executing '<name>' (Reason=..., Id=...)" and
    "Executed '<name>' (Succeeded|Failed, Id=..., Duration=...ms)", the name being Functions.<name>
    (ScriptHost's generated type): here for HTTP and the timer."""
    before = sample_host.count_log(r"Executed 'Functions\.thing_param' ")
    requests.get(f"{sample_host.url}/things/x", timeout=5)
    pattern = r"Executed 'Functions\.thing_param' \(Succeeded, Id=([0-9a-f-]{36}), Duration=\d+ms\)"
    invocation_id = sample_host.wait_for_log(pattern, count=before + 1)[-1].group(1)
    reason = "This function was programmatically called via the host APIs."
    assert f"Executing 'Functions.thing_param' (Reason='{reason}', Id={invocation_id})" in sample_host.stderr
    sample_host.wait_for_log(r"Executed 'Functions\.tick' \(Succeeded, Id=[0-9a-f-]{36}, Duration=\d+ms\)")
