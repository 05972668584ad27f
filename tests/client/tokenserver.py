"""A local OpenID-compatible token endpoint for the MSAL tests (no internet): Entra's v2 endpoints, over HTTPS.

MSAL only accepts https authorities (msal/authority.py `canonicalize`), so the server has a self-signed
certificate for 127.0.0.1, whose PEM the client gets as its CA bundle. It serves what MSAL asks for with
`instance_discovery=False`:
- GET  /{tenant}/v2.0/.well-known/openid-configuration  (tenant discovery)
- POST /{tenant}/oauth2/v2.0/token      client_credentials (secret or client_assertion), device_code,
                                        refresh_token
- POST /{tenant}/oauth2/v2.0/devicecode (device authorization; the first poll answers authorization_pending)
Access tokens are RS256 JWTs from the local dev key (tools.devtoken.make_token, v2 shape: `azp`, issuer
https://login.microsoftonline.com/{tid}/v2.0), with the audience taken from the scope minus "/.default", so
the app in AUTH_MODE=local accepts them. Grant counts are kept per grant type for the tests.
"""

from __future__ import annotations

import base64
import datetime
import http.server
import ipaddress
import json
import ssl
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def self_signed(directory: Path, name: str = "tls") -> tuple[Path, Path]:
    """(certificate PEM, private key PEM) for 127.0.0.1, valid for a day."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt.pem", directory / f"{name}.key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


class TokenServer:
    def __init__(self, directory: Path, *, key_dir: Path, tenant: str, access_minutes: int = 60) -> None:
        self.tenant = tenant
        self.key_dir = key_dir
        self.secrets: dict[str, str] = {}  # client ID -> secret
        self.certificates: dict[str, object] = {}  # client ID -> public key
        self.public_clients: set[str] = set()
        self.counts: Counter = Counter()
        self.access_seconds = access_minutes * 60
        self._devices: dict[str, list] = {}  # device code -> [polls, audience]: the scope comes with the code
        self._refresh: dict[str, tuple[str, str]] = {}  # refresh token -> (client ID, audience)
        self.ca_path, key_path = self_signed(directory)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                if self.path.split("?")[0] == f"/{server.tenant}/v2.0/.well-known/openid-configuration":
                    server.counts["discovery"] += 1
                    return self._send(200, server.openid_configuration())
                self._send(404, {"error": "not_found"})

            def do_POST(self):  # noqa: N802
                form = dict(
                    urllib.parse.parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode())
                )
                path = self.path.split("?")[0]
                if path == f"/{server.tenant}/oauth2/v2.0/devicecode":
                    return self._send(*server.device_code(form))
                if path == f"/{server.tenant}/oauth2/v2.0/token":
                    return self._send(*server.token(form))
                self._send(404, {"error": "not_found"})

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_path, key_path)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.authority = f"https://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # Endpoints ------------------------------------------------------------------------------------------
    @property
    def token_endpoint(self) -> str:
        return f"{self.authority}/{self.tenant}/oauth2/v2.0/token"

    def openid_configuration(self) -> dict:
        base = f"{self.authority}/{self.tenant}"
        return {
            "issuer": f"{base}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": self.token_endpoint,
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    def device_code(self, form: dict) -> tuple[int, dict]:
        if form.get("client_id") not in self.public_clients:
            return 400, {
                "error": "unauthorized_client",
                "error_description": "AADSTS700016: no such application",
            }
        self.counts["devicecode"] += 1
        code = str(uuid.uuid4())
        self._devices[code] = [0, self._scope_audience(form)]
        return 200, {
            "device_code": code,
            "user_code": "LOCAL-123",
            "verification_uri": f"{self.authority}/devicelogin",
            "expires_in": 300,
            "interval": 1,
            "message": "To sign in, open the local device login page and enter the code LOCAL-123.",
        }

    def _scope_audience(self, form: dict) -> str:
        scopes = [
            s for s in form.get("scope", "").split() if s not in ("openid", "profile", "offline_access")
        ]
        scope = scopes[0] if scopes else ""
        return scope[: -len("/.default")] if scope.endswith("/.default") else scope

    def _access_token(self, client_id: str, audience: str) -> str:
        from tools.devtoken import make_token

        return make_token(
            client_id,
            key_dir=self.key_dir,
            tenant_id=self.tenant,
            audience=audience,
            v2=True,
            minutes=max(1, self.access_seconds // 60),
        )

    def _user_tokens(self, client_id: str, audience: str) -> dict:
        now = int(time.time())
        id_token = jwt.encode(
            {
                "iss": f"{self.authority}/{self.tenant}/v2.0",
                "aud": client_id,
                "sub": "local-user",
                "oid": "00000000-0000-0000-0000-0000000000a1",
                "tid": self.tenant,
                "iat": now,
                "nbf": now,
                "exp": now + 3600,
                "preferred_username": "partner@example.test",
                "name": "Local Partner",
            },
            "id-tokens-of-the-local-test-server-are-not-checked",
            algorithm="HS256",
        )
        refresh = f"rt-{uuid.uuid4()}"
        self._refresh[refresh] = (client_id, audience)
        return {
            "token_type": "Bearer",
            "scope": f"{audience}/.default",
            "expires_in": self.access_seconds,
            "access_token": self._access_token(client_id, audience),
            "refresh_token": refresh,
            "id_token": id_token,
            "client_info": _b64({"uid": "00000000-0000-0000-0000-0000000000a1", "utid": self.tenant}),
        }

    def token(self, form: dict) -> tuple[int, dict]:
        grant = form.get("grant_type", "")
        client_id = form.get("client_id", "")
        audience = self._scope_audience(form)
        self.counts[grant] += 1
        if grant == "client_credentials":
            if client_id in self.secrets:
                if form.get("client_secret") != self.secrets[client_id]:
                    return 401, {
                        "error": "invalid_client",
                        "error_description": "AADSTS7000215: Invalid client secret provided.",
                    }
            elif client_id in self.certificates:
                try:
                    jwt.decode(
                        form.get("client_assertion", ""),
                        self.certificates[client_id],
                        algorithms=["RS256", "PS256"],
                        audience=self.token_endpoint,
                        issuer=client_id,
                    )
                except jwt.PyJWTError as exc:
                    return 401, {"error": "invalid_client", "error_description": f"AADSTS700027: {exc}"}
                self.counts["client_assertion"] += 1
            else:
                return 400, {"error": "unauthorized_client", "error_description": "AADSTS700016: no such app"}
            return 200, {
                "token_type": "Bearer",
                "expires_in": self.access_seconds,
                "access_token": self._access_token(client_id, audience),
            }
        if grant == "urn:ietf:params:oauth:grant-type:device_code":
            code = form.get("device_code", "")
            if code not in self._devices:
                return 400, {"error": "expired_token", "error_description": "AADSTS70019: code expired"}
            self._devices[code][0] += 1
            if self._devices[code][0] == 1:  # the person has not signed in yet
                return 400, {"error": "authorization_pending", "error_description": "AADSTS70016: pending"}
            _, audience = self._devices.pop(code)
            return 200, self._user_tokens(client_id, audience)
        if grant == "refresh_token":
            owner, granted = self._refresh.pop(form.get("refresh_token", ""), (None, ""))
            if owner != client_id:
                return 400, {"error": "invalid_grant", "error_description": "AADSTS70000: bad refresh token"}
            return 200, self._user_tokens(client_id, audience or granted)
        return 400, {"error": "unsupported_grant_type"}
