"""XSLT: a normal transform works; every way out (files, network, entities, time, size) is closed."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from shared.errors import FormatError
from shared.formats.xslt import apply_transform, clear_cache, compile_transform

XSL_NS = 'xmlns:xsl="http://www.w3.org/1999/XSL/Transform"'


def _xsl(body: str, extra: str = "") -> bytes:
    return f'<xsl:stylesheet version="1.0" {XSL_NS} {extra}>{body}</xsl:stylesheet>'.encode()


# Partner XML → D365 <Document><ENTITY><FIELD> shape.
TO_D365 = _xsl(
    """
    <xsl:output method="xml" encoding="utf-8" indent="no"/>
    <xsl:template match="/groups">
      <Document>
        <xsl:for-each select="group">
          <CUSTCUSTOMERGROUPENTITY>
            <CUSTOMERGROUPID><xsl:value-of select="@id"/></CUSTOMERGROUPID>
            <DESCRIPTION><xsl:value-of select="normalize-space(name)"/></DESCRIPTION>
          </CUSTCUSTOMERGROUPENTITY>
        </xsl:for-each>
      </Document>
    </xsl:template>
    """
)

GROUPS = b'<groups><group id="10"><name> Wholesale </name></group><group id="20"><name>Retail</name></group></groups>'


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    clear_cache()
    yield
    clear_cache()


def test_a_normal_transform_produces_the_d365_shape() -> None:
    out = apply_transform(compile_transform(TO_D365), GROUPS)
    root = etree.fromstring(out)
    assert root.tag == "Document"
    assert [(e.findtext("CUSTOMERGROUPID"), e.findtext("DESCRIPTION")) for e in root] == [
        ("10", "Wholesale"),
        ("20", "Retail"),
    ]


def test_input_may_be_a_stream() -> None:
    import io

    out = apply_transform(compile_transform(TO_D365), io.BytesIO(GROUPS))
    assert b"<CUSTOMERGROUPID>20</CUSTOMERGROUPID>" in out


def test_the_cache_returns_the_same_compiled_object() -> None:
    a = compile_transform(TO_D365)
    b = compile_transform(bytes(TO_D365))  # equal bytes, different object
    assert a is b
    c = compile_transform(TO_D365 + b" ")
    assert c is not a
    d = compile_transform(TO_D365, resources={"x.xml": b"<x/>"})
    assert d is not a  # resources are part of the key


def test_document_cannot_read_local_files() -> None:
    xsl = _xsl(
        '<xsl:template match="/"><o><xsl:copy-of select="document(\'file:///etc/passwd\')"/></o></xsl:template>'
    )
    with pytest.raises(FormatError) as info:
        apply_transform(compile_transform(xsl), b"<a/>")
    assert "root:" not in str(info.value)
    assert "/etc/passwd" in str(info.value)


def test_document_cannot_read_local_files_even_when_resources_exist() -> None:
    for href in ("file:///etc/passwd", "/etc/passwd", "../../../../etc/passwd"):
        xsl = _xsl(
            f'<xsl:template match="/"><o><xsl:copy-of select="document(\'{href}\')"/></o></xsl:template>'
        )
        compiled = compile_transform(xsl, resources={"codes.xml": b"<codes/>"})
        with pytest.raises(FormatError) as info:
            apply_transform(compiled, b"<a/>")
        assert "root:" not in str(info.value), href


def test_document_reads_the_transforms_own_resources() -> None:
    xsl = _xsl(
        """<xsl:template match="/">
             <o><xsl:value-of select="document('codes.xml')/codes/code[@from=current()/a/@v]/@to"/></o>
           </xsl:template>"""
    )
    compiled = compile_transform(xsl, resources={"codes.xml": b'<codes><code from="x" to="MAPPED"/></codes>'})
    assert b"<o>MAPPED</o>" in apply_transform(compiled, b'<a v="x"/>')


def test_include_of_a_resource_works_and_of_anything_else_fails() -> None:
    lib = _xsl('<xsl:template name="greet"><hello/></xsl:template>')
    main = _xsl(
        '<xsl:include href="lib.xsl"/><xsl:template match="/"><o><xsl:call-template name="greet"/></o></xsl:template>'
    )
    assert b"<o><hello/></o>" in apply_transform(compile_transform(main, resources={"lib.xsl": lib}), b"<a/>")
    with pytest.raises(FormatError, match="lib.xsl"):
        compile_transform(main)  # no resources: the include has nothing to resolve to
    for href in ("file:///etc/passwd", "/etc/hostname", "other.xsl"):
        bad = _xsl(f'<xsl:import href="{href}"/><xsl:template match="/"/>')
        with pytest.raises(FormatError):
            compile_transform(bad, resources={"lib.xsl": lib})


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A local TCP port that records whether anything connected to it."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.setblocking(False)
    yield server
    server.close()


def _connected(server: socket.socket) -> bool:
    time.sleep(0.2)
    try:
        conn, _ = server.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


def test_include_over_http_fails_without_any_network_attempt(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    for resources in (None, {"lib.xsl": b"<x/>"}):
        xsl = _xsl(f'<xsl:include href="http://127.0.0.1:{port}/x.xsl"/><xsl:template match="/"/>')
        with pytest.raises(FormatError, match="http://127.0.0.1"):
            compile_transform(xsl, resources=resources)
    assert not _connected(listener)
    # The same for example.com, which a connection attempt would need DNS for.
    with pytest.raises(FormatError, match="example.com"):
        compile_transform(_xsl('<xsl:include href="http://example.com/x.xsl"/><xsl:template match="/"/>'))


def test_document_over_http_fails_without_any_network_attempt(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    xsl = _xsl(
        f'<xsl:template match="/"><o><xsl:copy-of select="document(\'http://127.0.0.1:{port}/x\')"/></o></xsl:template>'
    )
    for resources in (None, {"lib.xml": b"<x/>"}):
        with pytest.raises(FormatError):
            apply_transform(compile_transform(xsl, resources=resources), b"<a/>")
    assert not _connected(listener)


def test_writing_files_is_denied(tmp_path: Path) -> None:
    target = tmp_path / "written.txt"
    xsl = _xsl(
        f'<xsl:template match="/"><exsl:document href="{target.as_uri()}" method="text">pwned</exsl:document><o/></xsl:template>',
        extra='xmlns:exsl="http://exslt.org/common" extension-element-prefixes="exsl"',
    )
    with pytest.raises(FormatError):
        apply_transform(compile_transform(xsl), b"<a/>")
    assert not target.exists()


def test_xxe_in_the_input_is_refused() -> None:
    xxe = b'<?xml version="1.0"?><!DOCTYPE groups [<!ENTITY x SYSTEM "file:///etc/passwd">]><groups><group id="&x;"/></groups>'
    with pytest.raises(FormatError, match="DTD") as info:
        apply_transform(compile_transform(TO_D365), xxe)
    assert "root:" not in str(info.value)


def test_billion_laughs_in_the_input_is_refused() -> None:
    decls = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10)
    )
    bomb = f'<?xml version="1.0"?><!DOCTYPE groups [{decls}]><groups><group id="&lol9;"/></groups>'.encode()
    with pytest.raises(FormatError):
        apply_transform(compile_transform(TO_D365), bomb)


def test_dtd_in_the_stylesheet_is_refused() -> None:
    xsl = b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + _xsl(
        '<xsl:template match="/"><o>&e;</o></xsl:template>'
    )
    with pytest.raises(FormatError, match="DTD"):
        compile_transform(xsl)


def _nested(depth: int) -> bytes:
    return b"<n>" * depth + b"</n>" * depth


def test_depth_limit() -> None:
    compiled = compile_transform(
        _xsl('<xsl:template match="/"><o><xsl:value-of select="count(//n)"/></o></xsl:template>')
    )
    assert b"<o>50</o>" in apply_transform(compiled, _nested(50), max_depth=50)
    with pytest.raises(FormatError, match="deeper than 50 levels"):
        apply_transform(compiled, _nested(51), max_depth=50)


def test_input_size_limit() -> None:
    compiled = compile_transform(TO_D365)
    apply_transform(compiled, GROUPS, max_input_bytes=len(GROUPS))
    with pytest.raises(FormatError, match=f"larger than {len(GROUPS) - 1} bytes"):
        apply_transform(compiled, GROUPS, max_input_bytes=len(GROUPS) - 1)


def test_output_size_limit() -> None:
    with pytest.raises(FormatError, match="the transform's output is larger than 10 bytes"):
        apply_transform(compile_transform(TO_D365), GROUPS, max_output_bytes=10)


def test_stylesheet_size_limit() -> None:
    with pytest.raises(FormatError, match="limit is 100"):
        compile_transform(TO_D365, max_stylesheet_bytes=100)


def test_xsl_message_terminate_reports_its_text() -> None:
    xsl = _xsl(
        '<xsl:template match="/"><xsl:message terminate="yes">Group <xsl:value-of select="//group/@id"/> is not allowed</xsl:message></xsl:template>'
    )
    with pytest.raises(FormatError, match="Group 10 is not allowed"):
        apply_transform(compile_transform(xsl), GROUPS)


@pytest.mark.parametrize(
    "xsl,message",
    [
        (b"<not-closed", "not well-formed"),
        (_xsl('<xsl:template match="/"><xsl:value-of select="(("/></xsl:template>'), "does not compile"),
        (_xsl('<xsl:template match="/"><xsl:no-such-instruction/></xsl:template>'), "does not compile"),
        (_xsl('<xsl:template match="///"/>'), "does not compile"),
    ],
)
def test_broken_stylesheets_fail_to_compile(xsl: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        compile_transform(xsl)


def test_broken_input_is_a_format_error() -> None:
    with pytest.raises(FormatError, match="not well-formed"):
        apply_transform(compile_transform(TO_D365), b"<groups><group></groups>")


def test_infinite_recursion_is_stopped_by_libxslt() -> None:
    xsl = _xsl(
        '<xsl:template match="/"><xsl:call-template name="r"/></xsl:template><xsl:template name="r"><xsl:call-template name="r"/></xsl:template>'
    )
    with pytest.raises(FormatError, match="recursion"):
        apply_transform(compile_transform(xsl), b"<a/>", timeout_seconds=60)


def _exponential(n: int) -> bytes:
    # 2**n template calls: about a second for n=20, far longer for bigger n.
    return _xsl(
        f"""<xsl:template match="/"><o><xsl:call-template name="f"><xsl:with-param name="n" select="{n}"/></xsl:call-template></o></xsl:template>
        <xsl:template name="f"><xsl:param name="n"/><xsl:if test="$n &gt; 0">
          <xsl:call-template name="f"><xsl:with-param name="n" select="$n - 1"/></xsl:call-template>
          <xsl:call-template name="f"><xsl:with-param name="n" select="$n - 1"/></xsl:call-template>
        </xsl:if></xsl:template>"""
    )


def test_timeout_returns_control_and_other_transforms_keep_running() -> None:
    slow = compile_transform(_exponential(40))  # would run for days
    with pytest.raises(FormatError, match="the transform ran longer than 0.5 s"):
        apply_transform(slow, b"<a/>", timeout_seconds=0.5)
    # The runaway's worker was killed with it; an ordinary transform gets a fresh one.
    assert b"Wholesale" in apply_transform(compile_transform(TO_D365), GROUPS, timeout_seconds=30)


def test_one_compiled_transform_serves_many_threads() -> None:
    compiled = compile_transform(TO_D365)
    results: list[bytes] = []
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            data = f'<groups><group id="{i}"><name>n{i}</name></group></groups>'.encode()
            results.append(apply_transform(compiled, data))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ids = sorted(
        int(etree.fromstring(r).findtext("CUSTCUSTOMERGROUPENTITY/CUSTOMERGROUPID")) for r in results
    )
    assert ids == list(range(16))


# ---------------------------------------------------------------- parse path and worker threads


def test_libxml2_caps_depth_at_256_without_huge_tree() -> None:
    # apply_transform skips its own depth walk for max_depth >= 256 because of this cap.
    from shared.formats import xslt, xslt_worker

    assert xslt_worker.PARSER_MAX_DEPTH == xslt.DEFAULT_MAX_DEPTH == 256
    compiled = compile_transform(
        _xsl('<xsl:template match="/"><o><xsl:value-of select="count(//n)"/></o></xsl:template>')
    )
    assert b"<o>256</o>" in apply_transform(compiled, _nested(256), max_depth=1000)
    for max_depth, shown in ((1000, 256), (256, 256), (50, 50)):
        with pytest.raises(FormatError, match=f"deeper than {shown} levels"):
            apply_transform(compiled, _nested(257), max_depth=max_depth)
        with pytest.raises(FormatError, match=f"deeper than {shown} levels"):
            apply_transform(compiled, _nested(5000), max_depth=max_depth)


def test_depth_limit_on_a_wide_document() -> None:
    compiled = compile_transform(
        _xsl('<xsl:template match="/"><o><xsl:value-of select="count(//n)"/></o></xsl:template>')
    )
    wide = b"<r>" + b"<n/>" * 5000 + _nested(9) + b"<n/>" * 5000 + b"</r>"  # deepest branch in the middle
    assert b"<o>10009</o>" in apply_transform(compiled, wide, max_depth=10)
    with pytest.raises(FormatError, match="deeper than 9 levels"):
        apply_transform(compiled, wide, max_depth=9)


def test_a_dtd_is_refused_before_the_body_is_parsed() -> None:
    import io

    # The body after the DOCTYPE is malformed far beyond the prolog: the DTD is still the reason.
    doc = (
        b'<?xml version="1.0"?><!DOCTYPE groups [<!ENTITY e "x">]><groups>'
        + b"<group/>" * 2000
        + b"<broken></groups>"
    )
    for source in (doc, io.BytesIO(doc)):
        with pytest.raises(FormatError, match="DTD"):
            apply_transform(compile_transform(TO_D365), source)


def test_every_kind_of_doctype_is_refused_without_loading_anything(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    for doc in (
        b"<!DOCTYPE groups><groups/>",
        b'<!DOCTYPE groups SYSTEM "file:///etc/passwd"><groups/>',
        f'<!DOCTYPE groups PUBLIC "-//x//y" "http://127.0.0.1:{port}/x.dtd"><groups/>'.encode(),
        b'<!DOCTYPE g [<!ENTITY x SYSTEM "file:///etc/passwd">]><g a="&x;"/>',  # used in the root tag
        '<?xml version="1.0" encoding="utf-16"?><!DOCTYPE g [<!ENTITY x "y">]><g>&x;</g>'.encode("utf-16"),
    ):
        with pytest.raises(FormatError, match="DTD") as info:
            apply_transform(compile_transform(TO_D365), doc)
        assert "root:" not in str(info.value)
    assert not _connected(listener)


def test_streams_are_parsed_with_the_same_limits() -> None:
    import io

    compiled = compile_transform(TO_D365)
    # A prolog longer than one piece of the DOCTYPE check, then the document.
    long_prolog = b"<!--" + b"x" * 20000 + b"-->" + GROUPS
    for source in (long_prolog, io.BytesIO(long_prolog)):
        assert b"<CUSTOMERGROUPID>20</CUSTOMERGROUPID>" in apply_transform(compiled, source)
    with pytest.raises(FormatError, match=f"larger than {len(long_prolog) - 1} bytes"):
        apply_transform(compiled, io.BytesIO(long_prolog), max_input_bytes=len(long_prolog) - 1)
    with pytest.raises(FormatError, match="larger than 100 bytes"):  # within the prolog
        apply_transform(compiled, io.BytesIO(long_prolog), max_input_bytes=100)
    with pytest.raises(FormatError, match="deeper than 50 levels"):
        apply_transform(compiled, io.BytesIO(_nested(51)), max_depth=50)
    with pytest.raises(FormatError, match="not well-formed"):
        apply_transform(compiled, io.BytesIO(b"<groups><group></groups>"))
    with pytest.raises(FormatError, match="not well-formed"):
        apply_transform(compiled, io.BytesIO(b""))
    assert b"Retail" in apply_transform(compiled, bytearray(GROUPS))


def test_a_stalled_input_stream_is_under_the_time_bound() -> None:
    import io

    release = threading.Event()

    class Stalled(io.RawIOBase):
        """Serves the prolog, then blocks until the test lets it go (a partner upload that hangs)."""

        def __init__(self) -> None:
            self._parts = [b"<groups>", b""]

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            if len(self._parts) == 1:
                release.wait(10)
            return self._parts.pop(0) if self._parts else b""

    compiled = compile_transform(TO_D365)
    with pytest.raises(FormatError, match="ran longer than 0.2 s .its input was still arriving"):
        apply_transform(compiled, Stalled(), timeout_seconds=0.2)
    release.set()
    # The copying thread ends at the stream's next read; nothing else was left behind.
    deadline = time.monotonic() + 10
    while any(t.name == "xslt-input" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(t.name == "xslt-input" for t in threading.enumerate())
    assert b"Wholesale" in apply_transform(compiled, GROUPS)


def test_a_failing_input_stream_keeps_its_error_type() -> None:
    # A storage read that fails is transient (the worker retries the message), not a stylesheet fault.
    import io

    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            raise ConnectionResetError("network blip")

    with pytest.raises(ConnectionResetError, match="network blip"):
        apply_transform(compile_transform(TO_D365), Broken(), timeout_seconds=5)
