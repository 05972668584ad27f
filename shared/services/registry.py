"""Wires services to the process-wide storage clients, once per settings (handlers call these)."""

from __future__ import annotations

import threading
from typing import Any

from shared.storage import names
from shared.storage.factory import get_clients

_lock = threading.Lock()
_services: dict[tuple[int, str], Any] = {}


def _get(kind: str, build):
    clients = get_clients()
    key = (id(clients), kind)
    with _lock:
        service = _services.get(key)
        if service is None:
            service = build(clients)
            _services[key] = service
        return service


def config_service():
    def build(clients):
        from shared.services.config_service import ConfigService
        from shared.storage.config_repo import ConfigRepository

        return ConfigService(
            ConfigRepository(clients.table(names.TABLE_CONFIG)), clients.container(names.CONTAINER_ARTIFACTS)
        )

    return _get("config", build)
