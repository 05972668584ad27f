"""Profiles: where to connect and how to sign in, kept in a JSON file (Python 3.10 has no tomllib).

File: --config PATH, else $D365RI_CONFIG, else the per-user config folder (config_dir()). Shape:

    {"defaultProfile": "prod",
     "profiles": {"prod": {
        "baseUrl": "https://contoso.operations.dynamics.com",   # the API's base URL (D365 or this product)
        "tenant": "contoso.onmicrosoft.com",                     # Entra tenant (name or GUID)
        "clientId": "<app registration's application ID>",
        "auth": "secret" | "certificate" | "device-code" | "token",
        "secretEnv": "D365RI_CLIENT_SECRET", "secretFile": "/path/secret.txt",
        "certificateFile": "/path/key-and-cert.pem", "certificatePasswordEnv": "NAME",
        "tokenEnv": "D365RI_TOKEN", "tokenFile": "/path/token", "tokenCommand": ["cmd", "arg"],
        "scope": "<baseUrl>/.default", "authority": "https://login.microsoftonline.com",
        "caBundle": "/path/ca.pem", "maxEnqueueBytes": 104857600, "retries": 6, "timeout": 300,
        "jobs": {"customers": {"activityId": "<guid>", "entity": "Customer groups", "company": "usmf",
                                "project": "CustomerGroupsImport"}}}}}

Secrets never live in this file: only the name of an environment variable or the path of a file that
holds them. Environment variables override the profile: D365RI_PROFILE, D365RI_BASE_URL, D365RI_TENANT,
D365RI_CLIENT_ID, D365RI_SCOPE, D365RI_AUTHORITY; D365RI_TOKEN (a bearer token) selects token sign-in.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from d365ri.errors import UsageError

APP_DIR_NAME = "d365ri"
AUTH_KINDS = ("secret", "certificate", "device-code", "token")
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
# The Functions host refuses bodies over 104,857,600 bytes (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT's default) and
# the app's own MAX_ENQUEUE_BYTES stays at or below it; a 413 switches to the package API in any case.
DEFAULT_MAX_ENQUEUE_BYTES = 100 * 1024 * 1024
_PROFILE_KEYS = {
    "baseUrl",
    "tenant",
    "clientId",
    "auth",
    "secretEnv",
    "secretFile",
    "certificateFile",
    "certificatePasswordEnv",
    "tokenEnv",
    "tokenFile",
    "tokenCommand",
    "scope",
    "authority",
    "caBundle",
    "maxEnqueueBytes",
    "retries",
    "timeout",
    "jobs",
    "tokenCache",
}


def config_dir() -> Path:
    """The per-user folder of the config file and the token cache.

    Windows: %APPDATA%\\d365ri; macOS: ~/Library/Application Support/d365ri; else $XDG_CONFIG_HOME/d365ri
    (default ~/.config/d365ri). $D365RI_HOME overrides all of them.
    """
    override = os.environ.get("D365RI_HOME")
    if override:
        return Path(override)
    if sys.platform == "win32":
        base = os.environ.get("APPDATA") or str(Path.home() / "AppData" / "Roaming")
        return Path(base) / APP_DIR_NAME
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / APP_DIR_NAME
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / APP_DIR_NAME


def config_path(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get("D365RI_CONFIG") or config_dir() / "config.json")


@dataclass
class JobRef:
    """A recurring job: its activity ID and the defaults that go with it."""

    activity_id: str
    entity: str | None = None
    company: str | None = None
    project: str | None = None


@dataclass
class Profile:
    name: str
    base_url: str
    tenant: str | None = None
    client_id: str | None = None
    auth: str = "token"
    secret_env: str | None = None
    secret_file: str | None = None
    certificate_file: str | None = None
    certificate_password_env: str | None = None
    token_env: str | None = None
    token_file: str | None = None
    token_command: list[str] | None = None
    scope: str | None = None
    authority: str = DEFAULT_AUTHORITY
    ca_bundle: str | None = None
    max_enqueue_bytes: int = DEFAULT_MAX_ENQUEUE_BYTES
    retries: int = 6
    timeout: float = 300.0
    token_cache: str | None = None
    jobs: dict[str, dict] = field(default_factory=dict)

    @property
    def effective_scope(self) -> str:
        """`<base URL>/.default`, the scope D365 clients ask for, unless the profile names another."""
        return self.scope or f"{self.base_url.rstrip('/')}/.default"

    @property
    def cache_path(self) -> Path:
        return Path(self.token_cache) if self.token_cache else config_dir() / "token-cache.json"

    def job(self, ref: str) -> JobRef:
        """A job by alias (the profile's "jobs") or by activity ID (a GUID, braces allowed)."""
        if ref in self.jobs:
            spec = self.jobs[ref]
            activity = spec.get("activityId")
            if not activity:
                raise UsageError(f"job {ref!r} of profile {self.name!r} has no activityId")
            return JobRef(
                clean_guid(activity, f"job {ref!r}"),
                spec.get("entity"),
                spec.get("company"),
                spec.get("project"),
            )
        return JobRef(clean_guid(ref, "the job (activity ID)"))

    def public(self) -> dict[str, Any]:
        """The profile as shown to a person: names of secret sources, never secrets."""
        out = {
            "name": self.name,
            "baseUrl": self.base_url,
            "tenant": self.tenant,
            "clientId": self.client_id,
            "auth": self.auth,
            "scope": self.effective_scope,
            "authority": self.authority,
        }
        for key in ("secret_env", "secret_file", "certificate_file", "token_env", "token_file", "ca_bundle"):
            value = getattr(self, key)
            if value:
                out[_camel(key)] = value
        if self.token_command:
            out["tokenCommand"] = self.token_command
        if self.jobs:
            out["jobs"] = self.jobs
        return out


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(p.title() for p in rest)


def clean_guid(value: str, what: str) -> str:
    text = value.strip().strip("{}")
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise UsageError(
            f"{what} must be a GUID or a job alias of the profile, not {value!r}",
            hint="list aliases with `d365ri profile show`",
        ) from None


def read_config(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"profiles": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the config file {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("profiles", {}), dict):
        raise UsageError(f"the config file {path} must hold a JSON object with a 'profiles' object")
    data.setdefault("profiles", {})
    return data


def write_config(path: Path, data: dict[str, Any]) -> None:
    from d365ri.files import write_private_text

    write_private_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def load_profile(
    path: Path, name: str | None = None, *, base_url: str | None = None, env: dict | None = None
) -> Profile:
    """The profile to use: --profile, else $D365RI_PROFILE, else defaultProfile, else the only one.

    With no config file at all, a profile is made from the environment (D365RI_BASE_URL, ...) and
    --base-url, which is what scripts and the local host use.
    """
    env = os.environ if env is None else env
    data = read_config(path)
    profiles = data["profiles"]
    chosen = name or env.get("D365RI_PROFILE") or data.get("defaultProfile")
    if not chosen and len(profiles) == 1:
        chosen = next(iter(profiles))
    if chosen and chosen not in profiles:
        raise UsageError(
            f"no profile {chosen!r} in {path}",
            hint="create it with `d365ri profile add NAME --base-url URL ...`",
        )
    spec = dict(profiles.get(chosen) or {})
    unknown = set(spec) - _PROFILE_KEYS
    if unknown:
        raise UsageError(f"profile {chosen!r} in {path} has unknown keys: {', '.join(sorted(unknown))}")
    for key, var in (
        ("baseUrl", "D365RI_BASE_URL"),
        ("tenant", "D365RI_TENANT"),
        ("clientId", "D365RI_CLIENT_ID"),
        ("scope", "D365RI_SCOPE"),
        ("authority", "D365RI_AUTHORITY"),
    ):
        if env.get(var):
            spec[key] = env[var]
    if base_url:
        spec["baseUrl"] = base_url
    if env.get("D365RI_TOKEN") and not spec.get("tokenEnv"):
        spec["auth"], spec["tokenEnv"] = "token", "D365RI_TOKEN"
    if not spec.get("baseUrl"):
        raise UsageError(
            "no base URL: pass --base-url, set D365RI_BASE_URL, or create a profile",
            hint="d365ri profile add prod --base-url https://<env>.operations.dynamics.com --tenant ... "
            "--client-id ... --auth secret --secret-env D365RI_CLIENT_SECRET",
        )
    auth = spec.get("auth") or ("token" if spec.get("tokenEnv") or spec.get("tokenFile") else "secret")
    if auth not in AUTH_KINDS:
        raise UsageError(f"profile {chosen!r}: auth must be one of {', '.join(AUTH_KINDS)}, not {auth!r}")
    base = spec["baseUrl"].rstrip("/")
    if not base.lower().startswith(("http://", "https://")):
        raise UsageError(f"the base URL must start with https:// (or http:// locally), not {base!r}")
    command = spec.get("tokenCommand")
    if command is not None and (
        not isinstance(command, list) or not all(isinstance(a, str) for a in command)
    ):
        raise UsageError(f"profile {chosen!r}: tokenCommand must be a list of strings")
    jobs = spec.get("jobs") or {}
    if not isinstance(jobs, dict):
        raise UsageError(f"profile {chosen!r}: jobs must be an object of alias -> {{activityId, ...}}")
    return Profile(
        name=chosen or "(environment)",
        base_url=base,
        tenant=spec.get("tenant"),
        client_id=spec.get("clientId"),
        auth=auth,
        secret_env=spec.get("secretEnv"),
        secret_file=spec.get("secretFile"),
        certificate_file=spec.get("certificateFile"),
        certificate_password_env=spec.get("certificatePasswordEnv"),
        token_env=spec.get("tokenEnv"),
        token_file=spec.get("tokenFile"),
        token_command=command,
        scope=spec.get("scope"),
        authority=(spec.get("authority") or DEFAULT_AUTHORITY).rstrip("/"),
        ca_bundle=spec.get("caBundle"),
        max_enqueue_bytes=int(spec.get("maxEnqueueBytes") or DEFAULT_MAX_ENQUEUE_BYTES),
        retries=int(spec.get("retries", 6)),
        timeout=float(spec.get("timeout", 300)),
        token_cache=spec.get("tokenCache"),
        jobs=jobs,
    )
