"""Token validation: every way a token can be wrong is refused, and the right ones identify the caller."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.auth.keys import EntraKeyProvider, LocalKeyProvider, ensure_local_keys, key_id
from shared.auth.principal import Principal
from shared.auth.tokens import TokenValidator
from shared.errors import AuthenticationError
from tools.devtoken import make_token

TENANT = "11111111-2222-3333-4444-555555555555"
AUD = "api://ri-test"
APP = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("keys")
    ensure_local_keys(directory)
    return directory


@pytest.fixture(scope="module")
def validator(key_dir):
    return TokenValidator(LocalKeyProvider(key_dir), tenant_id=TENANT, audiences=[AUD])


def token(key_dir, **kw):
    return make_token(APP, key_dir=key_dir, tenant_id=TENANT, audience=AUD, **kw)


def private_key(key_dir):
    return serialization.load_pem_private_key((key_dir / "dev-signing-key.pem").read_bytes(), password=None)


def sign(key_dir, claims, *, headers=None, key=None):
    key = key or private_key(key_dir)
    hdr = {"kid": key_id(private_key(key_dir).public_key())}
    hdr.update(headers or {})
    return jwt.encode(claims, key, algorithm="RS256", headers=hdr)


def base_claims(**over):
    now = int(time.time())
    claims = {
        "aud": AUD,
        "iss": f"https://sts.windows.net/{TENANT}/",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "appid": APP,
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def test_valid_v1_token_identifies_the_app(validator, key_dir):
    principal = validator.validate(token(key_dir))
    assert principal.app_id == APP
    assert principal.roles == frozenset()


def test_valid_v2_token_uses_azp(validator, key_dir):
    principal = validator.validate(token(key_dir, v2=True))
    assert principal.app_id == APP
    assert principal.claims["iss"].endswith("/v2.0")


def test_audience_with_trailing_slash_is_accepted(validator, key_dir):
    assert validator.validate(sign(key_dir, base_claims(aud=AUD + "/"))).app_id == APP


def test_app_id_is_lower_cased(validator, key_dir):
    assert validator.validate(sign(key_dir, base_claims(appid=APP.upper()))).app_id == APP


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        (base_claims(exp=int(time.time()) - 3600), "expired"),
        (base_claims(nbf=int(time.time()) + 3600), "not valid yet"),
        (base_claims(aud="api://someone-else"), "audience"),
        (base_claims(iss="https://sts.windows.net/99999999-2222-3333-4444-555555555555/"), "issuer"),
        (base_claims(appid=None), "appid/azp"),
        (base_claims(exp=None), "exp"),
    ],
    ids=["expired", "not-yet-valid", "wrong-audience", "wrong-issuer", "no-appid", "no-exp"],
)
def test_bad_claims_are_refused(validator, key_dir, claims, message):
    with pytest.raises(AuthenticationError, match=message):
        validator.validate(sign(key_dir, claims))


def test_small_clock_skew_is_tolerated(validator, key_dir):
    assert validator.validate(sign(key_dir, base_claims(nbf=int(time.time()) + 30))).app_id == APP


def test_wrong_key_is_refused(validator, key_dir):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(AuthenticationError, match="signature"):
        validator.validate(sign(key_dir, base_claims(), key=other))


def test_unknown_kid_is_refused(validator, key_dir):
    with pytest.raises(AuthenticationError, match="unknown key"):
        validator.validate(sign(key_dir, base_claims(), headers={"kid": "not-our-key"}))


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_alg_none_is_refused(validator, key_dir):
    forged = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(base_claims())}."
    with pytest.raises(AuthenticationError, match="algorithm"):
        validator.validate(forged)


def test_hs256_signed_with_the_public_key_is_refused(validator, key_dir):
    import hashlib
    import hmac

    public_pem = (key_dir / "dev-signing-key.pub.pem").read_bytes()
    header = _b64({"alg": "HS256", "typ": "JWT", "kid": key_id(private_key(key_dir).public_key())})
    body = _b64(base_claims())
    mac = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    with pytest.raises(AuthenticationError, match="algorithm"):
        validator.validate(forged)


def test_garbage_is_refused(validator):
    with pytest.raises(AuthenticationError, match="malformed"):
        validator.validate("not-a-jwt")


def test_admin_role_present_or_absent(validator, key_dir):
    admin = validator.validate(token(key_dir, admin=True))
    plain = validator.validate(token(key_dir))
    assert admin.is_admin("Integrations.Admin", [])
    assert not plain.is_admin("Integrations.Admin", [])
    assert plain.is_admin("Integrations.Admin", [APP.upper()])  # listed as an admin app


def test_principal_roles_are_a_set():
    assert Principal(app_id=APP, roles=frozenset({"x"})).is_admin("x", [])


# Entra JWKS: caching and key rollover, with an injected fetcher (no network) ---------------------


class FakeEntra:
    def __init__(self):
        self.keys = [rsa.generate_private_key(public_exponent=65537, key_size=2048)]
        self.fetches: list[str] = []

    def jwk(self, key, kid):
        data = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        data.update({"kid": kid, "use": "sig", "kty": "RSA"})
        return data

    def __call__(self, url):
        self.fetches.append(url)
        if url.endswith("openid-configuration"):
            return {"jwks_uri": f"https://login.microsoftonline.com/{TENANT}/discovery/v2.0/keys"}
        return {"keys": [self.jwk(k, f"kid{i}") for i, k in enumerate(self.keys)]}

    def token(self, index):
        return jwt.encode(base_claims(), self.keys[index], algorithm="RS256", headers={"kid": f"kid{index}"})


def test_entra_keys_are_cached_and_refreshed_on_rollover():
    entra = FakeEntra()
    now = [1000.0]
    provider = EntraKeyProvider(TENANT, fetch_json=entra, clock=lambda: now[0], min_refresh_interval=60)
    validator = TokenValidator(provider, tenant_id=TENANT, audiences=[AUD])
    assert validator.validate(entra.token(0)).app_id == APP
    assert validator.validate(entra.token(0)).app_id == APP
    assert len(entra.fetches) == 2  # metadata + keys, once

    entra.keys.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))  # rollover
    now[0] += 61
    assert validator.validate(entra.token(1)).app_id == APP
    assert len(entra.fetches) == 3  # only the JWKS again


def test_entra_unknown_kid_does_not_refetch_within_the_interval():
    entra = FakeEntra()
    now = [1000.0]
    provider = EntraKeyProvider(TENANT, fetch_json=entra, clock=lambda: now[0], min_refresh_interval=60)
    provider.get_key("kid0")
    fetched = len(entra.fetches)
    with pytest.raises(AuthenticationError):
        provider.get_key("bogus")
    assert len(entra.fetches) == fetched


def test_entra_refuses_plain_http_metadata():
    from shared.auth.keys import fetch_json_https

    with pytest.raises(AuthenticationError, match="non-HTTPS"):
        fetch_json_https("http://login.example/keys")
