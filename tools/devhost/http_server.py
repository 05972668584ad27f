"""Serve HTTP-triggered functions over real HTTP/1.1 as the Functions host does: Kestrel, the host's middleware
and the request the worker receives.

Sources (Azure/azure-functions-host unless said otherwise):
- routing: routes.py and ``Router``: one route per function in name order, first match wins; the method is a
  route constraint (HttpMethodRouteConstraint), so a wrong method is no match: 404, never 405, and HEAD or
  OPTIONS are not mapped to GET;
- answers the host makes have empty bodies: 404 when nothing matches (the end of the ASP.NET pipeline), 500 when
  the function raises (ExceptionMiddleware), 401 without a key the function needs (FunctionInvocationMiddleware,
  UnauthorizedResult), 413 over the body limit (Kestrel, limit from HttpRequestBodySizeMiddleware), 400 for a
  malformed request (Kestrel);
- ``/`` that no function serves: HomepageMiddleware (204 when AzureWebJobsDisableHomepage is "true", else HTML);
- the request the worker gets: GrpcMessageConversionExtensions.ToRpcHttp: the body only when Content-Length
  > 0 (a chunked body arrives as b"", host issue #7930); query and headers as StringValues.ToString(): repeated
  values joined with "," without empty ones; empty query values dropped; header names lower-cased;
- ``POST /admin/functions/{name}``: FunctionsController.Invoke with the master key (AuthenticationLevelHandler):
  401 without it, else 202 at once while the function runs in the background;
- the front end answers for a function that has not responded after 230 s, and the invocation goes on;
- invocations run on one pool of worker threads, as the Python worker runs sync functions: `min(32, cpu + 4)`
  threads, or PYTHON_THREADPOOL_THREAD_COUNT (../shared/HOST.md, "Indexing and processes"); beyond that many at
  once they wait for a thread. (Before, each had a thread of its own: creating it was about a third of a bare
  request's time in the host.)
"""

from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import formatdate
from hmac import compare_digest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlsplit

import azure.functions as func

from .app_loader import HttpFunction
from .routes import covers, name_order_key, split_path
from .settings import HttpSettings, homepage_disabled

log = logging.getLogger("devhost.http")

# Headers the server owns: the body length and connection handling are computed here.
_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive"}
_NO_BODY = {204, 304}
_MAX_LINE = 65536
_COPY_CHUNK = 1 << 20

# AuthenticationLevelHandler.FunctionsKeyHeaderName and FunctionsKeyQueryParamName.
KEY_HEADER = "x-functions-key"
KEY_QUERY = "code"

# What a client gets when the front end gives up on a function (230 s). Not in the host's source: the docs say
# 502; users report 500 "The request timed out" (MicrosoftDocs/azure-docs issues #94418 and #112130).
FRONT_END_TIMEOUT_STATUS = 500
THREADPOOL_SETTING = "PYTHON_THREADPOOL_THREAD_COUNT"


def invocation_threads() -> int:
    """The worker's thread pool size: PYTHON_THREADPOOL_THREAD_COUNT when it is a whole number from 1 on (the
    worker accepts up to 32767), else `min(32, cpu + 4)`, Python's ThreadPoolExecutor default the worker
    keeps."""
    given = (os.environ.get(THREADPOOL_SETTING) or "").strip()
    if given.isdigit() and 1 <= int(given) <= 32767:
        return int(given)
    return min(32, (os.cpu_count() or 1) + 4)


# A stand-in for the host's embedded Home.html.
HOMEPAGE = (
    b"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Azure Functions</title></head>"
    b"<body><h1>Your Functions 4.0 app is up and running</h1>"
    b"<p>Served by the local host (tools/devhost) in place of the Functions host's homepage.</p></body></html>"
)


class BadRequest(Exception):
    """The request is malformed (bad length, bad chunking, short read): Kestrel answers 400 and closes."""


class BodyTooLarge(Exception):
    """The body is over FUNCTIONS_REQUEST_BODY_SIZE_LIMIT."""


@dataclass(frozen=True)
class Shadowed:
    """An HTTP function that some methods never reach: earlier functions (``by``) match all its paths first.

    ``methods`` are the methods it loses (None: every method).
    """

    name: str
    route: str
    methods: frozenset[str] | None
    by: tuple[str, ...]


def _intersect(a: frozenset[str] | None, b: frozenset[str] | None) -> frozenset[str] | None:
    # None is "every method".
    if a is None:
        return b
    if b is None:
        return a
    return a & b


class Router:
    """Chooses the function for a method and path, as the host's RouteCollection does.

    Functions are tried in name order (``StringComparer.OrdinalIgnoreCase``, FunctionMetadataManager) and
    the first whose template and method match wins; there is no precedence between templates.
    """

    def __init__(self, functions: list[HttpFunction]) -> None:
        self.functions = sorted(functions, key=lambda f: name_order_key(f.name))

    def resolve(self, method: str, segments: list[str]) -> tuple[HttpFunction | None, dict[str, str]]:
        """(function, route values), or (None, {}) when no function serves the method on the path."""
        for function in self.functions:
            if function.methods is not None and method not in function.methods:
                continue
            values = function.route.match(segments)
            if values is not None:
                return function, values
        return None, {}

    def shadowed(self) -> list[Shadowed]:
        """Functions that some of their methods never reach, because an earlier function in name order
        matches every path they match for those methods. Conservative: one earlier template must cover the
        later one on its own (routes.covers), so a route covered only by several together is not listed.
        """
        found: list[Shadowed] = []
        for position, later in enumerate(self.functions):
            lost: frozenset[str] | None = frozenset()
            by: list[str] = []
            for earlier in self.functions[:position]:
                common = _intersect(earlier.methods, later.methods)
                if common == frozenset() or not covers(earlier.route, later.route):
                    continue
                by.append(earlier.name)
                lost = None if common is None or lost is None else lost | common
            if by:
                found.append(Shadowed(later.name, later.route.template, lost, tuple(by)))
        return found


# Finds a non-HTTP function by name for an admin invocation: a callable that runs it, or None.
AdminInvoke = Callable[[str, str], Callable[[], Any] | None]


def join_values(values: list[str]) -> str:
    """StringValues.ToString(): one value as it is; several joined with "," leaving out empty ones."""
    if len(values) == 1:
        return values[0]
    return ",".join(v for v in values if v)


def parse_query(query: str) -> dict[str, list[str]]:
    """Query values by key as ASP.NET collects them: keys ignore case (the first spelling is kept), "+" is a
    space (QueryHelpers.ParseQuery, KeyValueAccumulator)."""
    collected: dict[str, tuple[str, list[str]]] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        collected.setdefault(key.lower(), (key, []))[1].append(value)
    return {spelling: values for spelling, values in collected.values()}


def rpc_query(query: dict[str, list[str]]) -> dict[str, str]:
    """RpcHttp.Query: each key's values joined, and keys whose value is empty dropped (ToRpcHttp)."""
    joined = {key: join_values(values) for key, values in query.items()}
    return {key: value for key, value in joined.items() if value}


class DevHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        router: Router,
        admin_invoke: AdminInvoke | None = None,
        settings: HttpSettings | None = None,
        invocations: ThreadPoolExecutor | None = None,
    ) -> None:
        """`invocations`: the worker's thread pool, shared with the host's queue functions (DevHost passes
        it); without one the server has its own, which it shuts down on close."""
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.router = router
        self.admin_invoke = admin_invoke
        self.settings = settings or HttpSettings(master_key="")
        # Set on shutdown: keep-alive connections outlive serve_forever, so handlers check it.
        self.stopping = False
        self._inflight = 0
        self._idle = threading.Condition()
        self._owns_invocations = invocations is None
        self._invocations = invocations or ThreadPoolExecutor(
            max_workers=invocation_threads(), thread_name_prefix="invoke"
        )
        super().__init__(address, RequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn), which can stall offline.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def begin(self) -> None:
        with self._idle:
            self._inflight += 1

    def end(self) -> None:
        with self._idle:
            self._inflight -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait for in-flight requests and invocations (also those answered already); True when none are left."""
        with self._idle:
            return self._idle.wait_for(lambda: self._inflight == 0, timeout)

    def run_in_background(self, name: str, target: Callable[[], Any]) -> threading.Event:
        """Run ``target`` on the invocation pool, counted as in flight from now (also while it waits for a
        thread); the event is set when it ends. `name` names the thread while it runs."""
        finished = threading.Event()
        self.begin()

        def run() -> None:
            thread = threading.current_thread()
            pool_name, thread.name = thread.name, name
            try:
                target()
            finally:
                thread.name = pool_name
                self.end()
                finished.set()

        self._invocations.submit(run)
        return finished

    def server_close(self) -> None:
        super().server_close()
        # Invocations still running go on (as abandoned ones do in the real host); none is started after this.
        if self._owns_invocations:
            self._invocations.shutdown(wait=False, cancel_futures=True)

    def is_master_key(self, key: str | None) -> bool:
        return bool(key) and bool(self.settings.master_key) and compare_digest(key, self.settings.master_key)


class RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: DevHttpServer
    # Idle keep-alive connections are dropped after this many seconds without a request.
    timeout = 120
    server_version = "devhost"
    # TCP_NODELAY, as Kestrel sets by default (KestrelServerOptions.NoDelay, "Defaults to true"): the headers and the body are two
    # writes, and with Nagle's algorithm the body waited for the client's delayed ACK of the headers (~40 ms a
    # reply on Linux).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        # The standard per-request log is replaced by the line in _dispatch; keep protocol errors visible.
        log.warning("%s - %s", self.address_string(), format % args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def handle_expect_100(self) -> bool:
        # Kestrel sends "100 Continue" only when the body is first read; a request refused first gets none.
        self._continue_pending = True
        return True

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    # --- request body -----------------------------------------------------------------------------
    def _framing(self) -> tuple[bool, int]:
        """(chunked, Content-Length); BadRequest for a length or transfer coding Kestrel refuses."""
        encoding = ",".join(self.headers.get_all("Transfer-Encoding") or []).strip().lower()
        if encoding:
            if encoding.rsplit(",", 1)[-1].strip() != "chunked":
                raise BadRequest(f"unsupported Transfer-Encoding {encoding!r}")
            return True, 0
        lengths = {v.strip() for v in self.headers.get_all("Content-Length") or []}
        if not lengths:
            return False, 0
        if len(lengths) > 1 or not next(iter(lengths)).isdigit():
            raise BadRequest(f"invalid Content-Length {', '.join(sorted(lengths))!r}")
        return False, int(next(iter(lengths)))

    def _start_body(self) -> None:
        if getattr(self, "_continue_pending", False):
            self._continue_pending = False
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.wfile.flush()

    def _read_body(self, chunked: bool, length: int) -> bytes:
        """The whole body, at most the size limit: BodyTooLarge past it (nothing more is read), BadRequest."""
        limit = self.server.settings.body_size_limit
        if not chunked:
            if length > limit:
                raise BodyTooLarge
            if length == 0:
                return b""
            self._start_body()
            body = self.rfile.read(length)
            if len(body) != length:
                raise BadRequest(f"body ended after {len(body)} of {length} bytes")
            return body
        chunks: list[bytes] = []
        self._read_chunks(chunks.append, limit)
        return b"".join(chunks)

    def _read_chunks(self, sink: Callable[[bytes], Any], limit: int) -> None:
        self._start_body()
        total = 0
        while True:
            line = self.rfile.readline(_MAX_LINE)
            if not line.endswith(b"\n"):
                raise BadRequest("connection closed inside a chunked body")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)  # chunk extensions are ignored
            except ValueError as error:
                raise BadRequest(f"invalid chunk size line {line[:40]!r}") from error
            if size == 0:
                # Trailer fields end at an empty line; they are not merged into the headers.
                while True:
                    trailer = self.rfile.readline(_MAX_LINE)
                    if trailer in (b"\r\n", b"\n", b""):
                        return
            total += size
            if total > limit:
                raise BodyTooLarge
            while size:
                data = self.rfile.read(min(size, _COPY_CHUNK))
                if not data:
                    raise BadRequest("connection closed inside a chunk")
                sink(data)
                size -= len(data)
            if self.rfile.readline(_MAX_LINE).strip():
                raise BadRequest("missing CRLF after a chunk")

    def _skip_body(self, chunked: bool, length: int) -> None:
        """Drop a body nobody reads, so that the connection can serve the next request (Kestrel drains it).

        The connection is closed instead when the body is over the limit, or when the client waits for a
        "100 Continue" that was never sent and may never send the body.
        """
        if not chunked and length == 0:
            return
        if getattr(self, "_continue_pending", False):
            self.close_connection = True
            return
        try:
            if chunked:
                self._read_chunks(lambda data: None, self.server.settings.body_size_limit)
                return
            if length > self.server.settings.body_size_limit:
                raise BodyTooLarge
            while length:
                data = self.rfile.read(min(length, _COPY_CHUNK))
                if not data:
                    raise BadRequest("body ended early")
                length -= len(data)
        except (BadRequest, BodyTooLarge):
            self.close_connection = True

    # --- request to the function ------------------------------------------------------------------
    def _rpc_headers(self) -> dict[str, str]:
        grouped: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            grouped.setdefault(name.lower(), []).append(value)
        return {name: join_values(values) for name, values in grouped.items()}

    def _build_request(
        self, url_parts: SplitResult, query: dict[str, list[str]], route_params: dict[str, str], body: bytes
    ) -> func.HttpRequest:
        host = self.headers.get("Host") or f"{self.server.server_name}:{self.server.server_port}"
        path = url_parts.path or "/"
        url = f"http://{host}{path}" + (f"?{url_parts.query}" if url_parts.query else "")
        return func.HttpRequest(
            method=self.command.upper(),
            url=url,
            headers=self._rpc_headers(),
            params=rpc_query(query),
            route_params=route_params,
            body=body,
        )

    def _request_key(self, query: dict[str, list[str]]) -> str | None:
        """AuthenticationLevelHandler: the x-functions-key header, else the code query value (first values)."""
        header = self.headers.get_all(KEY_HEADER)
        if header:
            return header[0]
        for key, values in query.items():
            if key.lower() == KEY_QUERY:
                return values[0]
        return None

    def _authorized(self, function: HttpFunction, query: dict[str, list[str]]) -> bool:
        """FunctionInvocationMiddleware: an anonymous function needs nothing; the others a key. The local
        host has no function keys, so the master key (which satisfies every level) is the only one."""
        if function.auth_level == "anonymous":
            return True
        return self.server.is_master_key(self._request_key(query))

    # --- response ---------------------------------------------------------------------------------
    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response_only(status)
        names = {k.lower() for k, _ in headers}
        if "server" not in names:
            self.send_header("Server", self.server_version)
        if "date" not in names:
            self.send_header("Date", formatdate(usegmt=True))
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        if status not in _NO_BODY:
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and status not in _NO_BODY and body:
            self.wfile.write(body)
        self.wfile.flush()

    def _send_empty(self, status: int) -> int:
        """An answer made by the host itself: a status and no body."""
        self._send(status, [], b"")
        return status

    @staticmethod
    def _convert(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
        if isinstance(result, func.HttpResponse):
            headers = list(result.headers.items())
            if not any(k.lower() == "content-type" for k, _ in headers):
                # Same default as the worker's HttpResponseConverter.
                mimetype = result.mimetype
                ct = f"{mimetype}; charset={result.charset}" if mimetype.startswith("text/") else mimetype
                headers.append(("Content-Type", ct))
            return int(result.status_code), headers, result.get_body() or b""
        if result is None:
            return 204, [], b""
        if isinstance(result, str):
            return 200, [("Content-Type", "text/plain; charset=utf-8")], result.encode()
        if isinstance(result, (bytes, bytearray)):
            return 200, [("Content-Type", "application/octet-stream")], bytes(result)
        raise TypeError(f"an HTTP function must return func.HttpResponse, not {type(result).__name__}")

    # --- dispatch ---------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        started = time.perf_counter()
        status = 500
        self._continue_pending = getattr(self, "_continue_pending", False)
        self.server.begin()
        try:
            status = self._handle()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self._continue_pending = False
            self.server.end()
            elapsed = (time.perf_counter() - started) * 1000
            print(f"{self.command} {self.path} {status} {elapsed:.1f}ms", file=sys.stderr, flush=True)

    def _handle(self) -> int:
        method = self.command.upper()
        url_parts = urlsplit(self.path)
        if self.server.stopping:
            self.close_connection = True
            return self._send_empty(503)
        try:
            chunked, length = self._framing()
        except BadRequest:
            self.close_connection = True
            return self._send_empty(400)
        query = parse_query(url_parts.query)
        segments = split_path(url_parts.path)

        if (
            method == "POST"
            and len(segments) == 3
            and [s.lower() for s in segments[:2]] == ["admin", "functions"]
            and self.server.admin_invoke is not None
        ):
            return self._admin(segments[2], query, chunked, length)

        function, route_params = self.server.router.resolve(method, segments)
        if function is None:
            self._skip_body(chunked, length)
            if url_parts.path == "/":
                # HomepageMiddleware: Request.Path is exactly "/" and no function ran.
                if homepage_disabled():
                    return self._send_empty(204)
                self._send(200, [("Content-Type", "text/html")], HOMEPAGE)
                return 200
            return self._send_empty(404)
        if not self._authorized(function, query):
            self._skip_body(chunked, length)
            return self._send_empty(401)

        try:
            if chunked:
                # ToRpcHttp reads the body only when Content-Length > 0: the function gets b"", and the
                # unread body is drained (Kestrel) so that the connection stays usable.
                self._skip_body(chunked, length)
                body = b""
            else:
                body = self._read_body(chunked, length)
        except BodyTooLarge:
            # Kestrel refuses before reading a byte, and closes the connection.
            self.close_connection = True
            return self._send_empty(413)
        except BadRequest:
            self.close_connection = True
            return self._send_empty(400)
        return self._invoke(function, self._build_request(url_parts, query, route_params, body))

    def _invoke(self, function: HttpFunction, request: func.HttpRequest) -> int:
        """Run the function on a thread of its own and answer with its response, or with the front end's
        answer when it takes longer than the cut-off (the invocation goes on)."""
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["response"] = self._convert(function.invoke(request))
            except Exception:
                print(
                    f"Function {function.name} failed on {request.method} {self.path}:\n{traceback.format_exc()}",
                    file=sys.stderr,
                    flush=True,
                )

        timeout = self.server.settings.timeout_seconds
        finished = self.server.run_in_background(f"invoke-{function.name}", run)
        if not finished.wait(timeout):
            print(
                f"{request.method} {self.path}: no response from {function.name} after {timeout:g}s; the front "
                f"end answers {FRONT_END_TIMEOUT_STATUS} and the invocation goes on",
                file=sys.stderr,
                flush=True,
            )
            self.close_connection = True
            return self._send_empty(FRONT_END_TIMEOUT_STATUS)
        if "response" not in outcome:
            return self._send_empty(500)  # ExceptionMiddleware: the status only
        status, headers, payload = outcome["response"]
        if self.server.stopping:
            self.close_connection = True
        self._send(status, headers, payload)
        return status

    def _admin(self, name: str, query: dict[str, list[str]], chunked: bool, length: int) -> int:
        """POST /admin/functions/{name} {"input": "..."}: FunctionsController.Invoke.

        Authorization comes first (the AdminAuthLevel policy: the master key, else 401), then the body
        (no JSON object: 400), then the function (none: 404). The answer is 202 at once; the function runs
        in the background, and the "Executed 'Functions.<name>'" line says when it is done.
        """
        if not self.server.is_master_key(self._request_key(query)):
            self._skip_body(chunked, length)
            return self._send_empty(401)
        try:
            body = self._read_body(chunked, length)
        except BodyTooLarge:
            self.close_connection = True
            return self._send_empty(413)
        except BadRequest:
            self.close_connection = True
            return self._send_empty(400)
        try:
            payload = json.loads(body.decode("utf-8")) if body.strip() else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            payload = None
        if not isinstance(payload, dict):
            return self._send_empty(400)  # the FunctionInvocation model is null
        # MVC binds properties ignoring case; a null Input is passed on as is.
        value = next((v for k, v in payload.items() if k.lower() == "input"), None)
        text = "" if value is None else value if isinstance(value, str) else json.dumps(value)
        assert self.server.admin_invoke is not None
        runner = self.server.admin_invoke(name, text)
        if runner is None:
            return self._send_empty(404)

        def run() -> None:
            try:
                runner()
            except Exception:
                print(
                    f"Function {name} failed (admin invocation):\n{traceback.format_exc()}",
                    file=sys.stderr,
                    flush=True,
                )

        self.server.run_in_background(f"admin-{name}", run)
        return self._send_empty(202)
