"""Load the demo configuration (examples/config) through the management API, and build ready-to-paste calls.

    python -m tools.demo [--base-url http://127.0.0.1:7071] [--config examples/config]

Loading is idempotent: every document is PUT, jobs too (with the fixed activity ID that is the
file's name), so re-running replaces the demo configuration instead of duplicating it. The
configuration directory holds one JSON document per resource, named after the resource:

    entities/<name>.json    formats/<name>.json    transforms/<name>.xslt
    projects/<name>.json    jobs/<activityId>.json

Failures on the export side (an export project, or a job of one) are reported as warnings: the
export path is optional for the demo. Anything else is an error.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "examples"
CONFIG_DIR = EXAMPLES / "config"
DEMO_CSV = EXAMPLES / "customer-groups.csv"

# Fixed identities of the demo, so that `make run` can be re-run and printed calls stay valid.
DEMO_APP_ID = "d3e00000-0000-4000-8000-00000000de01"  # the partner application of both demo jobs
ADMIN_APP_ID = "d3e00000-0000-4000-8000-00000000ad01"  # the demo's administrator (holds the admin role)
IMPORT_JOB_ID = "6f0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
EXPORT_JOB_ID = "7a1c2d3e-4f5a-4b6c-9d7e-8f9a0b1c2d3e"
DEMO_ENTITY = "CustomerGroups"
DEMO_ENTITY_LABEL = "Customer groups"
DEMO_COMPANY = "usmf"

STATUS_ACTION = "/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities.GetMessageStatus"

# Resource kinds in the order they must be applied (projects name entities, formats, transforms; jobs and
# applications name legal entities).
KINDS = (
    ("legalEntities", ".json"),
    ("applications", ".json"),
    ("entities", ".json"),
    ("formats", ".json"),
    ("transforms", ".xslt"),
    ("projects", ".json"),
    ("jobs", ".json"),
)


class DemoLoadError(RuntimeError):
    """The demo configuration could not be applied."""


@dataclass
class LoadResult:
    applied: list[str] = field(default_factory=list)  # "PUT /api/manage/entities/X -> 200"
    warnings: list[str] = field(default_factory=list)
    jobs: dict[str, dict] = field(default_factory=dict)  # activity ID -> the job as the API answered
    export_projects: set[str] = field(default_factory=set)


def http(
    method: str,
    url: str,
    *,
    token: str | None = None,
    body: bytes | None = None,
    content_type: str | None = None,
    timeout: float = 30.0,
) -> tuple[int, bytes]:
    """One HTTP call with the standard library: (status, body). HTTP errors are answers, not exceptions."""
    request = urllib.request.Request(url, data=body, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _error_text(status: int, body: bytes) -> str:
    try:
        error = json.loads(body)["error"]
        return f"{status} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{status} {body[:300].decode('utf-8', 'replace')}"


def _documents(config_dir: Path):
    for kind, suffix in KINDS:
        folder = config_dir / kind
        if folder.is_dir():
            for path in sorted(folder.glob(f"*{suffix}")):
                yield kind, path.stem, path


def load_config(
    base_url: str,
    admin_token: str,
    config_dir: Path = CONFIG_DIR,
    *,
    log: Callable[[str], None] = print,
) -> LoadResult:
    """PUT every document of ``config_dir``; raises DemoLoadError on the first non-export failure."""
    base_url = base_url.rstrip("/")
    result = LoadResult()
    if not config_dir.is_dir():
        raise DemoLoadError(f"{config_dir} is not a directory")
    for kind, name, path in _documents(config_dir):
        raw = path.read_bytes()
        export_side = False
        if kind == "transforms":
            content_type = "application/xslt+xml"
        else:
            content_type = "application/json"
            try:
                doc = json.loads(raw)
            except json.JSONDecodeError as error:
                raise DemoLoadError(f"{path} is not valid JSON: {error}") from error
            if kind == "projects" and doc.get("operation") == "export":
                result.export_projects.add(name.lower())
                export_side = True
            if kind == "jobs" and str(doc.get("project", "")).lower() in result.export_projects:
                export_side = True
        url = f"{base_url}/api/manage/{kind}/{urllib.parse.quote(name)}"
        status, body = http("PUT", url, token=admin_token, body=raw, content_type=content_type)
        line = f"PUT /api/manage/{kind}/{name} -> {status}"
        if status in (200, 201):
            result.applied.append(line)
            log(f"  {line}")
            if kind == "jobs":
                result.jobs[name.lower()] = json.loads(body)
            continue
        message = f"{line}: {_error_text(status, body)}"
        if export_side:
            result.warnings.append(message)
            log(f"  warning: {message} (the export side of the demo is optional; continuing)")
            continue
        raise DemoLoadError(message)
    return result


def curl_calls(
    base_url: str,
    partner_token: str,
    admin_token: str,
    *,
    csv_path: Path = DEMO_CSV,
    export_job: str | None = None,
    token_minutes: int = 60,
) -> str:
    """A shell snippet, ready to paste, that drives the demo the way RIS and PSI drive D365."""
    base = base_url.rstrip("/")
    q = shlex.quote
    enqueue_url = (
        f"{base}/api/connector/enqueue/{IMPORT_JOB_ID}"
        f"?entity={urllib.parse.quote(DEMO_ENTITY_LABEL)}&company={DEMO_COMPANY}"
    )
    lines = [
        f"# Dev tokens, valid for {token_minutes} minutes: the partner app {DEMO_APP_ID} and an administrator.",
        f"PARTNER_TOKEN={q(partner_token)}",
        f"ADMIN_TOKEN={q(admin_token)}",
        "",
        "# 1. Enqueue the demo CSV as RIS does: no Content-Type, the file name as the external identifier.",
        '#    The reply is the message ID as a JSON string, quotes included ("…"); RIS keeps it as is.',
        f"MESSAGE_ID=$(curl -sS -X POST {q(enqueue_url)} \\",
        '  -H "Authorization: Bearer $PARTNER_TOKEN" \\',
        f"  -H {q('x-ms-dyn-externalidentifier: ' + csv_path.name)} \\",
        "  -H 'Content-Type:' \\",
        f'  --data-binary {q("@" + str(csv_path))}); echo "$MESSAGE_ID"',
        "",
        "# 2. Its status as PSI asks for it: single-quoted JSON, the ID sent back with RIS's quotes.",
        "#    Repeat until it says Processed (the job processes files on arrival).",
        f"curl -sS -X POST {q(base + STATUS_ACTION)} \\",
        '  -H "Authorization: Bearer $PARTNER_TOKEN" \\',
        "  -H 'Content-Type: application/json' \\",
        "  --data \"{'messageId':'$MESSAGE_ID'}\" -w '\\n'",
        "",
        '# 3. The job\'s messages (the "Manage messages" grid of the management API).',
        f"curl -sS {q(f'{base}/api/manage/jobs/{IMPORT_JOB_ID}/messages')} \\",
        "  -H \"Authorization: Bearer $ADMIN_TOKEN\" -w '\\n'",
        "",
        "# 4. The imported records, typed (decimals exact, dates ISO-8601).",
        f"curl -sS {q(f'{base}/api/manage/entities/{DEMO_ENTITY}/records?company={DEMO_COMPANY}&top=10')} \\",
        "  -H \"Authorization: Bearer $ADMIN_TOKEN\" -w '\\n'",
    ]
    if export_job:
        lines += [
            "",
            "# 5. Export: run the export job now, then dequeue as RIS does (204 while nothing is ready).",
            f"curl -sS -X POST {q(f'{base}/api/manage/jobs/{export_job}/run')} \\",
            "  -H \"Authorization: Bearer $ADMIN_TOKEN\" -w '\\n'",
            f"curl -sS -i {q(f'{base}/api/connector/dequeue/{export_job}')} \\",
            '  -H "Authorization: Bearer $PARTNER_TOKEN"',
        ]
    return "\n".join(lines) + "\n"


def route_exists(base_url: str, method: str, path: str) -> bool:
    """Whether the app serves a route: an anonymous call answers 401 there, 404 where no function is."""
    status, _ = http(method, base_url.rstrip("/") + path)
    return status != 404


def dev_token(app_id: str, *, admin: bool = False, minutes: int = 60) -> str:
    """A token the local host accepts, from the settings it reads (local.settings.json, then the example)."""
    from shared import settings
    from tools.devhost.settings import apply_settings
    from tools.devtoken import make_token

    apply_settings(REPO_ROOT)
    return make_token(
        app_id,
        key_dir=REPO_ROOT / settings.local_key_dir(),
        tenant_id=settings.tenant_id() or settings.DEFAULT_LOCAL_TENANT,
        audience=(settings.audiences() or [settings.DEFAULT_LOCAL_AUDIENCE])[0],
        admin=admin,
        minutes=minutes,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:7071", help="where the app listens")
    parser.add_argument("--config", type=Path, default=CONFIG_DIR, help="configuration directory")
    parser.add_argument("--token-minutes", type=int, default=480, help="lifetime of the printed tokens")
    args = parser.parse_args(argv)

    admin_token = dev_token(ADMIN_APP_ID, admin=True, minutes=args.token_minutes)
    print(f"Loading {args.config} into {args.base_url}:")
    try:
        result = load_config(args.base_url, admin_token, args.config)
    except (DemoLoadError, OSError) as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1
    export_job = EXPORT_JOB_ID if EXPORT_JOB_ID in result.jobs else None
    if export_job and not route_exists(args.base_url, "GET", f"/api/connector/dequeue/{export_job}"):
        export_job = None
    print()
    print(
        curl_calls(
            args.base_url,
            dev_token(DEMO_APP_ID, minutes=args.token_minutes),
            admin_token,
            export_job=export_job,
            token_minutes=args.token_minutes,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
