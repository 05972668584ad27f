"""Configuration as code: export a deployment's configuration to a folder, plan and apply a folder to another.

    python -m tools.config_sync export --out DIR          [connection]
    python -m tools.config_sync plan   DIR [--prune]      [connection]
    python -m tools.config_sync apply  DIR [--prune] [--dry-run] [--force-entity-changes] [connection]

connection: --base-url URL, then one way to get an admin token:
    --dev-token                      an admin dev token from the local key (the local host, AUTH_MODE=local)
    --token-file PATH ('-': stdin)   or $D365RI_TOKEN: a bearer token you already have (CI)
    --profile NAME [--config FILE]   a d365ri profile (Entra client credentials: secret or certificate)
    --tenant T --client-id C [--scope S]   client credentials with the secret in $D365RI_CLIENT_SECRET

The folder holds one document per resource, named after it, as the management API's PUT takes it (the
layout of examples/config and tools.demo):

    legalEntities/<id>.json    applications/<applicationId>.json
    entities/<name>.json    formats/<name>.json    transforms/<name>.xslt
    projects/<name>.json    jobs/<activityId>.json

JSON documents are written in one canonical form (the app's own parse, then its JSON shape; two-space
indent; keys in the API's order; lists as the API keeps them), so an export of an unchanged deployment is
byte-for-byte the same and a diff shows only real changes. The name (or activity ID) is the file's name and
never a member of the document; server-owned values (ETags) stay out; built-in formats are not exported.
Configuration holds no credentials (an authorization policy names application IDs), and because every
document is rebuilt through the app's schema, a field this tool does not know is refused, never written.

Plan compares the folder with the deployment after putting both in that canonical form, so a hand-written
document that leaves defaults out is not a change. Apply writes creates and updates in dependency order
(legal entities, applications, entities, formats, transforms, projects, jobs), each with the ETag read for the plan in If-Match (a create:
If-None-Match: *), so a resource changed by someone else since the plan was read is refused (412), never
overwritten; with --prune it then deletes, in reverse order, what the folder no longer holds.

The command is a tool of this repository rather than a `d365ri` subcommand: d365ri is the partners' client,
also used against real D365, which has no management API; this tool needs the admin role and the app's own
document schema (shared.domain.config). It reuses d365ri's sign-in (profiles, MSAL), HTTP retries and errors.

Exit codes: 0 done (plan: whatever it shows), 1 an invalid document or a refused request (the file is
named; what was applied before it is listed), 2 usage, 3 sign-in refused (401/403), 4 network.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
_CLIENT_SRC = REPO_ROOT / "client" / "src"

# (folder, file suffix), in the order resources must be created: applications and jobs name legal entities;
# projects name entities, formats and transforms; jobs name projects. Deletes go the other way.
KINDS: tuple[tuple[str, str], ...] = (
    ("legalEntities", ".json"),
    ("applications", ".json"),
    ("entities", ".json"),
    ("formats", ".json"),
    ("transforms", ".xslt"),
    ("projects", ".json"),
    ("jobs", ".json"),
)
KIND_NAMES = tuple(kind for kind, _ in KINDS)
_SUFFIX = dict(KINDS)
LOCAL_BASE_URL = "http://127.0.0.1:7071"  # make run's host
_SINGULAR = {"entities": "entity", "formats": "format", "transforms": "transform", "projects": "project"}
# The member of a kind's document that holds its name (the file's name; never written into the file).
_KEY = {"jobs": "activityId", "legalEntities": "id", "applications": "applicationId"}


def _key(kind: str) -> str:
    return _KEY.get(kind, "name")


_XSLT_TYPE = "application/xslt+xml"


def _client_modules():
    """d365ri's modules: installed (make setup installs the client editable), else from client/src."""
    try:
        import d365ri  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(_CLIENT_SRC))
    from d365ri import auth, config, errors, http

    return auth, config, errors, http


class SyncError(Exception):
    """A failure a person can act on; `path` is the file at fault (folder-relative), when there is one."""

    def __init__(self, message: str, *, path: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        return text + (f"\n  -> {self.hint}" if self.hint else "")


class ApplyError(SyncError):
    """A write the deployment refused during apply; `applied` lists what had been applied before it."""

    def __init__(
        self,
        message: str,
        *,
        path: str,
        applied: list[str],
        pending: list[str],
        hint=None,
        exit_code: int = 1,
    ) -> None:
        super().__init__(message, path=path, hint=hint)
        self.applied = applied
        self.pending = pending
        self.exit_code = exit_code  # d365ri's: 3 sign-in refused, 4 network, else 1


@dataclass
class Resource:
    """One configuration resource: `content` is what a file holds (canonical JSON text, or the XSLT bytes).

    `document` is the canonical JSON document (None for transforms), `raw` the document as the file holds
    it (what apply sends), `etag` the deployment's ETag (None for a folder's resource), `path` the file
    (folder-relative) a folder's resource came from, `invalid` why the app's schema refuses it."""

    kind: str
    name: str
    content: bytes
    document: dict | None = None
    raw: bytes | None = None
    etag: str | None = None
    path: str | None = None
    invalid: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.name.lower()

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def file_name(self) -> str:
        return f"{self.kind}/{self.name}{_SUFFIX[self.kind]}"


@dataclass
class Change:
    action: str  # "create", "update" or "delete"
    desired: Resource | None
    current: Resource | None
    diff: str = ""

    @property
    def resource(self) -> Resource:
        return self.desired or self.current  # type: ignore[return-value]


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)  # upserts in dependency order, then deletes
    kept: list[Resource] = field(default_factory=list)  # on the deployment, not in the folder, no --prune
    unchanged: int = 0
    invalid: list[Resource] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(c.action == action for c in self.changes)

    @property
    def empty(self) -> bool:
        return not self.changes


# Canonical documents ------------------------------------------------------------------------------------


def render(document: dict) -> bytes:
    """The canonical text of a JSON document: two-space indent, UTF-8, a final newline."""
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


class _Names:
    """Entity and project names as the app resolves references: case-insensitively, entities also by label
    (ConfigService._validate_project / _validate_job store the referenced resource's own name)."""

    def __init__(self, *resource_sets: dict[tuple[str, str], Resource]) -> None:
        self.entities: dict[str, str] = {}
        self.labels: dict[str, str] = {}
        self.projects: dict[str, str] = {}
        for resources in resource_sets:
            for res in resources.values():
                if res.kind == "entities":
                    self.entities.setdefault(res.name.lower(), res.name)
                    label = (res.document or {}).get("label")
                    if isinstance(label, str):
                        self.labels.setdefault(label.lower(), res.name)
                elif res.kind == "projects":
                    self.projects.setdefault(res.name.lower(), res.name)

    def entity(self, ref: str) -> str:
        return self.entities.get(ref.lower()) or self.labels.get(ref.strip().lower()) or ref

    def project(self, ref: str) -> str:
        return self.projects.get(ref.lower(), ref)


def canonical(kind: str, name: str, body: Any, names: _Names | None = None) -> dict:
    """The document as the app stores it, without its name: parsed by the app's schema, then its JSON shape.

    Raises shared.errors.ValidationError (the app's message) when the schema refuses the document."""
    from shared.domain import config as cfg

    if kind == "legalEntities":
        from shared.domain import legal_entities as les

        doc = les.legal_entity_to_json(les.parse_legal_entity(name, body, legacy=True))
        doc.pop("id", None)
        return doc
    if kind == "applications":
        from shared.domain import applications as apps

        doc = apps.application_to_json(apps.parse_application(name, body))
        doc.pop("applicationId", None)
        return doc
    if kind == "entities":
        doc = cfg.entity_to_json(cfg.parse_entity(name, body))
    elif kind == "formats":
        doc = cfg.format_to_json(cfg.parse_format(name, body))
    elif kind == "projects":
        doc = cfg.project_to_json(cfg.parse_project(name, body))
        if names is not None:
            for item in doc["entities"]:
                item["entity"] = names.entity(item["entity"])
    elif kind == "jobs":
        doc = cfg.job_to_json(cfg.parse_job(name, body))
        if names is not None:
            doc["project"] = names.project(doc["project"])
        doc.pop("activityId", None)
        return doc
    else:  # pragma: no cover - transforms are not JSON
        raise ValueError(kind)
    doc.pop("name", None)
    return doc


def _builtin_formats() -> set[str]:
    from shared.domain.schema import BUILTIN_FORMATS

    return {name.lower() for name in BUILTIN_FORMATS}


# The deployment ----------------------------------------------------------------------------------------


class Deployment:
    """The management API of one deployment, over d365ri's Transport (retries, token refresh, errors)."""

    def __init__(self, transport) -> None:
        self.transport = transport
        self.base_url = transport.base_url

    @staticmethod
    def path(kind: str, name: str = "") -> str:
        return f"/api/manage/{kind}" + (f"/{urllib.parse.quote(name, safe='')}" if name else "")

    def names(self, kind: str) -> list[str]:
        """Every resource name of `kind`, following nextLink until it is null (built-in formats left out)."""
        key = _key(kind)
        found: list[str] = []
        url: str | None = self.path(kind)
        seen: set[str] = set()
        while url:
            if url in seen:
                raise SyncError(f"GET {self.path(kind)}: nextLink {url} repeats; the listing does not end")
            seen.add(url)
            page = self.transport.request("GET", url, what=f"GET {self.path(kind)}").json()
            found += [str(item[key]) for item in page.get("value") or []]
            url = page.get("nextLink")
        if kind == "formats":
            builtin = _builtin_formats()
            found = [n for n in found if n.lower() not in builtin]
        return sorted(found, key=str.lower)

    def get(self, kind: str, name: str) -> tuple[bytes, str | None]:
        resp = self.transport.request("GET", self.path(kind, name), what=f"GET {self.path(kind, name)}")
        return resp.content, resp.headers.get("ETag")

    def put(self, res: Resource, *, current: Resource | None, force: bool = False):
        """PUT the folder's document: a create only if nothing is there (If-None-Match: *), an update only
        of the version the plan read (If-Match: its ETag). ApiError (d365ri) when refused."""
        headers = {"Content-Type": _XSLT_TYPE if res.kind == "transforms" else "application/json"}
        if current is None:
            headers["If-None-Match"] = "*"
        elif current.etag:
            headers["If-Match"] = current.etag
        params = {"force": "true"} if force and res.kind == "entities" else None
        return self.transport.request(
            "PUT",
            self.path(res.kind, res.name),
            what=f"PUT {self.path(res.kind, res.name)}",
            body=res.raw if res.raw is not None else res.content,
            headers=headers,
            params=params,
            ok=(200, 201),
        )

    def delete(self, res: Resource):
        """DELETE the version the plan read (If-Match: its ETag). ApiError (d365ri) when refused (409 in use)."""
        headers = {"If-Match": res.etag} if res.etag else None
        return self.transport.request(
            "DELETE",
            self.path(res.kind, res.name),
            what=f"DELETE {self.path(res.kind, res.name)}",
            headers=headers,
            ok=(204,),
        )


def read_deployment(deployment: Deployment) -> dict[tuple[str, str], Resource]:
    """Every configuration resource of the deployment, each with the ETag of the GET its document came from."""
    from shared.errors import AppError

    _, _, errors, _ = _client_modules()
    found: dict[tuple[str, str], Resource] = {}
    for kind in KIND_NAMES:
        for name in deployment.names(kind):
            try:
                body, etag = deployment.get(kind, name)
            except errors.ApiError as exc:
                if exc.status == 404:
                    continue  # deleted since it was listed
                raise
            if kind == "transforms":
                res = Resource(kind, name, body, etag=etag)
            else:
                document = json.loads(body)
                name = str(document.get(_key(kind)) or name)
                try:
                    doc = canonical(kind, name, _without_name(kind, document))
                except AppError as exc:
                    raise SyncError(
                        f"the deployment's {kind}/{name} does not fit this tool's schema: {exc}",
                        hint="run the tool from the same version of the repository as the deployment",
                    ) from None
                res = Resource(kind, name, render(doc), document=doc, etag=etag)
            found[res.key] = res
    return found


def _without_name(kind: str, document: dict) -> dict:
    """The document without its name and without what the app adds to a reply (`warnings`), which no
    configuration holds."""
    from shared.domain.config import READ_ONLY_FIELDS

    dropped = {_key(kind), *READ_ONLY_FIELDS}
    return {k: v for k, v in document.items() if k not in dropped}


# The folder --------------------------------------------------------------------------------------------


def _resource_name(kind: str, stem: str, path: str) -> str:
    if kind in ("jobs", "applications"):
        try:
            return str(uuid.UUID(stem.strip("{}")))
        except ValueError:
            what = (
                "a job's file is named after its activity ID"
                if kind == "jobs"
                else ("an application's file is named after its application ID")
            )
            raise SyncError(f"{what} (a GUID)", path=path) from None
    if kind == "legalEntities":
        from shared.domain.config import COMPANY_RE

        if not COMPANY_RE.match(stem):
            raise SyncError("a legal entity's file is named after its ID (DataAreaId, e.g. usmf)", path=path)
        return stem.lower()
    from shared.domain.config import check_name
    from shared.errors import ValidationError

    try:
        return check_name(stem, _SINGULAR[kind])
    except ValidationError as exc:
        raise SyncError(f"the file name is the resource's name: {exc.message}", path=path) from None


def read_folder(
    folder: Path, *, warn: Callable[[str], None] = lambda text: None
) -> dict[tuple[str, str], Resource]:
    """The folder's resources. Raises SyncError naming the file for unreadable JSON, a bad file name or two
    files of one resource; a document the app's schema refuses is kept with `invalid` set."""
    if not folder.is_dir():
        raise SyncError(f"{folder} is not a folder")
    for child in sorted(folder.iterdir()):
        if child.is_dir() and child.name not in KIND_NAMES and not child.name.startswith("."):
            warn(f"{child.name}/ is not a resource kind ({', '.join(KIND_NAMES)}); ignored")
    loaded: dict[tuple[str, str], Resource] = {}
    for kind, suffix in KINDS:
        directory = folder / kind
        if not directory.is_dir():
            continue
        for file in sorted(directory.iterdir()):
            rel = f"{kind}/{file.name}"
            if file.is_dir() or file.name.startswith("."):
                continue
            if file.suffix != suffix:
                warn(f"{rel} is not a {suffix} file; ignored")
                continue
            name = _resource_name(kind, file.stem, rel)
            content = file.read_bytes()
            res = Resource(kind, name, content, raw=content, path=rel)
            if kind != "transforms":
                try:
                    body = json.loads(content.decode("utf-8-sig"))
                except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                    raise SyncError(f"not valid JSON: {exc}", path=rel) from None
                if not isinstance(body, dict):
                    raise SyncError(
                        "must hold a JSON object (the document as the API's PUT takes it)", path=rel
                    )
                res.document = body
            elif not content.strip():
                res.invalid = "the transform is empty"
            if res.key in loaded:
                raise SyncError(
                    f"{loaded[res.key].path} and {rel} are the same resource (names ignore case)", path=rel
                )
            loaded[res.key] = res
    from shared.errors import AppError

    names = _Names(loaded)
    builtin = _builtin_formats()
    for res in loaded.values():
        if res.kind == "formats" and res.name.lower() in builtin:
            res.invalid = f"format {res.name!r} is built in and cannot be changed; give the file another name"
            continue
        if res.kind == "transforms":
            continue
        try:
            res.document = canonical(res.kind, res.name, res.document, names)
            res.content = render(res.document)
        except AppError as exc:
            res.invalid = exc.message
    return loaded


def export(deployment: Deployment, folder: Path) -> dict[str, list[str]]:
    """Writes every resource of the deployment to `folder` and removes files of resources it no longer has
    (only `<kind>/*<suffix>` files; anything else in the folder is left alone). Files whose content is
    unchanged are not rewritten. Returns {"written": [...], "unchanged": [...], "removed": [...]}."""
    resources = read_deployment(deployment)
    summary: dict[str, list[str]] = {"written": [], "unchanged": [], "removed": []}
    keep: set[Path] = set()
    for kind, name in sorted(resources, key=lambda key: (KIND_NAMES.index(key[0]), key[1])):
        res = resources[(kind, name)]
        path = folder / res.file_name
        keep.add(path)
        if path.is_file() and path.read_bytes() == res.content:
            summary["unchanged"].append(res.file_name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(res.content)
        summary["written"].append(res.file_name)
    folded = {str(path).lower(): path for path in keep}
    for kind, suffix in KINDS:
        directory = folder / kind
        if directory.is_dir():
            for file in sorted(directory.glob(f"*{suffix}")):
                # On a case-insensitive file system a file spelt in another case may be the one just written.
                twin = folded.get(str(file).lower())
                if file not in keep and not (twin is not None and twin.exists() and file.samefile(twin)):
                    file.unlink()
                    summary["removed"].append(f"{kind}/{file.name}")
    return summary


# Plan and apply ----------------------------------------------------------------------------------------


def _text(content: bytes) -> list[str]:
    return content.decode("utf-8", "replace").splitlines(keepends=True)


def _diff(current: Resource, desired: Resource) -> str:
    lines = []
    if current.name != desired.name:
        lines.append(f"name: {current.name} -> {desired.name}\n")
    lines += difflib.unified_diff(
        _text(current.content),
        _text(desired.content),
        fromfile=f"deployment {current.label}",
        tofile=desired.path or desired.file_name,
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _same(current: Resource, desired: Resource) -> bool:
    if current.name != desired.name:
        return False
    if current.kind == "transforms":
        return current.content == desired.content  # the stored XSLT is the bytes sent, unchanged
    return current.document == desired.document


def make_plan(
    desired: dict[tuple[str, str], Resource], current: dict[tuple[str, str], Resource], *, prune: bool = False
) -> Plan:
    """What applying `desired` to a deployment holding `current` changes: creates and updates in dependency
    order, then (with `prune`) deletes in reverse order. Folder documents are re-canonicalized with the
    deployment's entity and project names, so a reference spelt in another case (or by label) is no change."""
    names = _Names(desired, current)
    for res in desired.values():
        if res.kind in ("projects", "jobs") and res.path and not res.invalid:
            res.document = canonical(res.kind, res.name, res.document, names)
            res.content = render(res.document)
    plan = Plan()
    order = {kind: i for i, kind in enumerate(KIND_NAMES)}
    for key in sorted(desired, key=lambda k: (order[k[0]], k[1])):
        res = desired[key]
        if res.invalid:
            plan.invalid.append(res)
        now = current.get(key)
        if now is None:
            plan.changes.append(Change("create", res, None))
        elif _same(now, res):
            plan.unchanged += 1
        else:
            plan.changes.append(Change("update", res, now, _diff(now, res)))
    extra = sorted((k for k in current if k not in desired), key=lambda k: (-order[k[0]], k[1]))
    for key in extra:
        if prune:
            plan.changes.append(Change("delete", None, current[key]))
        else:
            plan.kept.append(current[key])
    return plan


def print_plan(plan: Plan, target: str, out) -> None:
    print(f"Plan for {target}:", file=out)
    symbols = {"create": "+", "update": "~", "delete": "-"}
    for change in plan.changes:
        res = change.resource
        where = f" ({res.path})" if res.path else ""
        print(f"  {symbols[change.action]} {change.action} {res.label}{where}", file=out)
        if change.action == "update":
            for line in change.diff.splitlines():
                print(f"      {line}", file=out)
    for res in plan.kept:
        print(f"  = keep {res.label}: not in the folder (--prune deletes it)", file=out)
    for res in plan.invalid:
        print(f"  ! invalid {res.path}: {res.invalid}", file=out)
    if plan.empty:
        print("  no changes: the deployment matches the folder", file=out)
    print(
        f"{plan.count('create')} to create, {plan.count('update')} to update, {plan.count('delete')} to delete, "
        f"{plan.unchanged} unchanged" + (f", {len(plan.kept)} kept (not in the folder)" if plan.kept else ""),
        file=out,
    )


_HINTS = {
    "PreconditionFailed": "the resource changed on the deployment since the plan read it: run plan again",
    "EntityHasRecords": "the entity holds records this change does not fit: change the document, or apply with "
    "--force-entity-changes to keep the records as they are",
}


def apply_plan(
    deployment: Deployment, plan: Plan, *, force_entities: bool = False, log: Callable[[str], None] = print
) -> list[str]:
    """Performs the plan's changes in order; returns what was done ("created entities/X", ...).

    Raises SyncError before any write when a document is invalid, and ApplyError (naming the file, with
    what was applied before) when the deployment refuses a write; later changes are then not attempted."""
    if plan.invalid:
        first = plan.invalid[0]
        more = f" (and {len(plan.invalid) - 1} more invalid documents)" if len(plan.invalid) > 1 else ""
        raise SyncError(f"{first.invalid}{more}; nothing was applied", path=first.path)
    _, _, errors, _ = _client_modules()
    applied: list[str] = []
    for i, change in enumerate(plan.changes):
        res = change.resource
        try:
            if change.action == "delete":
                deployment.delete(res)
                done = f"deleted {res.label}"
            else:
                deployment.put(change.desired, current=change.current, force=force_entities)  # type: ignore[arg-type]
                done = f"{'created' if change.action == 'create' else 'updated'} {res.label}"
        except errors.ClientError as exc:
            pending = [f"{c.action} {c.resource.label}" for c in plan.changes[i + 1 :]]
            raise ApplyError(
                exc.message,
                path=res.path or res.label,
                applied=applied,
                pending=pending,
                hint=exc.hint or _HINTS.get(getattr(exc, "code", None) or ""),
                exit_code=exc.exit_code,
            ) from None
        applied.append(done)
        log(f"  {done}")
    return applied


# Command line ------------------------------------------------------------------------------------------


def _connection_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("connection")
    g.add_argument("--base-url", help="the deployment's base URL (else $D365RI_BASE_URL or the profile's)")
    g.add_argument(
        "--dev-token",
        action="store_true",
        help=f"an admin dev token from the local key (the local host; base URL default {LOCAL_BASE_URL})",
    )
    g.add_argument(
        "--token-file", help="a bearer token in this file ('-': stdin); $D365RI_TOKEN does the same"
    )
    g.add_argument("--profile", "-p", help="a d365ri profile (client credentials: secret or certificate)")
    g.add_argument("--config", help="the d365ri config file (default: $D365RI_CONFIG or the per-user folder)")
    g.add_argument(
        "--tenant", help="Entra tenant (client credentials; the secret comes from $D365RI_CLIENT_SECRET)"
    )
    g.add_argument("--client-id", help="the administrator application's client ID (it needs the admin role)")
    g.add_argument("--scope", help="the token scope (default: <base URL>/.default)")
    g.add_argument(
        "--retries", type=int, default=3, help="retries for network errors, 429 and 5xx (default 3)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.config_sync",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Workflow: docs/configuration-as-code.md",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export", help="write every configuration resource of a deployment to a folder")
    p.add_argument(
        "--out", type=Path, required=True, help="the folder (created; stale resource files removed)"
    )
    _connection_options(p)
    for name, text in (
        ("plan", "show what apply would create, update (with a diff) and delete; change nothing"),
        ("apply", "make the deployment hold what the folder holds"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("folder", type=Path, help="the configuration folder (as export writes it)")
        p.add_argument("--prune", action="store_true", help="also delete what the folder does not hold")
        if name == "apply":
            p.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
            p.add_argument(
                "--force-entity-changes",
                action="store_true",
                help="PUT entities with ?force=true: change an entity although its stored records do not fit",
            )
        _connection_options(p)
    return parser


def connect(args) -> Deployment:
    """The deployment named by the connection options, with a token provider from d365ri's sign-in code."""
    auth, config, errors, http = _client_modules()
    base_url = args.base_url
    if args.dev_token and not base_url and not os.environ.get("D365RI_BASE_URL"):
        base_url = LOCAL_BASE_URL  # dev tokens only open the local host
    profile = config.load_profile(config.config_path(args.config), args.profile, base_url=base_url)
    for attr in ("tenant", "client_id", "scope"):
        if getattr(args, attr):
            setattr(profile, attr, getattr(args, attr))
    if args.client_id and profile.auth == "token" and not args.token_file:
        profile.auth = "secret"
    tokens: Any
    if args.dev_token:
        tokens = _DevToken()
    else:
        if args.token_file:
            profile.auth, profile.token_file, profile.token_command = "token", args.token_file, None
            if args.token_file == "-":
                profile.token_file, profile.token_env = None, "CONFIG_SYNC_TOKEN_STDIN"
                tokens = auth.provider_for(
                    profile, env={"CONFIG_SYNC_TOKEN_STDIN": sys.stdin.readline().strip()}
                )
            else:
                tokens = auth.provider_for(profile)
        else:
            tokens = auth.provider_for(profile)
    transport = http.Transport(
        profile.base_url,
        tokens,
        retries=args.retries,
        timeout=profile.timeout,
        verify=profile.ca_bundle or True,
        on_wait=lambda text: print(f"note: {text}", file=sys.stderr),
    )
    return Deployment(transport)


class _DevToken:
    """An admin dev token the local host accepts (tools.demo.dev_token: the local key and settings)."""

    def __init__(self) -> None:
        self._token: str | None = None

    def token(self, *, force: bool = False) -> str:
        if self._token is None or force:
            from tools.demo import ADMIN_APP_ID, dev_token

            self._token = dev_token(ADMIN_APP_ID, admin=True, minutes=60)
        return self._token

    def describe(self) -> str:
        return "an admin dev token"


def run(args, out, err) -> int:
    def warn(text: str) -> None:
        print(f"warning: {text}", file=err)

    deployment = connect(args)
    target = deployment.base_url
    if args.command == "export":
        print(f"Exporting the configuration of {target} to {args.out}:", file=out)
        summary = export(deployment, args.out)
        for action in ("written", "removed"):
            for name in summary[action]:
                print(f"  {action} {name}", file=out)
        print(
            f"{len(summary['written'])} written, {len(summary['unchanged'])} unchanged, "
            f"{len(summary['removed'])} removed",
            file=out,
        )
        return 0
    desired = read_folder(args.folder, warn=warn)
    plan = make_plan(desired, read_deployment(deployment), prune=args.prune)
    print_plan(plan, target, out)
    if args.command == "plan" or args.dry_run:
        if plan.invalid:
            print(f"error: {len(plan.invalid)} invalid document(s); apply would change nothing", file=err)
            return 1
        return 0
    if plan.empty:
        return 0
    print(f"Applying to {target}:", file=out)
    try:
        applied = apply_plan(
            deployment, plan, force_entities=args.force_entity_changes, log=lambda t: print(t, file=out)
        )
    except ApplyError as exc:
        print(f"error: {exc}", file=err)
        print(
            f"Applied before the failure ({len(exc.applied)}): {', '.join(exc.applied) or 'nothing'}",
            file=err,
        )
        if exc.pending:
            print(f"Not applied ({len(exc.pending)}): {', '.join(exc.pending)}", file=err)
        return exc.exit_code
    print(f"Applied {len(applied)} change(s).", file=out)
    return 0


def main(argv: list[str] | None = None, *, out=None, err=None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser().parse_args(argv)
    _, _, errors, _ = _client_modules()
    try:
        return run(args, out, err)
    except SyncError as exc:
        print(f"error: {exc}", file=err)
        return 1
    except errors.ClientError as exc:
        print(f"error: {exc}", file=err)
        return exc.exit_code
    except OSError as exc:
        print(f"error: {exc}", file=err)
        return 1


if __name__ == "__main__":
    sys.exit(main())
