"""Queue triggers under the local host behave as the Storage Queues extension does, over a real Azurite.

Sources (Azure/azure-sdk-for-net, sdk/storage/):
- Microsoft.Azure.WebJobs.Extensions.Storage.Common/src/Shared/Queues/QueueListener.cs: receives with a
  10-minute visibility renewed at half-time; checks that the queue exists and backs off, never creating it.
- .../Shared/Queues/QueueProcessor.cs: BeginProcessingMessageAsync poisons a message whose DequeueCount
  exceeds maxDequeueCount without invoking; CompleteProcessingMessageAsync deletes on success, poisons at
  maxDequeueCount, else releases, and with no poison queue leaves the message invisible; HandlePoisonMessage
  does nothing without a poison queue.
- Microsoft.Azure.WebJobs.Extensions.Storage.Queues/src/Listeners/QueueListenerFactory.cs
  (CreatePoisonQueueReference): no poison queue for a name ending in "-poison" or too long for the suffix.
- Microsoft.Azure.WebJobs.Extensions.Storage.Queues/src/QueueServiceClientProvider.cs: a message that fails to
  decode goes through HandlePoisonMessageAsync at once.
"""

from __future__ import annotations

import contextlib
import json
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from tests.devhost.hostproc import HostProcess, clean_env
from tools.azurite import AzuriteProcess
from tools.devhost.__main__ import parse_args
from tools.devhost.queue_runner import DEFAULT_LEASE_SECONDS, poison_queue_name

pytestmark = [pytest.mark.azurite, pytest.mark.e2e]

APP = textwrap.dedent(
    """
    import json
    import os
    import time
    from pathlib import Path

    import azure.functions as func

    app = func.FunctionApp()


    def record(name, msg):
        entry = {"id": msg.id, "dequeue_count": msg.dequeue_count, "body": msg.get_body().decode("utf-8", "replace")}
        with (Path(os.environ["QTEST_OUT"]) / f"{name}.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\\n")


    @app.queue_trigger(arg_name="msg", queue_name="qt-fails-poison", connection="AzureWebJobsStorage")
    def on_poison_queue(msg: func.QueueMessage) -> None:
        record("on_poison_queue", msg)
        raise RuntimeError("this handler always fails")


    @app.queue_trigger(arg_name="msg", queue_name="qt-late", connection="AzureWebJobsStorage")
    def late(msg: func.QueueMessage) -> None:
        record("late", msg)


    @app.queue_trigger(arg_name="msg", queue_name="qt-over", connection="AzureWebJobsStorage")
    def over(msg: func.QueueMessage) -> None:
        record("over", msg)


    @app.queue_trigger(arg_name="msg", queue_name="qt-decode", connection="AzureWebJobsStorage")
    def decode(msg: func.QueueMessage) -> None:
        record("decode", msg)


    @app.queue_trigger(arg_name="msg", queue_name="qt-slow", connection="AzureWebJobsStorage")
    def slow(msg: func.QueueMessage) -> None:
        record("slow", msg)
        time.sleep(4.5)
    """
)

HOST_JSON = {
    "version": "2.0",
    "extensions": {
        "queues": {
            "batchSize": 4,
            "newBatchThreshold": 2,
            "maxPollingInterval": "00:00:00.5",
            "visibilityTimeout": "00:00:00",
            "maxDequeueCount": 2,
        }
    },
}


@pytest.fixture(scope="module")
def app_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("queues_app")
    (root / "function_app.py").write_text(APP, encoding="utf-8")
    (root / "host.json").write_text(json.dumps(HOST_JSON), encoding="utf-8")
    return root


@pytest.fixture
def run_host(devhost_azurite: AzuriteProcess, app_root: Path, tmp_path: Path):
    """Start the app with the given --functions and extra arguments; output records land in tmp_path."""
    hosts: list[HostProcess] = []

    def start(*args: str) -> HostProcess:
        env = clean_env(AzureWebJobsStorage=devhost_azurite.connection_string, QTEST_OUT=str(tmp_path))
        host = HostProcess(app_root, env, tmp_path / "logs", *args, name=f"host{len(hosts)}")
        hosts.append(host)
        host.wait_started()
        return host

    yield start
    for host in hosts:
        host.stop()


def records(out: Path, name: str) -> list[dict[str, Any]]:
    path = out / f"{name}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def queue(azurite: AzuriteProcess, name: str, policy: Any = None, *, create: bool = False) -> QueueClient:
    client = QueueClient.from_connection_string(azurite.connection_string, name, message_encode_policy=policy)
    if create:
        with contextlib.suppress(ResourceExistsError):
            client.create_queue()
    return client


def exists(client: QueueClient) -> bool:
    try:
        client.get_queue_properties()
        return True
    except ResourceNotFoundError:
        return False


def message_count(client: QueueClient) -> int:
    """Visible and invisible messages alike."""
    return client.get_queue_properties().approximate_message_count


# --- unit ---------------------------------------------------------------------------------------------


def test_received_messages_are_hidden_ten_minutes_by_default() -> None:
    """QueueListener.cs: ``_visibilityTimeout = TimeSpan.FromMinutes(10)``."""
    assert DEFAULT_LEASE_SECONDS == 600
    assert parse_args([]).queue_lease == 600


def test_which_queues_have_a_poison_queue() -> None:
    """QueueListenerFactory.CreatePoisonQueueReference: not for "-poison" names, nor past 63 characters."""
    assert poison_queue_name("import-work") == "import-work-poison"
    assert poison_queue_name("import-work-poison") is None
    assert poison_queue_name("a" * 56) == "a" * 56 + "-poison"
    assert poison_queue_name("a" * 57) is None


# --- over Azurite ---------------------------------------------------------------------------------------


def test_a_poison_named_queue_never_dead_letters(
    run_host: Callable[..., HostProcess], devhost_azurite: AzuriteProcess, tmp_path: Path
) -> None:
    """QueueProcessor.cs with no poison queue: a failure leaves the message invisible (no release), and past
    maxDequeueCount, or when it cannot be decoded, it is skipped uninvoked and never deleted."""
    source = queue(devhost_azurite, "qt-fails-poison", create=True)
    failing = queue(devhost_azurite, "qt-fails-poison", TextBase64EncodePolicy()).send_message(
        f"boom-{uuid.uuid4()}"
    )
    garbage = source.send_message(f"not base64 {uuid.uuid4()}!")
    host = run_host("--functions", "on_poison_queue", "--queue-lease", "1")

    def skips(message_id: str) -> int:
        return host.stderr.count(f"message {message_id} skipped without invoking on_poison_queue")

    # maxDequeueCount is 2: deliveries 1 and 2 fail, and from the 3rd on the message is skipped, repeatedly.
    wait_for(lambda: skips(failing.id) >= 2, what="the failing message skipped twice")
    wait_for(lambda: skips(garbage.id) >= 2, what="the undecodable message skipped twice")
    invoked = [r["dequeue_count"] for r in records(tmp_path, "on_poison_queue")]
    assert invoked == [1, 2]
    assert host.stderr.count(f"message {failing.id} failed and stays invisible") == 2
    assert "is not valid base64" in host.stderr
    # Both are still on the queue, and no "-poison-poison" queue was made.
    assert message_count(source) == 2
    assert not exists(queue(devhost_azurite, "qt-fails-poison-poison"))


def test_the_trigger_queue_is_not_created(
    run_host: Callable[..., HostProcess], devhost_azurite: AzuriteProcess, tmp_path: Path
) -> None:
    """QueueListener.ExecuteAsync: ``_queue.ExistsAsync``, and back off while it is false."""
    client = queue(devhost_azurite, "qt-late", TextBase64EncodePolicy())
    host = run_host("--functions", "late")
    wait_for(lambda: "queue qt-late does not exist" in host.stderr, what="the missing-queue notice")
    assert not exists(client)

    client.create_queue()
    sent = client.send_message(f"late-{uuid.uuid4()}")
    found = wait_for(lambda: records(tmp_path, "late"), what="the message processed once the queue exists")
    assert [(r["id"], r["dequeue_count"]) for r in found] == [(sent.id, 1)]
    wait_for(lambda: message_count(client) == 0, what="the message deleted on success")


def test_a_message_over_the_limit_when_received_is_poisoned_uninvoked(
    run_host: Callable[..., HostProcess], devhost_azurite: AzuriteProcess, tmp_path: Path
) -> None:
    """QueueProcessor.BeginProcessingMessageAsync: DequeueCount > maxDequeueCount (a worker died mid-run)
    goes to the poison queue, with its original text, without invoking the function."""
    client = queue(devhost_azurite, "qt-over", TextBase64EncodePolicy(), create=True)
    text = f"over-{uuid.uuid4()}"
    sent = client.send_message(text)
    for _ in range(2):  # two deliveries whose worker "died": received, never completed
        received = next(iter(client.receive_messages(visibility_timeout=30)))
        client.update_message(received.id, received.pop_receipt, visibility_timeout=0)  # content unchanged
    host = run_host("--functions", "over")

    poison = queue(devhost_azurite, "qt-over-poison")
    raw = TextBase64EncodePolicy().encode(text)
    line = f"message {sent.id} moved to qt-over-poison without invoking"
    wait_for(lambda: line in host.stderr, what="the message poisoned")
    assert [m.content for m in poison.peek_messages()] == [raw]
    assert "(dequeue count 3)" in host.stderr
    assert records(tmp_path, "over") == []
    assert message_count(client) == 0


def test_an_undecodable_message_is_poisoned_at_once(
    run_host: Callable[..., HostProcess], devhost_azurite: AzuriteProcess, tmp_path: Path
) -> None:
    """QueueServiceClientProvider's MessageDecodingFailed handler: poison on the first delivery, uninvoked."""
    client = queue(devhost_azurite, "qt-decode", create=True)
    raw = f"not base64 {uuid.uuid4()}!"
    sent = client.send_message(raw)
    host = run_host("--functions", "decode")

    poison = queue(devhost_azurite, "qt-decode-poison")
    line = f"message {sent.id} moved to qt-decode-poison"
    wait_for(lambda: line in host.stderr, what="the message poisoned")
    assert [m.content for m in poison.peek_messages()] == [raw]
    moved = [text for text in host.stderr.splitlines() if line in text]
    assert len(moved) == 1
    assert "(dequeue count 1)" in moved[0]
    assert records(tmp_path, "decode") == []


def test_the_visibility_is_renewed_while_the_function_runs(
    run_host: Callable[..., HostProcess], devhost_azurite: AzuriteProcess, tmp_path: Path
) -> None:
    """QueueListener.CreateUpdateMessageVisibilityTimer: renewed at half-time, so a run longer than the
    visibility is not delivered a second time."""
    client = queue(devhost_azurite, "qt-slow", TextBase64EncodePolicy(), create=True)
    sent = client.send_message(f"slow-{uuid.uuid4()}")
    host = run_host("--functions", "slow", "--queue-lease", "3")  # the function runs 4.5 s

    wait_for(lambda: f"{sent.id} dequeue=1 Succeeded" in host.stderr, what="the slow run finished")
    assert [r["dequeue_count"] for r in records(tmp_path, "slow")] == [1]
    wait_for(lambda: message_count(client) == 0, what="the message deleted on success")
