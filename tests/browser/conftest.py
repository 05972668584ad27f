"""Browser fixtures: Debian's Chromium driven by Playwright (never a downloaded browser), against the local host
and Azurite of tests/conftest.py (`app_host`, `api`), signed in with a dev admin token the way `make run` does.

Every page a test opens is watched: a console error (a Content-Security-Policy violation is one, and so is a
failed script) or an uncaught exception fails the test at teardown, so a page that breaks cannot pass.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
AXE = REPO_ROOT / "node_modules" / "axe-core" / "axe.min.js"
# --headless: no display; --no-sandbox: CI runs as root; no background networking: the tests reach only the
# local host (no component updates, no safe-browsing lookups).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-background-networking"]
VIEWPORT = {"width": 1280, "height": 800}
# The machine runs other test workers too: give the app time to answer before an expectation fails.
EXPECT_TIMEOUT_MS = 20_000


def chromium_path() -> str | None:
    """CHROMIUM_PATH, else Debian's /usr/bin/chromium (`apt-get install chromium`; .ci/run installs it)."""
    for candidate in (os.environ.get("CHROMIUM_PATH"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator:
    path = chromium_path()
    if path is None:
        pytest.skip(
            "no Chromium: install Debian's package (`apt-get install chromium`, as .ci/run does) or set "
            "CHROMIUM_PATH; Playwright never downloads a browser here"
        )
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def admin_token(make_token) -> str:
    from tests.conftest import ADMIN_APP

    return make_token(ADMIN_APP, admin=True)


@pytest.fixture(scope="session")
def workspace_url(app_host) -> str:
    return app_host.url.rstrip("/") + "/workspace"


class PageWatch:
    """What went wrong in the page: console errors and uncaught exceptions."""

    def __init__(self, page) -> None:
        self.errors: list[str] = []
        page.on(
            "console",
            lambda msg: (
                self.errors.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None
            ),
        )
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        self.allowed: list[str] = []

    def allow(self, fragment: str) -> None:
        """An expected console error (the browser logs every 4xx a test provokes on purpose)."""
        self.allowed.append(fragment)

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(a in e for a in self.allowed)]


@pytest.fixture
def new_page(browser):
    """A factory of fresh, signed-out pages (own context: own sessionStorage), watched for errors."""
    contexts = []
    watches = []

    def factory(**context_options):
        options = {"viewport": VIEWPORT, "locale": "en-GB", **context_options}
        context = browser.new_context(**options)
        context.set_default_timeout(20_000)
        contexts.append(context)
        page = context.new_page()
        page.watch = PageWatch(page)
        watches.append(page.watch)
        return page

    yield factory
    problems = [e for w in watches for e in w.unexpected()]
    for context in contexts:
        context.close()
    assert not problems, "the page logged errors:\n" + "\n".join(problems)


@pytest.fixture
def page(new_page, workspace_url, admin_token):
    """A page signed in as an administrator, through the link `make run` prints (token in the fragment)."""
    from tools.run_local import workspace_link

    page = new_page()
    page.goto(workspace_link(workspace_url.removesuffix("/workspace"), admin_token))
    page.get_by_role("heading", name="Recurring data jobs", level=1).wait_for()
    return page


def axe_violations(page, impacts=("serious", "critical")) -> list[str]:
    """axe-core (pinned in package.json) injected by the test, run on the page as it is; its serious and
    critical violations, one line each."""
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: run `npm ci` (make setup does)")
    # evaluate() runs through the DevTools protocol, which the page's CSP does not govern; the page itself
    # still may not run inline script.
    if not page.evaluate("() => Boolean(window.axe)"):
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;undefined")
    result = page.evaluate(
        """async () => {
            const r = await window.axe.run(document, {resultTypes: ['violations']});
            return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
        }"""
    )
    return [
        f"{v['impact']}: {v['id']} ({v['help']}) at {', '.join(v['nodes'])}"
        for v in result
        if v["impact"] in impacts
    ]
