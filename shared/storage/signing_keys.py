"""Secret keys that every instance shares, kept as blobs: created once by whichever instance needs one first.

The continuation of an OData nextLink is signed with one (shared/odata/skiptoken.py), so that a link made by
one instance is accepted by every other. Deleting the blob rotates the key: links made before then get 400.
"""

from __future__ import annotations

import secrets
import threading

from azure.core.exceptions import ResourceExistsError

KEY_BYTES = 32
_PREFIX = "keys/"
_lock = threading.Lock()
_cache: dict[tuple[str, str], bytes] = {}


def shared_key(container, name: str) -> bytes:
    """The key `name` from the container (created with a fresh random value when absent), cached per process."""
    cache_key = (container.url, name)
    with _lock:
        if cache_key in _cache:
            return _cache[cache_key]
    blob = container.get_blob_client(_PREFIX + name)
    try:
        blob.upload_blob(secrets.token_bytes(KEY_BYTES), overwrite=False)
    except ResourceExistsError:
        pass  # another instance made it first: use theirs
    key = blob.download_blob().readall()
    if len(key) < 16:
        raise RuntimeError(f"the signing key blob {_PREFIX}{name} is too short; delete it to make a new one")
    with _lock:
        _cache[cache_key] = key
    return key
