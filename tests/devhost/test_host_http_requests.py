"""What a function receives from the local host, and the limits in front of it, as on the Functions host:
query, headers, path values, bodies, the body-size limit and the front end's cut-off. In-process DevHost.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.devhost.http_apps import serve
from tools.devhost.settings import (
    DEFAULT_BODY_SIZE_LIMIT,
    DEFAULT_HTTP_TIMEOUT_SECONDS,
    SettingsError,
    load_http_settings,
)

ECHO = """
import json
import os
import time
from pathlib import Path

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="echo/{value}/{*rest}")
def echo(req: func.HttpRequest) -> func.HttpResponse:
    Path(os.environ["ECHO_DIR"], "calls").open("a").write("echo\\n")
    body = req.get_body()
    return func.HttpResponse(
        json.dumps(
            {
                "params": dict(req.params),
                "route": dict(req.route_params),
                "headers": dict(req.headers),
                "body_length": len(body),
                "body": body.decode("utf-8", "replace"),
            }
        ),
        mimetype="application/json",
    )


@app.route(route="sleep/{seconds}", methods=["GET"])
def sleep(req: func.HttpRequest) -> func.HttpResponse:
    time.sleep(float(req.route_params["seconds"]))
    Path(os.environ["ECHO_DIR"], "slept").write_text("done")
    return func.HttpResponse("slept")
"""


@pytest.fixture
def echo_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "echo"
    directory.mkdir()
    return directory


@pytest.fixture
def host(tmp_path: Path, echo_dir: Path) -> Iterator[Any]:
    with serve(
        tmp_path, ECHO, settings={"ECHO_DIR": str(echo_dir), "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": "1000"}
    ) as h:
        yield h


def calls(echo_dir: Path) -> int:
    path = echo_dir / "calls"
    return len(path.read_text().splitlines()) if path.exists() else 0


def connect(host: Any) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", host.port, timeout=10)


def test_query_values_are_joined_and_empty_ones_dropped(host: Any) -> None:
    """GrpcMessageConversionExtensions.ToRpcHttp puts ``pair.Value.ToString()`` of each query key in
    RpcHttp.Query and drops empty values (the Python worker does not ask for nullable dictionaries).
    StringValues.ToString() joins repeated values with "," and leaves out empty ones; keys ignore case, the
    first spelling is kept (KeyValueAccumulator); "+" is a space (QueryHelpers.ParseQuery)."""
    query = "q=a+b&q=second&Q=third&empty=&twice=&twice=x&bare&slash=%2F&sp%20ace=1"
    data = requests.get(f"{host.url}/echo/v/?{query}", timeout=10).json()
    assert data["params"] == {"q": "a b,second,third", "twice": "x", "slash": "/", "sp ace": "1"}


def test_header_names_are_lower_cased_and_repeats_joined(host: Any) -> None:
    """ToRpcHttp adds each header as ``pair.Key.ToLowerInvariant()`` -> ``pair.Value.ToString()``:
    repeated headers are joined with "," (StringValues); an empty header is kept (the Python worker does not
    set IgnoreEmptyValuedRpcHttpHeaders)."""
    conn = connect(host)
    try:
        conn.putrequest("GET", "/echo/v/")
        conn.putheader("X-Repeated", "one")
        conn.putheader("x-REPEATED", "two")
        conn.putheader("X-Empty", "")
        conn.endheaders()
        data = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    assert data["headers"]["x-repeated"] == "one,two"
    assert data["headers"]["x-empty"] == ""
    assert all(name == name.lower() for name in data["headers"])


def test_path_escapes_are_decoded_except_an_encoded_slash(host: Any) -> None:
    """Kestrel decodes every escape in the path except %2F, which stays as written inside one route value;
    ASP.NET routing matches the decoded path. (Kestrel's PathNormalizer also drops "." and "..".)"""
    conn = connect(host)  # http.client sends the path as written
    try:
        conn.request("GET", "/echo/a%2Fb%20c/x%2fy/%C3%BC")
        data = json.loads(conn.getresponse().read())
        conn.request("GET", "/echo/./v/w/../z")
        normalized = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    assert data["route"] == {"value": "a%2Fb c", "rest": "x%2fy/ü"}
    assert normalized["route"] == {"value": "v", "rest": "z"}


def test_a_chunked_body_arrives_empty_and_the_connection_stays_usable(host: Any, echo_dir: Path) -> None:
    """ToRpcHttp reads the body only ``if (request.ContentLength > 0)``: a chunked request reaches the function
    with an empty body and its headers (host issue #7930). The unread body is drained, so the next request on
    the same keep-alive connection is served."""
    conn = connect(host)
    try:
        conn.putrequest("POST", "/echo/v/")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.putheader("Content-Type", "text/csv")
        conn.endheaders()
        for part in (b"first,", b"second," * 50, b"third"):
            conn.send(b"%x\r\n%s\r\n" % (len(part), part))
        conn.send(b"0\r\n\r\n")
        first = json.loads(conn.getresponse().read())
        sock = conn.sock
        conn.request("POST", "/echo/v/", body=b"with a length")
        second = json.loads(conn.getresponse().read())
        assert conn.sock is sock
    finally:
        conn.close()
    assert first["body_length"] == 0 and first["body"] == ""
    assert first["headers"]["transfer-encoding"] == "chunked"
    assert first["headers"]["content-type"] == "text/csv"
    assert second["body"] == "with a length"
    assert calls(echo_dir) == 2


def test_a_body_over_the_limit_is_refused_before_the_function_runs(host: Any, echo_dir: Path) -> None:
    """Kestrel refuses a body over MaxRequestBodySize, which HttpRequestBodySizeMiddleware takes from
    FUNCTIONS_REQUEST_BODY_SIZE_LIMIT (1000 here), with 413 and no body, and closes the connection. It does so
    from Content-Length, before reading the body: here the body is never sent."""
    assert requests.post(f"{host.url}/echo/v/", data=b"x" * 1000, timeout=10).json()["body_length"] == 1000
    over = requests.post(f"{host.url}/echo/v/", data=b"x" * 1001, timeout=10)
    assert over.status_code == 413 and over.content == b""
    with socket.create_connection(("127.0.0.1", host.port), timeout=10) as sock:
        sock.sendall(b"POST /echo/v/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n")
        reply = sock.makefile("rb").read()  # the host closes the connection after answering
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert reply.endswith(b"\r\n\r\n")  # headers only
    assert calls(echo_dir) == 1


def test_body_limit_and_cut_off_settings() -> None:
    """ScriptConstants.DefaultMaxRequestBodySize (104857600) unless FUNCTIONS_REQUEST_BODY_SIZE_LIMIT parses
    as a number (HttpRequestBodySizeMiddleware: long.TryParse, else the default stays); the front end's
    cut-off is 230 s. The master key is never a fixed default."""
    defaults = load_http_settings({})
    assert defaults.body_size_limit == DEFAULT_BODY_SIZE_LIMIT == 104_857_600
    assert defaults.timeout_seconds == DEFAULT_HTTP_TIMEOUT_SECONDS == 230
    assert defaults.master_key_generated and defaults.master_key != load_http_settings({}).master_key
    assert load_http_settings({"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": "2048"}).body_size_limit == 2048
    assert (
        load_http_settings({"FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": "lots"}).body_size_limit
        == DEFAULT_BODY_SIZE_LIMIT
    )
    assert load_http_settings({"DEVHOST_MASTER_KEY": "k"}).master_key == "k"
    with pytest.raises(SettingsError, match="DEVHOST_HTTP_TIMEOUT_SECONDS"):
        load_http_settings({"DEVHOST_HTTP_TIMEOUT_SECONDS": "0"})


def test_the_front_end_cuts_a_slow_response_and_the_invocation_goes_on(
    tmp_path: Path, echo_dir: Path
) -> None:
    """The Azure front end drops an HTTP request that has no response after 230 s, whatever functionTimeout
    says; the host and the function do not notice. Modelled with DEVHOST_HTTP_TIMEOUT_SECONDS; the status is
    not in the host's source (the docs say 502, users report 500: MicrosoftDocs/azure-docs #94418, #112130):
    tools.devhost.http_server.FRONT_END_TIMEOUT_STATUS."""
    settings = {"ECHO_DIR": str(echo_dir), "DEVHOST_HTTP_TIMEOUT_SECONDS": "0.3"}
    with serve(tmp_path, ECHO, settings=settings) as host:
        cut = requests.get(f"{host.url}/sleep/1.5", timeout=10)
        assert cut.status_code == 500 and cut.content == b""
        assert not (echo_dir / "slept").exists()  # answered while the function was still running
        deadline = time.monotonic() + 10
        while not (echo_dir / "slept").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (echo_dir / "slept").read_text() == "done"
        assert requests.get(f"{host.url}/sleep/0", timeout=10).text == "slept"
