"""Run a whole FunctionApp locally (HTTP, queue and timer triggers) as one object that starts and stops."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

from .app_loader import (
    HOST_API_REASON,
    AppIndex,
    IndexingError,
    connection_string,
    get_functions_once,
    index_functions,
    load_app,
)
from .http_server import DevHttpServer, Router, invocation_threads
from .queue_runner import DEFAULT_LEASE_SECONDS, QueuePoller, manual_message
from .selection import select_functions
from .settings import HostConfig, HttpSettings, apply_settings, load_host_config, load_http_settings
from .timer_runner import TimerRunner, host_timezone, manual_request, storage_for

log = logging.getLogger("devhost")


class DevHost:
    """The local Functions host for one app.

    ``start()`` applies settings, imports the app, binds the HTTP server and starts the queue
    pollers and timers; it returns the bound port (``port=0`` picks a free one). ``stop()``
    stops accepting work and waits up to ``shutdown_grace`` seconds for running invocations.
    """

    def __init__(
        self,
        root: str | Path = ".",
        app_module: str = "function_app",
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        functions: Iterable[str] | None = None,
        queue_lease_seconds: float = DEFAULT_LEASE_SECONDS,
        shutdown_grace: float = 5.0,
    ) -> None:
        self.root = Path(root).resolve()
        self.app_module = app_module
        self.port = port
        self.host = host
        # Function names and the groups http, queues, timers (tools.devhost.selection); None runs all.
        self.selectors = list(functions) if functions else None
        self.only: set[str] | None = None
        self.queue_lease_seconds = queue_lease_seconds
        self.shutdown_grace = shutdown_grace
        self.config = HostConfig()
        self.http_settings = HttpSettings(master_key="")
        self.index = AppIndex()
        # Why the worker could not index the app, when it could not (the host then runs zero functions).
        self.indexing_error: str | None = None
        self.overridden_settings: dict[str, str] = {}
        self._stop = threading.Event()
        self._server: DevHttpServer | None = None
        self._serve_thread: threading.Thread | None = None
        self._pollers: list[QueuePoller] = []
        self._invocations: ThreadPoolExecutor | None = None
        self._timers: list[TimerRunner] = []

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> int:
        # Settings go into the environment before the import, as the worker's are: app modules
        # often read them at import time.
        _, self.overridden_settings = apply_settings(self.root)
        self.config = load_host_config(self.root)
        self.http_settings = load_http_settings()
        functions = self._worker_functions()
        self.only = select_functions(functions, self.selectors)
        try:
            self.index = index_functions(
                functions, route_prefix=self.config.route_prefix, root=self.root, only=self.only
            )
        except IndexingError as error:
            self._indexing_failed(error)
            self.index = AppIndex()
        for queue_function in self.index.queue:
            connection_string(queue_function.connection)  # fail now, not in a poller thread
        tz = host_timezone()
        self._timers = [TimerRunner(f, self._stop, tz, storage=storage_for(f)) for f in self.index.timer]
        # One pool for every invocation of HTTP and queue functions, as the Python worker runs sync functions
        # (HOST.md): long imports hold threads that HTTP requests then wait for, as in Azure.
        self._invocations = ThreadPoolExecutor(max_workers=invocation_threads(), thread_name_prefix="invoke")
        self._pollers = [
            QueuePoller(
                f,
                self.config.queues,
                self._stop,
                lease_seconds=self.queue_lease_seconds,
                invocations=self._invocations,
            )
            for f in self.index.queue
        ]

        self._server = DevHttpServer(
            (self.host, self.port),
            Router(self.index.http),
            self._admin_invoke,
            self.http_settings,
            invocations=self._invocations,
        )
        self.port = self._server.server_address[1]
        self._serve_thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="http", daemon=True
        )
        self._serve_thread.start()
        for runner in [*self._pollers, *self._timers]:
            runner.start()
        return self.port

    def _worker_functions(self) -> list[Any]:
        """The app's functions as the worker indexes them; none when it cannot (the host runs on, empty)."""
        try:
            return get_functions_once(load_app(self.root, self.app_module))
        except IndexingError as error:
            self._indexing_failed(error)
            return []

    def _indexing_failed(self, error: IndexingError) -> None:
        # GrpcWorkerChannel.ProcessFunctionMetadataResponses logs this and the host starts with no functions.
        self.indexing_error = str(error)
        log.error("Worker failed to index functions: %s", error, exc_info=error.__cause__ or error)
        log.error("No functions indexed: every route answers 404 (the host keeps running)")

    def _admin_invoke(self, name: str, text: str) -> Callable[[], Any] | None:
        """What POST /admin/functions/{name} runs in the background for a queue or timer function of this
        host, or None (ScriptHost.GetFunctionOrNull: names ignore case)."""
        for queue_function in self.index.queue:
            if queue_function.name.lower() == name.lower():
                return lambda: queue_function.invoke(manual_message(text), reason=HOST_API_REASON)
        for timer_function in self.index.timer:
            if timer_function.name.lower() == name.lower():
                return lambda: timer_function.invoke(manual_request(), reason=HOST_API_REASON)
        return None

    def describe(self) -> list[str]:
        """One line per function, for the startup banner."""
        lines = [f.describe() for f in [*self.index.http, *self.index.queue, *self.index.timer]]
        lines += [f"{line} (skipped)" for line in self.index.skipped]
        lines += [f"{name}: in error: {message}" for name, message in self.index.errors.items()]
        if self.indexing_error:
            lines.append(f"(none: the worker failed to index the app: {self.indexing_error})")
        return lines

    def stop(self) -> bool:
        """Stop accepting work and wait for in-flight invocations; True when all of them finished."""
        if self._stop.is_set():
            return True
        self._stop.set()
        deadline = time.monotonic() + self.shutdown_grace
        clean = True
        if self._server is not None:
            self._server.stopping = True
            self._server.shutdown()  # no new connections or requests are accepted after this
            clean &= self._server.wait_idle(max(0.0, deadline - time.monotonic()))
            self._server.server_close()
        for poller in self._pollers:
            clean &= poller.join(max(0.0, deadline - time.monotonic()))
        for timer in self._timers:
            clean &= timer.join(max(0.0, deadline - time.monotonic()))
        if self._invocations is not None:
            # Invocations still running go on (abandoned, as in the real host); none is started after this.
            self._invocations.shutdown(wait=False, cancel_futures=True)
        if not clean:
            log.warning(
                "some invocations were still running after %.0fs; abandoning them", self.shutdown_grace
            )
        return clean

    def __enter__(self) -> DevHost:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
