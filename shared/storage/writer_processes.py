"""Large imports' batch upserts in writer processes, so that more than one core writes.

Why: a Table transaction costs the Azure SDK about 0.8 ms of CPU per entity (azure-core runs each batch's
per-part policies on a new thread pool and parses the multipart reply with `email`), so one Python process
writing is bound by one core and the GIL. Issue 14 measured it: during a large import the writing process sat
at 100 % of one core while Azurite used 6-67 % of the other, and the plain SDK in two processes writes 1.5-1.7
times what it writes in one (2 cores, one Azurite).

What: `EntityRepository.start_upsert` (shared/storage/entity_repo.py) hands a window of at least `MIN_ROWS`
rows to `start_window`, which splits its batches into one part per writer process. A writer runs its part's
batches on its own threads with the app's retries (shared/storage/retry.py) and returns how many rows it
wrote, the rows the service refused (by key, with the reason) and the transient failures it retried; the
app's process passes those to `on_retry` when the part ends, so a message's `lastTransientError` still names
them (a part's worth later than in-process writes would).

Processes: concurrent.futures.ProcessPoolExecutor over multiprocessing 'forkserver', the server the XSLT
workers use (shared/processes.py): a single-threaded server forks them, so the app's threads and locks are
never forked. `IMPORT_WRITER_PROCESSES` sets how many (shared/settings.py; 0 writes in the app's process).
A writer that dies (killed, out of memory) breaks the pool: the parts it had are written again in the app's
process (upserts are idempotent, and a window's keys are in no other window being written), the death is
reported to `on_retry` as a transient failure, and the next window starts a new pool. A writer ends itself
as soon as the app's process ends (it watches multiprocessing's parent sentinel), so no write of a dead
attempt lands after its retry has started.

Clients: a writer builds its own from the app's storage settings (`StorageClients.process_settings`: the
connection string, or the account's URLs and managed-identity settings), once per distinct settings. It
never creates tables: the app's process did before handing the window over.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)

MIN_ROWS = 1000  # smaller windows are written in the app's process: a part's round trip would cost more
THREADS_PER_WRITER = 8  # batches in flight in one writer, as in the app's own upsert pool

_lock = threading.Lock()
_pool: Any = None  # the ProcessPoolExecutor, started on first use
_pool_size = 0
started = 0  # writer pools started in this process (tests)
_warmed: Any = None  # the pool `warm` last started

# --- the writer process side ------------------------------------------------------------------------------
_writer_clients: dict[tuple, Any] = {}
_writer_tables: dict[tuple, Any] = {}  # TableClients by (settings, table name)
# Read from the environment when clients are built (the call log, and the settings it checks); a writer takes
# them from the app's process, since the forkserver's environment is the app's when the server started.
_ENVIRONMENT = ("DEV_STORAGE_CALL_LOG", "AUTH_MODE", "WEBSITE_INSTANCE_ID")
_writer_threads: ThreadPoolExecutor | None = None


def _init_writer() -> None:
    """A writer's start: end this process as soon as the app's process ends, and not on Ctrl-C (the terminal's
    SIGINT reaches the whole process group: the app's process decides when its writers end)."""
    import multiprocessing
    import signal
    from multiprocessing.connection import wait

    signal.signal(signal.SIGINT, signal.SIG_IGN)

    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _warm_writer(settings: dict[str, str]) -> None:
    """In a writer: import the SDK and build the clients, so that the first part does not wait for them."""
    import shared.storage.entity_repo  # noqa: F401 - the Azure SDK and the batch code

    _clients_for(settings).table_service.get_table_client("warmup")  # builds the service client and pipeline


def _table_for(settings: dict[str, str], table_name: str) -> Any:
    key = (tuple(sorted(settings.items())), table_name)
    table = _writer_tables.get(key)
    if table is None:
        table = _writer_tables[key] = _clients_for(settings).table_service.get_table_client(table_name)
    return table


def _clients_for(settings: dict[str, str]) -> Any:
    from shared.storage.factory import StorageClients

    key = tuple(sorted(settings.items()))
    clients = _writer_clients.get(key)
    if clients is None:
        for name in _ENVIRONMENT:
            if name in settings:
                os.environ[name] = settings[name]
            else:
                os.environ.pop(name, None)
        clients = StorageClients.from_settings({k: v for k, v in settings.items() if k not in _ENVIRONMENT})
        _writer_clients[key] = clients
    return clients


def error_info(error: BaseException) -> tuple:
    """A picklable description of `error`, which `rebuild_error` turns back into an exception of its class:
    (module, class name, message, HTTP status or None, service error code or None). The class is the nearest of
    azure-core's or Python's own in its MRO (an azure.identity CredentialUnavailableError is described as
    azure-core's ClientAuthenticationError), so that the app's process can rebuild it."""
    cls = next(
        (
            c
            for c in type(error).__mro__
            if c.__module__ == "builtins" or c.__module__.startswith("azure.core")
        ),
        Exception,
    )
    return (
        cls.__module__,
        cls.__name__,
        str(error),
        getattr(error, "status_code", None),
        getattr(error, "error_code", None),
    )


def rebuild_error(info: tuple) -> BaseException:
    """The exception `error_info` described: the same class for azure-core's errors and OS errors (so retry
    and terminal-status decisions, shared/storage/retry.is_transient, see what the writer saw), with its
    message, HTTP status and error code; a RuntimeError naming the class for anything else."""
    import builtins

    from azure.core import exceptions as azure_errors

    module, name, message, status, code = info
    cls = None
    if module.startswith("azure.core"):
        cls = getattr(azure_errors, name, None)
    elif module == "builtins":
        cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, azure_errors.AzureError):
        error = cls(message=message)
        if status is not None:
            error.status_code = status
        if code is not None:
            error.error_code = code
        return error
    if isinstance(cls, type) and issubclass(cls, OSError):
        return cls(message)
    return RuntimeError(f"{name}: {message}")


def _write_part(settings: dict[str, str], table_name: str, batches: list[list[dict]]) -> tuple:
    """In a writer: upsert `batches` into `table_name`. Gives (rows written, [(PartitionKey, RowKey, reason)]
    refused, [(attempt, error_info)] retried, error_info of the first error or None). Every batch ends before
    the part does."""
    global _writer_threads
    from shared.storage.entity_repo import collect, submit_batch

    retries: list[tuple[int, tuple]] = []

    def on_retry(attempt: int, error: BaseException) -> None:
        retries.append((attempt, error_info(error)))

    try:
        table = _table_for(settings, table_name)
    except Exception as exc:  # noqa: BLE001 - described to the app's process
        return 0, [], retries, error_info(exc)
    if _writer_threads is None:
        _writer_threads = ThreadPoolExecutor(THREADS_PER_WRITER, thread_name_prefix="writer")
    futures = [_writer_threads.submit(submit_batch, table, batch, on_retry) for batch in batches]
    try:
        result = collect(future.result for future in futures)
    except Exception as exc:  # noqa: BLE001 - described to the app's process
        return 0, [], retries, error_info(exc)
    refused = [(row["PartitionKey"], row["RowKey"], reason) for row, reason in result.failed]
    return result.written, refused, retries, None


# --- the app's process side ----------------------------------------------------------------------------------
class WriterProcessEnded(ConnectionError):
    """A writer process ended before it answered (killed, out of memory): a transient failure, its rows are
    written again in the app's process."""


def _executor(size: int) -> Any:
    global _pool, _pool_size, started
    with _lock:
        if _pool is not None and _pool_size != size:
            # The setting changed: new windows go to a pool of the new size; the old one ends its parts first.
            _pool.shutdown(wait=False)
            _pool = None
        if _pool is None:
            from concurrent.futures import ProcessPoolExecutor

            from shared.processes import forkserver_context

            _pool = ProcessPoolExecutor(
                max_workers=size, mp_context=forkserver_context(), initializer=_init_writer
            )
            _pool_size = size
            started += 1
        return _pool


def warm(clients: Any, processes: int) -> None:
    """Start the writer processes for `clients` without waiting (a cold writer takes about 0.5-0.9 s to start,
    import the SDK and build its clients: measured on 2 cores). Each writer gets one warm-up task; nothing when
    the pool was warmed already, no processes are configured, or the clients cannot be rebuilt elsewhere."""
    global _warmed
    settings = clients.process_settings() if processes >= 1 else None
    if settings is None:
        return
    pool = None
    try:
        pool = _executor(processes)
        with _lock:
            if _warmed is pool:
                return
            _warmed = pool
        for _ in range(processes):
            # Its failure, if any, shows again at the first part, which handles it.
            pool.submit(_warm_writer, settings)
    except Exception:  # noqa: BLE001 - starting early only saves time: it must never fail the import
        log.warning("the writer processes could not be started early", exc_info=True)
        if pool is not None:
            _discard(pool)


def _discard(pool: Any) -> None:
    """Forget a broken pool (the next window starts a new one). Its parts not started yet are cancelled (one may
    be the work item of a submit that failed to start its process, which must not run later): their windows write
    them in the app's process (`_Part.result`)."""
    global _pool, _warmed
    with _lock:
        if _pool is pool:
            _pool = None
        if _warmed is pool:
            _warmed = None
    pool.shutdown(wait=False, cancel_futures=True)


def shutdown() -> None:
    """End the writer processes (tests; the app's exit ends them too)."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def writer_pids() -> list[int]:
    """The process IDs of the writers of the current pool; none while it is broken (a writer died) (tests)."""
    with _lock:
        pool = _pool
    if pool is None or getattr(pool, "_broken", False) or not pool._processes:
        return []
    return sorted(pool._processes)


class _Part:
    """One writer's share of a window, and how to finish it: its result, or in the app's process."""

    def __init__(
        self, pool: Any, future: Future | None, table: Any, batches: list[list[dict]], on_retry
    ) -> None:
        self._pool = pool
        self._future = future
        self._table = table
        self._batches = batches
        self._on_retry = on_retry

    def result(self) -> tuple[int, list[tuple[dict, str]]]:
        """(rows written, [(row, reason)] refused); raises what the writer raised (rebuilt)."""
        from concurrent.futures import CancelledError
        from concurrent.futures.process import BrokenProcessPool

        from shared.storage.retry import describe

        try:
            if self._future is None:
                raise BrokenProcessPool("the writer pool could not start")
            written, refused, retries, first_error = self._future.result()
        except (BrokenProcessPool, CancelledError) as exc:
            # Died, or never started (its pool was discarded first): nothing of it is running now.
            log.warning("a writer process ended; its part of the window is written in this process: %r", exc)
            if self._pool is not None:
                _discard(self._pool)
            ended = WriterProcessEnded(
                f"a writer process ended before it answered ({exc}); its rows are written again"
            )
            if self._on_retry is not None:
                self._on_retry(1, ended)
            return self._write_here()
        for attempt, info in retries:
            error = rebuild_error(info)
            # The writer logged it too, but its output is not the host's log (in Azure, only the worker's is).
            log.warning("a writer process retried a batch upsert (attempt %d): %s", attempt, describe(error))
            if self._on_retry is not None:
                self._on_retry(attempt, error)
        if first_error is not None:
            raise rebuild_error(first_error)
        if not refused:
            return written, []
        rows = {(row["PartitionKey"], row["RowKey"]): row for batch in self._batches for row in batch}
        return written, [(rows[(pk, rk)], reason) for pk, rk, reason in refused]

    def _write_here(self) -> tuple[int, list[tuple[dict, str]]]:
        from shared.storage.entity_repo import collect, executor, submit_batch

        batches = [executor().submit(submit_batch, self._table, b, self._on_retry) for b in self._batches]
        result = collect(future.result for future in batches)
        return result.written, result.failed


def start_window(
    clients: Any,
    table: Any,
    batches: list[list[dict]],
    on_retry: Callable[[int, BaseException], None] | None,
    processes: int,
) -> list[_Part] | None:
    """Hands `batches` (rows of `table`, a TableClient of `clients`) to the writer processes, one part per
    process: the parts, whose `result()` waits; None when they cannot take it (no processes configured, or
    clients whose settings a process cannot rebuild), and the caller writes it itself."""
    if processes < 1 or not batches:
        return None
    settings = clients.process_settings()
    if settings is None:
        return None
    parts = min(processes, len(batches))
    shares = [batches[i::parts] for i in range(parts)]
    out = []
    for share in shares:
        pool = future = None
        for _ in range(2):  # a pool found broken (or shut down) at submit is replaced once
            try:
                pool = _executor(processes)
                future = pool.submit(_write_part, settings, table.table_name, share)
                break
            except Exception:  # noqa: BLE001 - BrokenProcessPool, or the fork failing (OSError, EOFError)
                log.warning("a part could not be handed to the writer processes", exc_info=True)
                if pool is not None:
                    _discard(pool)
                future = None
        # Without a future the part is written in the app's process when its window is waited for.
        out.append(_Part(pool, future, table, share, on_retry))
    return out
