"""The workspace's static-file function (shared/api/workspace.py), called in-process with real files: content
types, strong ETags and 304, the Content-Security-Policy per auth mode, SPA pages, and no way out of the
folder. The browser tests (tests/browser) load the same files through the local host."""

from __future__ import annotations

import json

import azure.functions as func
import pytest

from shared.api import workspace
from tools import vendor_workspace

FILES = workspace.workspace_files._function.get_user_function()
CONFIG = workspace.workspace_config._function.get_user_function()


def get(path: str, headers: dict | None = None) -> func.HttpResponse:
    url = "http://127.0.0.1:7071/workspace" + ("/" + path if path is not None else "")
    return FILES(
        func.HttpRequest(
            "GET", url, headers=headers or {}, route_params={"path": path or ""}, params={}, body=b""
        )
    )


@pytest.fixture(autouse=True)
def local_mode(monkeypatch):
    monkeypatch.setenv("AUTH_MODE", "local")


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("index.html", "text/html"),
        ("js/app.js", "text/javascript"),
        ("css/app.css", "text/css"),
        ("vendor/uPlot.iife.min.js", "text/javascript"),
        ("vendor/versions.json", "application/json"),
        ("favicon.svg", "image/svg+xml"),
    ],
)
def test_files_have_their_content_type_and_security_headers(path, content_type):
    resp = get(path)
    assert resp.status_code == 200
    assert resp.mimetype == content_type
    assert resp.get_body() == (workspace.WORKSPACE_DIR / path).read_bytes()
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["Cache-Control"] == "no-cache"


def test_app_pages_answer_the_index_for_deep_links():
    index = (workspace.WORKSPACE_DIR / "index.html").read_bytes()
    for page in ("", "jobs", "jobs/6f0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d/messages", "config/entities/X"):
        resp = get(page)
        assert resp.status_code == 200, page
        assert resp.get_body() == index, page
        assert resp.mimetype == "text/html"


def test_strong_etag_and_if_none_match_gives_304():
    first = get("js/app.js")
    etag = first.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/"), etag
    again = get("js/app.js", {"if-none-match": etag})
    assert again.status_code == 304
    assert again.get_body() == b""
    assert again.headers["ETag"] == etag
    assert get("js/app.js", {"if-none-match": f'"other", W/{etag}'}).status_code == 304  # weak comparison
    assert get("js/app.js", {"if-none-match": '"other"'}).status_code == 200
    assert get("css/app.css").headers["ETag"] != etag


@pytest.mark.parametrize(
    "path",
    [
        "../function_app.py",
        "js/../../host.json",
        "..%2Fhost.json",
        "js%2F..%2F..%2Fhost.json",
        ".gitignore",
        "vendor/.hidden.js",
        "js\\app.js",
        "/etc/passwd.txt",
        "js/app.js\x00.html",
        "missing.js",
        "vendor/LICENSE.md",
        "index.py",
        "a" * 600 + ".js",
    ],
)
def test_nothing_outside_the_folder_or_of_an_unknown_type(path):
    resp = get(path)
    assert resp.status_code == 404, path
    assert json.loads(resp.get_body())["error"]["code"] == "NotFound"
    assert "Content-Security-Policy" in resp.headers


def test_resolve_never_leaves_the_root(tmp_path):
    root = tmp_path / "site"
    (root / "js").mkdir(parents=True)
    (root / "index.html").write_text("i")
    (root / "js" / "a.js").write_text("a")
    (tmp_path / "secret.js").write_text("s")
    (root / "js" / "link.js").symlink_to(tmp_path / "secret.js")
    assert workspace.resolve("js/a.js", root) == (root / "js" / "a.js").resolve()
    assert workspace.resolve("js/link.js", root) is None  # a symlink out of the folder
    assert workspace.resolve("../secret.js", root) is None


def test_workspace_without_slash_redirects():
    resp = FILES(
        func.HttpRequest(
            "GET", "http://h/workspace", headers={}, route_params={"path": ""}, params={}, body=b""
        )
    )
    assert resp.status_code == 308
    assert resp.headers["Location"] == "/workspace/"


def test_csp_is_strict_and_lets_msal_reach_entra_only_in_entra_mode(monkeypatch):
    local = get("index.html").headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in local.split(";"))
    assert directives["script-src"] == "'self'"  # no inline script, no eval
    assert directives["default-src"] == "'none'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    monkeypatch.setenv("AUTH_MODE", "entra")
    entra = dict(
        d.strip().split(" ", 1) for d in get("index.html").headers["Content-Security-Policy"].split(";")
    )
    assert entra["connect-src"] == "'self' https://login.microsoftonline.com"
    assert entra["script-src"] == "'self'"


def test_pages_have_no_inline_script_or_style():
    """The CSP forbids them; a page that relied on one would break silently in the browser."""
    import re

    for page in workspace.WORKSPACE_DIR.glob("*.html"):
        text = page.read_text(encoding="utf-8")
        for tag in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in tag, f"{page.name}: inline script {tag}"
        assert "<style" not in text and " style=" not in text, page.name
        assert not re.search(r"\son[a-z]+=", text), f"{page.name}: inline event handler"


def _config(monkeypatch, **env) -> dict:
    for key in ("WORKSPACE_CLIENT_ID", "WORKSPACE_API_SCOPE", "AUTH_TENANT_ID", "AUTH_AUDIENCES"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    req = func.HttpRequest("GET", "http://h/workspace/config.json", headers={}, params={}, body=b"")
    resp = CONFIG(req)
    assert resp.status_code == 200
    assert resp.headers["Cache-Control"] == "no-store"
    return json.loads(resp.get_body())


def test_config_in_local_mode_allows_the_token_fragment(monkeypatch):
    body = _config(monkeypatch, AUTH_MODE="local")
    assert body == {"authMode": "local", "localTokenFragment": True, "entra": None, "problems": []}


def test_config_in_entra_mode_names_client_authority_and_scope(monkeypatch):
    body = _config(
        monkeypatch,
        AUTH_MODE="entra",
        WORKSPACE_CLIENT_ID="11111111-2222-3333-4444-555555555555",
        AUTH_TENANT_ID="tenant-guid",
        AUTH_AUDIENCES="66666666-0000-0000-0000-000000000000,api://recurring-integrations",
    )
    assert body["localTokenFragment"] is False
    assert body["problems"] == []
    assert body["entra"] == {
        "clientId": "11111111-2222-3333-4444-555555555555",
        "authority": "https://login.microsoftonline.com/tenant-guid",
        "scopes": ["api://recurring-integrations/.default"],
        "redirectPath": "/workspace/redirect.html",
    }


def test_config_in_entra_mode_names_missing_settings(monkeypatch):
    body = _config(monkeypatch, AUTH_MODE="entra", AUTH_TENANT_ID="t", AUTH_AUDIENCES="api://x")
    assert body["localTokenFragment"] is False
    assert any("WORKSPACE_CLIENT_ID" in p for p in body["problems"])


def test_vendored_libraries_match_the_pinned_packages():
    """workspace/vendor/ is committed (no front-end build at deploy); it must be what package-lock.json pins."""
    if not (vendor_workspace.NODE_MODULES / "uplot").is_dir():
        pytest.skip("node_modules has no uplot: run `npm ci` (make setup does)")
    assert vendor_workspace.differences() == []


def test_the_deployment_package_takes_the_workspace_and_leaves_node_modules():
    """.funcignore (gitignore-style) lists what `func publish` leaves out; the UI's files must be in the
    package, node_modules (hundreds of MB of dev tools) must not."""
    import fnmatch

    patterns = [
        line.strip().rstrip("/")
        for line in (workspace.WORKSPACE_DIR.parent / ".funcignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert "node_modules" in patterns
    for path in (
        "workspace",
        "workspace/index.html",
        "workspace/js/app.js",
        "workspace/vendor/msal-browser.min.js",
    ):
        parts = path.split("/")
        hits = [p for p in patterns for part in parts if fnmatch.fnmatch(part, p) or fnmatch.fnmatch(path, p)]
        assert not hits, f".funcignore leaves {path} out of the package: {hits}"
