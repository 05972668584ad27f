"""Sign-in: bearer tokens from MSAL (client secret, certificate, device code) or a token you already have.

Every provider has `token(force=False) -> str` and `describe() -> str`. Secrets come only from an environment
variable or a file named in the profile (config.py), and no token or secret is ever printed or logged.

MSAL facts relied on (msal 1.28+, github.com/AzureAD/microsoft-authentication-library-for-python):
- `acquire_token_for_client` looks in the token cache first and only calls the token endpoint when the cached
  token is missing or near expiry; `remove_tokens_for_client()` drops it (used once after a 401).
- An authority must be https (msal/authority.py `canonicalize`). Authorities that are not Microsoft's
  (a national cloud proxy, a test server) need `instance_discovery=False`, or MSAL asks
  `https://<host>/common/discovery/instance` first.
- `http_client` replaces MSAL's requests.Session, so a private CA bundle works for the token endpoint too.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from d365ri.config import DEFAULT_AUTHORITY, Profile
from d365ri.errors import NetworkError, SignInError, UsageError
from d365ri.files import write_private_text

_WELL_KNOWN_AUTHORITIES = {
    "https://login.microsoftonline.com",
    "https://login.microsoftonline.us",
    "https://login.chinacloudapi.cn",
    "https://login.partner.microsoftonline.cn",
}
# Refresh a token this long before it expires (seconds); MSAL applies its own margin for the tokens it caches.
_EXPIRY_MARGIN = 300

# AADSTS codes a partner meets when setting up, and what to do about each.
_AADSTS_HINTS = {
    "AADSTS7000215": "the client secret is wrong or expired: create a new one on the app registration",
    "AADSTS7000222": "the client secret has expired: create a new one on the app registration",
    "AADSTS700016": "no application with this client ID in the tenant: check clientId and tenant",
    "AADSTS90002": "the tenant does not exist: check the tenant name or GUID",
    "AADSTS500011": "the resource (scope) is unknown in the tenant: the scope must be the API's App ID URI "
    "or, for D365, the environment URL followed by /.default",
    "AADSTS65001": "the application has no consent for the scope: grant admin consent on the app registration",
    "AADSTS700027": "the certificate is not registered on the app registration, or its thumbprint differs",
    "AADSTS70011": "the scope is not valid: use '<base URL or App ID URI>/.default'",
}


class TokenProvider(Protocol):
    def token(self, *, force: bool = False) -> str: ...

    def describe(self) -> str: ...


def claims(token: str) -> dict[str, Any]:
    """The JWT's payload, read without checking the signature (the server checks it): for messages only."""
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        data = json.loads(base64.urlsafe_b64decode(payload))
        return data if isinstance(data, dict) else {}
    except (IndexError, ValueError):
        return {}


def token_app_id(token: str) -> str | None:
    c = claims(token)
    return c.get("appid") or c.get("azp")


class StaticToken:
    """A token from an environment variable, a file or a command (dev tokens for the local host, CI, tests).

    A command (`tokenCommand`) is run again when its last token is within 5 minutes of its `exp`, so a
    long-running watch keeps working with short-lived dev tokens.
    """

    def __init__(self, profile: Profile, env: dict | None = None) -> None:
        self._profile = profile
        self._env = os.environ if env is None else env
        self._token: str | None = None
        self._lock = threading.Lock()

    def describe(self) -> str:
        p = self._profile
        if p.token_command:
            return f"a token from the command {p.token_command[0]!r}"
        if p.token_file:
            return f"a token from the file {p.token_file}"
        return f"a token from ${p.token_env or 'D365RI_TOKEN'}"

    def _read(self) -> str:
        p = self._profile
        if p.token_command:
            try:
                done = subprocess.run(
                    p.token_command, capture_output=True, text=True, timeout=120, check=False
                )
            except OSError as exc:
                raise SignInError(f"cannot run tokenCommand {p.token_command[0]!r}: {exc}") from None
            if done.returncode != 0:
                raise SignInError(
                    f"tokenCommand {p.token_command[0]!r} failed with exit code {done.returncode}",
                    hint=(done.stderr or "").strip()[-500:] or None,
                )
            return done.stdout.strip()
        if p.token_file:
            try:
                return Path(p.token_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise SignInError(f"cannot read the token file {p.token_file}: {exc}") from None
        name = p.token_env or "D365RI_TOKEN"
        value = (self._env.get(name) or "").strip()
        if not value:
            raise SignInError(f"no token: the environment variable {name} is empty")
        return value

    def token(self, *, force: bool = False) -> str:
        with self._lock:
            if self._token and not force:
                exp = claims(self._token).get("exp")
                if not (self._profile.token_command and isinstance(exp, int | float)) or (
                    exp - time.time() > _EXPIRY_MARGIN
                ):
                    return self._token
            value = self._read()
            if value.lower().startswith("bearer "):
                value = value[7:].strip()
            if not value:
                raise SignInError(f"{self.describe()} is empty")
            self._token = value
            return value


def read_secret(profile: Profile, env: dict) -> str:
    if profile.secret_file:
        try:
            value = Path(profile.secret_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SignInError(f"cannot read the client secret file {profile.secret_file}: {exc}") from None
        if not value:
            raise SignInError(f"the client secret file {profile.secret_file} is empty")
        return value
    name = profile.secret_env or "D365RI_CLIENT_SECRET"
    value = (env.get(name) or "").strip()
    if not value:
        raise SignInError(
            f"no client secret: the environment variable {name} is empty",
            hint="set it, or point the profile's secretFile at a file that holds the secret",
        )
    return value


def load_certificate(path: str, password: str | None) -> dict[str, str]:
    """MSAL's certificate credential from a PEM (private key + certificate) or a PFX/PKCS#12 file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SignInError(f"cannot read the certificate file {path}: {exc}") from None
    secret = password.encode() if password else None
    try:
        if path.lower().endswith((".pfx", ".p12")):
            key, cert, _ = pkcs12.load_key_and_certificates(data, secret)
        else:
            key = serialization.load_pem_private_key(data, secret)
            cert = x509.load_pem_x509_certificate(data)
    except (ValueError, TypeError) as exc:
        raise SignInError(
            f"cannot load the private key and certificate from {path}: {exc}",
            hint="a PEM file holding both the private key and the certificate, or a .pfx/.p12 file; "
            "the password comes from the profile's certificatePasswordEnv",
        ) from None
    if key is None or cert is None:
        raise SignInError(f"{path} must hold both a private key and a certificate")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {"private_key": key_pem, "thumbprint": cert.fingerprint(hashes.SHA1()).hex()}  # noqa: S303


def _session_with_ca(ca_bundle: str):
    """A requests.Session for MSAL that trusts `ca_bundle`. It is passed on every request: a session-wide
    `verify` loses to $REQUESTS_CA_BUNDLE in requests' merge_environment_settings (psf/requests#3829)."""
    import functools

    import requests

    session = requests.Session()
    session.request = functools.partial(session.request, verify=ca_bundle, timeout=60)  # type: ignore[method-assign]
    return session


class MsalToken:
    """Entra ID sign-in through MSAL with a persistent per-user token cache (0600 where supported)."""

    def __init__(self, profile: Profile, *, env: dict | None = None, out=None) -> None:
        if not profile.client_id:
            raise UsageError(
                f"profile {profile.name!r} has no clientId (the app registration's application ID)"
            )
        if not profile.tenant:
            raise UsageError(f"profile {profile.name!r} has no tenant (the Entra tenant name or GUID)")
        self._profile = profile
        self._env = os.environ if env is None else env
        self._out = out or sys.stderr
        self._app = None
        self._cache = None
        self._lock = threading.Lock()
        self._last: tuple[str, float] | None = None  # (token, monotonic expiry): one MSAL call per token

    def describe(self) -> str:
        p = self._profile
        how = {
            "secret": "client credentials with a secret",
            "certificate": "client credentials with a certificate",
            "device-code": "device-code sign-in",
        }[p.auth]
        return f"application {p.client_id} in tenant {p.tenant} ({how}), scope {p.effective_scope}"

    def _build(self):
        import msal

        p = self._profile
        cache = msal.SerializableTokenCache()
        path = p.cache_path
        if path.exists():
            try:
                cache.deserialize(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                pass  # a damaged cache only costs a new sign-in
        kwargs: dict[str, Any] = {"authority": f"{p.authority}/{p.tenant}", "token_cache": cache}
        if p.authority not in _WELL_KNOWN_AUTHORITIES and p.authority != DEFAULT_AUTHORITY:
            kwargs["instance_discovery"] = False
        if p.ca_bundle:
            kwargs["http_client"] = _session_with_ca(p.ca_bundle)
        try:
            if p.auth == "device-code":
                app = msal.PublicClientApplication(p.client_id, **kwargs)
            else:
                if p.auth == "secret":
                    credential: Any = read_secret(p, self._env)
                else:
                    if not p.certificate_file:
                        raise UsageError(f"profile {p.name!r} uses a certificate but has no certificateFile")
                    password = (
                        self._env.get(p.certificate_password_env) if p.certificate_password_env else None
                    )
                    credential = load_certificate(p.certificate_file, password)
                app = msal.ConfidentialClientApplication(p.client_id, client_credential=credential, **kwargs)
        except ValueError as exc:  # MSAL's authority checks, the tenant discovery
            raise SignInError(
                f"cannot use the authority {kwargs['authority']}: {exc}",
                hint="check the tenant, and that the authority is https",
            ) from None
        self._app, self._cache = app, cache

    def _save(self) -> None:
        if self._cache is not None and self._cache.has_state_changed:
            write_private_text(self._profile.cache_path, self._cache.serialize())
            self._cache.has_state_changed = False

    def token(self, *, force: bool = False) -> str:
        import requests

        try:
            return self._token(force)
        except requests.RequestException as exc:
            raise NetworkError(
                f"sign-in at {self._profile.authority}/{self._profile.tenant} failed: {type(exc).__name__}: "
                f"{str(exc)[:200]}",
                hint="check the network, proxies (HTTPS_PROXY) and the profile's authority; a private CA "
                "needs caBundle",
            ) from None

    def _token(self, force: bool) -> str:
        with self._lock:
            if self._last is not None and not force and self._last[1] - time.monotonic() > 60:
                return self._last[0]
            if self._app is None:
                self._build()
            scopes = [self._profile.effective_scope]
            app = self._app
            if self._profile.auth == "device-code":
                result = None
                accounts = app.get_accounts()
                if accounts:
                    result = app.acquire_token_silent(scopes, account=accounts[0], force_refresh=force)
                if not result:
                    flow = app.initiate_device_flow(scopes=scopes)
                    if "user_code" not in flow:
                        raise self._failure(flow)
                    print(flow["message"], file=self._out, flush=True)
                    result = app.acquire_token_by_device_flow(flow)
            else:
                if force:
                    app.remove_tokens_for_client()
                result = app.acquire_token_for_client(scopes)
            self._save()
            if not result or "access_token" not in result:
                raise self._failure(result or {})
            expires_in = float(result.get("expires_in") or 0)
            self._last = (result["access_token"], time.monotonic() + expires_in)
            return result["access_token"]

    def sign_out(self) -> None:
        path = self._profile.cache_path
        if path.exists():
            path.unlink()

    def _failure(self, result: dict) -> SignInError:
        error = result.get("error") or "sign-in failed"
        description = (result.get("error_description") or "").strip()
        first = description.splitlines()[0] if description else ""
        hint = next((h for code, h in _AADSTS_HINTS.items() if code in description), None)
        return SignInError(f"{self.describe()}: {error}" + (f": {first}" if first else ""), hint=hint)


def provider_for(profile: Profile, *, env: dict | None = None, out=None) -> TokenProvider:
    if profile.auth == "token":
        return StaticToken(profile, env)
    return MsalToken(profile, env=env, out=out)
