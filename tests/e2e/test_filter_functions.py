"""The filter language's string functions through the local host, against Azurite's Table queries: browsing
records and an export project's filter (docs/filters.md); other functions are a 400 naming them."""

from __future__ import annotations

import pytest

from tests.e2e.test_config_api import error_of
from tests.e2e.test_export import HEADER, Export, unzip

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

NAMES = ["Wholesale", "Retail", "Retail online", "Contoso retail", "Con", "Coo", "Cona", None]


@pytest.fixture(scope="module")
def ex(api):
    rows = [
        {"CUSTOMERGROUPID": str(10 + i), "DESCRIPTION": name, "PAYMENTTERMS": "Net30", "CREDITLIMIT": None}
        for i, name in enumerate(NAMES)
    ]
    return Export(api, rows=rows)


def browse(api, ex, text: str):
    return api.admin("GET", f"/api/manage/entities/{ex.entity}/records", params={"filter": text, "top": 100})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("startswith(DESCRIPTION, 'Retail')", {"Retail", "Retail online"}),
        ("startswith(DESCRIPTION, 'Con')", {"Contoso retail", "Con", "Cona"}),  # not 'Coo', the range's end
        ("startswith(DESCRIPTION, 'retail')", set()),  # case-sensitive, as eq
        ("endswith(DESCRIPTION, 'retail')", {"Contoso retail"}),
        ("contains(DESCRIPTION, 'tail')", {"Retail", "Retail online", "Contoso retail"}),
        ("not contains(DESCRIPTION, 'tail')", {"Wholesale", "Con", "Coo", "Cona", None}),
        (
            "startswith(DESCRIPTION, 'R') eq false and DESCRIPTION ne null",
            {"Wholesale", "Contoso retail", "Con", "Coo", "Cona"},
        ),
        ("startswith(company, 'US') and endswith(DESCRIPTION, 'online')", {"Retail online"}),
        ("DESCRIPTION eq null", {None}),
        ("DESCRIPTION ge 'Con' and DESCRIPTION lt 'Coo'", {"Contoso retail", "Con", "Cona"}),
    ],
)
def test_browsing_records_with_functions(api, ex, text, expected):
    resp = browse(api, ex, text)
    assert resp.status_code == 200, resp.text
    assert {r.get("DESCRIPTION") for r in resp.json()["value"]} == expected


def test_an_export_filter_with_a_function(api):
    rows = [
        {"CUSTOMERGROUPID": "1", "DESCRIPTION": "Retail", "PAYMENTTERMS": "Net30", "CREDITLIMIT": None},
        {"CUSTOMERGROUPID": "2", "DESCRIPTION": "Wholesale", "PAYMENTTERMS": "Net30", "CREDITLIMIT": None},
    ]
    ex = Export(api, rows=rows, filter_text="startswith(DESCRIPTION, 'Ret') or contains(DESCRIPTION, 'zz')")
    [run] = ex.run_now()
    assert run["totalRecords"] == 1
    files = unzip(ex.download(ex.dequeue().json()["DownloadLocation"]).content)
    assert files[f"{ex.label}.csv"] == HEADER + b"1,Retail,Net30,,\r\n"


@pytest.mark.parametrize("function", ["tolower", "substringof", "length"])
def test_other_functions_are_UnsupportedFilterFunction(api, ex, function):
    text = f"{function}(DESCRIPTION) eq 'retail'"
    error = error_of(browse(api, ex, text))
    assert error["code"] == "UnsupportedFilterFunction" and f"'{function}'" in error["message"], error
    resp = api.admin(
        "PUT",
        f"/api/manage/projects/{ex.project}",
        json={"operation": "export", "filter": text, "entities": [{"entity": ex.entity}]},
    )
    assert resp.status_code == 400, resp.text
    error = error_of(resp)
    assert error["code"] == "UnsupportedFilterFunction" and f"'{function}'" in error["message"], error


def test_a_function_on_a_field_that_is_not_text_is_InvalidFilter(api, ex):
    error = error_of(browse(api, ex, "contains(CREDITLIMIT, '1')"))
    assert error["code"] == "InvalidFilter" and "string fields" in error["message"]
