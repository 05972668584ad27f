"""``--functions`` takes function names and the groups http, queues and timers, so an app can run split in two.

Models Flex Consumption's per-function scaling (Azure Functions docs, "Flex Consumption plan": HTTP functions
scale together, every other function on instances of its own), which is why the split must share no
in-process state: the two processes meet only in storage.
"""

from __future__ import annotations

from pathlib import Path

import azure.functions as func
import pytest
import requests

from tests.devhost.hostproc import HostProcess, clean_env
from tools.azurite import AzuriteProcess
from tools.devhost.selection import SelectionError, select_functions


def _app_functions() -> list:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="a")
    def api_a(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("a")

    @app.route(route="b")
    def api_b(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("b")

    @app.queue_trigger(arg_name="msg", queue_name="q", connection="AzureWebJobsStorage")
    def q1(msg: func.QueueMessage) -> None:
        pass

    @app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *")
    def t1(timer: func.TimerRequest) -> None:
        pass

    return app.get_functions()


def test_names_and_groups_mix() -> None:
    functions = _app_functions()
    assert select_functions(functions, None) is None
    assert select_functions(functions, ["http"]) == {"api_a", "api_b"}
    assert select_functions(functions, ["queues", "timers"]) == {"q1", "t1"}
    assert select_functions(functions, ["http", "T1"]) == {"api_a", "api_b", "t1"}
    assert select_functions(functions, ["api_b"]) == {"api_b"}


def test_an_unknown_name_is_refused() -> None:
    with pytest.raises(SelectionError, match="'nope' is neither a function of the app nor a group"):
        select_functions(_app_functions(), ["http", "nope"])


@pytest.mark.azurite
@pytest.mark.e2e
def test_two_processes_split_the_sample_app(
    devhost_azurite: AzuriteProcess, sample_root: Path, tmp_path: Path
) -> None:
    env = clean_env(AzureWebJobsStorage=devhost_azurite.connection_string, SAMPLE_OUTPUT_DIR=str(tmp_path))
    web = HostProcess(sample_root, env, tmp_path, "--functions", "http", name="web")
    workers = HostProcess(sample_root, env, tmp_path, "--functions", "queues", "timers", name="workers")
    try:
        web.wait_started()
        workers.wait_started()
        assert "Running only: http (--functions)" in web.stdout
        assert "echo: [GET,POST] /echo/{name}/{id:guid}" in web.stdout
        assert "queueTrigger" not in web.stdout and "timerTrigger" not in web.stdout

        assert "Running only: queues timers (--functions)" in workers.stdout
        assert "work: queueTrigger work-items" in workers.stdout
        assert "tick: timerTrigger" in workers.stdout
        assert "echo:" not in workers.stdout

        assert requests.get(f"{web.url}/things/special", timeout=5).status_code == 200
        assert requests.get(f"{workers.url}/things/special", timeout=5).status_code == 404
    finally:
        web.stop()
        workers.stop()


def test_an_unknown_selector_fails_the_start(sample_root: Path, tmp_path: Path) -> None:
    host = HostProcess(sample_root, clean_env(), tmp_path, "--functions", "htp", name="typo")
    assert host.proc.wait(30) == 1
    assert "'htp' is neither a function of the app nor a group (http, queues, timers)" in host.stderr
    assert "Host started" not in host.stdout
