"""Settings that stop the app from serving, found at start, named in every reply until they are fixed.

On the real host an exception raised while `function_app.py` is imported leaves a host with zero
functions: every route answers 404 and `/` answers 204, and nothing says why (HOST.md, "Indexing and
processes"). So the app never raises at import for a bad setting. It records the problem here, logs it,
and the HTTP endpoints answer 503 `Misconfigured` naming the setting, while `GET /api/health` reports
unhealthy with the list. Queue and timer functions keep running: none of these settings concern them.

Only environment reads happen here (cheap at import; cold start matters).
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass

from shared import settings

log = logging.getLogger(__name__)

# The host's default request body limit (ScriptConstants.DefaultMaxRequestBodySize in the Functions
# host); Kestrel refuses larger bodies before the function runs, with no body of ours.
HOST_BODY_LIMIT_SETTING = "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"
DEFAULT_HOST_BODY_LIMIT = 104_857_600


@dataclass(frozen=True)
class SettingProblem:
    """One setting that is missing or wrong: its name and what to do about it."""

    setting: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"setting": self.setting, "message": self.message}


def _int_problem(name: str, *, minimum: int, maximum: int) -> SettingProblem | None:
    raw = settings.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        return SettingProblem(name, f"{name} must be a whole number, not {raw!r}")
    if not minimum <= value <= maximum:
        return SettingProblem(name, f"{name} must be between {minimum} and {maximum}, not {value}")
    return None


def host_body_limit() -> int:
    """The host's request body limit in bytes (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT, default 104,857,600)."""
    try:
        return int(settings.get(HOST_BODY_LIMIT_SETTING) or DEFAULT_HOST_BODY_LIMIT)
    except ValueError:
        return DEFAULT_HOST_BODY_LIMIT


def find_problems() -> list[SettingProblem]:
    """Every setting problem that makes the HTTP endpoints unusable, in a stable order."""
    problems: list[SettingProblem] = []
    mode = settings.auth_mode()
    if mode not in ("entra", "local"):
        problems.append(SettingProblem("AUTH_MODE", f"AUTH_MODE must be 'entra' or 'local', not {mode!r}"))
    elif mode == "local" and settings.running_in_azure():
        problems.append(
            SettingProblem(
                "AUTH_MODE",
                "AUTH_MODE=local is refused in Azure (WEBSITE_INSTANCE_ID is set): its signing keys live on "
                "developer machines; use entra",
            )
        )
    elif mode == "entra":
        tenant = settings.tenant_id()
        if not tenant:
            problems.append(
                SettingProblem("AUTH_TENANT_ID", "AUTH_TENANT_ID (the Entra tenant ID) is not set")
            )
        else:
            try:
                uuid.UUID(tenant)
            except ValueError:
                problems.append(
                    SettingProblem("AUTH_TENANT_ID", f"AUTH_TENANT_ID must be a tenant GUID, not {tenant!r}")
                )
        if not settings.audiences():
            problems.append(
                SettingProblem(
                    "AUTH_AUDIENCES",
                    "AUTH_AUDIENCES (the API's application ID URI or client ID) is not set",
                )
            )
    env = os.environ
    if (
        not env.get("AzureWebJobsStorage")
        and not env.get("AzureWebJobsStorage__accountName")
        and not (
            env.get("AzureWebJobsStorage__blobServiceUri")
            and env.get("AzureWebJobsStorage__queueServiceUri")
            and env.get("AzureWebJobsStorage__tableServiceUri")
        )
    ):
        problems.append(
            SettingProblem(
                "AzureWebJobsStorage",
                "storage is not configured: set AzureWebJobsStorage (a connection string) or "
                "AzureWebJobsStorage__accountName (managed identity)",
            )
        )
    for name, low, high in (
        (HOST_BODY_LIMIT_SETTING, 1024, 2**40),
        ("MAX_ENQUEUE_BYTES", 1, 2**40),
        ("ENQUEUE_DEDUP_MINUTES", 0, 7 * 24 * 60),
        ("ENTITY_PARTITION_BUCKETS", 1, 1024),
        ("EXPORT_INCREMENTAL_OVERLAP_SECONDS", 0, 7 * 24 * 3600),
    ):
        problem = _int_problem(name, minimum=low, maximum=high)
        if problem:
            problems.append(problem)
    return problems


def find_warnings() -> list[SettingProblem]:
    """Settings that work but defeat a purpose, e.g. an enqueue limit the host's own limit hides."""
    warnings: list[SettingProblem] = []
    try:
        enqueue_limit = settings.max_enqueue_bytes()
    except ValueError:
        return warnings
    if enqueue_limit >= host_body_limit():
        warnings.append(
            SettingProblem(
                "MAX_ENQUEUE_BYTES",
                f"MAX_ENQUEUE_BYTES ({enqueue_limit}) is not below the host's {HOST_BODY_LIMIT_SETTING} "
                f"({host_body_limit()}): larger files get the host's bare 413 instead of ours, which "
                "points partners to the package API. Raise both together, keeping a margin.",
            )
        )
    return warnings


_problems: list[SettingProblem] | None = None


def startup_problems() -> list[SettingProblem]:
    """The problems found when the app was imported (computed and logged once per process)."""
    global _problems
    if _problems is None:
        _problems = find_problems()
        for problem in _problems:
            log.error(
                "configuration problem, HTTP endpoints answer 503 until it is fixed: %s", problem.message
            )
        for warning in find_warnings():
            log.warning("configuration warning: %s", warning.message)
    return _problems


def misconfigured_message(problems: list[SettingProblem]) -> str:
    names = ", ".join(dict.fromkeys(p.setting for p in problems))
    details = "; ".join(p.message for p in problems)
    return f"the service is misconfigured ({names}): {details}. An administrator must fix the app settings."
