"""The fault proxy used by the fault-injection tests: it forwards faithfully, and injects what it is told to."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.core.pipeline.policies import RetryPolicy
from azure.data.tables import TableClient

REPO_ROOT = Path(__file__).resolve().parents[2]


class FaultProxy:
    def __init__(self, target_port: int, tmp: Path, **rates: float) -> None:
        self.control = tmp / "control.json"
        self.stats_path = tmp / "stats.json"
        self.control.write_text(json.dumps(rates))
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tools.faultproxy",
                "--target",
                f"127.0.0.1:{target_port}",
                "--seed",
                "7",
                "--control",
                str(self.control),
                "--stats",
                str(self.stats_path),
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()
        assert line.startswith("Fault proxy listening on"), line
        self.port = int(line.split()[4].rsplit(":", 1)[1])

    def set(self, **rates: float) -> None:
        time.sleep(0.01)  # a new mtime
        self.control.write_text(json.dumps(rates))

    def stats(self) -> dict:
        return json.loads(self.stats_path.read_text())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


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
