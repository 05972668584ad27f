"""HTTP plumbing shared by the blueprints: JSON replies, the error envelope, authentication, ID parsing.

Kept free of heavy imports: blueprints import it at module level, and cold start matters.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
import uuid
from collections.abc import Callable
from typing import Any

import azure.functions as func

from shared.errors import AppError, AuthenticationError, ForbiddenError, ValidationError

log = logging.getLogger("shared.api")

JSON = "application/json"


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None, *, mimetype: str = JSON
):
    return func.HttpResponse(
        json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        status_code=status,
        headers=headers,
        mimetype=mimetype,
        charset="utf-8",
    )


def error_response(code: str, message: str, status: int, headers: dict[str, str] | None = None):
    return json_response({"error": {"code": code, "message": message}}, status, headers)


def empty_response(status: int = 204):
    return func.HttpResponse(b"", status_code=status)


def app_error_response(exc: AppError):
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthenticationError) else None
    return error_response(exc.code, exc.message, exc.status, headers)


def read_json(req, *, lenient_quotes: bool = False, required: bool = True) -> Any:
    """The request body as JSON. `lenient_quotes` accepts PSI's single-quoted `{'messageId':'…'}`."""
    raw = req.get_body() or b""
    text = raw.decode("utf-8-sig", errors="replace").strip()
    if not text:
        require_length(req)
        if required:
            raise ValidationError("the request body is empty; send a JSON object", code="EmptyBody")
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if lenient_quotes:
            import ast

            try:
                value = ast.literal_eval(text)
                if isinstance(value, dict | list):
                    return value
            except (ValueError, SyntaxError):
                pass
        raise ValidationError(
            f"the request body is not valid JSON: {exc.msg} at position {exc.pos}", code="InvalidJson"
        ) from exc


def require_length(req) -> None:
    """411 for an empty body sent without Content-Length (chunked): the host forwards a body only when
    Content-Length > 0 (GrpcMessageConversionExtensions.ToRpcHttp; host issue #7930), so a chunked body
    arrives empty and would otherwise be reported as missing."""
    if (
        not req.get_body()
        and req.headers.get("content-length") is None
        and req.method not in ("GET", "DELETE")
    ):
        raise AppError(
            "the request has no Content-Length (a chunked body?); the Functions host drops bodies sent "
            "without one. Send the body with a Content-Length header",
            code="LengthRequired",
            status=411,
        )


_ID_JUNK = re.compile(r'^[\s"\'{]+|[\s"\'}]+$')


def clean_id(value: str | None) -> str:
    """IDs come back quoted (RIS keeps `"guid"`), braced or percent-encoded; strip all of that."""
    text = urllib.parse.unquote(value or "").replace("\\", "")  # `"\"guid\""`: IDs never hold backslashes
    previous = None
    while previous != text:
        previous = text
        text = _ID_JUNK.sub("", text).replace('\\"', "")
    return text


def parse_guid(value: str | None, what: str) -> str:
    text = clean_id(value)
    try:
        return str(uuid.UUID(text))
    except ValueError as exc:
        raise ValidationError(f"{what} {value!r} is not a GUID", code="InvalidId") from exc


def bearer_token(req) -> str:
    header = req.headers.get("Authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("send an Authorization: Bearer <token> header")
    return token.strip()


def authenticate(req):
    from shared.auth.validator import get_validator

    token = bearer_token(req)  # a missing token is the caller's 401, before any server-side setup
    return get_validator().validate(token)


def require_admin(principal) -> None:
    from shared import settings

    if not principal.is_admin(settings.admin_role(), settings.admin_apps()):
        raise ForbiddenError(
            f"application {principal.app_id} is not an administrator: it needs the role "
            f"{settings.admin_role()} or to be listed in AUTH_ADMIN_APPS",
            code="NotAdministrator",
        )


def endpoint(*, auth: str = "admin", unknown_status: int | None = None) -> Callable:
    """Wraps a handler: authenticates (`admin`, `caller` or `anonymous`), maps AppError to the error envelope,
    and turns anything unexpected into a logged 500 instead of a stack trace on the wire."""

    def decorate(handler: Callable) -> Callable:
        def wrapper(req: func.HttpRequest):
            from shared.setting_problems import misconfigured_message, startup_problems

            problems = startup_problems()
            if problems:
                return error_response("Misconfigured", misconfigured_message(problems), 503)
            try:
                if auth == "anonymous":
                    return handler(req)
                principal = authenticate(req)
                if auth == "admin":
                    require_admin(principal)
                return handler(req, principal)
            except AppError as exc:
                return app_error_response(exc)
            except Exception:
                log.exception("unhandled error in %s", handler.__name__)
                return error_response("InternalError", "an unexpected error occurred; see the logs", 500)

        # No functools.wraps: the worker inspects the signature, and `__wrapped__` would expose `principal`.
        wrapper.__name__ = handler.__name__
        wrapper.__qualname__ = handler.__qualname__
        wrapper.__doc__ = handler.__doc__
        return wrapper

    return decorate


def public_base_url(req) -> str:
    """The URL partners reach us at: the configured one, else the proxy's forwarded host and scheme, else the
    request's own. In Azure a TLS-terminating front end forwards http internally; clients need https."""
    from shared import settings

    configured = settings.public_base_url()
    if configured:
        return configured
    parsed = urllib.parse.urlsplit(req.url)
    scheme = (req.headers.get("X-Forwarded-Proto") or parsed.scheme or "http").split(",")[0].strip()
    host = (
        (req.headers.get("X-Forwarded-Host") or req.headers.get("Host") or parsed.netloc)
        .split(",")[0]
        .strip()
    )
    if settings.running_in_azure():
        scheme = "https"
    return f"{scheme}://{host}"


def encode_continuation(token: Any) -> str | None:
    if not token:
        return None
    import base64

    return base64.urlsafe_b64encode(json.dumps(token).encode()).decode().rstrip("=")


def decode_continuation(text: str | None) -> Any:
    if not text:
        return None
    import base64

    try:
        return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, json.JSONDecodeError) as exc:
        raise ValidationError(
            "the continuation token is not valid; follow nextLink as given", code="InvalidContinuation"
        ) from exc


def next_link(req, token: Any) -> str | None:
    encoded = encode_continuation(token)
    if not encoded:
        return None
    parsed = urllib.parse.urlsplit(req.url)
    params = {k: v for k, v in req.params.items() if k != "continuation"}
    params["continuation"] = encoded
    return f"{public_base_url(req)}{parsed.path}?{urllib.parse.urlencode(params)}"


def int_param(req, name: str, default: int, *, minimum: int = 1, maximum: int = 1000) -> int:
    raw = req.params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValidationError(f"{name} must be an integer", code="InvalidParameter") from exc
    if not minimum <= value <= maximum:
        raise ValidationError(f"{name} must be between {minimum} and {maximum}", code="InvalidParameter")
    return value
