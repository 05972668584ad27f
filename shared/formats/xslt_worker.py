"""The XSLT worker process: compiles and runs partner stylesheets under address-space and CPU limits.

Only `shared.formats.xslt` starts it (a small pool of processes, multiprocessing 'forkserver'); the
app never runs a stylesheet in its own process. The parent owns the time bound (it SIGKILLs a worker
that overruns and starts another); this process owns the bounds the kernel enforces on it:

- RLIMIT_AS (address space) is set to the job's memory limit while a job runs, so a memory bomb
  fails its own allocations instead of growing the host. libxml2/libxslt report a failed malloc
  inconsistently (a string-doubling bomb surfaces as "Undefined variable"), so a failure is
  reported as the memory limit when it came with a MemoryError, a memory message, or errno ENOMEM
  (cleared before the job, read as the failure surfaces: a failed malloc or mmap sets it, see
  `run_stylesheet` and `_memory_exhausted`); the worker
  then exits so the next job gets a clean heap. When even lxml's error log cannot allocate, the worker exits at
  once with EXIT_OUT_OF_MEMORY (libxslt would otherwise log a failure per remaining node for
  minutes). Address space counts the interpreter and lxml (about 30 MB).
- RLIMIT_CPU is set per job to the CPU seconds used so far plus the job's budget: a backstop
  (SIGXCPU ends the process) should the parent not kill it at the wall-clock bound.
- PR_SET_PDEATHSIG: the worker dies with its parent (the forkserver, which exits with the app).
- stdout and stderr go to /dev/null: after a failed malloc, libxslt keeps going and lxml can
  report millions of "Exception ignored" lines, which would flood the host's log.

Protocol (multiprocessing Connection, pickled dicts): the parent sends
  {"kind": "compile"|"transform", "digest", "payload": (xslt_bytes, resources, exslt_regexp) | None,
   "in_path", "out_path", "max_depth", "max_output_bytes", "memory_bytes", "cpu_seconds"}
and gets {"ok", "need", "error": "format"|"os"|None, "message", "size", "compiled", "recycle"}.
`need` asks for the payload of a stylesheet this process has not compiled (each process compiles a
stylesheet once and keeps the 64 most recent). `None` ends the loop.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import functools
import os
import resource
import sys
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from lxml import etree

from shared.errors import FormatError
from shared.formats.xml_safety import make_parser

# With an authority ("//resources"), libxslt classes these URLs as network reads; without one it
# would class them as local files. Network-class is the one we can open for resources while
# keeping file reads shut.
_RESOURCE_BASE = "xsltres://resources/"
_MAIN_URL = _RESOURCE_BASE + "__stylesheet__.xsl"
# The prolog (XML declaration, comments, DOCTYPE) is parsed in pieces this big until the root starts.
_PROLOG_CHUNK = 4 * 1024
# libxml2 refuses deeper documents unless huge_tree is set (a unit test pins this down); a
# max_depth at or above it needs no check of its own.
PARSER_MAX_DEPTH = 256
# lxml runs the EXSLT regular-expression functions with Python's `re`, holding the interpreter lock.
REGEXP_NS = "http://exslt.org/regular-expressions"
_CACHE_SIZE = 64
# Idle this long, the worker gives freed heap back to the system (back-to-back jobs keep it warm).
_TRIM_AFTER_IDLE_SECONDS = 2.0
# A worker whose address space ends a job above this share of the limit is not reused. Below it,
# the heap it kept (glibc keeps freed trees) is reused by the next job, warm.
_RECYCLE_SHARE = 0.9
# At most this many distinct libxslt messages go into a reason (a failing run can log millions).
_MAX_MESSAGES = 10
_MIB = 1024 * 1024
# The exit status of a worker that ran out of memory where it could not even report it (below).
EXIT_OUT_OF_MEMORY = 86


def _error_text(exc: BaseException, log: object | None = None) -> str:
    parts = [str(exc).strip()] if str(exc).strip() else []
    if log is not None:
        for entry in log:  # type: ignore[attr-defined]
            message = getattr(entry, "message", str(entry)).strip()
            if message and message not in parts:
                parts.append(message)
                if len(parts) >= _MAX_MESSAGES:
                    break
    return "; ".join(parts) or type(exc).__name__


def _uses_regexp(tree: etree._ElementTree) -> bool:
    # Any binding of the namespace, however spelled in the source (character references included).
    return bool(tree.xpath("boolean(//namespace::*[. = $ns])", ns=REGEXP_NS))


_REGEXP_REFUSED = (
    f"the XSLT uses EXSLT regular expressions ({REGEXP_NS}), which are not allowed "
    "(D365's XSLT processor has none either)"
)


class _ResourceResolver(etree.Resolver):
    """Serves the transform's own resources and refuses every other URL.

    Returning None would let lxml fall back to its default loader (which reads files), so an
    unknown URL raises instead; lxml propagates the exception out of the compile or transform.
    While compiling, a served resource is an xsl:include or xsl:import, and is refused if it binds
    the EXSLT regular-expressions namespace (unless those are allowed).
    """

    def __init__(self, resources: Mapping[str, bytes], *, allow_regexp: bool) -> None:
        super().__init__()
        self._exact = dict(resources)
        self._folded = {name.casefold(): data for name, data in resources.items()}
        self._allow_regexp = allow_regexp
        self.compiling = True

    def resolve(self, system_url, public_id, context):  # type: ignore[override]
        url = system_url or ""
        if url.startswith(_RESOURCE_BASE):
            name = url[len(_RESOURCE_BASE) :]
            data = self._exact.get(name)
            if data is None:
                data = self._folded.get(name.casefold())
            if data is not None:
                if self.compiling and not self._allow_regexp:
                    with contextlib.suppress(etree.XMLSyntaxError):  # libxslt reports it itself
                        if _uses_regexp(etree.fromstring(data, make_parser()).getroottree()):
                            raise FormatError(_REGEXP_REFUSED)
                return self.resolve_string(data, context, base_url=url)
            raise FormatError(f"the XSLT refers to '{name}', which is not one of its resources")
        raise FormatError(f"the XSLT tries to load '{url}'; only the transform's own resources may be loaded")


def _check_no_dtd(tree: etree._ElementTree, what: str) -> None:
    if tree.docinfo.doctype:
        raise FormatError(f"{what} contains a DTD (<!DOCTYPE>); DTDs are not allowed")


def compile_stylesheet(xslt_bytes: bytes, resources: Mapping[str, bytes], exslt_regexp: bool) -> etree.XSLT:
    """A hardened XSLT object; raise FormatError with the reason it does not compile."""
    # IDs stay collected so that a stylesheet's id() works on the input, as with plain lxml.
    parser = make_parser(collect_ids=True)
    resolver = _ResourceResolver(resources, allow_regexp=exslt_regexp)
    parser.resolvers.add(resolver)
    try:
        # The private base URL makes relative hrefs resolve to xsltres://resources/name, which the resolver
        # recognises; absolute ones (file:, http:) arrive unchanged and are refused.
        root = etree.fromstring(xslt_bytes, parser, base_url=_MAIN_URL)
    except etree.XMLSyntaxError as exc:
        raise FormatError(f"the XSLT is not well-formed XML: {exc}") from None
    tree = root.getroottree()
    _check_no_dtd(tree, "the XSLT")
    if not exslt_regexp and _uses_regexp(tree):
        raise FormatError(_REGEXP_REFUSED)
    access = etree.XSLTAccessControl(
        read_file=False,
        write_file=False,
        create_dir=False,
        read_network=bool(resources),
        write_network=False,
    )
    try:
        # regexp=False: lxml does not even register the re: functions.
        xslt = etree.XSLT(tree, access_control=access, regexp=exslt_regexp)
    except FormatError:
        raise
    except etree.XSLTParseError as exc:
        raise FormatError(f"the XSLT does not compile: {_error_text(exc, exc.error_log)}") from None
    except (etree.LxmlError, ValueError, TypeError) as exc:
        raise FormatError(f"the XSLT does not compile: {_error_text(exc)}") from None
    finally:
        resolver.compiling = False
    # libxslt logs some compilation errors (an unknown xsl: instruction) yet returns a
    # stylesheet that then silently does less than its author meant: refuse those too.
    errors = [e.message for e in xslt.error_log if e.level >= etree.ErrorLevels.ERROR]
    if errors:
        raise FormatError(f"the XSLT does not compile: {'; '.join(dict.fromkeys(errors))}")
    return xslt


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


def parse_input(data: bytes, *, max_depth: int) -> etree._ElementTree:
    """Parse the input document (hardened: no DTD, depth bounded); raise FormatError.

    From bytes, never from a file name: libxml2 would inflate a gzip file it is given by name.
    """
    try:
        offsets = iter(range(0, len(data), _PROLOG_CHUNK))

        def piece() -> bytes:
            i = next(offsets, None)
            return b"" if i is None else data[i : i + _PROLOG_CHUNK]

        _refuse_dtd(piece)
        # One parser per call: lxml parsers must not be shared between threads.
        tree = etree.fromstring(data, make_parser(collect_ids=True)).getroottree()
    except etree.XMLSyntaxError as exc:
        if "Excessive depth" in str(exc):  # libxml2's own limit
            raise FormatError(
                f"the XML input is nested deeper than {min(max_depth, PARSER_MAX_DEPTH)} levels"
            ) from None
        raise FormatError(f"the XML input is not well-formed: {exc}") from None
    _check_no_dtd(tree, "the XML input")  # already refused above; kept as a second lock
    if max_depth < PARSER_MAX_DEPTH and tree.xpath(_depth_probe(max_depth)):
        raise FormatError(f"the XML input is nested deeper than {max_depth} levels")
    return tree


class OutOfMemory(MemoryError):
    """A failure that came with errno ENOMEM: some allocation hit the address-space limit."""


def run_stylesheet(xslt: etree.XSLT, doc: etree._ElementTree, *, errno_now: Callable[[], int] = int) -> Any:
    """The result tree; raise FormatError when the stylesheet fails (xsl:message terminate included),
    OutOfMemory when it failed with errno at ENOMEM (`errno_now` reads it, cleared beforehand)."""
    try:
        return xslt(doc)
    except FormatError:
        raise
    except (etree.LxmlError, ValueError, TypeError) as exc:
        if errno_now() == errno.ENOMEM:  # read first: building the reason makes more C calls
            raise OutOfMemory() from None
        # XSLTApplyError carries only the last message; the log has the rest (xsl:message).
        # A failed run leaves the object reusable; the next call clears its error log.
        raise FormatError(f"the XSLT failed: {_error_text(exc, xslt.error_log)}") from None


def size_text(n: int) -> str:
    return f"{n // _MIB} MB" if n >= _MIB and n % _MIB == 0 else f"{n} bytes"


# The process ------------------------------------------------------------------------------------


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name or "libc.so.6", use_errno=True)
    except OSError:
        return None


_PR_SET_PDEATHSIG = 1
_SIGKILL = 9


def _status_kb(*keys: str) -> dict[str, int]:
    """Fields of /proc/self/status, in kB (Linux); empty where it cannot be read."""
    found: dict[str, int] = {}
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in keys:
                found[key] = int(rest.split()[0])
    return found


class _Errno:
    """The calling thread's C errno (glibc's __errno_location); ctypes.get_errno() is only a copy."""

    def __init__(self, libc: ctypes.CDLL | None) -> None:
        self._ptr = None
        if libc is not None:
            with contextlib.suppress(AttributeError):
                locate = getattr(libc, "__errno_location")  # noqa: B009 (a literal would be name-mangled)
                locate.restype = ctypes.POINTER(ctypes.c_int)
                self._ptr = locate()  # the main thread's, where jobs run

    def clear(self) -> None:
        if self._ptr is not None:
            self._ptr[0] = 0

    def get(self) -> int:
        return self._ptr[0] if self._ptr is not None else 0


class _Process:
    """The worker's own state: its limits, its compiled stylesheets and what went wrong in a job."""

    def __init__(self) -> None:
        self.libc = _libc()
        self.errno = _Errno(self.libc)
        self.cache: OrderedDict[str, etree.XSLT] = OrderedDict()
        self.as_hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        self.cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)[1]

    def harden(self) -> None:
        if self.libc is not None:
            self.libc.prctl(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)
        if os.getppid() == 1:  # the parent went before prctl took effect
            os._exit(0)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.close(devnull)

        def unraisable(info: Any) -> None:
            # lxml's error log failing to allocate: libxslt goes on after a failed malloc and logs an
            # error for every node still to come, each failing again, for minutes. Stop here.
            if isinstance(info.exc_value, MemoryError):
                os._exit(EXIT_OUT_OF_MEMORY)

        sys.unraisablehook = unraisable

    def limit(self, memory_bytes: int, cpu_seconds: int) -> None:
        hard = self.as_hard
        soft = memory_bytes if hard == resource.RLIM_INFINITY else min(memory_bytes, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = int(usage.ru_utime + usage.ru_stime) + cpu_seconds + 1
        if self.cpu_hard != resource.RLIM_INFINITY:
            cpu = min(cpu, self.cpu_hard)
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, self.cpu_hard))

    def unlimit(self) -> None:
        resource.setrlimit(resource.RLIMIT_AS, (self.as_hard, self.as_hard))
        resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_hard, self.cpu_hard))

    def trim(self) -> None:
        if self.libc is not None:
            with contextlib.suppress(AttributeError):
                self.libc.malloc_trim(0)

    def stylesheet(self, job: dict) -> tuple[etree.XSLT | None, bool]:
        """This process's XSLT object for the job's digest (compiled now if need be), and whether it
        was compiled now; (None, False) when the payload is needed."""
        digest = job["digest"]
        xslt = self.cache.get(digest)
        if xslt is not None:
            self.cache.move_to_end(digest)
            return xslt, False
        if job.get("payload") is None:
            return None, False
        xslt_bytes, resources, exslt_regexp = job["payload"]
        xslt = compile_stylesheet(xslt_bytes, resources or {}, exslt_regexp)
        self.cache[digest] = xslt
        while len(self.cache) > _CACHE_SIZE:
            self.cache.popitem(last=False)
        return xslt, True


def _read_input(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _write_output(path: str, result: Any, max_output_bytes: int) -> int:
    # The result's own buffer (xsltSaveResultToString, as bytes(result) gives): no second copy, and
    # the same bytes as raw lxml. write_output() would stream, but fails without an xsl:output encoding.
    view = memoryview(result)
    size = view.nbytes
    if size > max_output_bytes:
        raise FormatError(f"the transform's output is larger than {size_text(max_output_bytes)}")
    with open(path, "wb") as f:
        f.write(view)
    view.release()
    return size


def _memory_exhausted(state: _Process, error: BaseException) -> bool:
    if isinstance(error, MemoryError) or state.errno.get() == errno.ENOMEM:  # the latter: compiling
        return True
    text = str(error).lower()
    return "memory allocation failed" in text or "out of memory" in text


def _handle(state: _Process, job: dict) -> dict:
    reply: dict[str, Any] = {"ok": False, "need": False, "error": None, "message": "", "size": 0}
    reply.update(compiled=False, recycle=False)
    compiling = job["kind"] == "compile"
    state.limit(job["memory_bytes"], job["cpu_seconds"])
    state.errno.clear()
    try:
        xslt, reply["compiled"] = state.stylesheet(job)
        if xslt is None:
            reply["need"] = True
            return reply
        if not compiling:
            doc = parse_input(_read_input(job["in_path"]), max_depth=job["max_depth"])
            result = run_stylesheet(xslt, doc, errno_now=state.errno.get)
            del doc
            reply["size"] = _write_output(job["out_path"], result, job["max_output_bytes"])
            del result
        reply["ok"] = True
    except (FormatError, MemoryError) as exc:
        reply["error"] = "format"
        if _memory_exhausted(state, exc):
            limit = size_text(job["memory_bytes"])
            reply["message"] = (
                f"the XSLT does not compile: it exceeded its memory limit of {limit}"
                if compiling
                else f"the transform exceeded its memory limit of {limit}"
            )
            reply["recycle"] = True  # libxml2 after a failed malloc: start the next job afresh
        else:
            reply["message"] = str(exc)
    except OSError as exc:  # the temporary files (disk full): not the partner's fault
        reply["error"] = "os"
        reply["message"] = f"the XSLT worker could not use its files: {exc}"
    except Exception as exc:  # a fault of this module, not of the stylesheet: said as it is
        reply["error"] = "internal"
        reply["message"] = f"the XSLT worker failed: {type(exc).__name__}: {exc}"
        reply["recycle"] = True
    finally:
        state.unlimit()
    vm_kb = _status_kb("VmSize").get("VmSize", 0)
    if vm_kb * 1024 > job["memory_bytes"] * _RECYCLE_SHARE:
        reply["recycle"] = True
    return reply


def serve(conn: Any) -> None:
    """The worker's loop: one job at a time until the parent sends None or goes away."""
    state = _Process()
    state.harden()
    while True:
        if not conn.poll(_TRIM_AFTER_IDLE_SECONDS):
            state.trim()
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        reply = _handle(state, job)
        conn.send(reply)
        if reply["recycle"]:
            return
