"""The local host runs HTTP and queue invocations on one thread pool, as the Python worker runs every sync
function (HOST.md, "Indexing and processes": one shared pool of `min(32, cpu + 4)` threads,
PYTHON_THREADPOOL_THREAD_COUNT changes it). With one thread, an HTTP request waits for a queue invocation that
holds it: a long import in Azure delays the HTTP requests of its instance, and the local host shows that too."""

from __future__ import annotations

import json
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from tests.devhost.hostproc import HostProcess, clean_env
from tools.azurite import AzuriteProcess

pytestmark = [pytest.mark.azurite, pytest.mark.e2e]

APP = textwrap.dedent(
    """
    import os
    import time
    from pathlib import Path

    import azure.functions as func

    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    OUT = Path(os.environ["POOLTEST_OUT"])


    @app.queue_trigger(arg_name="msg", queue_name="pool-hold", connection="AzureWebJobsStorage")
    def hold(msg: func.QueueMessage) -> None:
        (OUT / "held").write_text("yes")
        while not (OUT / "release").exists():  # the test lets it end
            time.sleep(0.05)
        (OUT / "released").write_text("yes")


    @app.route(route="ping")
    def ping(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("released" if (OUT / "released").exists() else "still held")
    """
)


def _wait_for(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} did not appear within {timeout}s"
        time.sleep(0.05)


@pytest.mark.parametrize("threads", ["1", "2"])
def test_an_http_request_waits_for_a_thread_that_a_queue_invocation_holds(
    devhost_azurite: AzuriteProcess, tmp_path: Path, threads: str
) -> None:
    root, out = tmp_path / "app", tmp_path / "out"
    root.mkdir()
    out.mkdir()
    (root / "function_app.py").write_text(APP, encoding="utf-8")
    queues = {"batchSize": 1, "newBatchThreshold": 0, "maxPollingInterval": "00:00:00.5"}
    (root / "host.json").write_text(json.dumps({"version": "2.0", "extensions": {"queues": queues}}))
    name = "pool-hold"
    client = QueueClient.from_connection_string(
        devhost_azurite.connection_string, name, message_encode_policy=TextBase64EncodePolicy()
    )
    try:
        client.create_queue()
    except Exception:  # noqa: BLE001 - it exists from the other case; empty it
        client.clear_messages()
    client.send_message(f"hold {uuid.uuid4()}")
    env = clean_env(
        AzureWebJobsStorage=devhost_azurite.connection_string,
        POOLTEST_OUT=str(out),
        PYTHON_THREADPOOL_THREAD_COUNT=threads,
    )
    host = HostProcess(root, env, tmp_path / "logs", name=f"pool{threads}")
    try:
        base = host.wait_started()
        _wait_for(out / "held")
        answer: dict[str, str] = {}
        asking = threading.Thread(
            target=lambda: answer.setdefault("text", requests.get(f"{base}/api/ping", timeout=60).text)
        )
        asking.start()
        if threads == "1":
            # The only thread is the queue invocation's: the request cannot be answered until it ends.
            asking.join(1.0)
            assert "text" not in answer, answer
            (out / "release").write_text("go")
            asking.join(60)
            assert answer.get("text") == "released", answer
        else:
            # A second thread answers while the queue invocation still holds the first.
            asking.join(60)
            assert answer.get("text") == "still held", answer
            (out / "release").write_text("go")
    finally:
        host.stop()
