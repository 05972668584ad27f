"""Run partner-supplied XSLT 1.0 (lxml) without giving it the file system, the network or unbounded time.

Jobs and data packages may carry XSLT that reshapes inbound XML into D365's
`<Document><ENTITY><FIELD>` shape. A stylesheet is untrusted code, so:

- the stylesheet and the input are parsed with DTDs refused and no entity or network loading;
- xsl:include, xsl:import and document() reach only the transform's own resources, through a
  resolver that serves those names and refuses everything else (it never defers to the default
  loaders, which would read files);
- libxslt's access control denies file and network reads, all writes and directory creation.
  Exception: when resources are given, network-class reads are switched on so that document()
  can reach them under their private `xsltres://resources/` URLs; the resolver is then the only
  gate and it serves nothing but those resources. file:// stays denied either way;
- the input's size is bounded while it is read (bytes are checked up front); a DOCTYPE is refused
  after parsing only the prolog, so the body of a document with a DTD is never parsed; the body is
  parsed in C (no Python per element). Depth: libxml2 itself refuses more than 256 levels (no
  huge_tree), and `max_depth` below that is checked right after the parse by one XPath walk in C,
  before the transform sees the tree. Stylesheets are bounded by size;
- the input is parsed, transformed and serialized in one pooled worker thread, and the caller
  stops waiting after `timeout_seconds` (None: all of it runs in the caller's thread, unbounded).
  Worker threads are reused, not started per call, so a stalled input stream is bounded too.

Throughput (bench/bench_xslt.py): on par with raw lxml. Two things used to cost about 20%:
parsing in the caller's thread and transforming in another (the result tree was built in a second
malloc arena and the input freed across arenas), and running an XSLT object compiled in another
thread (lxml then re-interns every name of the result tree; see CompiledTransform). Now the whole
call runs in one reused thread, with an XSLT object compiled in that thread.

Limitation: Python cannot kill a thread and libxslt has no cancellation hook, so a timed-out
transform keeps its thread (and a CPU) busy until it finishes or the process is recycled. lxml
releases the GIL while libxslt runs, so other work continues; `runaway_transforms()` reports how
many such threads are still running so a worker can stop taking XSLT work or restart (a thread
rejoins the pool once its transform ends). A subprocess could be killed, but it starts with a
cold heap: page faults alone cost about 25% of a 50 MB transform. Memory used by a transform's
output is bounded only after the fact (`max_output_bytes`).
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO, TypeVar

from lxml import etree

from shared.errors import FormatError
from shared.formats.xml_safety import make_parser

MAX_STYLESHEET_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_INPUT_BYTES = 512 * 1024 * 1024
DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024 * 1024
DEFAULT_TIMEOUT_SECONDS = 300.0
_CACHE_SIZE = 64
# With an authority ("//resources"), libxslt classes these URLs as network reads; without one it
# would class them as local files. Network-class is the one we can open for resources while
# keeping file reads shut.
_RESOURCE_BASE = "xsltres://resources/"
_MAIN_URL = _RESOURCE_BASE + "__stylesheet__.xsl"
_READ_CHUNK = 64 * 1024
# The prolog (XML declaration, comments, DOCTYPE) is parsed in pieces this big until the root starts.
_PROLOG_CHUNK = 4 * 1024
# libxml2 refuses deeper documents unless huge_tree is set (a unit test pins this down); a
# max_depth at or above it needs no check of its own.
_PARSER_MAX_DEPTH = 256
# The default is that cap: it bounds libxslt's recursion over the input like any lower one would,
# and a lower limit costs a walk over the whole tree (about 5% of a transform). Callers that want
# a tighter shape check pass max_depth.
DEFAULT_MAX_DEPTH = _PARSER_MAX_DEPTH
# Idle worker threads kept for reuse; more may run at once, the extra ones end when done.
_MAX_IDLE_WORKERS = 8


def _parser() -> etree.XMLParser:
    # One parser per call: lxml parsers must not be shared between threads. IDs stay collected so
    # that a stylesheet's id() works on the input, as with plain lxml.
    return make_parser(collect_ids=True)


def _error_text(exc: BaseException, log: object | None = None) -> str:
    parts = [str(exc).strip()] if str(exc).strip() else []
    if log is not None:
        for entry in log:  # type: ignore[attr-defined]
            message = getattr(entry, "message", str(entry)).strip()
            if message and message not in parts:
                parts.append(message)
    return "; ".join(parts) or type(exc).__name__


class _ResourceResolver(etree.Resolver):
    """Serves the transform's own resources and refuses every other URL.

    Returning None would let lxml fall back to its default loader (which reads files), so an
    unknown URL raises instead; lxml propagates the exception out of the compile or transform.
    """

    def __init__(self, resources: Mapping[str, bytes]) -> None:
        super().__init__()
        self._exact = dict(resources)
        self._folded = {name.casefold(): data for name, data in resources.items()}

    def resolve(self, system_url, public_id, context):  # type: ignore[override]
        url = system_url or ""
        if url.startswith(_RESOURCE_BASE):
            name = url[len(_RESOURCE_BASE) :]
            data = self._exact.get(name)
            if data is None:
                data = self._folded.get(name.casefold())
            if data is not None:
                return self.resolve_string(data, context, base_url=url)
            raise FormatError(f"the XSLT refers to '{name}', which is not one of its resources")
        raise FormatError(f"the XSLT tries to load '{url}'; only the transform's own resources may be loaded")


def _check_no_dtd(tree: etree._ElementTree, what: str) -> None:
    if tree.docinfo.doctype:
        raise FormatError(f"{what} contains a DTD (<!DOCTYPE>); DTDs are not allowed")


@dataclass(eq=False)
class CompiledTransform:
    """A compiled, hardened stylesheet. Safe to share: each thread runs its own XSLT object."""

    digest: str
    _stylesheet: etree._ElementTree = field(repr=False)
    _access: etree.XSLTAccessControl = field(repr=False)
    _per_thread: threading.local = field(default_factory=threading.local, repr=False)
    _compile_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _for_this_thread(self) -> etree.XSLT:
        """This thread's XSLT object, compiled here on first use.

        lxml gives each thread its own string dictionary and copies the stylesheet into the
        compiling thread's one. A result tree built with another thread's stylesheet has all its
        names re-interned afterwards (two walks over the whole result, about 7% of a transform);
        an object compiled in the running thread needs none. Its error_log is then also this
        thread's alone.
        """
        xslt = getattr(self._per_thread, "xslt", None)
        if xslt is None:
            # Compiling reads the shared stylesheet document; one compile at a time keeps libxml2
            # from walking it from two threads at once.
            with self._compile_lock:
                xslt = etree.XSLT(self._stylesheet, access_control=self._access)
            self._per_thread.xslt = xslt
        return xslt


_cache: OrderedDict[str, CompiledTransform] = OrderedDict()
_cache_lock = threading.Lock()


def _digest(xslt_bytes: bytes, resources: Mapping[str, bytes] | None) -> str:
    h = hashlib.sha256()
    h.update(hashlib.sha256(xslt_bytes).digest())
    for name in sorted(resources or {}):
        h.update(name.encode("utf-8") + b"\x00")
        h.update(hashlib.sha256(resources[name]).digest())  # type: ignore[index]
    return h.hexdigest()


def compile_transform(
    xslt_bytes: bytes,
    *,
    resources: Mapping[str, bytes] | None = None,
    max_stylesheet_bytes: int = MAX_STYLESHEET_BYTES,
) -> CompiledTransform:
    """Compile (or fetch from the cache) a hardened XSLT 1.0 transform; raise FormatError.

    `resources` maps names, as the stylesheet refers to them (href="common.xsl",
    document('codes.xml')), to their bytes. The cache key covers the stylesheet and resources.
    """
    if len(xslt_bytes) > max_stylesheet_bytes:
        raise FormatError(f"the XSLT is {len(xslt_bytes)} bytes; the limit is {max_stylesheet_bytes}")
    for name, data in (resources or {}).items():
        if len(data) > max_stylesheet_bytes:
            raise FormatError(
                f"the XSLT resource '{name}' is {len(data)} bytes; the limit is {max_stylesheet_bytes}"
            )
    digest = _digest(xslt_bytes, resources)
    with _cache_lock:
        cached = _cache.get(digest)
        if cached is not None:
            _cache.move_to_end(digest)
            return cached

    parser = _parser()
    parser.resolvers.add(_ResourceResolver(resources or {}))
    try:
        # The private base URL makes relative hrefs resolve to xsltres://resources/name, which the resolver
        # recognises; absolute ones (file:, http:) arrive unchanged and are refused.
        root = etree.fromstring(xslt_bytes, parser, base_url=_MAIN_URL)
    except etree.XMLSyntaxError as exc:
        raise FormatError(f"the XSLT is not well-formed XML: {exc}") from None
    tree = root.getroottree()
    _check_no_dtd(tree, "the XSLT")
    access = etree.XSLTAccessControl(
        read_file=False,
        write_file=False,
        create_dir=False,
        read_network=bool(resources),
        write_network=False,
    )
    try:
        xslt = etree.XSLT(tree, access_control=access)
    except FormatError:
        raise
    except etree.XSLTParseError as exc:
        raise FormatError(f"the XSLT does not compile: {_error_text(exc, exc.error_log)}") from None
    except (etree.LxmlError, ValueError, TypeError) as exc:
        raise FormatError(f"the XSLT does not compile: {_error_text(exc)}") from None
    # libxslt logs some compilation errors (an unknown xsl: instruction) yet returns a
    # stylesheet that then silently does less than its author meant: refuse those too.
    errors = [e.message for e in xslt.error_log if e.level >= etree.ErrorLevels.ERROR]
    if errors:
        raise FormatError(f"the XSLT does not compile: {'; '.join(dict.fromkeys(errors))}")

    compiled = CompiledTransform(digest=digest, _stylesheet=tree, _access=access)
    compiled._per_thread.xslt = xslt
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


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


class _LimitedInput(io.RawIOBase):
    """Counts input bytes while lxml pulls them, so an oversized input fails early, not after loading."""

    def __init__(self, source: BinaryIO, limit: int) -> None:
        super().__init__()
        self._source = source
        self._limit = limit
        self._count = 0
        self._pending = b""

    def readable(self) -> bool:
        return True

    def unread(self, data: bytes) -> None:
        """Serve `data` (already read, and counted) again before the rest of the source."""
        self._pending = data + self._pending

    def read(self, size: int = -1) -> bytes:  # lxml calls read(n)
        if size is None or size < 0:
            size = _READ_CHUNK
        if self._pending:
            data, self._pending = self._pending[:size], self._pending[size:]
            return data
        data = self._source.read(min(size, self._limit - self._count + 1))
        self._count += len(data)
        if self._count > self._limit:
            raise FormatError(f"the XML input is larger than {self._limit} bytes")
        return data


class _PrologProbe:
    """Parser target that notes a DOCTYPE and the root's start; it builds nothing."""

    def __init__(self) -> None:
        self.saw_doctype = False
        self.saw_root = False

    # lxml's parser-target protocol; only doctype() and start() matter here.
    def doctype(self, name: object, pubid: object, system: object) -> None:
        self.saw_doctype = True

    def start(self, tag: object, attrib: object, nsmap: object = None) -> None:
        self.saw_root = True

    def end(self, tag: object) -> None:
        pass

    def data(self, data: object) -> None:
        pass

    def close(self) -> None:
        return None


def _refuse_dtd(read: Callable[[], bytes]) -> None:
    """Parse only the prolog, piece by piece, and refuse a DOCTYPE before the body is parsed.

    Stops as soon as the root element has started (the DOCTYPE can only precede it), so the body
    of a document with a DTD is never parsed, and a document without one has no entities but
    the five predefined ones for the full parse to meet. The DOCTYPE is noticed when it is read,
    so an error further on (such as an entity used in the root's own start tag) cannot hide it.
    """
    probe = _PrologProbe()
    parser = make_parser(target=probe)
    while not probe.saw_root:
        chunk = read()
        if not chunk:
            return  # no root element: the full parse reports the document as not well-formed
        try:
            parser.feed(chunk)
        except etree.XMLSyntaxError:
            if probe.saw_doctype:
                break
            raise
        if probe.saw_doctype:
            break
    if probe.saw_doctype:
        raise FormatError("the XML input contains a DTD (<!DOCTYPE>); DTDs are not allowed")


@functools.lru_cache(maxsize=16)
def _depth_probe(max_depth: int) -> str:
    # Child steps only: libxml2 walks each level once, in C (about 0.15 s for 1.2 million
    # elements), where `//*[ancestor::*[N]]` walks every element's ancestors (3x as long).
    return "boolean(" + "/*" * (max_depth + 1) + ")"


def _check_depth(tree: etree._ElementTree, max_depth: int) -> None:
    if max_depth >= _PARSER_MAX_DEPTH:
        return  # the parser has already refused anything deeper
    if tree.xpath(_depth_probe(max_depth)):
        raise FormatError(f"the XML input is nested deeper than {max_depth} levels")


def _parse_input(source: bytes | BinaryIO, *, max_input_bytes: int, max_depth: int) -> etree._ElementTree:
    try:
        if isinstance(source, bytes):
            if len(source) > max_input_bytes:
                raise FormatError(f"the XML input is larger than {max_input_bytes} bytes")
            data = source
            offsets = iter(range(0, len(data), _PROLOG_CHUNK))

            def piece() -> bytes:
                i = next(offsets, None)
                return b"" if i is None else data[i : i + _PROLOG_CHUNK]

            _refuse_dtd(piece)
            tree = etree.fromstring(data, _parser()).getroottree()
        else:
            limited = _LimitedInput(source, max_input_bytes)
            head: list[bytes] = []

            def read() -> bytes:
                head.append(limited.read(_PROLOG_CHUNK))
                return head[-1]

            _refuse_dtd(read)
            limited.unread(b"".join(head))
            tree = etree.parse(limited, _parser())
    except etree.XMLSyntaxError as exc:
        if "Excessive depth" in str(exc):  # libxml2's own limit
            raise FormatError(
                f"the XML input is nested deeper than {min(max_depth, _PARSER_MAX_DEPTH)} levels"
            ) from None
        raise FormatError(f"the XML input is not well-formed: {exc}") from None
    _check_no_dtd(tree, "the XML input")  # already refused above; kept as a second lock
    _check_depth(tree, max_depth)
    return tree


def _transform(compiled: CompiledTransform, doc: etree._ElementTree, *, max_output_bytes: int) -> bytes:
    """Transform the tree and serialize the result."""
    xslt = compiled._for_this_thread()
    try:
        result = xslt(doc)
    except FormatError:
        raise
    except (etree.LxmlError, ValueError, TypeError) as exc:
        # XSLTApplyError carries only the last message; the log has the rest (xsl:message).
        # A failed run leaves the object reusable; the next call clears its error log.
        raise FormatError(f"the XSLT failed: {_error_text(exc, xslt.error_log)}") from None
    except MemoryError:
        raise FormatError("the XSLT failed: its result did not fit in memory") from None
    output = bytes(result)
    if len(output) > max_output_bytes:
        raise FormatError(f"the XSLT produced more than {max_output_bytes} bytes")
    return output


# Worker threads --------------------------------------------------------------------------------

_T = TypeVar("_T")


class _Job:
    __slots__ = ("fn", "done", "result", "error")

    def __init__(self, fn: Callable[[], object]) -> None:
        self.fn: Callable[[], object] | None = fn
        self.done = threading.Event()
        self.result: object = None
        self.error: BaseException | None = None


class _Worker:
    """A daemon thread that runs jobs one at a time and then waits in the idle pool for the next."""

    def __init__(self) -> None:
        self.inbox: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        # Daemon: a runaway transform must not keep the process from exiting.
        self.thread = threading.Thread(target=self._loop, name="xslt-transform", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            job = self.inbox.get()
            try:
                assert job.fn is not None
                job.result = job.fn()
            except BaseException as exc:  # handed to the waiting caller
                job.error = exc
            job.fn = None
            with _pool_lock:
                job.done.set()  # under the lock: the caller decides "finished" or "runaway" atomically
                _runaway.discard(self)
                keep = len(_idle) < _MAX_IDLE_WORKERS
                if keep:
                    _idle.append(self)
            del job  # hold nothing (the output may be large) while idle
            if not keep:
                return


_pool_lock = threading.Lock()
_idle: list[_Worker] = []
_runaway: set[_Worker] = set()


def _forget_workers() -> None:
    # A forked child has none of the parent's threads; queueing work to them would hang.
    global _pool_lock
    _pool_lock = threading.Lock()
    _idle.clear()
    _runaway.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers)


def runaway_transforms() -> int:
    """How many timed-out transforms are still running in the background."""
    with _pool_lock:
        return len(_runaway)


def _run_bounded(fn: Callable[[], _T], timeout_seconds: float) -> _T:
    """Run fn in a pooled worker thread; raise FormatError if it has not finished in time."""
    with _pool_lock:
        worker = _idle.pop() if _idle else None
    if worker is None:
        worker = _Worker()
    job = _Job(fn)
    worker.inbox.put(job)
    if not job.done.wait(timeout_seconds):
        with _pool_lock:
            if not job.done.is_set():
                _runaway.add(worker)
                raise FormatError(f"the XSLT did not finish within {timeout_seconds:g} seconds")
    if job.error is not None:
        # As raised in the worker: a stylesheet or input fault is already a FormatError, and
        # anything else (a storage stream failing mid-read) keeps its type, so transient stays transient.
        error, job.error = job.error, None
        raise error
    return job.result  # type: ignore[return-value]


def apply_transform(
    compiled: CompiledTransform,
    input_data: bytes | BinaryIO,
    *,
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    timeout_seconds: float | None = DEFAULT_TIMEOUT_SECONDS,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
) -> bytes:
    """Parse the input (hardened, limited) and transform it; return the serialized result.

    Raises FormatError for bad input, a failing stylesheet (including xsl:message
    terminate="yes", whose text is in the message), any blocked access, or a timeout.

    The parse, the stylesheet (untrusted code that can run for ever) and the serialization run in
    one pooled worker thread that the caller waits for at most `timeout_seconds` (None: in the
    caller's thread, unbounded). One thread for all three keeps the input and result trees in
    one warm malloc arena, with an XSLT object compiled in that thread (see the module docstring).
    """
    source: bytes | BinaryIO = bytes(input_data) if isinstance(input_data, bytearray) else input_data

    def run() -> bytes:
        doc = _parse_input(source, max_input_bytes=max_input_bytes, max_depth=max_depth)
        return _transform(compiled, doc, max_output_bytes=max_output_bytes)

    if timeout_seconds is None:
        return run()
    return _run_bounded(run, timeout_seconds)
