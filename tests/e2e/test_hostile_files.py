"""Hostile files through the host: each ends in a terminal status with a clear reason, on the first
attempt (the worker did not crash), reads no local file, and the job keeps processing good files.
"""

from __future__ import annotations

import io
import json
import random
import struct
import zipfile

import openpyxl
import pytest

from shared.formats.package_manifest import EntityTransform, ManifestEntity
from tests.support.packages import (
    ZIP_HEADERS,
    build_package,
    build_zip,
    csv_entity,
    simple_entity,
)

PASSWD_MARKERS = ("root:x:", "root:*:", "/bin/sh", "/usr/sbin/nologin", "daemon:")

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Document><ENT><CODE>B1</CODE><NAME>&lol9;</NAME></ENT></Document>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE Document [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Document><ENT><CODE>X1</CODE><NAME>&xxe;</NAME></ENT></Document>"""

XSLT_DOCUMENT_PASSWD = b"""<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="/"><Document><ENT><CODE>D1</CODE>
    <NAME><xsl:value-of select="document('file:///etc/passwd')"/></NAME></ENT></Document></xsl:template>
</xsl:stylesheet>"""

XSLT_INCLUDE_HTTP = b"""<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:include href="http://127.0.0.1:9/evil.xsl"/>
  <xsl:template match="/"><Document/></xsl:template>
</xsl:stylesheet>"""

GOOD_XML = b"<Document><ENT><CODE>OK1</CODE><NAME>fine</NAME></ENT></Document>"
GOOD_CSV = b"CODE,NAME,AMOUNT\r\nGOOD1,fine,1.5\r\n"


class Jobs:
    def __init__(self, api) -> None:
        self.api = api
        self.csv = api.import_job(simple_entity(), processOnArrival=True)
        self.xml = api.import_job(simple_entity(), fmt="XML-Element", processOnArrival=True)
        self.excel = api.import_job(simple_entity(), fmt="EXCEL", processOnArrival=True)
        self.package = api.import_job(simple_entity(), mode="package", processOnArrival=True)

    def run(self, job, data: bytes, *, headers=None) -> dict:
        activity, app, entity = job
        package = job is self.package
        resp = self.api.enqueue(
            activity,
            app,
            data,
            entity=None if package else entity,
            headers=ZIP_HEADERS if package else headers,
        )
        assert resp.status_code == 200, resp.text
        message_id = resp.json()
        self.api.wait_terminal(app, message_id, timeout=90)
        return self.api.message(message_id)

    def package_entity(self, path: str, fmt: str = "CSV", **kw) -> ManifestEntity:
        return ManifestEntity(entity_name=self.package[2], input_file_path=path, source_format=fmt, **kw)


@pytest.fixture(scope="module")
def jobs(api) -> Jobs:
    return Jobs(api)


def rejected(detail: dict, *fragments: str, status: str = "PreProcessingError") -> str:
    """The message failed cleanly: the expected status, on the first attempt, with a reason naming the problem."""
    assert detail["status"] == status, detail
    assert detail["attempts"] == 1, detail  # no crash, no retry
    reason = detail["errorSummary"] or ""
    for fragment in fragments:
        assert fragment in reason, reason
    return reason


def assert_no_passwd(api, detail: dict, entity: str) -> None:
    text = json.dumps(detail) + json.dumps(api.records(entity, company="usmf"))
    for marker in PASSWD_MARKERS:
        assert marker not in text


# XML ---------------------------------------------------------------------------------------------
def test_xxe_reads_no_local_file(api, jobs):
    detail = jobs.run(jobs.xml, XXE)
    rejected(detail, "DTD/entities, which are not allowed")
    assert_no_passwd(api, detail, jobs.xml[2])


def test_billion_laughs(jobs):
    rejected(jobs.run(jobs.xml, BILLION_LAUGHS), "DTD/entities, which are not allowed")


def test_manifest_with_a_dtd(jobs):
    manifest = b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    manifest += b"<DataManagementPackageManifest><DefinitionGroupName>&x;</DefinitionGroupName>"
    manifest += b"</DataManagementPackageManifest>"
    package = build_zip(
        [("Manifest.xml", manifest), ("PackageHeader.xml", b"<DataManagementPackageHeader/>")]
    )
    rejected(jobs.run(jobs.package, package), "Manifest.xml contains a DTD")


# XSLT --------------------------------------------------------------------------------------------
def test_stored_xslt_calling_document_on_a_local_file(api, jobs):
    name = api.unique("docPasswd")
    # document() is evaluated when the transform runs, so the transform compiles and is stored...
    resp = api.admin("PUT", f"/api/manage/transforms/{name}", data=XSLT_DOCUMENT_PASSWD)
    assert resp.status_code in (200, 201), resp.text
    activity, app, entity = api.import_job(
        simple_entity(), fmt="XML-Element", transforms=[name], processOnArrival=True
    )
    resp = api.enqueue(activity, app, GOOD_XML, entity=entity)
    assert resp.status_code == 200, resp.text
    api.wait_terminal(app, resp.json())
    detail = api.message(resp.json())
    # ...and refused when it runs.
    rejected(detail, "the XSLT failed", "file:///etc/passwd", "refused")
    assert_no_passwd(api, detail, entity)


def test_xslt_including_an_http_url_is_refused_by_the_api(api):
    resp = api.admin("PUT", f"/api/manage/transforms/{api.unique('inclHttp')}", data=XSLT_INCLUDE_HTTP)
    assert resp.status_code == 400, resp.text
    assert "http://127.0.0.1:9/evil.xsl" in resp.json()["error"]["message"]


def test_package_carrying_an_xslt_that_includes_an_http_url(jobs):
    me = jobs.package_entity(
        "data.xml", "XML-Element", transforms=[EntityTransform(1, "evil.xsl", "evil.xsl")]
    )
    package = build_package([me], {"data.xml": GOOD_XML, "evil.xsl": XSLT_INCLUDE_HTTP})
    rejected(
        jobs.run(jobs.package, package),
        "the XSLT 'evil.xsl'",
        "tries to load 'http://127.0.0.1:9/evil.xsl'",
    )


def test_package_carrying_an_xslt_that_reads_a_local_file(api, jobs):
    me = jobs.package_entity(
        "data.xml", "XML-Element", transforms=[EntityTransform(1, "peek.xsl", "peek.xsl")]
    )
    package = build_package([me], {"data.xml": GOOD_XML, "peek.xsl": XSLT_DOCUMENT_PASSWD})
    detail = jobs.run(jobs.package, package)
    rejected(detail, "the XSLT failed", "file:///etc/passwd")
    assert_no_passwd(api, detail, jobs.package[2])


# Zip ----------------------------------------------------------------------------------------------
def _stream_zip(name: str, chunks, extra: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for entry, data in extra:
            zf.writestr(entry, data)
        with zf.open(name, "w") as w:
            for chunk in chunks:
                w.write(chunk)
    return buf.getvalue()


def _package_files(jobs, path: str) -> list[tuple[str, bytes]]:
    from shared.formats.package_manifest import Manifest, PackageHeader, write_manifest, write_package_header

    manifest = write_manifest(Manifest("Hostile", entities=[jobs.package_entity(path)]))
    return [("Manifest.xml", manifest), ("PackageHeader.xml", write_package_header(PackageHeader()))]


def _zeros(total: int, chunk: int = 1024 * 1024):
    block = b"0" * chunk
    for _ in range(total // chunk):
        yield block


def test_zip_bomb_by_compression_ratio(jobs):
    package = _stream_zip("bomb.csv", _zeros(64 * 1024 * 1024), _package_files(jobs, "bomb.csv"))
    assert len(package) < 1024 * 1024
    rejected(jobs.run(jobs.package, package), "'bomb.csv' has a compression ratio above", "zip bomb")


def _patch_declared_size(data: bytes, name: str, size: int) -> bytes:
    """Make the local and central headers of `name` declare `size` uncompressed bytes."""
    out = bytearray(data)
    encoded = name.encode()
    for signature, size_at, name_len_at, name_at in (
        (b"PK\x03\x04", 22, 26, 30),
        (b"PK\x01\x02", 24, 28, 46),
    ):
        pos = out.find(signature)
        while pos >= 0:
            (name_len,) = struct.unpack_from("<H", out, pos + name_len_at)
            if out[pos + name_at : pos + name_at + name_len] == encoded:
                struct.pack_into("<I", out, pos + size_at, size)
            pos = out.find(signature, pos + 4)
    return bytes(out)


def test_zip_entry_lying_about_its_size(jobs):
    lines = (b"CODE,NAME,AMOUNT\n" + b"L1,x,1\n" * 1000 for _ in range(10_000))  # ~70 MB real
    honest = _stream_zip("lies.csv", lines, _package_files(jobs, "lies.csv"))
    with zipfile.ZipFile(io.BytesIO(honest)) as zf:
        assert zf.getinfo("lies.csv").file_size > 60_000_000
    lying = _patch_declared_size(honest, "lies.csv", 4096)  # passes the ratio check on declared sizes
    with zipfile.ZipFile(io.BytesIO(lying)) as zf:
        assert zf.getinfo("lies.csv").file_size == 4096
    # Only the declared bytes are ever decompressed; their checksum then gives the lie away.
    rejected(jobs.run(jobs.package, lying), "'lies.csv' in the package is corrupt", "CRC")


def test_zip_slip(jobs):
    package = build_zip([*_package_files(jobs, "x.csv"), ("../x.csv", GOOD_CSV)])
    rejected(jobs.run(jobs.package, package), "unsafe path '../x.csv'")


def test_zip_with_the_data_file_in_a_folder(jobs):
    # Folders are allowed (issue 12: Resources/, __MACOSX/); data files must still sit at the root.
    package = build_zip([*_package_files(jobs, "x.csv"), ("data/x.csv", GOOD_CSV)])
    rejected(jobs.run(jobs.package, package), "holds only in a folder ('data/x.csv')", "must sit at the root")


def test_zip_without_a_manifest(jobs):
    package = build_zip([("PackageHeader.xml", _package_files(jobs, "x.csv")[1][1]), ("x.csv", GOOD_CSV)])
    rejected(jobs.run(jobs.package, package), "the package has no Manifest.xml")


def test_manifest_naming_a_missing_file(jobs):
    package = build_package([jobs.package_entity("missing.csv")], {"other.csv": GOOD_CSV})
    rejected(
        jobs.run(jobs.package, package), "Manifest.xml names 'missing.csv' but the package has no such file"
    )


def test_a_50_mb_line_inside_a_package(jobs):
    # Compresses about 140:1, below the bomb ratio, so the zip opens and the CSV reader must cope.
    rng = random.Random(5)
    block = bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(16384))
    chunks = [b"CODE,NAME\n", *([block] * (50 * 1024 * 1024 // len(block))), b"\n"]
    package = _stream_zip("long.csv", chunks, _package_files(jobs, "long.csv"))
    assert len(package) < 1024 * 1024
    rejected(jobs.run(jobs.package, package), "line 2 is longer than 8,388,608 characters")


# Text and Excel ---------------------------------------------------------------------------------
def test_csv_with_10000_columns(jobs):
    header = ",".join(f"C{i}" for i in range(10_000)).encode()
    data = header + b"\r\n" + b",".join(b"v" for _ in range(10_000)) + b"\r\n"
    rejected(jobs.run(jobs.csv, data), "has 10000 columns; the limit is 1000")


def test_truncated_xlsx(jobs):
    wb = openpyxl.Workbook()
    wb.active.append(["CODE", "NAME"])
    for i in range(200):
        wb.active.append([f"T{i}", "x" * 50])
    buf = io.BytesIO()
    wb.save(buf)
    data = buf.getvalue()
    rejected(jobs.run(jobs.excel, data[: len(data) // 2]), "the Excel file is damaged or truncated")


def test_utf16_without_bom(jobs):
    data = GOOD_CSV.decode().encode("utf-16-le")
    rejected(jobs.run(jobs.csv, data), "looks like UTF-16 without a byte-order mark")


def test_binary_junk_as_csv(jobs):
    junk = random.Random(7).randbytes(64 * 1024)
    rejected(jobs.run(jobs.csv, junk), "it looks binary, not like text")


# And the jobs keep working ----------------------------------------------------------------------
def test_good_files_keep_flowing_after_the_bad_ones(api, jobs):
    activity, app, entity = jobs.csv
    bad = api.enqueue(activity, app, random.Random(8).randbytes(4096), entity=entity)
    good = api.enqueue(activity, app, GOOD_CSV, entity=entity)
    assert bad.status_code == good.status_code == 200
    assert api.wait_terminal(app, bad.json()) == "PreProcessingError"
    assert api.wait_terminal(app, good.json()) == "Processed"
    assert [r["CODE"] for r in api.records(entity, company="usmf")] == ["GOOD1"]

    detail = jobs.run(jobs.xml, GOOD_XML)
    assert detail["status"] == "Processed", detail
    package = build_package([csv_entity(jobs.package[2], "ok.csv")], {"ok.csv": GOOD_CSV})
    detail = jobs.run(jobs.package, package)
    assert detail["status"] == "Processed", detail
    assert detail["counts"][jobs.package[2]]["written"] == 1
