"""The workspace UI: its static files at `/workspace/`, and `/workspace/config.json` for its sign-in.

Anonymous on purpose: the files hold no data (every data call of the UI sends a bearer token to the
management API, which checks the admin role), and a browser must load the page before it can sign in.
Not under `/admin`, which the host reserves (ScriptHost.cs refuses routes starting with `admin`).

Files come from the top-level `workspace/` folder of the deployment package, and only from there:
the path is checked segment by segment (no `..`, no hidden files, no backslashes or `%`), resolved and
checked again against the folder, and only known file types are served. A path without a file
extension is a page of the single-page app (deep links: `/workspace/jobs/<id>/messages`), answered with
`index.html`; the UI's router shows the page.

Every answer carries a strict Content-Security-Policy (scripts and styles from this origin only, no inline
script; connections to this origin, plus Entra ID's sign-in host in `entra` mode for MSAL), `nosniff`,
`no-referrer` and a strong ETag (SHA-256 of the bytes), so browsers revalidate with If-None-Match and get
304. Responses are buffered (func.HttpResponse; HOST.md "Streaming"): the files are small.
"""

from __future__ import annotations

import logging
from pathlib import Path

import azure.functions as func

bp = func.Blueprint()
log = logging.getLogger(__name__)

WORKSPACE_DIR = Path(__file__).resolve().parents[2] / "workspace"
INDEX = "index.html"
ENTRA_LOGIN_HOST = "https://login.microsoftonline.com"
# The MSAL redirect URI: a page of its own that hands the code to the app (msal-browser v5 redirect bridge).
REDIRECT_PAGE = "/workspace/redirect.html"

# Only these types are served; anything else (sources maps, READMEs, stray files) is a 404.
# The worker adds `; charset=utf-8` to text/* types (azure.functions.http.HttpResponseConverter.encode).
CONTENT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain",
    ".woff2": "font/woff2",
}
MAX_PATH_CHARS = 512
MAX_SEGMENT_CHARS = 128
_SEGMENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")

# (path, mtime_ns, size) -> (bytes, etag). The files change only with a deploy; keyed on mtime for `make run`.
_cache: dict[tuple[str, int, int], tuple[bytes, str]] = {}


def content_security_policy(auth_mode: str) -> str:
    """The page may run only scripts of this origin and talk only to it (and, in `entra` mode, to Entra ID:
    MSAL fetches the token endpoint and renews silently in a hidden iframe)."""
    entra = auth_mode == "entra"
    connect = f"'self' {ENTRA_LOGIN_HOST}" if entra else "'self'"
    frame = ENTRA_LOGIN_HOST if entra else "'none'"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
        f"connect-src {connect}; frame-src {frame}; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'; manifest-src 'self'"
    )


def security_headers(auth_mode: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(auth_mode),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
    }


def resolve(path: str, root: Path = WORKSPACE_DIR) -> Path | None:
    """The file for a request path under `root`, or None. `""` and extension-less paths are the app's pages
    (index.html). Refuses anything that is not plain segments of [A-Za-z0-9._-], a segment that starts with
    a dot (`..`, hidden files), a type outside CONTENT_TYPES, and whatever resolves outside `root`."""
    if len(path) > MAX_PATH_CHARS:
        return None
    segments = [s for s in path.split("/") if s]
    for segment in segments:
        if len(segment) > MAX_SEGMENT_CHARS or segment.startswith(".") or not set(segment) <= _SEGMENT_CHARS:
            return None
    if not segments or "." not in segments[-1]:
        segments = [INDEX]
    if Path(segments[-1]).suffix.lower() not in CONTENT_TYPES:
        return None
    base = root.resolve()
    candidate = base.joinpath(*segments).resolve()
    if not candidate.is_relative_to(base) or not candidate.is_file():
        return None
    return candidate


def read_file(path: Path) -> tuple[bytes, str]:
    """(bytes, strong ETag) of a file, cached until its mtime or size changes."""
    import hashlib

    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    hit = _cache.get(key)
    if hit is None:
        data = path.read_bytes()
        hit = (data, '"' + hashlib.sha256(data).hexdigest()[:40] + '"')
        if len(_cache) > 256:
            _cache.clear()
        _cache[key] = hit
    return hit


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 13.1.2): `W/` is ignored; `*` matches any."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


def _auth_mode() -> str:
    from shared import settings

    return settings.auth_mode()


def _not_found(auth_mode: str) -> func.HttpResponse:
    headers = security_headers(auth_mode)
    body = b'{"error":{"code":"NotFound","message":"no such file in the workspace"}}'
    return func.HttpResponse(body, status_code=404, mimetype="application/json", headers=headers)


def _request_path(req: func.HttpRequest) -> str:
    import urllib.parse

    return urllib.parse.urlsplit(req.url).path


@bp.route(route="workspace/config.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def workspace_config(req: func.HttpRequest) -> func.HttpResponse:
    """What the UI needs to sign in, from app settings: {"authMode", "localTokenFragment", "entra": {
    "clientId", "authority", "scopes", "redirectPath"} | null, "problems": [str]}. Nothing secret: a SPA's
    client ID, tenant and API scope are public by design (they travel in every sign-in URL)."""
    import json

    mode = _auth_mode()
    body = workspace_settings(mode)
    headers = {**security_headers(mode), "Cache-Control": "no-store"}
    return func.HttpResponse(
        json.dumps(body, separators=(",", ":")), mimetype="application/json", charset="utf-8", headers=headers
    )


def workspace_settings(mode: str) -> dict:
    """config.json's content. `localTokenFragment` is true only in `local` mode: only then may the UI take a
    dev token from `#token=` (tools/run_local.py prints such a link); in `entra` mode the UI ignores it."""
    from shared import settings

    problems: list[str] = []
    entra = None
    if mode == "entra":
        client_id = (settings.get("WORKSPACE_CLIENT_ID") or "").strip()
        tenant = (settings.tenant_id() or "").strip()
        scope = (settings.get("WORKSPACE_API_SCOPE") or "").strip()
        if not scope:
            audiences = settings.audiences()
            uri = next((a for a in audiences if a.startswith("api://")), audiences[0] if audiences else "")
            scope = f"{uri.rstrip('/')}/.default" if uri else ""
        if not client_id:
            problems.append(
                "WORKSPACE_CLIENT_ID is not set: register the workspace as a single-page application "
                "(docs/deployment.md) and set its client ID"
            )
        if not tenant:
            problems.append("AUTH_TENANT_ID is not set")
        if not scope:
            problems.append("AUTH_AUDIENCES (or WORKSPACE_API_SCOPE) is not set: no API scope to ask for")
        entra = {
            "clientId": client_id,
            "authority": f"{ENTRA_LOGIN_HOST}/{tenant}" if tenant else "",
            "scopes": [scope] if scope else [],
            "redirectPath": REDIRECT_PAGE,
        }
    elif mode != "local":
        problems.append(f"AUTH_MODE {mode!r} is neither 'entra' nor 'local'")
    return {"authMode": mode, "localTokenFragment": mode == "local", "entra": entra, "problems": problems}


@bp.route(route="workspace/{*path}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def workspace_files(req: func.HttpRequest) -> func.HttpResponse:
    """A static file of the UI (200 or 304 with its ETag), index.html for an app page, 404 for anything
    else. `/workspace` redirects to `/workspace/`."""
    mode = "local"
    try:
        mode = _auth_mode()
        if _request_path(req).lower() == "/workspace":
            # The catch-all matches `/workspace` too; the app lives at `/workspace/`.
            return func.HttpResponse(
                b"", status_code=308, headers={**security_headers(mode), "Location": "/workspace/"}
            )
        target = resolve(req.route_params.get("path") or "")
        if target is None:
            return _not_found(mode)
        data, etag = read_file(target)
        headers = {
            **security_headers(mode),
            "ETag": etag,
            # Revalidate every time (cheap: 304); deploys change files without changing their URLs.
            "Cache-Control": "no-cache",
        }
        if etag_matches(req.headers.get("if-none-match"), etag):
            return func.HttpResponse(b"", status_code=304, headers=headers)
        return func.HttpResponse(
            data, status_code=200, headers=headers, mimetype=CONTENT_TYPES[target.suffix.lower()]
        )
    except Exception:
        log.exception("workspace: serving %s failed", req.url)
        body = b'{"error":{"code":"InternalError","message":"the file could not be read; see the logs"}}'
        return func.HttpResponse(
            body, status_code=500, mimetype="application/json", headers=security_headers(mode)
        )
