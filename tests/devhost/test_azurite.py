"""tools.azurite starts the pinned Azurite on free ports and explains what to do when it is missing."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from azure.storage.queue import QueueClient

import tools.azurite as azurite_module
from tools.azurite import AzuriteError, start_azurite

pytestmark = pytest.mark.azurite


def test_taken_port_falls_back_to_a_free_one() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        with start_azurite(ports=(taken, 0, 0)) as azurite:
            assert azurite.blob_port not in (0, taken)
            assert azurite.queue_port and azurite.table_port
            assert (
                f"QueueEndpoint=http://127.0.0.1:{azurite.queue_port}/devstoreaccount1"
                in azurite.connection_string
            )
            client = QueueClient.from_connection_string(azurite.connection_string, "ping")
            client.create_queue()
            client.send_message("hi")
            assert [m.content for m in client.receive_messages()] == ["hi"]
        assert azurite.process.poll() is not None  # stopped with its process group


def test_missing_azurite_says_to_run_npm_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(azurite_module, "AZURITE_BIN", tmp_path / "azurite")
    with pytest.raises(AzuriteError, match="npm ci"):
        start_azurite()
