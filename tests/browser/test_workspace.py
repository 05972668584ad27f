"""The workspace UI in Debian's headless Chromium, against the real app under the local host and Azurite.

Each test makes its own configuration through the management API and its own files through the connector,
then does in the browser what an operator does: sign in with the link `make run` prints, find jobs, create
and edit one, process files and watch their statuses, open a failed message and download its error file,
export, read the runs and the monitoring chart, edit the configuration, and move through the grid with the
keyboard. The `page` fixture fails a test on any console error (a CSP violation included).
"""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import axe_violations

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.azurite]

ENTITY = {
    "label": "Customer groups",
    "keys": ["CUSTOMERGROUPID"],
    "fields": [
        {"name": "CUSTOMERGROUPID", "type": "string", "required": True, "maxLength": 10},
        {"name": "DESCRIPTION", "type": "string"},
        {"name": "PAYMENTTERMS", "type": "enum", "values": ["Net10", "Net30", "Net60"]},
        {"name": "CREDITLIMIT", "type": "decimal"},
    ],
}
XSLT = b"""<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="@*|node()"><xsl:copy><xsl:apply-templates select="@*|node()"/></xsl:copy></xsl:template>
</xsl:stylesheet>
"""


def csv(*rows: str) -> bytes:
    return (
        "CUSTOMERGROUPID,DESCRIPTION,PAYMENTTERMS,CREDITLIMIT\r\n" + "".join(r + "\r\n" for r in rows)
    ).encode()


def go(page, workspace_url: str, path: str) -> None:
    """Open a workspace URL directly (a deep link) and wait until the page shows its data."""
    page.goto(workspace_url + path)
    page.wait_for_selector("main[aria-busy=false]")


def wait_ready(page) -> None:
    page.wait_for_selector("main[aria-busy=false]")


def enqueue(api, activity: str, app: str, data: bytes, name: str) -> str:
    resp = api.enqueue(activity, app, data, entity="Customer groups", external_id=name, company="usmf")
    assert resp.status_code == 200, resp.text
    return resp.json()


def error_of(page, control):
    """The error paragraph that a form control points to with aria-describedby (so screen readers read it)."""
    ids = [i for i in (control.get_attribute("aria-describedby") or "").split() if i.endswith("-error")]
    assert ids, "the control names no error paragraph"
    return page.locator(f"#{ids[0]}")


def export_job(api) -> tuple[str, str]:
    """An export job over an entity holding three imported records: (activity ID, its name)."""
    activity, app, entity = api.import_job(ENTITY, processOnArrival=True)
    message = enqueue(
        api, activity, app, csv("E1,One,Net30,1", "E2,Two,Net60,2", "E3,Three,Net10,3"), "seed.csv"
    )
    assert api.wait_terminal(app, message) == "Processed"
    project = api.unique("Exp")
    api.ok(
        "PUT",
        f"/api/manage/projects/{project}",
        json={"operation": "export", "entities": [{"entity": entity, "format": "CSV"}]},
    )
    name = f"Export {project}"
    job = api.ok("POST", "/api/manage/jobs", json={"name": name, "project": project, "company": "usmf"})
    return job["activityId"], name


def forget_monitoring_claim(app_env, activity: str) -> None:
    """The scheduler samples a job once per monitoring due time (a row in the schedule table); removing the
    claim lets the next tick take another real sample now instead of a minute later."""
    from azure.data.tables import TableClient

    from shared.storage import names

    table = TableClient.from_connection_string(app_env["AzureWebJobsStorage"], names.TABLE_SCHEDULE)
    table.delete_entity(activity, "monitoring")


# Sign-in -------------------------------------------------------------------------------------------------
def test_sign_in_with_the_link_make_run_prints(new_page, app_host, workspace_url, admin_token):
    from tools.run_local import workspace_link

    page = new_page()
    go(page, workspace_url, "/jobs")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in (local mode)")

    page.goto(workspace_link(app_host.url, admin_token))
    expect(page.get_by_role("heading", level=1)).to_have_text("Recurring data jobs")
    assert "token" not in page.url and "#" not in page.url, page.url  # out of the address bar at once
    assert page.evaluate("sessionStorage.getItem('workspace.devToken')") == admin_token
    assert admin_token not in app_host.log, "the token reached the server"  # fragments are never sent

    page.reload()  # the session survives a reload, and deep links work signed in
    wait_ready(page)
    expect(page.get_by_role("heading", level=1)).to_have_text("Recurring data jobs")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in (local mode)")
    assert page.evaluate("sessionStorage.getItem('workspace.devToken')") is None


def test_sign_in_by_pasting_a_token_checks_it(new_page, workspace_url, admin_token):
    page = new_page()
    page.watch.allow("status of 401")  # the browser logs the refused call
    go(page, workspace_url, "/config")
    box = page.get_by_label("Dev admin token")
    box.fill("not a token")
    page.get_by_role("button", name="Sign in").click()
    expect(error_of(page, box)).to_contain_text("three parts")
    expect(box).to_have_attribute("aria-invalid", "true")

    box.fill("a.b.c")  # well-formed, refused by the API
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert").first).to_contain_text("The API refused the token")

    page.get_by_label("Dev admin token").fill(admin_token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Configuration")  # back where it started


def test_in_entra_mode_the_ui_ignores_a_token_fragment(new_page, workspace_url, admin_token):
    """config.json says localTokenFragment false in entra mode (tests/unit/test_workspace_static.py checks the
    server side); here the UI is handed such a config and must neither keep nor use the fragment."""
    page = new_page()
    entra = {
        "authMode": "entra",
        "localTokenFragment": False,
        "entra": {"clientId": "", "authority": "", "scopes": [], "redirectPath": "/workspace/redirect.html"},
        "problems": ["WORKSPACE_CLIENT_ID is not set: register the workspace as a single-page application"],
    }
    page.route("**/workspace/config.json", lambda route: route.fulfill(json=entra))
    page.goto(f"{workspace_url}/jobs#token={admin_token}")
    wait_ready(page)
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in")
    expect(page.get_by_role("alert").first).to_contain_text("WORKSPACE_CLIENT_ID")
    assert admin_token not in page.url
    assert page.evaluate("JSON.stringify(sessionStorage)") == "{}"


def test_in_entra_mode_msal_loads_under_the_csp_and_offers_sign_in(new_page, workspace_url):
    """With a complete entra config the page loads the vendored MSAL (a script of this origin, as the CSP
    wants), initializes it without a network call, and offers the Microsoft sign-in; no console error."""
    page = new_page()
    entra = {
        "authMode": "entra",
        "localTokenFragment": False,
        "entra": {
            "clientId": "11111111-2222-3333-4444-555555555555",
            "authority": "https://login.microsoftonline.com/00000000-0000-0000-0000-00000000a11c",
            "scopes": ["api://recurring-integrations/.default"],
            "redirectPath": "/workspace/redirect.html",
        },
        "problems": [],
    }
    page.route("**/workspace/config.json", lambda route: route.fulfill(json=entra))
    go(page, workspace_url, "/jobs")
    expect(page.get_by_role("button", name="Sign in with Microsoft")).to_be_visible()
    assert page.evaluate("typeof window.msal.PublicClientApplication") == "function"


# Jobs ----------------------------------------------------------------------------------------------------
def test_jobs_list_shows_backlog_and_filters(page, api, workspace_url):
    imp, app, _ = api.import_job(ENTITY, recurrence={"unit": "hours", "interval": 2})
    imp_name = api.ok("GET", f"/api/manage/jobs/{imp}")["name"]
    for i in range(2):
        enqueue(api, imp, app, csv(f"W{i},Waiting,Net30,1"), f"wait-{i}.csv")
    exp, exp_name = export_job(api)

    go(page, workspace_url, "/jobs")
    row = page.locator(f"tr[data-activity-id='{imp}']")
    cells = row.locator("td")
    expect(cells.nth(1)).to_have_text("Import")
    expect(cells.nth(2)).to_have_text("File")
    expect(cells.nth(4)).to_have_text("Every 2 hours")
    expect(cells.nth(5)).to_have_text("2")  # waiting
    expect(row.locator("td").nth(7)).to_contain_text("never run")

    page.get_by_label("Search").fill(imp_name)
    expect(page.locator("#jobs-table tbody tr")).to_have_count(1)
    page.get_by_label("Search").fill("")
    page.get_by_label("Import or export").select_option("export")
    expect(page.locator(f"tr[data-activity-id='{imp}']")).to_have_count(0)
    expect(page.locator(f"tr[data-activity-id='{exp}']")).to_contain_text(exp_name)
    assert "operation=export" in page.url
    page.reload()  # the filter is part of the URL: a deep link
    wait_ready(page)
    expect(page.get_by_label("Import or export")).to_have_value("export")
    expect(page.locator(f"tr[data-activity-id='{imp}']")).to_have_count(0)


def test_create_and_edit_a_job_with_validation_errors(page, api, workspace_url):
    entity = api.unique("Ent")
    api.ok("PUT", f"/api/manage/entities/{entity}", json=ENTITY)
    project = api.unique("Imp")
    api.ok(
        "PUT",
        f"/api/manage/projects/{project}",
        json={"operation": "import", "entities": [{"entity": entity, "format": "CSV"}]},
    )
    name = api.unique("Job ")

    page.watch.allow("status of 400")  # the browser logs each refused save
    go(page, workspace_url, "/jobs")
    page.get_by_role("link", name="New job").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("New recurring data job")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Data project").select_option(project)
    redelivery = page.get_by_label("Redelivery timeout (minutes)")
    redelivery.fill("0")
    page.get_by_role("button", name="Create job").click()
    expect(redelivery).to_have_attribute("aria-invalid", "true")
    expect(error_of(page, redelivery)).to_contain_text("redeliveryMinutes must be between 1 and")
    expect(redelivery).to_be_focused()
    expect(page.get_by_role("alert")).to_contain_text("Not saved")

    # The redelivery timeout is an export option: an import job refuses anything but the default.
    redelivery.fill("45")
    page.get_by_role("button", name="Create job").click()
    expect(error_of(page, redelivery)).to_contain_text("redeliveryMinutes does not apply")
    expect(redelivery).to_be_focused()

    redelivery.fill("30")
    page.get_by_label("Run on a recurrence").check()
    page.locator('[data-field="recurrence.unit"]').select_option("hours")
    page.locator('[data-field="recurrence.interval"]').fill("3")
    page.get_by_role("button", name="Create job").click()
    expect(page.get_by_text("The job was created.")).to_be_visible()
    activity = re.search(r"/workspace/jobs/([0-9a-f-]{36})", page.url).group(1)
    job = api.ok("GET", f"/api/manage/jobs/{activity}")
    assert (job["name"], job["project"], job["redeliveryMinutes"]) == (name, project, 30)
    assert job["recurrence"]["unit"] == "hours" and job["recurrence"]["interval"] == 3

    interval = page.locator('[data-field="recurrence.interval"]')
    interval.fill("0")
    page.get_by_role("button", name="Save").click()
    expect(error_of(page, interval)).to_contain_text("recurrence.interval must be between 1 and")
    interval.fill("6")
    page.get_by_label("Process messages in order").check()
    page.get_by_role("button", name="Add application").click()
    app_field = page.get_by_label("Application 1 ID")
    expect(app_field).to_be_focused()
    app_field.fill("not-a-guid")
    page.get_by_role("button", name="Save").click()
    expect(error_of(page, app_field)).to_contain_text("is not a GUID")
    partner = str(uuid.uuid4())
    app_field.fill(partner)
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#job-status")).to_have_text("Saved.")
    job = api.ok("GET", f"/api/manage/jobs/{activity}")
    assert job["recurrence"]["interval"] == 6 and job["processInOrder"] is True
    assert job["authorizationPolicy"] == [{"applicationId": partner, "enabled": True}]


# Messages --------------------------------------------------------------------------------------------------
def test_process_now_and_watch_statuses_then_download_the_error_file(page, api, workspace_url):
    activity, app, entity = api.import_job(ENTITY)  # files wait: no recurrence, not on arrival
    good = enqueue(api, activity, app, csv("G1,Good,Net30,10"), "good.csv")
    bad = enqueue(api, activity, app, csv("B1,Fine,Net30,1", "B2,Wrong terms,Net45,2"), "bad.csv")

    go(page, workspace_url, f"/jobs/{activity}/messages")
    rows = page.locator("#messages-grid tbody tr")
    expect(rows).to_have_count(2)
    # Newest first, as the spec's list messages says: bad.csv was enqueued last.
    expect(rows.first).to_have_attribute("data-message-id", bad)
    expect(rows.last).to_have_attribute("data-message-id", good)
    expect(page.locator(f"tr[data-message-id='{good}']")).to_have_attribute("data-status", "Enqueued")
    page.evaluate("window.__samePage = true")

    page.get_by_role("link", name="Settings").click()
    wait_ready(page)
    page.get_by_role("button", name="Process now").click()
    expect(page.locator("#job-status")).to_contain_text("2 waiting message(s) sent for processing")
    page.go_back()  # the back button returns to the grid, which refreshes itself while statuses change
    wait_ready(page)
    expect(page.locator(f"tr[data-message-id='{good}']")).to_have_attribute(
        "data-status", "Processed", timeout=60_000
    )
    expect(page.locator(f"tr[data-message-id='{bad}']")).to_have_attribute(
        "data-status", "ProcessedWithErrors", timeout=60_000
    )
    assert page.evaluate("window.__samePage") is True  # no reload: one page, URLs by the history API
    expect(page.locator(f"tr[data-message-id='{bad}'] td").nth(7)).to_have_text("2")  # read
    expect(page.locator(f"tr[data-message-id='{bad}'] td").nth(9)).to_have_text("1")  # rejected

    page.get_by_label("Status").select_option("ProcessedWithErrors")
    expect(rows).to_have_count(1)
    assert "status=ProcessedWithErrors" in page.url
    page.get_by_role("link", name=bad).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Message bad.csv")
    timeline = page.locator("ol.timeline li")
    expect(timeline).to_have_count(4)
    expect(timeline.last).to_contain_text("ProcessedWithErrors")
    counts = page.get_by_role("table", name="Records read, written and rejected per entity")
    expect(counts.locator("tbody tr").first).to_contain_text(entity)
    expect(page.get_by_text("Net45").first).to_be_visible()
    with page.expect_download() as info:
        page.get_by_role("button", name="Download the error file").click()
    download = info.value
    assert download.suggested_filename == f"{bad}-errors.csv"
    assert "Net45" in open(download.path(), encoding="utf-8").read()


def test_keyboard_navigation_and_server_side_paging_of_the_grid(page, api, workspace_url):
    activity, app, _ = api.import_job(ENTITY)
    ids = [enqueue(api, activity, app, csv(f"K{i},Row {i},Net30,{i}"), f"k{i:02d}.csv") for i in range(27)]
    newest = ids[::-1]  # the grid lists newest first, as the spec's list messages does

    with page.expect_request(lambda r: "/messages?" in r.url and "top=25" in r.url):
        go(page, workspace_url, f"/jobs/{activity}/messages")
    page.get_by_label("Refresh every few seconds").uncheck()
    rows = page.locator("#messages-grid tbody tr")
    expect(rows).to_have_count(25)  # a page, not everything
    page.get_by_role("button", name="Next page").click()
    expect(rows).to_have_count(2)
    expect(page.locator("#page-info")).to_contain_text("Page 2")
    page.get_by_role("button", name="Previous page").click()
    expect(rows).to_have_count(25)

    page.get_by_role("button", name="Refresh", exact=True).focus()
    page.keyboard.press("Tab")  # the grid is one tab stop: its active cell
    active = "document.activeElement"
    assert page.evaluate(f"{active}.closest('table').id") == "messages-grid"
    assert page.evaluate(f"{active}.textContent") == newest[0]
    page.keyboard.press("ArrowRight")
    assert page.evaluate(f"{active}.textContent") == "k26.csv"
    page.keyboard.press("ArrowDown")
    assert page.evaluate(f"{active}.textContent") == "k25.csv"
    page.keyboard.press("End")
    assert page.evaluate(f"{active}.cellIndex") == 9
    page.keyboard.press("Home")
    assert page.evaluate(f"{active}.textContent") == newest[1]
    page.keyboard.press("PageDown")
    assert page.evaluate(f"{active}.textContent") == newest[6]
    page.keyboard.press("ArrowUp")
    page.keyboard.press("Tab")  # out of the grid, and back to the same cell
    assert page.evaluate(f"{active}.closest('table')") is None
    page.keyboard.press("Shift+Tab")
    assert page.evaluate(f"{active}.textContent") == newest[5]
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Message k21.csv")
    page.go_back()
    wait_ready(page)
    expect(page.get_by_role("heading", level=1)).to_contain_text("manage messages")


# Runs and monitoring -------------------------------------------------------------------------------------
def test_runs_after_an_export_show_records_exported_and_file_uploaded(page, api, app_host, workspace_url):
    activity, name = export_job(api)
    go(page, workspace_url, f"/jobs/{activity}")
    page.get_by_role("button", name="Export now").click()
    status = page.locator("#job-status")
    expect(status).not_to_contain_text("sending")
    assert "The export was started" in status.inner_text(), app_host.log[-4000:]
    page.get_by_role("link", name="Process status").click()
    wait_ready(page)
    row = page.locator("#runs-table tbody tr").first
    for _ in range(120):  # "Get batch status" reads the runs again
        if row.count() and row.locator("td").nth(2).inner_text() in ("Ended", "Error"):
            break
        page.get_by_role("button", name="Get batch status").click()
        page.wait_for_timeout(500)
    cells = row.locator("td")
    expect(cells.nth(2)).to_have_text("Ended")
    expect(cells.nth(1)).to_have_text("Run now")
    expect(cells.nth(6)).to_have_text("1")  # messages handled
    expect(cells.nth(7)).to_have_text("3")  # total records exported
    expect(cells.nth(8)).to_have_text("Yes")  # file uploaded
    run = api.ok("GET", f"/api/manage/jobs/{activity}/runs")["value"][0]
    expect(cells.nth(0)).to_have_text(run["executionId"])


def test_monitoring_chart_is_drawn_from_real_samples(page, api, app_env, workspace_url):
    activity, app, _ = api.import_job(
        ENTITY, monitoring={"unit": "minutes", "interval": 1, "backlogThreshold": 50}
    )
    n = 0
    for burst in (1, 3, 2):
        for _ in range(burst):
            n += 1
            enqueue(api, activity, app, csv(f"M{n},Monitored,Net30,1"), f"m{n}.csv")
        forget_monitoring_claim(app_env, activity)
        api.run_scheduler()  # the real timer function samples the backlog (shared/services/scheduler.py)
    samples = api.ok("GET", f"/api/manage/jobs/{activity}/queueload")["value"]
    assert [s["waiting"] for s in samples] == [6, 4, 1]  # newest first

    go(page, workspace_url, f"/jobs/{activity}/monitoring")
    chart = page.locator("#queue-chart")
    expect(chart.locator("canvas")).to_have_count(1)
    assert chart.locator("canvas").bounding_box()["width"] > 300
    expect(chart).to_have_attribute("aria-label", re.compile(r"3 samples .*latest 6 waiting.*threshold 50"))
    expect(page.locator("#chart-summary")).to_contain_text("Now: 6 waiting")
    expect(page.locator("#chart-summary")).to_contain_text("Threshold: 50")
    # the threshold is drawn as a series of its own, next to the two measured ones
    expect(chart.locator(".u-legend .u-series")).to_have_count(4)
    expect(chart.locator(".u-legend")).to_contain_text("Backlog threshold")
    page.get_by_text("The samples as a table").click()
    waiting = page.locator("details table tbody tr td:nth-child(2)")
    expect(waiting).to_have_text(["6", "4", "1"])


# Configuration ---------------------------------------------------------------------------------------------
def test_configuration_entities_transforms_projects_and_formats(page, api, workspace_url):
    entity = api.unique("Ent")
    api.ok("PUT", f"/api/manage/entities/{entity}", json=ENTITY)
    project = api.unique("Exp")
    api.ok(
        "PUT",
        f"/api/manage/projects/{project}",
        json={
            "operation": "export",
            "filter": "CREDITLIMIT gt 5",
            "entities": [{"entity": entity, "format": "CSV"}],
        },
    )

    go(page, workspace_url, "/config/entities")
    page.get_by_role("link", name=entity).click()
    fields = page.get_by_role("table", name=f"Fields of {entity}")
    expect(fields.locator("tbody tr")).to_have_count(4)
    expect(fields.locator("tbody tr").nth(2)).to_contain_text("Net10, Net30, Net60")

    transform = api.unique("Xsl")
    go(page, workspace_url, "/config/transforms")
    page.get_by_label("Name").fill(transform)
    page.get_by_label("XSLT file").set_input_files(
        {"name": "t.xslt", "mimeType": "application/xml", "buffer": b"<not-xslt/>"}
    )
    page.watch.allow("status of 400")
    page.get_by_role("button", name="Upload").click()
    expect(error_of(page, page.get_by_label("XSLT file"))).to_contain_text("does not compile")
    page.get_by_label("XSLT file").set_input_files(
        {"name": "t.xslt", "mimeType": "application/xml", "buffer": XSLT}
    )
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"XSLT transform: {transform}")
    expect(page.locator("pre.code-view")).to_contain_text("xsl:stylesheet")
    assert api.admin("GET", f"/api/manage/transforms/{transform}").content == XSLT

    go(page, workspace_url, f"/config/projects/{project}")
    expect(page.get_by_text("CREDITLIMIT gt 5").first).to_be_visible()
    editor = page.get_by_label("Definition (JSON)")
    editor.fill(editor.input_value().replace("CREDITLIMIT gt 5", "NOSUCHFIELD gt 5"))
    page.get_by_role("button", name="Save").click()
    expect(editor).to_have_attribute("aria-invalid", "true")
    expect(error_of(page, editor)).to_contain_text("NOSUCHFIELD")  # the filter is checked on save
    editor.fill(editor.input_value().replace("NOSUCHFIELD gt 5", "CREDITLIMIT gt 7"))
    page.get_by_role("button", name="Save").click()
    expect(
        page.locator("#main").get_by_role("status").filter(has_text="Saved.")
    ).to_be_visible()  # not the announcer
    assert api.ok("GET", f"/api/manage/projects/{project}")["filter"] == "CREDITLIMIT gt 7"

    fmt = api.unique("Fmt")
    go(page, workspace_url, "/config/formats/new")
    page.get_by_label("Name").fill(fmt)
    editor = page.get_by_label("Definition (JSON)")
    editor.fill('{"kind": "csv", "delimiter": ";", "encoding": "rot13"}')
    page.get_by_role("button", name="Create").click()
    expect(error_of(page, editor)).to_contain_text("encoding")
    editor.fill('{"kind": "csv", "delimiter": ";", "encoding": "utf-8"}')
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(fmt)
    assert api.ok("GET", f"/api/manage/formats/{fmt}")["delimiter"] == ";"


# Empty pages, errors, time zones, accessibility ------------------------------------------------------------
def test_empty_pages_explain_themselves_and_api_errors_are_readable(page, api, workspace_url):
    activity, _, _ = api.import_job(ENTITY)
    go(page, workspace_url, f"/jobs/{activity}/messages")
    expect(page.get_by_text("No messages yet.")).to_be_visible()
    go(page, workspace_url, f"/jobs/{activity}/runs")
    expect(page.get_by_text("No runs yet.")).to_be_visible()
    go(page, workspace_url, f"/jobs/{activity}/monitoring")
    expect(page.get_by_text("No samples in this period.")).to_be_visible()
    expect(page.get_by_text("The monitoring recurrence is off for this job")).to_be_visible()

    unknown = str(uuid.uuid4())
    error = api.admin("GET", f"/api/manage/jobs/{unknown}").json()["error"]
    page.watch.allow("status of 404")
    go(page, workspace_url, f"/jobs/{unknown}")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text(error["message"])
    expect(alert).to_contain_text(error["code"])
    go(page, workspace_url, "/no/such/page")
    expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")


def test_times_are_shown_in_the_browsers_time_zone_with_utc_on_hover(
    new_page, api, app_host, admin_token, workspace_url
):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from tools.run_local import workspace_link

    activity, app, _ = api.import_job(ENTITY)
    message = enqueue(api, activity, app, csv("T1,Time,Net30,1"), "t.csv")
    enqueued = datetime.fromisoformat(api.message(message)["enqueuedAt"].replace("Z", "+00:00"))
    page = new_page(timezone_id="Asia/Tokyo")
    page.goto(workspace_link(app_host.url, admin_token))
    wait_ready(page)
    go(page, workspace_url, f"/messages/{message}")
    cell = page.locator("dt:text-is('Enqueued') + dd time")
    local = enqueued.astimezone(ZoneInfo("Asia/Tokyo"))
    expect(cell).to_contain_text(local.strftime("%H:%M:%S"))
    expect(cell).to_have_attribute("title", enqueued.strftime("%Y-%m-%d %H:%M:%S UTC"))


def test_every_page_passes_axe_and_fits_a_narrow_window(
    page, new_page, api, app_env, app_host, admin_token, workspace_url
):
    from tools.run_local import workspace_link

    activity, app, entity = api.import_job(
        ENTITY, processOnArrival=True, monitoring={"unit": "minutes", "interval": 1, "backlogThreshold": 9}
    )
    message = enqueue(api, activity, app, csv("A1,Ok,Net30,1", "A2,Bad,Net45,1"), "axe.csv")
    assert api.wait_terminal(app, message) == "ProcessedWithErrors"
    api.run_scheduler()
    exp, _ = export_job(api)
    api.ok("POST", f"/api/manage/jobs/{exp}/run")
    project = api.ok("GET", f"/api/manage/jobs/{activity}")["project"]
    paths = [
        "/jobs",
        "/jobs/new",
        f"/jobs/{activity}",
        f"/jobs/{activity}/messages",
        f"/messages/{message}",
        f"/jobs/{exp}/runs",
        f"/jobs/{activity}/monitoring",
        "/config/entities",
        f"/config/entities/{entity}",
        "/config/formats",
        "/config/formats/new",
        "/config/transforms",
        "/config/projects",
        f"/config/projects/{project}",
    ]
    failures = []
    for path in paths:
        go(page, workspace_url, path)
        failures += [f"{path}: {v}" for v in axe_violations(page)]
    signed_out = new_page()
    go(signed_out, workspace_url, "/")
    failures += [f"sign-in: {v}" for v in axe_violations(signed_out)]
    assert not failures, "\n".join(failures)

    narrow = new_page(viewport={"width": 390, "height": 844})
    narrow.goto(workspace_link(app_host.url, admin_token))
    wait_ready(narrow)
    for path in (
        "/jobs",
        f"/jobs/{activity}",
        f"/jobs/{activity}/messages",
        f"/messages/{message}",
        f"/jobs/{activity}/monitoring",
    ):
        go(narrow, workspace_url, path)
        overflow = narrow.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{path} scrolls sideways by {overflow}px at 390px wide"


def test_the_accessibility_check_would_catch_a_violation(page):
    """The axe run above must be able to fail: a button without a name is a critical violation."""
    page.evaluate("document.querySelector('main').append(document.createElement('button'))")
    assert any("button-name" in v for v in axe_violations(page))
