"""Small apps served by an in-process DevHost, for the tests of the local host's HTTP side (test_host_http_*).

``serve(tmp_path, source, ...)`` writes ``source`` as a module of its own (a fresh name each time, so no cached
import or get_functions() result is reused), starts DevHost on a free port and yields it; on exit it stops the
host and restores os.environ, sys.path and sys.modules, which the host changes as the worker would.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

from tools.devhost import DevHost

MASTER_KEY = "test-master-key"


@contextlib.contextmanager
def serve(
    tmp_path: Path,
    source: str,
    *,
    settings: dict[str, str] | None = None,
    route_prefix: str = "",
    functions: list[str] | None = None,
) -> Iterator[DevHost]:
    """DevHost serving ``source`` (a function_app.py body) with host.json routePrefix ``route_prefix``.

    ``settings`` go into local.settings.json Values; DEVHOST_MASTER_KEY is MASTER_KEY unless given.
    """
    root = tmp_path / f"app_{uuid.uuid4().hex[:8]}"
    root.mkdir()
    module = f"devhost_test_app_{uuid.uuid4().hex}"
    (root / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    host_json = {"version": "2.0", "extensions": {"http": {"routePrefix": route_prefix}}}
    (root / "host.json").write_text(json.dumps(host_json), encoding="utf-8")
    values = {"DEVHOST_MASTER_KEY": MASTER_KEY, **(settings or {})}
    (root / "local.settings.json").write_text(json.dumps({"Values": values}), encoding="utf-8")

    path, modules = list(sys.path), set(sys.modules)
    cleared = {
        k: v for k, v in os.environ.items() if k.startswith(("DEVHOST_", "FUNCTIONS_", "AzureWebJobs"))
    }
    with mock.patch.dict(os.environ):
        for key in cleared:
            del os.environ[key]  # the developer's shell must not change what these tests see
        host = DevHost(root, module, port=0, functions=functions, shutdown_grace=5.0)
        try:
            host.start()
            yield host
        finally:
            host.stop()
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]
