"""XSLT bounds that hold for real: the stylesheet runs in a worker process that is killed at the time
bound, fails at its address-space limit, and whose output is capped; the app's process is untouched.

Workers are started by `shared.formats.xslt` (multiprocessing 'forkserver'); these tests look at them
with psutil (process IDs, resident memory) and never assert timings.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import psutil
import pytest
from lxml import etree

from shared.errors import FormatError
from shared.formats import xslt
from shared.formats.xslt import (
    apply_transform,
    apply_transform_to_stream,
    clear_cache,
    compile_transform,
    shutdown_pool,
    worker_pids,
)

XSL_NS = 'xmlns:xsl="http://www.w3.org/1999/XSL/Transform"'
RE_NS = "http://exslt.org/regular-expressions"


def _xsl(body: str, extra: str = "") -> bytes:
    return f'<xsl:stylesheet version="1.0" {XSL_NS} {extra}>{body}</xsl:stylesheet>'.encode()


TO_D365 = _xsl(
    """<xsl:template match="/groups"><Document><xsl:for-each select="group">
         <CUSTCUSTOMERGROUPENTITY><CUSTOMERGROUPID><xsl:value-of select="@id"/></CUSTOMERGROUPID>
         </CUSTCUSTOMERGROUPENTITY></xsl:for-each></Document></xsl:template>"""
)
GROUPS = b'<groups><group id="10"/><group id="20"/></groups>'

# 2**40 template calls: runs for days.
RUNAWAY = _xsl(
    """<xsl:template match="/"><o><xsl:call-template name="f"><xsl:with-param name="n" select="40"/>
       </xsl:call-template></o></xsl:template>
       <xsl:template name="f"><xsl:param name="n"/><xsl:if test="$n &gt; 0">
         <xsl:call-template name="f"><xsl:with-param name="n" select="$n - 1"/></xsl:call-template>
         <xsl:call-template name="f"><xsl:with-param name="n" select="$n - 1"/></xsl:call-template>
       </xsl:if></xsl:template>"""
)

# The hostile run's bomb: a 10-character string doubled 25 times (320 MB, plus every step before it).
DOUBLING = _xsl(
    """<xsl:template match="/"><o><xsl:call-template name="d"><xsl:with-param name="s" select="'abcdefghij'"/>
         <xsl:with-param name="n" select="25"/></xsl:call-template></o></xsl:template>
       <xsl:template name="d"><xsl:param name="s"/><xsl:param name="n"/><xsl:choose>
         <xsl:when test="$n &gt; 0"><xsl:call-template name="d"><xsl:with-param name="s" select="concat($s, $s)"/>
           <xsl:with-param name="n" select="$n - 1"/></xsl:call-template></xsl:when>
         <xsl:otherwise><xsl:value-of select="string-length($s)"/></xsl:otherwise></xsl:choose></xsl:template>"""
)


def _records(record: str, output: str = "") -> bytes:
    """One record per (b, b, b) triple of the input: 128 <b/> give 2**21 records."""
    return _xsl(
        f"""{output}<xsl:template match="/"><Document><xsl:for-each select="/a/b"><xsl:for-each select="/a/b">
              <xsl:for-each select="/a/b">{record}</xsl:for-each></xsl:for-each></xsl:for-each></Document>
            </xsl:template>"""
    )


B128 = b"<a>" + b"<b/>" * 128 + b"</a>"


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    clear_cache()
    yield
    clear_cache()


@pytest.fixture
def one_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A pool of one worker process, so that 'the worker' is well defined."""
    monkeypatch.setenv("XSLT_WORKERS", "1")
    shutdown_pool()
    yield
    shutdown_pool()


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_runaway_is_killed_at_the_time_bound_and_the_pool_replaces_its_worker(one_worker) -> None:
    runaway = compile_transform(RUNAWAY)
    [before] = worker_pids()
    with pytest.raises(FormatError, match=r"^the transform ran longer than 1 s$"):
        apply_transform(runaway, b"<a/>", timeout_seconds=1)
    assert _gone(before)  # killed, not left spinning
    # The next transform gets a fresh worker, which also compiles what it has not seen.
    assert b"<CUSTOMERGROUPID>20</CUSTOMERGROUPID>" in apply_transform(compile_transform(TO_D365), GROUPS)
    [after] = worker_pids()
    assert after != before


def test_the_time_bound_comes_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XSLT_TIMEOUT_SECONDS", "0.5")
    with pytest.raises(FormatError, match="ran longer than 0.5 s"):
        apply_transform(compile_transform(RUNAWAY), b"<a/>")


def test_a_string_doubling_bomb_stops_at_the_address_space_limit(one_worker) -> None:
    parent = psutil.Process()
    compiled = compile_transform(DOUBLING)
    [worker] = worker_pids()
    before = parent.memory_info().rss
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(parent.memory_info().rss)
            done.wait(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with pytest.raises(FormatError, match=r"^the transform exceeded its memory limit of 512 MB$"):
            apply_transform(compiled, b"<a/>")  # the default limit (XSLT_MEMORY_MB)
    finally:
        done.set()
        sampler.join()
    # The 320 MB string lived in the worker, never here.
    assert max(samples + [parent.memory_info().rss]) - before < 64 * 1024 * 1024
    assert _gone(worker)  # a worker that hit its limit is not reused
    assert b"<CUSTOMERGROUPID>10</CUSTOMERGROUPID>" in apply_transform(compile_transform(TO_D365), GROUPS)


def test_a_memory_limit_from_the_settings(monkeypatch: pytest.MonkeyPatch, one_worker) -> None:
    monkeypatch.setenv("XSLT_MEMORY_MB", "200")
    with pytest.raises(FormatError, match=r"^the transform exceeded its memory limit of 200 MB$"):
        apply_transform(compile_transform(DOUBLING), b"<a/>")


def test_two_million_output_records_stop_at_the_output_cap() -> None:
    compiled = compile_transform(
        _records("<xsl:text>ENT;X;record&#10;</xsl:text>", '<xsl:output method="text"/>')
    )
    with pytest.raises(FormatError, match=r"^the transform's output is larger than 1 MB$"):
        apply_transform(compiled, B128, max_output_bytes=1024 * 1024)
    small = b"<a>" + b"<b/>" * 8 + b"</a>"  # 512 records fit
    assert apply_transform(compiled, small, max_output_bytes=1024 * 1024).count(b"ENT;X;record\n") == 512


def test_two_million_result_elements_stop_at_the_memory_limit() -> None:
    # As the hostile run's 2**21-record transform: its result tree alone needs about 2 GB.
    with pytest.raises(FormatError, match=r"^the transform exceeded its memory limit of 512 MB$"):
        apply_transform(compile_transform(_records("<ENT><CODE>X</CODE><NAME>r</NAME></ENT>")), B128)


def test_the_output_cap_comes_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XSLT_MAX_OUTPUT_MB", "1")
    compiled = compile_transform(
        _records("<xsl:text>ENT;X;record&#10;</xsl:text>", '<xsl:output method="text"/>')
    )
    with pytest.raises(FormatError, match="output is larger than 1 MB"):
        apply_transform(compiled, B128)


def test_exslt_regular_expressions_are_refused_at_compile_time() -> None:
    uses_re = _xsl(
        """<xsl:template match="/"><o><xsl:value-of select="re:test(string(.), '^(a+)+$')"/></o></xsl:template>""",
        extra=f'xmlns:re="{RE_NS}"',
    )
    with pytest.raises(FormatError, match="EXSLT regular expressions"):
        compile_transform(uses_re)
    # However the namespace is spelled, and wherever it is bound.
    spelled = uses_re.replace(b"regular-expressions", b"regular&#45;expressions")
    with pytest.raises(FormatError, match="EXSLT regular expressions"):
        compile_transform(spelled)
    lib = _xsl(
        """<xsl:template name="t"><xsl:value-of select="re:replace('a', 'a', 'g', 'b')"/></xsl:template>""",
        extra=f'xmlns:re="{RE_NS}"',
    )
    main = _xsl(
        '<xsl:include href="lib.xsl"/><xsl:template match="/"><o><xsl:call-template name="t"/></o></xsl:template>'
    )
    with pytest.raises(FormatError, match="EXSLT regular expressions"):
        compile_transform(main, resources={"lib.xsl": lib})
    # Other EXSLT modules (C code in libexslt) stay available.
    strings = _xsl(
        """<xsl:template match="/"><o><xsl:value-of select="str:padding(3, 'x')"/></o></xsl:template>""",
        extra='xmlns:str="http://exslt.org/strings"',
    )
    assert b">xxx</o>" in apply_transform(compile_transform(strings), b"<a/>")


def test_a_catastrophic_regex_spins_in_the_worker_while_the_app_keeps_working(one_worker) -> None:
    # Allowed on purpose, to show that even Python code holding the interpreter lock (lxml runs re:
    # with Python's `re`) is contained: the app's threads keep running and the bound stops it.
    evil = compile_transform(
        _xsl(
            """<xsl:template match="/"><o><xsl:value-of select="re:test(string(.), '^(a+)+$')"/></o></xsl:template>""",
            extra=f'xmlns:re="{RE_NS}"',
        ),
        exslt_regexp=True,
    )
    assert b">true</o>" in apply_transform(evil, b"<a>aaaa</a>")  # the extension really runs
    [worker] = worker_pids()
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            apply_transform(evil, b"<a>" + b"a" * 40 + b"!</a>", timeout_seconds=8)
        except BaseException as exc:
            outcome.append(exc)

    transform = threading.Thread(target=run)
    transform.start()
    # Wait until the worker has burnt half a second of CPU in the regex...
    proc = psutil.Process(worker)
    while transform.is_alive() and sum(proc.cpu_times()[:2]) < 0.5:
        time.sleep(0.05)
    # ...then do pure-Python work here, which needs the interpreter lock of this process.
    progress = 0
    for _ in range(200_000):
        progress += sum(range(10)) // 45
    still_running = transform.is_alive()
    transform.join()
    assert progress == 200_000
    assert still_running, "the regex ended before the app's thread had made its progress"
    assert len(outcome) == 1 and isinstance(outcome[0], FormatError)
    assert str(outcome[0]) == "the transform ran longer than 8 s"
    assert _gone(worker)


def test_an_import_bomb_is_bounded_at_compile_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each level imports the next twice: 2**16 stylesheets to compile (minutes and gigabytes in-process).
    monkeypatch.setenv("XSLT_TIMEOUT_SECONDS", "2")  # compiling gets at most the transform bound
    resources = {
        f"s{i}.xsl": _xsl(f'<xsl:import href="s{i + 1}.xsl"/><xsl:import href="s{i + 1}.xsl"/>')
        for i in range(16)
    }
    resources["s16.xsl"] = _xsl('<xsl:template match="/"><o/></xsl:template>')
    main = _xsl('<xsl:import href="s0.xsl"/><xsl:template match="/x"/>')
    parent = psutil.Process()
    before = parent.memory_info().rss
    with pytest.raises(FormatError, match=r"^the XSLT does not compile within 2 s$"):
        compile_transform(main, resources=resources)
    assert parent.memory_info().rss - before < 64 * 1024 * 1024


def test_a_worker_killed_while_idle_is_replaced(one_worker) -> None:
    compiled = compile_transform(TO_D365)
    [worker] = worker_pids()
    psutil.Process(worker).kill()  # as the system's OOM killer would
    deadline = time.monotonic() + 10
    while not _gone(worker) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert b"<CUSTOMERGROUPID>10</CUSTOMERGROUPID>" in apply_transform(compiled, GROUPS)
    assert worker not in worker_pids()


def test_each_worker_compiles_a_stylesheet_once(one_worker, monkeypatch: pytest.MonkeyPatch) -> None:
    jobs: list[dict] = []
    original_call = xslt._Worker.call

    def recording_call(self, job, timeout):
        jobs.append(dict(job))
        return original_call(self, job, timeout)

    monkeypatch.setattr(xslt._Worker, "call", recording_call)
    compiled = compile_transform(TO_D365)
    for _ in range(20):
        assert b"<CUSTOMERGROUPID>10</CUSTOMERGROUPID>" in apply_transform(compiled, GROUPS)
    # The stylesheet travelled once (with the compile job); transforms name it by digest only.
    assert [j["kind"] for j in jobs] == ["compile"] + ["transform"] * 20
    assert jobs[0]["payload"] is not None
    assert all(j["payload"] is None for j in jobs[1:])


def test_a_new_worker_is_sent_the_stylesheet_it_lacks(one_worker) -> None:
    compiled = compile_transform(TO_D365)
    shutdown_pool()  # the worker that compiled it is gone
    assert b"<CUSTOMERGROUPID>20</CUSTOMERGROUPID>" in apply_transform(compiled, GROUPS)


@pytest.mark.parametrize(
    "body,extra",
    [
        (
            '<xsl:output method="xml" encoding="utf-8" indent="yes"/><xsl:template match="/"><r><xsl:copy-of select="*"/></r></xsl:template>',
            "",
        ),
        (
            '<xsl:output method="text"/><xsl:template match="/"><xsl:for-each select="//group">{<xsl:value-of select="@id"/>}&#10;</xsl:for-each></xsl:template>',
            "",
        ),
        (
            '<xsl:output method="html"/><xsl:template match="/"><html><body><p><xsl:value-of select="count(//group)"/></p><br/></body></html></xsl:template>',
            "",
        ),
        (
            '<xsl:output encoding="iso-8859-1"/><xsl:template match="/"><r a="é">ü<xsl:value-of select="//group/@id"/></r></xsl:template>',
            "",
        ),
        ('<xsl:template match="/"/>', ""),  # an empty result
        (
            '<xsl:template match="/"><o><xsl:value-of select="str:padding(3, \'-\')"/><xsl:value-of select="math:max(//group/@id)"/></o></xsl:template>',
            'xmlns:str="http://exslt.org/strings" xmlns:math="http://exslt.org/math"',
        ),
    ],
)
def test_output_is_byte_identical_to_raw_lxml(body: str, extra: str) -> None:
    stylesheet = _xsl(body, extra)
    raw = bytes(etree.XSLT(etree.fromstring(stylesheet))(etree.fromstring(GROUPS)))
    assert apply_transform(compile_transform(stylesheet), GROUPS) == raw


def test_a_stream_result_feeds_the_next_transform_by_path() -> None:
    first = compile_transform(TO_D365)
    second = compile_transform(
        _xsl(
            '<xsl:output method="text"/><xsl:template match="/"><xsl:value-of select="count(//CUSTOMERGROUPID)"/></xsl:template>'
        )
    )
    out = apply_transform_to_stream(first, GROUPS)
    path = out.name
    assert out.read(5) == b"<?xml"
    out.seek(0)
    assert apply_transform(second, out) == b"2"
    out.close()
    assert not os.path.exists(path)  # closing the result removes its file


def test_inputs_and_outputs_leave_no_files_behind() -> None:
    compiled = compile_transform(TO_D365)
    apply_transform(compiled, GROUPS)
    with pytest.raises(FormatError):
        apply_transform(compiled, b"<groups>")
    with pytest.raises(FormatError):
        apply_transform(compiled, GROUPS, max_output_bytes=5)
    assert os.listdir(xslt._get_pool().tmpdir) == []


def test_a_stylesheet_that_stops_itself_late_is_not_taken_for_a_memory_bomb(one_worker) -> None:
    # 110,592 records (about 100 MB in the worker) built, then xsl:message terminate: the reason is
    # the stylesheet's, twice, though the second run starts on the heap the first one left.
    late_stop = _xsl(
        """<xsl:template match="/"><Document><xsl:for-each select="/a/b"><xsl:for-each select="/a/b">
             <xsl:for-each select="/a/b"><ENT><CODE>X</CODE></ENT></xsl:for-each></xsl:for-each></xsl:for-each>
             <xsl:message terminate="yes">late stop</xsl:message></Document></xsl:template>"""
    )
    compiled = compile_transform(late_stop)
    for _ in range(2):
        with pytest.raises(FormatError, match=r"^the XSLT failed: late stop$"):
            apply_transform(compiled, b"<a>" + b"<b/>" * 48 + b"</a>")
