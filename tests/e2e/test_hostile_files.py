"""Hostile files through the host: each ends in a terminal status with a clear reason, on the first
attempt (the worker did not crash), reads no local file, and the job keeps processing good files.

The inputs come from the hostile corpus (tests/support/hostile.py), generated on demand; the same corpus
runs against the readers alone in tests/unit/formats/test_hostile_inputs.py and, for peak memory, in
bench/bench_hostile_memory.py.
"""

from __future__ import annotations

import io
import json
import random
import zipfile

import openpyxl
import pytest

from shared.formats.package_manifest import EntityTransform, ManifestEntity
from tests.support import hostile
from tests.support.hostile import (
    BILLION_LAUGHS,
    GOOD_CSV,
    GOOD_XML,
    MANIFEST_WITH_DTD,
    XSLT_DOCUMENT_PASSWD,
    XSLT_INCLUDE_HTTP,
    XXE,
    patch_declared_size,
    stream_zip,
    zeros,
)
from tests.support.packages import (
    ZIP_HEADERS,
    build_package,
    build_zip,
    csv_entity,
    simple_entity,
)

PASSWD_MARKERS = ("root:x:", "root:*:", "/bin/sh", "/usr/sbin/nologin", "daemon:")


class Jobs:
    def __init__(self, api) -> None:
        self.api = api
        self.csv = api.import_job(simple_entity(), processOnArrival=True)
        self.xml = api.import_job(simple_entity(), fmt="XML-Element", processOnArrival=True)
        self.excel = api.import_job(simple_entity(), fmt="EXCEL", processOnArrival=True)
        self.package = api.import_job(simple_entity(), mode="package", processOnArrival=True)
        self.xml_attribute = api.import_job(simple_entity(), fmt="XML-Attribute", processOnArrival=True)
        self.json = api.import_job(simple_entity(), fmt="JSON", processOnArrival=True)
        self.by_format = {
            "CSV": self.csv,
            "XML-Element": self.xml,
            "XML-Attribute": self.xml_attribute,
            "JSON": self.json,
            "EXCEL": self.excel,
        }

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
    package = build_zip(
        [("Manifest.xml", MANIFEST_WITH_DTD), ("PackageHeader.xml", b"<DataManagementPackageHeader/>")]
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
def _package_files(jobs, path: str) -> list[tuple[str, bytes]]:
    from shared.formats.package_manifest import Manifest, PackageHeader, write_manifest, write_package_header

    manifest = write_manifest(Manifest("Hostile", entities=[jobs.package_entity(path)]))
    return [("Manifest.xml", manifest), ("PackageHeader.xml", write_package_header(PackageHeader()))]


def test_zip_bomb_by_compression_ratio(jobs):
    package = stream_zip("bomb.csv", zeros(64 * 1024 * 1024), _package_files(jobs, "bomb.csv"))
    assert len(package) < 1024 * 1024
    rejected(jobs.run(jobs.package, package), "'bomb.csv' has a compression ratio above", "zip bomb")


def test_zip_entry_lying_about_its_size(jobs):
    honest = stream_zip("lies.csv", hostile.lying_lines(), _package_files(jobs, "lies.csv"))  # ~70 MB real
    with zipfile.ZipFile(io.BytesIO(honest)) as zf:
        assert zf.getinfo("lies.csv").file_size > 60_000_000
    lying = patch_declared_size(honest, "lies.csv", 4096)  # passes the ratio check on declared sizes
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
    package = stream_zip("long.csv", hostile.csv_long_line(), _package_files(jobs, "long.csv"))
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


# Bounds on what an input may expand to, and cost by the work done (issue 17) ---------------------------
def good_file(fmt: str, code: str) -> bytes:
    """A one-record file of the format whose CODE is `code`."""
    if fmt == "CSV":
        return f"CODE,NAME,AMOUNT\r\n{code},fine,1.5\r\n".encode()
    if fmt == "XML-Element":
        return f"<Document><ENT><CODE>{code}</CODE><NAME>fine</NAME></ENT></Document>".encode()
    if fmt == "XML-Attribute":
        return f'<Document><ENT CODE="{code}" NAME="fine"/></Document>'.encode()
    if fmt == "JSON":
        return json.dumps([{"CODE": code, "NAME": "fine", "AMOUNT": 1.5}]).encode()
    return hostile.xlsx([hostile.row_xml(1, hostile.HEADER), hostile.row_xml(2, (code, "fine", "1.5"))])


BOUNDED = [
    "xlsx-shared-strings-300MB",
    "xlsx-row-1e12",
    "xlsx-16384-columns",
    "xlsx-3MB-cell",
    "xml-3MB-text",
    "xml-4MB-of-empty-attributes",
    "json-100k-deep",
    "json-2MB-string",
]


@pytest.mark.parametrize("name", BOUNDED)
def test_an_input_over_a_bound_ends_with_the_bound_named_and_the_job_goes_on(api, jobs, name):
    case = hostile.CASES_BY_NAME[name]
    job = jobs.by_format[case.fmt]
    data = case.data()
    assert len(data) < 8 * 1024 * 1024  # under the test host's enqueue limit: the reader must refuse it
    rejected(jobs.run(job, data), case.reason)
    code = f"OK{BOUNDED.index(name)}"
    detail = jobs.run(job, good_file(case.fmt, code))
    assert detail["status"] == "Processed", detail
    assert code in [r["CODE"] for r in api.records(job[2], company="usmf")]


def test_empty_styled_cells_in_the_last_column_are_read_at_the_cost_of_the_cells(api):
    """2,000 rows whose last cell sits in column XFD: openpyxl padded each to 16,384 values (0.5 s a row)."""
    job = api.import_job(simple_entity(), fmt="EXCEL", processOnArrival=True)
    case = hostile.CASES_BY_NAME["xlsx-empty-cells-at-XFD"]
    resp = api.enqueue(job[0], job[1], case.data(), entity=job[2])
    assert resp.status_code == 200, resp.text
    assert api.wait_terminal(job[1], resp.json(), timeout=90) == "Processed"
    assert api.message(resp.json())["counts"][job[2]] == {"read": 2000, "written": 2000, "rejected": 0}


def test_20000_rows_of_one_key_write_the_last_row(api):
    """20,000 rows of one key took 793 s against 38 s for distinct keys: one sequential write per row."""
    job = api.import_job(simple_entity(), processOnArrival=True)
    resp = api.enqueue(job[0], job[1], hostile.join(hostile.csv_repeated_key(20_000)), entity=job[2])
    assert resp.status_code == 200, resp.text
    assert api.wait_terminal(job[1], resp.json(), timeout=120) == "Processed"
    detail = api.message(resp.json())
    assert detail["counts"][job[2]] == {"read": 20_000, "written": 20_000, "rejected": 0}
    records = api.records(job[2], company="usmf")
    assert [(r["CODE"], r["NAME"], r["AMOUNT"]) for r in records] == [("SAME", "v19999", "19999")]


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
