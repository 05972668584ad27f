"""The programmatic DevHost API: start on a free port, serve, stop; settings restored afterwards."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
import requests

from tools.devhost import DevHost

APP = textwrap.dedent(
    """
    import os

    import azure.functions as func

    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    SEEN = os.environ.get("INPROC_SETTING")

    @app.route(route="hello/{name}", methods=["GET"])
    def hello(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(f"hello {req.route_params['name']} {SEEN}")
    """
)


@pytest.fixture
def isolated() -> Iterator[None]:
    """The host changes os.environ, sys.path and sys.modules; undo that for the rest of the suite."""
    path, modules = list(sys.path), set(sys.modules)
    with mock.patch.dict(os.environ):
        yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]


def test_start_serve_stop(tmp_path: Path, isolated: None) -> None:
    (tmp_path / "inproc_sample_app.py").write_text(APP, encoding="utf-8")
    (tmp_path / "host.json").write_text('{"version": "2.0"}', encoding="utf-8")  # default prefix "api"
    (tmp_path / "local.settings.json").write_text('{"Values": {"INPROC_SETTING": "set"}}', encoding="utf-8")
    host = DevHost(tmp_path, "inproc_sample_app", port=0)
    port = host.start()
    try:
        assert port == host.port and port > 0
        assert host.describe() == ["hello: [GET] /api/hello/{name}"]
        response = requests.get(f"http://127.0.0.1:{port}/api/hello/you", timeout=5)
        assert response.text == "hello you set"
        assert requests.get(f"http://127.0.0.1:{port}/hello/you", timeout=5).status_code == 404
    finally:
        assert host.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/api/hello/you", timeout=2)
