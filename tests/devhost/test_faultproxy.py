"""The fault proxy used by the fault-injection tests: it forwards faithfully, and injects what it is told to."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.core.pipeline.policies import RetryPolicy
from azure.data.tables import TableClient

from tests.support.faultproxy import FaultProxy

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def proxy(devhost_azurite, tmp_path):
    p = FaultProxy(devhost_azurite.table_port, tmp_path)
    yield p
    p.stop()


def table_via(proxy: FaultProxy, devhost_azurite, name: str) -> TableClient:
    conn = devhost_azurite.connection_string.replace(f":{devhost_azurite.table_port}/", f":{proxy.port}/")
    # No SDK retries: each injected fault must surface here.
    return TableClient.from_connection_string(conn, name, retry_policy=RetryPolicy(retry_total=0))


def test_it_forwards_faithfully_without_faults(proxy, devhost_azurite):
    table = table_via(proxy, devhost_azurite, f"fp{uuid.uuid4().hex[:8]}")
    table.create_table()
    for i in range(20):
        table.upsert_entity({"PartitionKey": "p", "RowKey": str(i), "V": i})
    assert sorted(e["V"] for e in table.list_entities()) == list(range(20))
    stats = proxy.stats()
    assert stats["requests"] >= 22 and stats["resets_before"] == stats["resets_after"] == 0


def test_it_resets_connections_before_and_after_the_server_acted(proxy, devhost_azurite):
    table = table_via(proxy, devhost_azurite, f"fp{uuid.uuid4().hex[:8]}")
    table.create_table()
    proxy.set(reset_rate=1.0)
    outcomes = []
    for i in range(12):
        try:
            table.upsert_entity({"PartitionKey": "p", "RowKey": str(i), "V": i})
            outcomes.append("ok")
        except (ServiceRequestError, ServiceResponseError):
            outcomes.append("reset")
    proxy.set(reset_rate=0.0)
    assert outcomes == ["reset"] * 12
    stats = proxy.stats()
    assert stats["resets_before"] > 0 and stats["resets_after"] > 0
    # A reset after the request reached the server leaves its write in place: retries must be idempotent.
    written = {e["RowKey"] for e in table.list_entities()}
    assert 0 < len(written) < 12


def test_it_stalls_responses(proxy, devhost_azurite):
    table = table_via(proxy, devhost_azurite, f"fp{uuid.uuid4().hex[:8]}")
    table.create_table()
    proxy.set(stall_rate=1.0, stall_seconds=5)
    conn_timeout_client = TableClient.from_connection_string(
        devhost_azurite.connection_string.replace(f":{devhost_azurite.table_port}/", f":{proxy.port}/"),
        table.table_name,
        retry_policy=RetryPolicy(retry_total=0),
        read_timeout=1,
    )
    with pytest.raises((ServiceResponseError, ServiceRequestError)):
        conn_timeout_client.upsert_entity({"PartitionKey": "p", "RowKey": "x"})
    assert proxy.stats()["stalls"] >= 1
