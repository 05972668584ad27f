"""A tiny FunctionApp that exercises every feature of the local host, for tests/devhost."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path

import azure.functions as func

# Read at import time: the host must have applied the settings before importing the app.
IMPORT_SETTINGS = {name: os.environ.get(name) for name in ("SAMPLE_A", "SAMPLE_B", "SAMPLE_C")}

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

_lock = threading.Lock()
_inflight = 0
_max_inflight = 0


def _json(data: object, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(data), status_code=status, mimetype="application/json")


def _record(file_name: str, entry: dict[str, object]) -> None:
    out = Path(os.environ["SAMPLE_OUTPUT_DIR"]) / file_name
    with _lock, out.open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


@app.route(route="echo/{name}/{id:guid}", methods=["GET", "POST"])
def echo(req: func.HttpRequest) -> func.HttpResponse:
    return _json(
        {
            "method": req.method,
            "url": req.url,
            "params": dict(req.params),
            "route_params": dict(req.route_params),
            "body": req.get_body().decode("utf-8", "replace"),
            "body_length": len(req.get_body()),
            "content_type": req.headers.get("content-type"),
            "headers": dict(req.headers),
        }
    )


# The host tries routes in function-name order, not by specificity: thing_param (GET) comes before
# thing_special, so the literal route is reached only by the method thing_param does not take.
@app.route(route="things/{name}", methods=["GET"])
def thing_param(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"matched": "param", "name": req.route_params["name"], "method": req.method})


@app.route(route="things/special", methods=["GET", "POST"])
def thing_special(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"matched": "literal", "method": req.method})


# An empty route is served at the function's name: /empty_route.
@app.route(route="", methods=["GET"])
def empty_route(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"matched": "empty_route"})


@app.route(route="items/{itemId?}", methods=["GET"])
def items(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"itemId": req.route_params.get("itemId")})


@app.route(route="files/{*path}")
def files(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"path": req.route_params.get("path"), "method": req.method})


@app.route(route="boom")
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("kaboom")


@app.route(route="slow", methods=["GET"])
def slow(req: func.HttpRequest) -> func.HttpResponse:
    global _inflight, _max_inflight
    with _lock:
        _inflight += 1
        _max_inflight = max(_max_inflight, _inflight)
    try:
        time.sleep(float(req.params.get("sleep", "0.2")))
    finally:
        with _lock:
            _inflight -= 1
    return _json({"max_inflight": _max_inflight})


@app.route(route="big/{size:int:range(0,50000000)}", methods=["GET"])
def big(req: func.HttpRequest) -> func.HttpResponse:
    size = int(req.route_params["size"])
    return func.HttpResponse(b"x" * size, mimetype="application/octet-stream")


@app.route(route="settings", methods=["GET"])
def settings(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"import": IMPORT_SETTINGS, "now": {k: os.environ.get(k) for k in IMPORT_SETTINGS}})


@app.route(route="async/{word}", methods=["GET"])
async def async_hello(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    await asyncio.sleep(0.01)
    return func.HttpResponse(
        f"hello {req.route_params['word']} from {context.function_name}",
        headers={"X-Sample": "yes"},
    )


@app.queue_trigger(arg_name="msg", queue_name="%SAMPLE_WORK_QUEUE%", connection="AzureWebJobsStorage")
def work(msg: func.QueueMessage) -> None:
    _record(
        "work.jsonl",
        {"id": msg.id, "body_hex": msg.get_body().hex(), "dequeue_count": msg.dequeue_count},
    )


@app.queue_trigger(arg_name="msg", queue_name="fail-items", connection="AzureWebJobsStorage")
def always_fails(msg: func.QueueMessage) -> None:
    _record("fail.jsonl", {"id": msg.id, "body": msg.get_body().decode(), "dequeue_count": msg.dequeue_count})
    raise ValueError("this message always fails")


@app.timer_trigger(arg_name="timer", schedule="%SAMPLE_SCHEDULE%", run_on_startup=False)
def tick(timer: func.TimerRequest) -> None:
    _record("timer.jsonl", {"at": time.time(), "past_due": timer.past_due})
