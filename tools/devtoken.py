"""Prints a bearer token the local host accepts (AUTH_MODE=local): a real RS256 JWT from the dev key pair.

Usage: python -m tools.devtoken --app-id <guid> [--admin] [--minutes 60]
       python -m tools.devtoken --init      (only create the key pair)
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization

from shared import settings
from shared.auth.keys import ensure_local_keys, key_id


def make_token(
    app_id: str,
    *,
    key_dir: str | Path,
    tenant_id: str,
    audience: str,
    admin: bool = False,
    roles: list[str] | None = None,
    minutes: int = 60,
    v2: bool = False,
    extra_claims: dict | None = None,
) -> str:
    private_path = ensure_local_keys(key_dir)
    private_key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
    now = int(time.time())
    claims = {
        "aud": audience,
        "iss": f"https://login.microsoftonline.com/{tenant_id}/v2.0"
        if v2
        else f"https://sts.windows.net/{tenant_id}/",
        "iat": now,
        "nbf": now,
        "exp": now + minutes * 60,
        "tid": tenant_id,
        "oid": str(uuid.uuid4()),
        "sub": app_id,
        "ver": "2.0" if v2 else "1.0",
        ("azp" if v2 else "appid"): app_id,
    }
    all_roles = list(roles or [])
    if admin:
        all_roles.append(settings.admin_role())
    if all_roles:
        claims["roles"] = all_roles
    claims.update(extra_claims or {})
    kid = key_id(private_key.public_key())  # type: ignore[arg-type]
    return jwt.encode(claims, private_key, algorithm="RS256", headers={"kid": kid})  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.devtoken", description=__doc__.splitlines()[0])
    parser.add_argument("--app-id", help="the calling application's ID (a GUID)")
    parser.add_argument("--admin", action="store_true", help=f"add the admin role ({settings.admin_role()})")
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--init", action="store_true", help="only create the local key pair")
    args = parser.parse_args(argv)

    from tools.devhost.settings import apply_settings

    apply_settings(Path.cwd())  # the same settings the local host reads
    key_dir = settings.local_key_dir()
    if args.init:
        print(ensure_local_keys(key_dir))
        return 0
    if not args.app_id:
        parser.error("--app-id is required")
    try:
        app_id = str(uuid.UUID(args.app_id.strip("{}")))
    except ValueError:
        parser.error(f"--app-id must be a GUID, not {args.app_id!r}")
    tenant = settings.tenant_id() or settings.DEFAULT_LOCAL_TENANT
    audience = (settings.audiences() or [settings.DEFAULT_LOCAL_AUDIENCE])[0]
    print(
        make_token(
            app_id,
            key_dir=key_dir,
            tenant_id=tenant,
            audience=audience,
            admin=args.admin,
            minutes=args.minutes,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
