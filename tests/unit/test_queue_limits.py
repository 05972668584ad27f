"""maxDequeueCount as the host reads it, and the last delivery a worker may end its work on.

Sources: QueuesOptions.MaxDequeueCount (default 5) and QueueProcessor.CompleteProcessingMessageAsync
(poison once DequeueCount >= MaxDequeueCount) in Azure/azure-sdk-for-net, Microsoft.Azure.WebJobs.
Extensions.Storage.Common/src/Shared/Queues; the `AzureFunctionsJobHost__` override of host.json values is
described in the host.json reference ("Override host.json values").
"""

from __future__ import annotations

import json

import pytest

from shared import queue_limits
from shared.queue_limits import OVERRIDE_SETTING, Delivery, read_max_dequeue_count


@pytest.fixture
def host_json(tmp_path, monkeypatch):
    monkeypatch.delenv(OVERRIDE_SETTING, raising=False)

    def write(queues: dict | None) -> object:
        path = tmp_path / "host.json"
        data = (
            {"version": "2.0", "extensions": {"queues": queues}} if queues is not None else {"version": "2.0"}
        )
        path.write_text(json.dumps(data), encoding="utf-8")
        return path

    return write


def test_the_repository_host_json_is_read(monkeypatch):
    """host.json sits beside function_app.py, as it is deployed (the script root)."""
    monkeypatch.delenv(OVERRIDE_SETTING, raising=False)
    assert queue_limits.HOST_JSON.parent.joinpath("function_app.py").exists()
    data = json.loads(queue_limits.HOST_JSON.read_text(encoding="utf-8"))
    assert read_max_dequeue_count() == data["extensions"]["queues"]["maxDequeueCount"]


def test_host_json_value_and_its_default(host_json):
    assert read_max_dequeue_count(host_json({"maxDequeueCount": 3})) == 3
    assert read_max_dequeue_count(host_json({"MaxDequeueCount": "7"})) == 7  # .NET configuration: any case
    assert read_max_dequeue_count(host_json({})) == 5
    assert read_max_dequeue_count(host_json(None)) == 5


def test_the_app_setting_overrides_host_json(host_json, monkeypatch):
    path = host_json({"maxDequeueCount": 3})
    monkeypatch.setenv(OVERRIDE_SETTING, "2")
    assert read_max_dequeue_count(path) == 2
    monkeypatch.delenv(OVERRIDE_SETTING)
    monkeypatch.setenv(OVERRIDE_SETTING.upper(), "4")
    assert read_max_dequeue_count(path) == 4


def test_nonsense_falls_back_to_the_default_with_a_warning(host_json, monkeypatch, caplog):
    assert read_max_dequeue_count(host_json({"maxDequeueCount": 0})) == 5
    monkeypatch.setenv(OVERRIDE_SETTING, "lots")
    assert read_max_dequeue_count(host_json({"maxDequeueCount": 3})) == 5
    assert "not a positive integer" in caplog.text


def test_the_last_delivery_is_the_one_whose_count_reaches_the_maximum():
    assert not Delivery(1, 5).last and not Delivery(4, 5).last
    assert Delivery(5, 5).last and Delivery(6, 5).last
    assert str(Delivery(2, 5)) == "queue delivery 2 of 5"
    assert queue_limits.delivery(None) is None
