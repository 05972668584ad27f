"""Run partner-supplied XSLT 1.0 (lxml) where it can be stopped: in worker processes with OS limits.

Jobs and data packages may carry XSLT that reshapes inbound XML into D365's
`<Document><ENTITY><FIELD>` shape. A stylesheet is untrusted code, so nothing of it runs in the
app's process: compiling and transforming happen in a small pool of worker processes
(`xslt_worker.py`, multiprocessing 'forkserver': a single-threaded server forks them, so the app's
threads and locks are never forked). Each job there runs under
- an address-space limit (RLIMIT_AS, XSLT_MEMORY_MB, default 512 MB for the whole worker,
  interpreter included): a memory bomb fails inside the worker, which then exits;
- a wall-clock bound (XSLT_TIMEOUT_SECONDS, default 300 s): the caller waits that long, then
  SIGKILLs the worker, and the pool starts a fresh one for the next job; a CPU-time limit
  (RLIMIT_CPU) just above it stops a worker whose parent could not;
- an output cap (XSLT_MAX_OUTPUT_MB, default 256 MB) on the serialized result.
A failure ends with a FormatError naming the bound ("the transform exceeded its memory limit of
512 MB", "... ran longer than 300 s", "the transform's output is larger than 256 MB").

The input is never held twice: it is written (bytes) or copied chunk by chunk (a stream, counted
against `max_input_bytes` as it arrives) to a file in a private temporary directory; the worker
reads it there and writes the serialized result to another file, which the caller reads
(`apply_transform`) or streams (`apply_transform_to_stream`; such a stream passed to the next
transform is handed over by path, not copied).

Hardening, as before, inside the worker: the stylesheet and the input are parsed with DTDs refused
and no entity or network loading; xsl:include, xsl:import and document() reach only the
transform's own resources, through a resolver that refuses everything else (it never defers to
the default loaders, which would read files); libxslt's access control denies file and network
reads, all writes and directory creation (network-class reads are switched on only when resources
are given, for their private `xsltres://resources/` URLs; file:// stays denied). The input's
DOCTYPE is refused after parsing only the prolog; depth is bounded by libxml2 (256 levels) and by
`max_depth`; stylesheets are bounded by size. Compiling runs in a worker too: a stylesheet that
imports the same resource twice at each of 16 levels takes minutes and gigabytes to compile.

EXSLT regular expressions (`re:`) are refused at compile time: lxml runs them with Python's `re`
holding the interpreter lock (a 32-character backtracking pattern once froze a host for 310 s),
and D365's own XSLT processor (.NET XslCompiledTransform) has no EXSLT at all, so no D365
stylesheet needs them. `exslt_regexp=True` lets them run, in the worker, under the same bounds.

Like any multiprocessing child, a worker imports the parent's main module unless that ran with -m
as `pkg.__main__`: in Azure the Python worker runs as `python -m azure_functions_worker`, locally
its `worker.py` is guarded by `if __name__ == "__main__"` (azure-functions-python-worker,
python/prodV4/worker.py); the devhost and pytest run as `-m`. A script that calls this module
needs that guard too, or its workers re-run it and die.

Throughput (bench/bench_xslt.py): each worker compiles a stylesheet once and keeps it; the parse,
transform and serialization run in the worker's main thread, so the input and result trees share
one warm heap (a worker trims its heap only after 2 s idle). Worker start-up (a fork of the
preloaded server, about 20 ms; the first one also starts the server) is paid once per worker.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import math
import os
import shutil
import signal
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from shared import settings
from shared.errors import FormatError

MAX_STYLESHEET_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_INPUT_BYTES = 512 * 1024 * 1024
# libxml2's own depth cap (xslt_worker.PARSER_MAX_DEPTH): it bounds libxslt's recursion over the
# input like any lower limit would, and a lower one costs a walk over the whole tree (about 5% of
# a transform). Callers that want a tighter shape check pass max_depth.
DEFAULT_MAX_DEPTH = 256
# Compiling is bounded apart from transforming: a stylesheet is at most 4 MB, and an API call
# that checks one should not wait the whole transform bound.
COMPILE_TIMEOUT_SECONDS = 60.0
_CACHE_SIZE = 64
_EXIT_OUT_OF_MEMORY = 86  # xslt_worker.EXIT_OUT_OF_MEMORY (not imported here: it imports lxml)
_COPY_CHUNK = 1024 * 1024
_MIB = 1024 * 1024


def _size_text(n: int) -> str:
    return f"{n // _MIB} MB" if n >= _MIB and n % _MIB == 0 else f"{n} bytes"


@dataclass(eq=False)
class CompiledTransform:
    """A stylesheet that compiled (in a worker) under the hardening above; safe to share between threads.

    Holds the stylesheet's bytes and resources: a worker that has not compiled it yet asks for them.
    """

    digest: str
    _payload: tuple[bytes, dict[str, bytes], bool] = field(repr=False)


_cache: OrderedDict[str, CompiledTransform] = OrderedDict()
_cache_lock = threading.Lock()


def _digest(xslt_bytes: bytes, resources: Mapping[str, bytes] | None, exslt_regexp: bool) -> str:
    h = hashlib.sha256()
    h.update(hashlib.sha256(xslt_bytes).digest())
    for name in sorted(resources or {}):
        h.update(name.encode("utf-8") + b"\x00")
        h.update(hashlib.sha256(resources[name]).digest())  # type: ignore[index]
    h.update(b"regexp" if exslt_regexp else b"")
    return h.hexdigest()


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


# Worker processes -------------------------------------------------------------------------------


def _worker_main(conn: Any) -> None:
    """Entry point in the worker process (lxml is imported there, not here)."""
    from shared.formats import xslt_worker

    xslt_worker.serve(conn)


class _Timeout(Exception):
    pass


class _Died(Exception):
    def __init__(self, exitcode: int | None) -> None:
        super().__init__(exitcode)
        self.exitcode = exitcode


class _Gone(Exception):
    """The worker was dead before it got the job (killed while idle): try another."""


class _Worker:
    """One worker process and the parent's end of its pipe; used by one caller at a time."""

    def __init__(self, ctx: Any) -> None:
        parent_end, child_end = ctx.Pipe()
        # Daemon: multiprocessing ends it when the app exits.
        self.process = ctx.Process(target=_worker_main, args=(child_end,), name="xslt-worker", daemon=True)
        self.process.start()
        child_end.close()
        self.conn = parent_end
        self.known: set[str] = set()  # digests this worker has compiled (it may have evicted some)

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def call(self, job: dict, timeout: float) -> dict:
        try:
            self.conn.send(job)
        except (BrokenPipeError, ConnectionResetError, EOFError):
            raise _Gone() from None
        if not self.conn.poll(max(timeout, 0.0)):
            raise _Timeout()
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            self.process.join(5)
            raise _Died(self.process.exitcode) from None

    def kill(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.process.kill()
        self.process.join(5)
        with contextlib.suppress(OSError):
            self.conn.close()

    def close(self) -> None:
        """End an idle worker politely, or for good if it does not go."""
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.process.join(1)
        self.kill()


def _context() -> Any:
    from shared.processes import forkserver_context

    return forkserver_context()


class _Pool:
    """Up to `size` worker processes, started on demand; callers beyond that wait for a free one."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._ctx = _context()
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._closed = False
        self.started = 0
        self.tmpdir = tempfile.mkdtemp(prefix="xslt-")

    def acquire(self) -> tuple[_Worker, float]:
        """A worker for one job, and the seconds spent waiting for it."""
        began = time.monotonic()
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError("the XSLT worker pool is shut down")
                while self._idle:
                    worker = self._idle.pop()  # the most recently used: its heap is warm
                    if worker.process.is_alive():
                        return worker, time.monotonic() - began
                    self._all.discard(worker)
                    worker.kill()
                if len(self._all) < self.size:
                    placeholder = object()
                    self._all.add(placeholder)  # type: ignore[arg-type]
                    break
                self._cond.wait()
        try:
            worker = _Worker(self._ctx)
        except BaseException:
            with self._cond:
                self._all.discard(placeholder)  # type: ignore[arg-type]
                self._cond.notify()
            raise
        with self._cond:
            self._all.discard(placeholder)  # type: ignore[arg-type]
            self._all.add(worker)
            self.started += 1
        return worker, time.monotonic() - began

    def release(self, worker: _Worker, *, keep: bool) -> None:
        with self._cond:
            keep = keep and not self._closed
            if keep:
                self._idle.append(worker)
            else:
                self._all.discard(worker)
            self._cond.notify()
        if not keep:
            worker.close()

    def pids(self) -> list[int]:
        with self._cond:
            return sorted(w.pid for w in self._all if isinstance(w, _Worker) and w.pid is not None)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for worker in idle:
            worker.close()
        shutil.rmtree(self.tmpdir, ignore_errors=True)


_pool: _Pool | None = None
_pool_lock = threading.Lock()


def _get_pool() -> _Pool:
    global _pool
    with _pool_lock:
        if _pool is None or not os.path.isdir(_pool.tmpdir):
            if _pool is not None:
                _pool.close()
            _pool = _Pool(settings.xslt_limits()[3])
        return _pool


def shutdown_pool() -> None:
    """Stop the worker processes (busy ones when their job ends); the next call starts a new pool."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.close()


def worker_pids() -> list[int]:
    """The process IDs of the current workers (for tests and benchmarks)."""
    with _pool_lock:
        pool = _pool
    return pool.pids() if pool is not None else []


def _forget_pool() -> None:
    # A forked child shares the parent's pipes to the workers: it must start its own pool.
    global _pool, _pool_lock, _cache_lock
    _pool = None
    _pool_lock = threading.Lock()
    _cache_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)
atexit.register(shutdown_pool)


def _died_text(exitcode: int | None, job: dict, what: str) -> str:
    memory = _size_text(job["memory_bytes"])
    if exitcode == _EXIT_OUT_OF_MEMORY:
        if job["kind"] == "compile":
            return f"the XSLT does not compile: it exceeded its memory limit of {memory}"
        return f"the transform exceeded its memory limit of {memory}"
    if exitcode == -signal.SIGXCPU:
        return f"{what} ran longer than {job['cpu_seconds']} s of CPU time"
    how = f"signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"exit code {exitcode}"
    return (
        f"the XSLT worker process stopped unexpectedly ({how}) while running {what}; "
        f"it may have exceeded its memory limit of {memory}"
    )


def _raise_for(reply: dict) -> None:
    if reply["error"] == "format":
        raise FormatError(reply["message"])
    if reply["error"] == "os":
        raise OSError(reply["message"])  # transient (disk): the message is retried
    raise RuntimeError(reply["message"])


def _run_job(job: dict, compiled: CompiledTransform, budget: float, timeout_text: str, what: str) -> dict:
    """Run one job on a pooled worker within `budget` seconds (waiting for a free worker not counted)."""
    pool = _get_pool()
    for _attempt in range(2):
        worker, _waited = pool.acquire()
        began = time.monotonic()
        keep = False
        try:
            if compiled.digest not in worker.known:
                job["payload"] = compiled._payload
            reply = worker.call(job, budget)
            if reply["need"]:  # the worker evicted it meanwhile
                job["payload"] = compiled._payload
                reply = worker.call(job, budget - (time.monotonic() - began))
            if reply["compiled"] or reply["ok"]:
                if len(worker.known) >= _CACHE_SIZE:
                    worker.known.clear()
                worker.known.add(compiled.digest)
            keep = not reply["recycle"]
            return reply
        except _Gone:
            continue
        except _Timeout:
            raise FormatError(timeout_text) from None
        except _Died as died:
            raise FormatError(_died_text(died.exitcode, job, what)) from None
        finally:
            if keep:
                pool.release(worker, keep=True)
            else:
                worker.kill()  # at once: a runaway must not outlive its bound
                pool.release(worker, keep=False)
    raise RuntimeError("no XSLT worker process could be started")


def _limits(
    timeout_seconds: float | None, max_output_bytes: int | None, max_memory_bytes: int | None
) -> tuple[float, int, int]:
    memory_mb, timeout, output_mb, _workers = settings.xslt_limits()
    return (
        timeout if timeout_seconds is None else timeout_seconds,
        output_mb * _MIB if max_output_bytes is None else max_output_bytes,
        memory_mb * _MIB if max_memory_bytes is None else max_memory_bytes,
    )


def compile_transform(
    xslt_bytes: bytes,
    *,
    resources: Mapping[str, bytes] | None = None,
    max_stylesheet_bytes: int = MAX_STYLESHEET_BYTES,
    exslt_regexp: bool = False,
    max_memory_bytes: int | None = None,
) -> CompiledTransform:
    """Compile (or fetch from the cache) a hardened XSLT 1.0 transform; raise FormatError.

    `resources` maps names, as the stylesheet refers to them (href="common.xsl",
    document('codes.xml')), to their bytes. The cache key covers the stylesheet, resources and
    `exslt_regexp`. The compile runs in a worker, within COMPILE_TIMEOUT_SECONDS (or the transform
    bound, if lower) and the memory limit.
    """
    if len(xslt_bytes) > max_stylesheet_bytes:
        raise FormatError(f"the XSLT is {len(xslt_bytes)} bytes; the limit is {max_stylesheet_bytes}")
    for name, data in (resources or {}).items():
        if len(data) > max_stylesheet_bytes:
            raise FormatError(
                f"the XSLT resource '{name}' is {len(data)} bytes; the limit is {max_stylesheet_bytes}"
            )
    digest = _digest(xslt_bytes, resources, exslt_regexp)
    with _cache_lock:
        cached = _cache.get(digest)
        if cached is not None:
            _cache.move_to_end(digest)
            return cached

    compiled = CompiledTransform(digest, (bytes(xslt_bytes), dict(resources or {}), exslt_regexp))
    timeout, _output, memory = _limits(None, None, max_memory_bytes)
    budget = min(timeout, COMPILE_TIMEOUT_SECONDS)
    job = {"kind": "compile", "digest": digest, "payload": None}
    job.update(memory_bytes=memory, cpu_seconds=math.ceil(budget))
    reply = _run_job(job, compiled, budget, f"the XSLT does not compile within {budget:g} s", "the compile")
    if not reply["ok"]:
        _raise_for(reply)
    with _cache_lock:
        # Another thread may have compiled the same bytes meanwhile; keep the first, so that
        # callers always share one object per key.
        existing = _cache.get(digest)
        if existing is not None:
            return existing
        _cache[digest] = compiled
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return compiled


# Input and output files -------------------------------------------------------------------------

# Outputs handed to callers, so that one passed on to the next transform goes by path.
_outputs: weakref.WeakSet[Any] = weakref.WeakSet()


def _copy_stream(source: BinaryIO, sink: BinaryIO, limit: int, timeout: float) -> None:
    """Copy `source` to `sink`, failing once more than `limit` bytes arrive or after `timeout` s.

    The copy runs in a helper thread, so a stalled stream (a partner upload that hangs) is under
    the bound too; on a timeout that thread ends at the stream's next read, when its write to the
    closed sink fails. A read error keeps its type (a storage blip stays transient).
    """
    failure: list[BaseException] = []

    def copy() -> None:
        try:
            count = 0
            while True:
                chunk = source.read(min(_COPY_CHUNK, limit - count + 1))
                if not chunk:
                    return
                count += len(chunk)
                if count > limit:
                    raise FormatError(f"the XML input is larger than {limit} bytes")
                sink.write(chunk)
        except BaseException as exc:  # handed to the waiting caller
            failure.append(exc)

    thread = threading.Thread(target=copy, name="xslt-input", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise FormatError(f"the transform ran longer than {timeout:g} s (its input was still arriving)")
    if failure:
        raise failure[0]


@contextlib.contextmanager
def _staged_input(source: Any, tmpdir: str, max_input_bytes: int, timeout: float):
    """The path of a file holding the input, for the worker; removed afterwards unless the caller's."""
    if source in _outputs and source.tell() == 0:
        size = os.fstat(source.fileno()).st_size
        if size > max_input_bytes:
            raise FormatError(f"the XML input is larger than {max_input_bytes} bytes")
        yield source.name
        return
    fd, path = tempfile.mkstemp(dir=tmpdir, prefix="in-", suffix=".xml")
    try:
        with os.fdopen(fd, "wb") as sink:
            if isinstance(source, bytes | bytearray | memoryview):
                if len(source) > max_input_bytes:
                    raise FormatError(f"the XML input is larger than {max_input_bytes} bytes")
                sink.write(source)
            else:
                _copy_stream(source, sink, max_input_bytes, timeout)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def apply_transform_to_stream(
    compiled: CompiledTransform,
    input_data: bytes | BinaryIO,
    *,
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    timeout_seconds: float | None = None,
    max_output_bytes: int | None = None,
    max_memory_bytes: int | None = None,
) -> BinaryIO:
    """Transform the input in a worker; return the serialized result as a temporary file at offset 0.

    Closing the file deletes it. Limits left as None come from the settings (XSLT_TIMEOUT_SECONDS,
    XSLT_MAX_OUTPUT_MB, XSLT_MEMORY_MB). Raises FormatError for bad input, a failing stylesheet
    (including xsl:message terminate="yes", whose text is in the message), any blocked access, or a
    bound reached; a failing input stream's own error passes through unchanged.
    """
    timeout, output_cap, memory = _limits(timeout_seconds, max_output_bytes, max_memory_bytes)
    pool = _get_pool()
    began = time.monotonic()
    with _staged_input(input_data, pool.tmpdir, max_input_bytes, timeout) as in_path:
        out = tempfile.NamedTemporaryFile(dir=pool.tmpdir, prefix="out-", suffix=".xml")  # noqa: SIM115
        try:
            job = {"kind": "transform", "digest": compiled.digest, "payload": None, "in_path": in_path}
            job.update(out_path=out.name, max_depth=max_depth, max_output_bytes=output_cap)
            job.update(memory_bytes=memory, cpu_seconds=math.ceil(timeout))
            budget = timeout - (time.monotonic() - began)  # what the input copy left
            reply = _run_job(
                job, compiled, budget, f"the transform ran longer than {timeout:g} s", "the transform"
            )
            if not reply["ok"]:
                _raise_for(reply)
        except BaseException:
            out.close()
            raise
    out.seek(0)
    _outputs.add(out)
    return out  # type: ignore[return-value]


def apply_transform(
    compiled: CompiledTransform,
    input_data: bytes | BinaryIO,
    *,
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    timeout_seconds: float | None = None,
    max_output_bytes: int | None = None,
    max_memory_bytes: int | None = None,
) -> bytes:
    """As `apply_transform_to_stream`, with the result read into bytes (for small results)."""
    with apply_transform_to_stream(
        compiled,
        input_data,
        max_input_bytes=max_input_bytes,
        max_depth=max_depth,
        timeout_seconds=timeout_seconds,
        max_output_bytes=max_output_bytes,
        max_memory_bytes=max_memory_bytes,
    ) as out:
        return out.read()
