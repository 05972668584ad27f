"""Serve HTTP-triggered functions over real HTTP/1.1, with the Functions host's routing and request model."""

from __future__ import annotations

import json
import logging
import socket
import socketserver
import sys
import threading
import time
import traceback
from collections.abc import Callable
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

from .app_loader import HttpFunction
from .routes import split_path

log = logging.getLogger("devhost.http")

# Headers the server owns: the body length and connection handling are computed here.
_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive"}
_NO_BODY = {204, 304}
_MAX_LINE = 65536


class BadRequest(Exception):
    """The request body is malformed (bad chunking, short read)."""


class Router:
    """Chooses the function for a method and path, by ASP.NET route precedence."""

    def __init__(self, functions: list[HttpFunction]) -> None:
        # Stable order for ties: precedence, then template text, as the host sorts its route table.
        self.functions = sorted(functions, key=lambda f: (f.route.precedence, f.route.template.lower()))

    def resolve(
        self, method: str, segments: list[str]
    ) -> tuple[HttpFunction | None, dict[str, str], set[str]]:
        """(function, route values, methods allowed on the path); no function and no methods means 404."""
        allowed: set[str] = set()
        for function in self.functions:
            values = function.route.match(segments)
            if values is None:
                continue
            if function.methods is None or method in function.methods:
                return function, values, allowed
            allowed |= function.methods
        return None, {}, allowed


# Runs a non-HTTP function by name with an input string; False when there is no such function.
AdminInvoke = Callable[[str, str], bool]


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


class DevHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], router: Router, admin_invoke: AdminInvoke | None = None
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.router = router
        self.admin_invoke = admin_invoke
        # Set on shutdown: keep-alive connections outlive serve_forever, so handlers check it.
        self.stopping = False
        self._inflight = 0
        self._idle = threading.Condition()
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
        """Wait for in-flight invocations; True when none are left."""
        with self._idle:
            return self._idle.wait_for(lambda: self._inflight == 0, timeout)


class RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: DevHttpServer
    # Idle keep-alive connections are dropped after this many seconds without a request.
    timeout = 120
    server_version = "devhost"

    def log_message(self, format: str, *args: Any) -> None:
        # The standard per-request log is replaced by _log_request; keep protocol errors visible.
        log.warning("%s - %s", self.address_string(), format % args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    # --- request ----------------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        encoding = self.headers.get("Transfer-Encoding", "")
        if "chunked" in encoding.lower():
            return self._read_chunked()
        length_text = self.headers.get("Content-Length")
        if not length_text:
            return b""
        try:
            length = int(length_text)
        except ValueError as error:
            raise BadRequest(f"invalid Content-Length {length_text!r}") from error
        if length < 0:
            raise BadRequest(f"invalid Content-Length {length_text!r}")
        body = self.rfile.read(length)
        if len(body) != length:
            raise BadRequest(f"body ended after {len(body)} of {length} bytes")
        return body

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
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
                        return b"".join(chunks)
            data = self.rfile.read(size)
            if len(data) != size:
                raise BadRequest("connection closed inside a chunk")
            chunks.append(data)
            if self.rfile.readline(_MAX_LINE).strip():
                raise BadRequest("missing CRLF after a chunk")

    def _build_request(self, url_parts: Any, route_params: dict[str, str], body: bytes) -> func.HttpRequest:
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        params: dict[str, str] = {}
        # Form decoding ("+" is a space); the first value wins for repeated keys.
        for key, value in parse_qsl(url_parts.query, keep_blank_values=True):
            params.setdefault(key, value)
        host = self.headers.get("Host") or f"{self.server.server_name}:{self.server.server_port}"
        path = url_parts.path or "/"
        url = f"http://{host}{path}" + (f"?{url_parts.query}" if url_parts.query else "")
        return func.HttpRequest(
            method=self.command.upper(),
            url=url,
            headers=headers,
            params=params,
            route_params=route_params,
            body=body,
        )

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

    def _send_error_json(
        self, status: int, code: str, message: str, extra: list[tuple[str, str]] | None = None
    ) -> None:
        headers = [("Content-Type", "application/json; charset=utf-8"), *(extra or [])]
        self._send(status, headers, error_body(code, message))

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
        self.server.begin()
        try:
            status = self._handle()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self.server.end()
            elapsed = (time.perf_counter() - started) * 1000
            print(f"{self.command} {self.path} {status} {elapsed:.1f}ms", file=sys.stderr, flush=True)

    def _handle(self) -> int:
        method = self.command.upper()
        url_parts = urlsplit(self.path)
        if self.server.stopping:
            self.close_connection = True
            self._send_error_json(503, "ShuttingDown", "the local host is shutting down")
            return 503
        try:
            body = self._read_body()
        except BadRequest as error:
            # The rest of the connection cannot be trusted after a broken body.
            self.close_connection = True
            self._send_error_json(400, "BadRequest", str(error))
            return 400

        segments = split_path(url_parts.path)
        if (
            method == "POST"
            and len(segments) == 3
            and [s.lower() for s in segments[:2]] == ["admin", "functions"]
            and self.server.admin_invoke is not None
        ):
            return self._admin(segments[2], body)

        function, route_params, allowed = self.server.router.resolve(method, segments)
        if function is None:
            if allowed:
                self._send_error_json(
                    405,
                    "MethodNotAllowed",
                    f"{method} is not allowed on {url_parts.path}; allowed: {', '.join(sorted(allowed))}",
                    [("Allow", ", ".join(sorted(allowed)))],
                )
                return 405
            self._send_error_json(404, "NotFound", f"no function matches {method} {url_parts.path}")
            return 404

        try:
            request = self._build_request(url_parts, route_params, body)
            status, headers, payload = self._convert(function.invoke(request))
        except Exception as error:
            print(
                f"Function {function.name} failed on {method} {url_parts.path}:\n{traceback.format_exc()}",
                file=sys.stderr,
                flush=True,
            )
            message = f"{function.name} failed: {type(error).__name__}: {error}"
            self._send_error_json(500, "InternalError", message)
            return 500
        if self.server.stopping:
            self.close_connection = True
        self._send(status, headers, payload)
        return status

    def _admin(self, name: str, body: bytes) -> int:
        """POST /admin/functions/{name} {"input": "..."}: run a queue or timer function now, as Core Tools does.

        The real host answers 202 and runs it in the background; here it has finished by the time
        the 202 arrives, which makes the endpoint handy for tests.
        """
        try:
            text = body.decode("utf-8") if body else "{}"
            payload = json.loads(text) if text.strip() else {}
            value = payload.get("input", "") if isinstance(payload, dict) else ""
        except (UnicodeDecodeError, json.JSONDecodeError):
            self._send_error_json(400, "BadRequest", 'body must be JSON like {"input": "..."}')
            return 400
        try:
            found = self.server.admin_invoke(name, "" if value is None else str(value))  # type: ignore[misc]
        except Exception as error:
            print(
                f"Function {name} failed (admin invocation):\n{traceback.format_exc()}",
                file=sys.stderr,
                flush=True,
            )
            self._send_error_json(500, "InternalError", f"{name} failed: {type(error).__name__}: {error}")
            return 500
        if not found:
            self._send_error_json(404, "NotFound", f"no queue or timer function named {name!r}")
            return 404
        self._send(202, [], b"")
        return 202
