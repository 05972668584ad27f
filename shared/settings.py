"""Application settings, read from the environment (Function App settings or local.settings.json)."""

from __future__ import annotations

import functools
import os

DEFAULT_ADMIN_ROLE = "Integrations.Admin"
DEFAULT_LOCAL_TENANT = "00000000-0000-0000-0000-00000000a11c"
DEFAULT_LOCAL_AUDIENCE = "api://recurring-integrations-local"
DEFAULT_LOCAL_KEY_DIR = ".local"


def get(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def get_int(name: str, default: int) -> int:
    value = get(name)
    return int(value) if value is not None else default


def get_list(name: str) -> list[str]:
    """A comma- or semicolon-separated setting as a list of trimmed, non-empty items."""
    raw = get(name, "") or ""
    return [item.strip() for item in raw.replace(";", ",").split(",") if item.strip()]


def auth_mode() -> str:
    return (get("AUTH_MODE", "entra") or "entra").lower()


def tenant_id() -> str | None:
    return get("AUTH_TENANT_ID")


def audiences() -> list[str]:
    return get_list("AUTH_AUDIENCES")


def admin_role() -> str:
    return get("AUTH_ADMIN_ROLE", DEFAULT_ADMIN_ROLE) or DEFAULT_ADMIN_ROLE


def admin_apps() -> list[str]:
    return [a.lower() for a in get_list("AUTH_ADMIN_APPS")]


def local_key_dir() -> str:
    return get("AUTH_LOCAL_KEY_DIR", DEFAULT_LOCAL_KEY_DIR) or DEFAULT_LOCAL_KEY_DIR


def public_base_url() -> str | None:
    value = get("PUBLIC_BASE_URL")
    return value.rstrip("/") if value else None


def max_enqueue_bytes() -> int:
    """The largest file enqueue accepts, in bytes. By default 90% of the host's own body limit
    (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT, default 104,857,600), so the app's 413 that points to the package
    API is what partners see: bodies above the host limit are refused by the host, with no body, before
    the app runs (HOST.md, "Body size")."""
    host_limit = get_int("FUNCTIONS_REQUEST_BODY_SIZE_LIMIT", 104_857_600)
    return get_int("MAX_ENQUEUE_BYTES", host_limit // 10 * 9)


def enqueue_dedup_minutes() -> int:
    return get_int("ENQUEUE_DEDUP_MINUTES", 60)


def export_incremental_overlap_seconds() -> int:
    """How far an incremental export reaches back before the previous run's start. Rows whose write was
    stamped before that start but committed after its scan would otherwise never be exported."""
    return get_int("EXPORT_INCREMENTAL_OVERLAP_SECONDS", 300)


def config_check_seconds() -> float:
    """How often, at most, an HTTP process checks whether the configuration changed (CONFIG_CHECK_SECONDS,
    default 2): the bound within which a change made on one instance reaches requests on another."""
    return float(get("CONFIG_CHECK_SECONDS", "2") or 2)


def entity_partition_buckets() -> int:
    return get_int("ENTITY_PARTITION_BUCKETS", 16)


def running_in_azure() -> bool:
    return bool(get("WEBSITE_INSTANCE_ID"))


def import_writer_processes() -> int:
    """IMPORT_WRITER_PROCESSES: processes that write a large import's batches besides the app's own
    (shared/storage/writer_processes.py); 0 writes in the app's process. Default: the CPUs this process may
    use (the affinity mask, within the container's CPU quota), when there are two or more, at most 4 (one process
    writing is bound by one core: issue 14). At most 16; a value that is not a whole number writes in the app's
    process, with a warning in the log."""
    value = get("IMPORT_WRITER_PROCESSES")
    if value is not None:
        try:
            return min(max(0, int(value)), 16)
        except ValueError:
            import logging

            logging.getLogger(__name__).warning(
                "IMPORT_WRITER_PROCESSES must be a whole number, not %r: large imports are written in the "
                "app's process",
                value,
            )
            return 0
    cpus = usable_cpus()
    return min(cpus, 4) if cpus >= 2 else 0


@functools.cache
def usable_cpus() -> int:
    """The CPUs this process may use: its affinity mask, within the container's CPU quota. Read once per process
    (it is asked for every large window of an import)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return min(cpus, quota) if quota is not None else cpus


def cgroup_cpu_quota(root: str = "/sys/fs/cgroup") -> int | None:
    """The CPUs a container's CPU quota allows, rounded up (cgroup v2 `cpu.max` "<quota> <period>", or v1
    `cpu/cpu.cfs_quota_us` and `cpu.cfs_period_us`); None without a quota. The affinity mask shows the host's CPUs
    even when the container may use fewer."""
    import math

    try:
        with open(os.path.join(root, "cpu.max"), encoding="ascii") as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us"), encoding="ascii") as f:
            quota_us = int(f.read().strip())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us"), encoding="ascii") as f:
            period_us = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 else max(1, math.ceil(quota_us / period_us))


def xslt_limits() -> tuple[int, float, int, int]:
    """XSLT bounds (shared/formats/xslt.py): (XSLT_MEMORY_MB, default 512: a worker process's address
    space; XSLT_TIMEOUT_SECONDS, default 300: wall clock, then the worker is killed; XSLT_MAX_OUTPUT_MB,
    default 256: serialized result; XSLT_WORKERS, default 2: worker processes per app process)."""
    return (
        get_int("XSLT_MEMORY_MB", 512),
        float(get("XSLT_TIMEOUT_SECONDS", "300") or 300),
        get_int("XSLT_MAX_OUTPUT_MB", 256),
        get_int("XSLT_WORKERS", 2),
    )
