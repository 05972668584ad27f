"""Bearer-token validation (PROTOCOL §8): RS256 only, issuer, audience, lifetime, calling application."""

from __future__ import annotations

from typing import Any

import jwt

from shared.auth.keys import KeyProvider
from shared.auth.principal import Principal
from shared.errors import AuthenticationError

ALGORITHMS = ["RS256"]  # fixed here, never taken from the token header


def issuers_for(tenant_id: str) -> list[str]:
    return [f"https://sts.windows.net/{tenant_id}/", f"https://login.microsoftonline.com/{tenant_id}/v2.0"]


def audience_variants(audiences: list[str]) -> list[str]:
    """Each configured audience with and without a trailing slash (clients differ)."""
    out: list[str] = []
    for aud in audiences:
        for variant in (aud.rstrip("/"), aud.rstrip("/") + "/"):
            if variant not in out:
                out.append(variant)
    return out


class TokenValidator:
    def __init__(
        self, keys: KeyProvider, *, tenant_id: str, audiences: list[str], leeway_seconds: int = 120
    ) -> None:
        if not audiences:
            raise RuntimeError("AUTH_AUDIENCES is empty: set the API's App ID URI (and/or client ID)")
        self._keys = keys
        self._issuers = issuers_for(tenant_id)
        self._audiences = audience_variants(audiences)
        self._leeway = leeway_seconds

    def validate(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthenticationError(f"the bearer token is malformed: {exc}") from exc
        if header.get("alg") not in ALGORITHMS:
            raise AuthenticationError(f"the token algorithm {header.get('alg')!r} is not accepted; use RS256")
        key = self._keys.get_key(header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                audience=self._audiences,
                issuer=self._issuers,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthenticationError("the token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise AuthenticationError("the token is not valid yet") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthenticationError("the token audience is not this API") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthenticationError("the token issuer is not the configured tenant") from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthenticationError("the token signature is not valid") from exc
        except jwt.PyJWTError as exc:
            raise AuthenticationError(f"the token is not valid: {exc}") from exc
        app_id = claims.get("appid") or claims.get("azp")
        if not app_id:
            raise AuthenticationError("the token names no calling application (appid/azp)")
        roles = claims.get("roles") or []
        return Principal(
            app_id=str(app_id).lower(),
            roles=frozenset(str(r) for r in roles),
            tenant_id=claims.get("tid"),
            claims=claims,
        )
