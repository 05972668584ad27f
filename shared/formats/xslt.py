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
- sizes and depth of the input are bounded while it is parsed, stylesheets by size;
- the transform runs in a worker thread and the caller stops waiting after `timeout_seconds`.

Limitation: Python cannot kill a thread and libxslt has no cancellation hook, so a timed-out
transform keeps its thread (and a CPU) busy until it finishes or the process is recycled. lxml
releases the GIL while libxslt runs, so other work continues; `runaway_transforms()` reports how
many such threads are still running so a worker can stop taking XSLT work or restart. A subprocess
could be killed, but costs too much per file for the throughput target. Memory used by a
transform's output is bounded only after the fact (`max_output_bytes`).
"""

from __future__ import annotations

import hashlib
import io
import queue
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import BinaryIO

from lxml import etree

from shared.errors import FormatError

MAX_STYLESHEET_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_INPUT_BYTES = 512 * 1024 * 1024
DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024 * 1024
# D365 documents are three levels deep (Document/ENTITY/FIELD); partner XML is rarely beyond 20.
DEFAULT_MAX_DEPTH = 100
DEFAULT_TIMEOUT_SECONDS = 300.0
_CACHE_SIZE = 64
# With an authority ("//resources"), libxslt classes these URLs as network reads; without one it
# would class them as local files. Network-class is the one we can open for resources while
# keeping file reads shut.
_RESOURCE_BASE = "xsltres://resources/"
_MAIN_URL = _RESOURCE_BASE + "__stylesheet__.xsl"
_READ_CHUNK = 64 * 1024


def _parser() -> etree.XMLParser:
    # Local on purpose (the shared xml_safety module is another engineer's); one parser per call
    # because lxml parsers must not be shared between threads.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
    )


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
    """A compiled, hardened stylesheet. Safe to share: each call checks out its own XSLT object."""

    digest: str
    _stylesheet: etree._ElementTree = field(repr=False)
    _access: etree.XSLTAccessControl = field(repr=False)
    _pool: queue.SimpleQueue = field(default_factory=queue.SimpleQueue, repr=False)
    _compile_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _checkout(self) -> etree.XSLT:
        # lxml allows using an XSLT object from several threads, but its error_log is per object;
        # one object per concurrent call keeps each call's errors its own.
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            pass
        # Compiling reads the shared stylesheet document; one compile at a time keeps libxml2
        # from walking it from two threads at once. It only happens when every copy is busy.
        with self._compile_lock:
            return etree.XSLT(self._stylesheet, access_control=self._access)

    def _checkin(self, xslt: etree.XSLT) -> None:
        self._pool.put(xslt)


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
    compiled._checkin(xslt)
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

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # lxml calls read(n)
        if size is None or size < 0:
            size = _READ_CHUNK
        data = self._source.read(min(size, self._limit - self._count + 1))
        self._count += len(data)
        if self._count > self._limit:
            raise FormatError(f"the XML input is larger than {self._limit} bytes")
        return data


def _parse_input(source: BinaryIO, *, max_input_bytes: int, max_depth: int) -> etree._ElementTree:
    depth = 0
    root = None
    try:
        events = etree.iterparse(
            _LimitedInput(source, max_input_bytes),
            events=("start", "end"),
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
        )
        for event, element in events:
            if event == "start":
                if root is None:
                    root = element
                    # The DOCTYPE precedes the root element, so the check happens before any
                    # entity reference in the content is even parsed.
                    _check_no_dtd(element.getroottree(), "the XML input")
                depth += 1
                if depth > max_depth:
                    raise FormatError(f"the XML input is nested deeper than {max_depth} levels")
            else:
                depth -= 1
    except etree.XMLSyntaxError as exc:
        raise FormatError(f"the XML input is not well-formed: {exc}") from None
    if root is None:  # pragma: no cover - iterparse raises on an empty document
        raise FormatError("the XML input is empty")
    return root.getroottree()


@dataclass
class _Outcome:
    result: bytes | None = None
    error: BaseException | None = None


_runaway_lock = threading.Lock()
_runaway: set[threading.Thread] = set()


def runaway_transforms() -> int:
    """How many timed-out transforms are still running in the background."""
    with _runaway_lock:
        for t in [t for t in _runaway if not t.is_alive()]:
            _runaway.discard(t)
        return len(_runaway)


def _run(
    compiled: CompiledTransform,
    source: BinaryIO,
    outcome: _Outcome,
    *,
    max_input_bytes: int,
    max_depth: int,
    max_output_bytes: int,
) -> None:
    try:
        doc = _parse_input(source, max_input_bytes=max_input_bytes, max_depth=max_depth)
        xslt = compiled._checkout()
        try:
            result = xslt(doc)
        except FormatError:
            raise
        except (etree.LxmlError, ValueError, TypeError) as exc:
            # XSLTApplyError carries only the last message; the log has the rest (xsl:message).
            raise FormatError(f"the XSLT failed: {_error_text(exc, xslt.error_log)}") from None
        finally:
            # A failed run leaves the object reusable; the next call clears its error log.
            compiled._checkin(xslt)
        output = bytes(result)
        if len(output) > max_output_bytes:
            raise FormatError(f"the XSLT produced more than {max_output_bytes} bytes")
        outcome.result = output
    except BaseException as exc:  # handed to the waiting caller
        outcome.error = exc


def apply_transform(
    compiled: CompiledTransform,
    input_data: bytes | BinaryIO,
    *,
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
) -> bytes:
    """Parse the input (hardened, limited) and transform it; return the serialized result.

    Raises FormatError for bad input, a failing stylesheet (including xsl:message
    terminate="yes", whose text is in the message), any blocked access, or a timeout.
    """
    source: BinaryIO = io.BytesIO(input_data) if isinstance(input_data, bytes | bytearray) else input_data  # type: ignore[arg-type]
    outcome = _Outcome()
    worker = threading.Thread(
        target=_run,
        args=(compiled, source, outcome),
        kwargs={
            "max_input_bytes": max_input_bytes,
            "max_depth": max_depth,
            "max_output_bytes": max_output_bytes,
        },
        name="xslt-transform",
        daemon=True,  # a runaway transform must not keep the process from exiting
    )
    worker.start()
    worker.join(timeout_seconds)
    if worker.is_alive():
        with _runaway_lock:
            _runaway.add(worker)
        raise FormatError(f"the XSLT did not finish within {timeout_seconds:g} seconds")
    if outcome.error is not None:
        if isinstance(outcome.error, FormatError):
            raise outcome.error
        raise FormatError(f"the XSLT failed: {outcome.error}") from outcome.error
    assert outcome.result is not None
    return outcome.result
