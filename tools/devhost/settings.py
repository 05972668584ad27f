"""Read app settings and host.json the way the Functions host does, so local runs see the same configuration."""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOCAL_SETTINGS = "local.settings.json"
EXAMPLE_SETTINGS = "local.settings.example.json"

# The real host polls every 1 minute by default; locally a second keeps tests and demos snappy.
LOCAL_MAX_POLLING_CAP = 1.0

# App settings of the HTTP side. The first two are the host's own (EnvironmentSettingNames.cs); the last two
# belong to the local host: the master key the real host keeps in its secrets store, and the front end's cut-off.
BODY_SIZE_LIMIT_SETTING = "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"
DISABLE_HOMEPAGE_SETTING = "AzureWebJobsDisableHomepage"
MASTER_KEY_SETTING = "DEVHOST_MASTER_KEY"
HTTP_TIMEOUT_SETTING = "DEVHOST_HTTP_TIMEOUT_SECONDS"
# ScriptConstants.DefaultMaxRequestBodySize, which Program.cs gives Kestrel.
DEFAULT_BODY_SIZE_LIMIT = 104_857_600
# The Azure front end (load balancer) drops an HTTP request with no response after 230 s.
DEFAULT_HTTP_TIMEOUT_SECONDS = 230.0


class SettingsError(RuntimeError):
    """A settings file or host.json is unreadable, or a referenced setting is missing."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise SettingsError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise SettingsError(f"{path} must hold a JSON object")
    return data


def _values(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    data = _read_json(path)
    if data.get("IsEncrypted"):
        raise SettingsError(f"{path} is encrypted; decrypt it (func settings decrypt) or recreate it")
    values = data.get("Values") or {}
    if not isinstance(values, dict):
        raise SettingsError(f'{path}: "Values" must be an object of strings')
    # App settings are strings on Azure; accept JSON scalars written by hand but present them as strings.
    return {
        str(k): (json.dumps(v) if isinstance(v, bool) else str(v)) for k, v in values.items() if v is not None
    }


def file_settings(root: Path) -> dict[str, str]:
    """The "Values" of local.settings.json layered over those of local.settings.example.json."""
    merged = _values(root / EXAMPLE_SETTINGS)
    merged.update(_values(root / LOCAL_SETTINGS))
    return merged


def apply_settings(
    root: Path, environ: MutableMapping[str, str] | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """Put file settings into the environment without overriding what is already set there.

    Returns (applied, overridden): settings taken from the files, and file settings the
    environment overrode (so the host can say so).
    """
    env = os.environ if environ is None else environ
    applied: dict[str, str] = {}
    overridden: dict[str, str] = {}
    for key, value in file_settings(root).items():
        if key in env:
            overridden[key] = env[key]
        else:
            env[key] = value
            applied[key] = value
    return applied, overridden


def local_http_port(root: Path) -> int | None:
    """Host.LocalHttpPort from local.settings.json, which `func start` also honours."""
    for name in (LOCAL_SETTINGS, EXAMPLE_SETTINGS):
        path = root / name
        if path.is_file():
            port = (_read_json(path).get("Host") or {}).get("LocalHttpPort")
            if port is not None:
                return int(port)
    return None


_PLACEHOLDER = re.compile(r"%([^%]+)%")


def resolve_placeholders(text: str, environ: Mapping[str, str] | None = None, *, what: str = "value") -> str:
    """Replace %SETTING% with the app setting's value, as the host does for binding expressions."""
    env = os.environ if environ is None else environ

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise SettingsError(
                f"{what} {text!r} refers to app setting {name!r}, which is not set "
                f"(add it to {LOCAL_SETTINGS} Values or the environment)"
            )
        return env[name]

    return _PLACEHOLDER.sub(lookup, text)


_TIMESPAN = re.compile(r"^(?:(?P<days>\d+)\.)?(?P<h>\d+):(?P<m>\d+)(?::(?P<s>\d+(?:\.\d+)?))?$")


def parse_timespan(value: Any, *, int_unit: float = 1.0) -> float:
    """Seconds in a .NET TimeSpan string ("d.hh:mm:ss.fff"); bare numbers are scaled by int_unit."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) * int_unit
    match = _TIMESPAN.match(str(value).strip())
    if not match:
        raise SettingsError(f"{value!r} is not a TimeSpan like 00:00:30")
    return (
        int(match.group("days") or 0) * 86400
        + int(match.group("h")) * 3600
        + int(match.group("m")) * 60
        + float(match.group("s") or 0)
    )


def _get_ci(section: Mapping[str, Any], key: str, default: Any = None) -> Any:
    # host.json is bound by .NET configuration, which ignores the case of keys.
    for k, v in section.items():
        if k.lower() == key.lower():
            return v
    return default


@dataclass(frozen=True)
class QueueSettings:
    batch_size: int = 16
    new_batch_threshold: int = 8
    max_polling_interval: float = 2.0
    visibility_timeout: float = 0.0
    max_dequeue_count: int = 5
    message_encoding: str = "base64"

    @property
    def local_polling_interval(self) -> float:
        return min(self.max_polling_interval, LOCAL_MAX_POLLING_CAP)


@dataclass(frozen=True)
class HostConfig:
    route_prefix: str = "api"
    queues: QueueSettings = field(default_factory=QueueSettings)


HOST_OVERRIDE_PREFIX = "AzureFunctionsJobHost__"


def apply_host_overrides(data: dict[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """host.json with app settings `AzureFunctionsJobHost__a__b=value` laid over `a.b`, as the host's
    configuration does ("Override host.json values" in the host.json reference; the host adds the
    environment with that prefix to the `AzureFunctionsJobHost` section, ScriptConstants/
    HostJsonFileConfigurationSource). Keys are case-insensitive, as in .NET configuration."""
    env = os.environ if environ is None else environ
    for name, value in env.items():
        if not name.lower().startswith(HOST_OVERRIDE_PREFIX.lower()):
            continue
        path = [part for part in name[len(HOST_OVERRIDE_PREFIX) :].split("__") if part]
        if not path:
            continue
        node = data
        for key in path[:-1]:
            existing = next((k for k in node if k.lower() == key.lower()), None)
            if existing is None or not isinstance(node[existing], dict):
                node[existing or key] = {}
            node = node[existing or key]
        leaf = next((k for k in node if k.lower() == path[-1].lower()), path[-1])
        node[leaf] = value
    return data


def load_host_config(root: Path) -> HostConfig:
    """The parts of host.json the local host honours, with app-setting overrides; defaults match the host."""
    path = root / "host.json"
    data = apply_host_overrides(_read_json(path) if path.is_file() else {})
    extensions = _get_ci(data, "extensions", {}) or {}
    http = _get_ci(extensions, "http", {}) or {}
    route_prefix = _get_ci(http, "routePrefix", "api")
    route_prefix = "api" if route_prefix is None else str(route_prefix).strip("/")

    q = _get_ci(extensions, "queues", {}) or {}
    batch_size = int(_get_ci(q, "batchSize", 16))
    if not 1 <= batch_size <= 32:
        raise SettingsError(f"host.json extensions.queues.batchSize must be 1..32, not {batch_size}")
    encoding = str(_get_ci(q, "messageEncoding", "base64")).lower()
    if encoding not in ("base64", "none"):
        raise SettingsError(
            f'host.json extensions.queues.messageEncoding must be "base64" or "none", not {encoding!r}'
        )
    queues = QueueSettings(
        batch_size=batch_size,
        new_batch_threshold=int(_get_ci(q, "newBatchThreshold", batch_size // 2)),
        # host.json v1 wrote milliseconds as a number; v2 writes a TimeSpan.
        max_polling_interval=parse_timespan(_get_ci(q, "maxPollingInterval", "00:00:02"), int_unit=0.001),
        visibility_timeout=parse_timespan(_get_ci(q, "visibilityTimeout", "00:00:00")),
        max_dequeue_count=int(_get_ci(q, "maxDequeueCount", 5)),
        message_encoding=encoding,
    )
    return HostConfig(route_prefix=route_prefix, queues=queues)


@dataclass(frozen=True)
class HttpSettings:
    """The HTTP side's settings, read once at start (after the app settings are applied).

    ``body_size_limit`` in bytes; ``timeout_seconds`` is how long a client waits for a response before the
    front end answers for the function; ``master_key_generated`` says the key was made up at start.
    """

    master_key: str
    master_key_generated: bool = False
    body_size_limit: int = DEFAULT_BODY_SIZE_LIMIT
    timeout_seconds: float = DEFAULT_HTTP_TIMEOUT_SECONDS


def load_http_settings(environ: Mapping[str, str] | None = None) -> HttpSettings:
    """HttpSettings from the app settings; SettingsError names a setting the local host cannot use.

    HttpRequestBodySizeMiddleware applies FUNCTIONS_REQUEST_BODY_SIZE_LIMIT only when it parses as a long;
    otherwise Kestrel keeps ScriptConstants.DefaultMaxRequestBodySize.
    """
    env = os.environ if environ is None else environ
    limit = DEFAULT_BODY_SIZE_LIMIT
    raw_limit = env.get(BODY_SIZE_LIMIT_SETTING, "").strip()
    if raw_limit:
        try:
            limit = int(raw_limit)
        except ValueError:
            limit = DEFAULT_BODY_SIZE_LIMIT
        if limit < 0:
            raise SettingsError(
                f"{BODY_SIZE_LIMIT_SETTING} must be a number of bytes >= 0, not {raw_limit!r}"
            )
    timeout = DEFAULT_HTTP_TIMEOUT_SECONDS
    raw_timeout = env.get(HTTP_TIMEOUT_SETTING, "").strip()
    if raw_timeout:
        try:
            timeout = float(raw_timeout)
        except ValueError:
            timeout = -1.0
        if not timeout > 0:
            raise SettingsError(
                f"{HTTP_TIMEOUT_SETTING} must be a number of seconds > 0, not {raw_timeout!r}"
            )
    key = env.get(MASTER_KEY_SETTING, "")
    generated = not key
    if generated:
        # Never a fixed default: a local host reachable from elsewhere must not run functions for anyone.
        key = secrets.token_urlsafe(32)
    return HttpSettings(
        master_key=key, master_key_generated=generated, body_size_limit=limit, timeout_seconds=timeout
    )


def homepage_disabled(environ: Mapping[str, str] | None = None) -> bool:
    """HomepageMiddleware.IsHomepageDisabled: the setting equals "true", ignoring case; read per request."""
    env = os.environ if environ is None else environ
    return env.get(DISABLE_HOMEPAGE_SETTING, "").lower() == "true"
