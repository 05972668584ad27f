"""When the app cannot be indexed, the local host does what the Functions host does: it logs why and runs with
zero functions (every route 404, the homepage at "/"), rather than exiting. One function in error is left
out and the others run. In-process DevHost.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import requests

from tests.devhost.http_apps import serve
from tools.devhost import DevHost
from tools.devhost.app_loader import AppLoadError

GOOD = """
import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="hello", methods=["GET"])
def hello(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("hello")
"""

BROKEN = {
    "the import raises": "raise RuntimeError('AUTH_MODE is not set')\n" + GOOD,
    "a dependency is missing": "import not_a_module_anywhere\n" + GOOD,
    "there is no FunctionApp": "import azure.functions as func\n\nnot_the_app = 1\n",
    "get_functions() raises": GOOD
    + """

@app.route(route="again", methods=["GET"])
def hello(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("twice")
""",
    "a trigger's binding name is not a parameter": """
import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="hello", methods=["GET"], trigger_arg_name="req")
def hello(request: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("hello")
""",
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_an_app_that_cannot_be_indexed_runs_with_zero_functions(
    case: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The Python worker answers the host's FunctionsMetadataRequest with a failure when importing the script,
    finding its FunctionApp, get_functions() or binding the trigger parameter raises (dispatcher
    ._handle__functions_metadata_request, loader.index_function_app); the host logs "Worker failed to index
    functions" (GrpcWorkerChannel.ProcessFunctionMetadataResponses) and runs with no functions."""
    settings = {"AzureWebJobsDisableHomepage": "true"}
    with caplog.at_level(logging.ERROR), serve(tmp_path, BROKEN[case], settings=settings) as host:
        assert host.index.all() == [], case
        assert host.indexing_error
        for path in ("/hello", "/again", "/anything/else"):
            response = requests.get(host.url + path, timeout=10)
            assert response.status_code == 404 and response.content == b"", (case, path)
        root = requests.get(host.url + "/", timeout=10)
        assert root.status_code == 204 and root.content == b""
        assert "the worker failed to index the app" in "\n".join(host.describe())
    assert "Worker failed to index functions" in caplog.text


def test_an_unresolved_setting_leaves_that_function_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A %SETTING% that is not set does not resolve when the host indexes the function: a
    FunctionIndexingException, which ScriptHost.HandleHostError records as that function's error ("The '<name>'
    function is in error: ..."); the others start."""
    source = (
        GOOD
        + """

@app.timer_trigger(arg_name="timer", schedule="%NOT_CONFIGURED_SCHEDULE%")
def tick(timer: func.TimerRequest) -> None:
    pass
"""
    )
    with caplog.at_level(logging.ERROR), serve(tmp_path, source) as host:
        assert list(host.index.errors) == ["tick"]
        assert "NOT_CONFIGURED_SCHEDULE" in host.index.errors["tick"]
        assert requests.get(host.url + "/hello", timeout=10).text == "hello"
    assert "The 'tick' function is in error" in caplog.text


def test_a_missing_app_module_still_stops_the_local_host(tmp_path: Path) -> None:
    """Not a host behaviour: a wrong --app or --root is a mistake in how the local host was started."""
    (tmp_path / "host.json").write_text('{"version": "2.0"}', encoding="utf-8")
    host = DevHost(tmp_path, "no_such_module_here", port=0)
    with pytest.raises(AppLoadError, match="no_such_module_here"):
        host.start()
    host.stop()
