"""Builds the one token validator of this process from settings (AUTH_MODE entra or local)."""

from __future__ import annotations

import threading

from shared import settings

_lock = threading.Lock()
_cache: dict[tuple, object] = {}  # settings -> TokenValidator (imported lazily: cold start)


def check_auth_mode() -> None:
    """Refuse `local` auth where the app runs in Azure: its keys are on developer machines."""
    mode = settings.auth_mode()
    if mode not in ("entra", "local"):
        raise RuntimeError(f"AUTH_MODE must be 'entra' or 'local', not {mode!r}")
    if mode == "local" and settings.running_in_azure():
        raise RuntimeError("AUTH_MODE=local is refused in Azure (WEBSITE_INSTANCE_ID is set); use entra")


def get_validator():
    from shared.auth.tokens import TokenValidator

    check_auth_mode()
    mode = settings.auth_mode()
    tenant = settings.tenant_id() or (settings.DEFAULT_LOCAL_TENANT if mode == "local" else None)
    audiences = settings.audiences() or ([settings.DEFAULT_LOCAL_AUDIENCE] if mode == "local" else [])
    key_dir = settings.local_key_dir()
    cache_key = (mode, tenant, tuple(audiences), key_dir)
    with _lock:
        validator = _cache.get(cache_key)
        if validator is None:
            if not tenant:
                raise RuntimeError("AUTH_TENANT_ID is not set")
            if mode == "local":
                from shared.auth.keys import LocalKeyProvider

                keys = LocalKeyProvider(key_dir)
            else:
                from shared.auth.keys import EntraKeyProvider

                keys = EntraKeyProvider(tenant)
            validator = TokenValidator(keys, tenant_id=tenant, audiences=audiences)
            _cache[cache_key] = validator
        return validator
