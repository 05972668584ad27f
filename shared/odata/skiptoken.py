"""The continuation of a data entity set's nextLink (`$skiptoken`): opaque, bound to its query, tamper-evident.

It holds where the next page starts (the Table continuation of the page being read and the last record
sent, or the last key sent when reading in key order) and what must not be recomputed (the records still
allowed by `$top`, the `@odata.count`). It is signed with HMAC-SHA256 under a key shared by every instance
(shared/storage/signing_keys.py), and it names a fingerprint of the query it continues: a token that was
changed, or sent with other options, is a 400 InvalidSkipToken, never a storage error or a wrong page.
Pure: the key is passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from shared.errors import ValidationError

MAX_CHARS = 8192
_MAC_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def fingerprint(*parts: str) -> str:
    """A short digest of what a continuation is bound to (the collection and its canonical options)."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def encode(state: dict[str, Any], key: bytes) -> str:
    payload = json.dumps(state, separators=(",", ":"), sort_keys=True).encode()
    mac = hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
    return f"{_b64(payload)}.{_b64(mac)}"


def invalid() -> ValidationError:
    return ValidationError(
        "the $skiptoken is not valid for this query: follow the nextLink exactly as it was given",
        code="InvalidSkipToken",
    )


def decode(token: str, key: bytes, expected_fingerprint: str) -> dict[str, Any]:
    """The state that encode() signed; 400 InvalidSkipToken when it was changed, is for another query, or is
    not one of ours."""
    if not token or len(token) > MAX_CHARS or token.count(".") != 1:
        raise invalid()
    body, _, mac = token.partition(".")
    try:
        payload, given = _unb64(body), _unb64(mac)
    except (ValueError, TypeError):
        raise invalid() from None
    expected = hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
    if not hmac.compare_digest(given, expected):
        raise invalid()
    try:
        state = json.loads(payload)
    except ValueError:
        raise invalid() from None
    if not isinstance(state, dict) or state.get("f") != expected_fingerprint:
        raise invalid()
    return state
