"""Issue 12, classes 1 and 2, over the local host: real package layouts are accepted, and a file that is
not a package is told what it is before any package rule applies.

Both package paths are exercised: enqueue to a Data package job (as PSI does) and ImportFromPackage after
an upload to GetAzureWriteUrl (as RIS and PSI do); the worker opens both through package_reader.
"""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile

import openpyxl
import pytest
import requests

from shared.formats.package_manifest import ManifestEntity
from tests.support.packages import ZIP_HEADERS, build_package, build_zip, simple_entity

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

ACTION = "/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities."
TERMINAL = {"Succeeded", "PartiallySucceeded", "Failed", "Canceled"}
CSV_OK = b"CODE,NAME,AMOUNT\r\nR1,Resource one,1\r\nR2,Resource two,2\r\n"


def action(api, name: str, token: str, body: dict) -> requests.Response:
    return api.call(
        "POST", ACTION + name, token, data=json.dumps(body), headers={"Content-Type": "application/json"}
    )


def value(api, name: str, token: str, body: dict):
    resp = action(api, name, token, body)
    assert resp.status_code == 200, f"{name}: {resp.status_code} {resp.text}"
    return resp.json()["value"]


def package_job(api, label: str) -> tuple[str, str, str, str]:
    """A Data package job processing on arrival, entity labelled `label`: (activity, app, entity, project)."""
    activity, app, entity = api.import_job(simple_entity(label), mode="package", processOnArrival=True)
    project = api.ok("GET", f"/api/manage/jobs/{activity}")["project"]
    return activity, app, entity, project


def enqueue_and_wait(api, activity: str, app: str, data: bytes) -> dict:
    resp = api.enqueue(activity, app, data, headers=ZIP_HEADERS)
    assert resp.status_code == 200, resp.text
    message_id = resp.json()
    api.wait_terminal(app, message_id)
    return api.message(message_id)


def import_from_package(api, app: str, project: str, data: bytes, file_name: str) -> tuple[str, str]:
    """Upload `data` as `file_name`, ImportFromPackage it, wait: (execution ID, summary status)."""
    token = api.make_token(app)
    written = json.loads(value(api, "GetAzureWriteUrl", token, {"uniqueFileName": file_name}))
    put = requests.put(written["BlobUrl"], data=data, headers={"x-ms-blob-type": "BlockBlob"}, timeout=60)
    assert put.status_code == 201, put.text
    execution_id = f"structure-{uuid.uuid4()}"
    body = {"packageUrl": written["BlobUrl"], "definitionGroupId": project, "executionId": execution_id}
    assert value(api, "ImportFromPackage", token, body) == execution_id
    deadline = time.monotonic() + 90
    while (
        status := value(api, "GetExecutionSummaryStatus", token, {"executionId": execution_id})
    ) not in TERMINAL:
        assert time.monotonic() < deadline, status
        time.sleep(0.25)
    return execution_id, status


def errors_of(api, app: str, execution_id: str) -> list[str]:
    token = api.make_token(app)
    return json.loads(value(api, "GetExecutionErrors", token, {"executionId": execution_id}))


def attachment_package(label: str) -> bytes:
    """A D365 package with attachments, zipped on a Mac: Resources/<label>/…, __MACOSX/, .DS_Store."""
    base = build_package(
        [ManifestEntity(label, input_file_path=f"{label}.csv", source_format="CSV")], {f"{label}.csv": CSV_OK}
    )
    with zipfile.ZipFile(io.BytesIO(base)) as zf:
        entries = [(n, zf.read(n)) for n in zf.namelist()]
    return build_zip(
        [
            *entries,
            ("Resources/", b""),
            (f"Resources/{label}/R1 contract.pdf", b"%PDF-1.4 contract of R1"),
            (f"Resources/{label}/R2 photo.png", b"\x89PNG of R2"),
            ("__MACOSX/", b""),
            ("__MACOSX/._Manifest.xml", b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X"),
            (f"__MACOSX/Resources/{label}/._R1 contract.pdf", b"\x00\x05\x16\x07"),
            (".DS_Store", b"\x00\x00\x00\x01Bud1"),
        ]
    )


# Class 1: real layouts -------------------------------------------------------------------------------
def test_a_package_with_attachments_zipped_on_a_mac_imports_and_keeps_its_attachments(api):
    """The issue's example: `Resources/<entity label>/<file>` and `__MACOSX/` were refused as folders."""
    label = f"Document attachments {uuid.uuid4().hex[:6]}"
    activity, app, entity, project = package_job(api, label)
    data = attachment_package(label)

    detail = enqueue_and_wait(api, activity, app, data)
    assert detail["status"] == "Processed", detail
    counts = detail["counts"][entity]
    assert (counts["read"], counts["written"], counts["rejected"]) == (2, 2, 0)
    # The attachments stay in the package (the message's own file) and are listed on the message.
    assert counts["attachments"] == 2
    assert counts["attachmentFiles"] == [
        f"Resources/{label}/R1 contract.pdf",
        f"Resources/{label}/R2 photo.png",
    ]
    assert not any("MACOSX" in n for n in counts["attachmentFiles"])
    assert {r["CODE"] for r in api.records(entity, company="usmf")} == {"R1", "R2"}

    # The same package through the package API.
    _, status = import_from_package(api, app, project, data, "attachments.zip")
    assert status == "Succeeded"


def test_a_package_keeps_every_safety_check_inside_folders(api):
    label = f"Folder safety {uuid.uuid4().hex[:6]}"
    activity, app, _, _ = package_job(api, label)
    with zipfile.ZipFile(io.BytesIO(attachment_package(label))) as zf:
        entries = [(n, zf.read(n)) for n in zf.namelist()]
    hostile = build_zip([*entries, (f"Resources/{label}/../../../etc/passwd", b"x")])
    detail = enqueue_and_wait(api, activity, app, hostile)
    assert detail["status"] == "PreProcessingError"
    assert "unsafe path" in detail["errorSummary"], detail["errorSummary"]


# Class 2: say what was sent first --------------------------------------------------------------------
def _workbook() -> bytes:
    wb = openpyxl.Workbook()
    wb.active.append(["CODE", "NAME", "AMOUNT"])
    wb.active.append(["X1", "Excel", 1])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def test_an_xlsx_sent_to_import_from_package_is_told_it_is_an_office_document(api):
    """The issue's example: the workbook was told it "contains a folder 'docProps/'"."""
    _, app, _, project = package_job(api, f"Workbook {uuid.uuid4().hex[:6]}")
    execution_id, status = import_from_package(api, app, project, _workbook(), "customers.xlsx")
    assert status == "Failed"
    [first, *_] = errors_of(api, app, execution_id)
    assert first.startswith("the file is an Excel workbook (.xlsx), not a data package."), first
    assert "docProps" not in first and "folder" not in first
    assert "send it to a File job whose entity uses the EXCEL format" in first


def test_a_bare_csv_or_xml_enqueued_to_a_package_job_is_told_it_is_not_a_zip(api):
    activity, app, _, project = package_job(api, f"Bare {uuid.uuid4().hex[:6]}")
    for data, kind in ((CSV_OK, "CSV or other text"), (b"<?xml version='1.0'?><Document/>", "XML")):
        detail = enqueue_and_wait(api, activity, app, data)
        assert detail["status"] == "PreProcessingError"
        reason = detail["errorSummary"]
        assert reason.startswith(f"the file is not a zip file: it is {kind}."), reason
        assert "a zip with Manifest.xml and PackageHeader.xml at its root" in reason
        assert "POST /api/connector/enqueue/{activityId}?entity=<entity>" in reason
    # The same diagnosis through the package API.
    execution_id, status = import_from_package(api, app, project, b'{"value": []}', "rows.json")
    assert status == "Failed"
    assert errors_of(api, app, execution_id)[0].startswith("the file is not a zip file: it is JSON."), (
        errors_of(api, app, execution_id)
    )


def test_a_zip_without_manifest_and_header_is_told_what_a_package_is(api):
    label = f"Zipped {uuid.uuid4().hex[:6]}"
    activity, app, _, _ = package_job(api, label)
    detail = enqueue_and_wait(api, activity, app, build_zip([("customers.csv", CSV_OK)]))
    assert detail["status"] == "PreProcessingError"
    assert detail["errorSummary"].startswith(
        "the package has no Manifest.xml and no PackageHeader.xml at its root, so this zip is not a data "
        "package (it holds customers.csv)"
    ), detail["errorSummary"]
    # The package's folder zipped instead of its files (Finder's "Compress" on the folder).
    with zipfile.ZipFile(io.BytesIO(attachment_package(label))) as zf:
        entries = [(f"Package/{n}", zf.read(n)) for n in zf.namelist() if not n.endswith("/")]
    detail = enqueue_and_wait(api, activity, app, build_zip(entries))
    assert detail["status"] == "PreProcessingError"
    assert "inside the folder 'Package/'" in detail["errorSummary"], detail["errorSummary"]
    assert "Zip the package's files themselves, not the folder that holds them" in detail["errorSummary"]
