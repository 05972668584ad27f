"""Signing-key sources: the Entra tenant's JWKS (with caching and rollover) or a local dev key pair."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.errors import AuthenticationError

LOCAL_PRIVATE_KEY = "dev-signing-key.pem"
LOCAL_PUBLIC_KEY = "dev-signing-key.pub.pem"

FetchJson = Callable[[str], dict[str, Any]]


class KeyProvider(Protocol):
    def get_key(self, kid: str | None) -> Any: ...


def fetch_json_https(url: str) -> dict[str, Any]:
    if not url.startswith("https://"):
        raise AuthenticationError(f"refusing to fetch signing keys over a non-HTTPS URL: {url}")
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 (https only, checked above)
        return json.loads(resp.read())


class EntraKeyProvider:
    """Keys of an Entra tenant. Cached for `ttl` seconds; an unknown `kid` forces a refresh (key rollover),
    at most once per `min_refresh_interval` so a flood of bad tokens cannot hammer the endpoint."""

    def __init__(
        self,
        tenant_id: str,
        *,
        fetch_json: FetchJson = fetch_json_https,
        authority: str = "https://login.microsoftonline.com",
        ttl: float = 24 * 3600,
        min_refresh_interval: float = 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metadata_url = f"{authority}/{tenant_id}/v2.0/.well-known/openid-configuration"
        self._fetch = fetch_json
        self._ttl = ttl
        self._min_refresh = min_refresh_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._jwks_uri: str | None = None

    def _refresh(self) -> None:
        if self._jwks_uri is None:
            self._jwks_uri = self._fetch(self._metadata_url)["jwks_uri"]
        jwks = self._fetch(self._jwks_uri)
        keys = {}
        for jwk in jwks.get("keys", []):
            if jwk.get("kty") != "RSA" or not jwk.get("kid"):
                continue
            keys[jwk["kid"]] = jwt.PyJWK.from_dict(jwk, algorithm="RS256").key
        self._keys = keys
        self._fetched_at = self._clock()

    def get_key(self, kid: str | None) -> Any:
        if not kid:
            raise AuthenticationError("the token has no key ID (kid)")
        with self._lock:
            now = self._clock()
            stale = self._fetched_at is None or now - self._fetched_at > self._ttl
            if stale or (kid not in self._keys and now - (self._fetched_at or 0) >= self._min_refresh):
                self._refresh()
            key = self._keys.get(kid)
        if key is None:
            raise AuthenticationError("the token is signed with an unknown key")
        return key


def key_id(public_key: rsa.RSAPublicKey) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:32]


def ensure_local_keys(directory: str | Path) -> Path:
    """Create the local dev key pair once; returns the private key path."""
    directory = Path(directory)
    private_path = directory / LOCAL_PRIVATE_KEY
    public_path = directory / LOCAL_PUBLIC_KEY
    if private_path.exists() and public_path.exists():
        return private_path
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    private_path.chmod(0o600)
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private_path


class LocalKeyProvider:
    """The public half of the local dev key pair; the same validation path as Entra."""

    def __init__(self, directory: str | Path) -> None:
        path = Path(directory) / LOCAL_PUBLIC_KEY
        if not path.exists():
            raise RuntimeError(
                f"AUTH_MODE=local needs the dev signing key at {path}; run `python -m tools.devtoken --init`"
            )
        self._key = serialization.load_pem_public_key(path.read_bytes())
        self._kid = key_id(self._key)  # type: ignore[arg-type]

    def get_key(self, kid: str | None) -> Any:
        if kid is not None and kid != self._kid:
            raise AuthenticationError("the token is signed with an unknown key")
        return self._key
