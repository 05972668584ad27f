"""Short-lived, narrowly scoped blob SAS URLs (PROTOCOL §7): fetched or PUT by clients without a token.

- Clients built from a connection string (Azurite, or a key-based account) sign with the account key.
- Clients on a managed identity (`StorageClients.uses_identity`) sign with a user-delegation key, which
  the identity obtains with `get_user_delegation_key` (Storage Blob Data Contributor/Owner allows it).
  The key is cached per clients object and renewed well before it expires.

Each URL names one blob and grants only what its use needs: create/write for an upload URL, read for
a download URL. Start times are back-dated a few minutes for clock skew; identity-signed URLs are
HTTPS-only.
"""

from __future__ import annotations

import threading
import weakref
from datetime import UTC, datetime, timedelta
from typing import Any

DEFAULT_LIFETIME = timedelta(hours=1)
MAX_LIFETIME = timedelta(hours=12)
CLOCK_SKEW = timedelta(minutes=5)
_KEY_LIFETIME = timedelta(hours=24)  # a user-delegation key may live 7 days; a day is plenty

READ = "r"
CREATE_WRITE = "cw"

_lock = threading.Lock()
_delegation_keys: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # clients -> (key expiry, key)


class SasError(RuntimeError):
    """The clients cannot sign a SAS (e.g. a connection string holding a SAS token rather than a key)."""


def _now() -> datetime:
    return datetime.now(UTC)


def _delegation_key(clients, not_after: datetime):
    """A user-delegation key valid at least until `not_after`, from the cache or fresh."""
    with _lock:
        cached = _delegation_keys.get(clients)
        if cached is not None and cached[0] >= not_after:
            return cached[1]
    start = _now() - CLOCK_SKEW
    expiry = max(not_after, _now() + _KEY_LIFETIME)
    key = clients.blob_service.get_user_delegation_key(key_start_time=start, key_expiry_time=expiry)
    with _lock:
        _delegation_keys[clients] = (expiry, key)
    return key


def blob_sas_url(
    clients,
    container: str,
    blob: str,
    *,
    permission: str,
    lifetime: timedelta = DEFAULT_LIFETIME,
    content_disposition: str | None = None,
    content_type: str | None = None,
) -> str:
    """The URL of `container/blob` with a SAS granting `permission` ("r", "cw") for `lifetime`."""
    from azure.storage.blob import BlobSasPermissions, generate_blob_sas

    if not container or not blob:
        raise ValueError("a SAS names one blob: container and blob are required")
    if lifetime <= timedelta(0) or lifetime > MAX_LIFETIME:
        raise ValueError(f"a SAS lives between 0 and {MAX_LIFETIME}")
    perms = BlobSasPermissions.from_string(permission)
    start = _now() - CLOCK_SKEW
    expiry = _now() + lifetime
    blob_client = clients.blob_service.get_blob_client(container, blob)
    options: dict[str, Any] = {}
    if content_disposition:
        options["content_disposition"] = content_disposition
    if content_type:
        options["content_type"] = content_type
    if clients.uses_identity:
        key = _delegation_key(clients, expiry + CLOCK_SKEW)
        token = generate_blob_sas(
            account_name=clients.blob_service.account_name,
            container_name=container,
            blob_name=blob,
            user_delegation_key=key,
            permission=perms,
            start=start,
            expiry=expiry,
            protocol="https",
            **options,
        )
    else:
        credential = clients.blob_service.credential
        account_key = getattr(credential, "account_key", None)
        account_name = getattr(credential, "account_name", None) or clients.blob_service.account_name
        if not account_key:
            raise SasError(
                "the storage connection string has no AccountKey: SAS URLs cannot be signed; use an "
                "account-key connection string or a managed identity"
            )
        token = generate_blob_sas(
            account_name=account_name,
            container_name=container,
            blob_name=blob,
            account_key=account_key,
            permission=perms,
            start=start,
            expiry=expiry,
            **options,
        )
    return f"{blob_client.url}?{token}"


def read_url(clients, container: str, blob: str, **kw) -> str:
    """A download URL: read only."""
    return blob_sas_url(clients, container, blob, permission=READ, **kw)


def write_url(clients, container: str, blob: str, **kw) -> str:
    """An upload URL: create and write that one blob; no read, list or delete."""
    return blob_sas_url(clients, container, blob, permission=CREATE_WRITE, **kw)
