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
from contextvars import ContextVar
from typing import Any

import azure.functions as func

from shared.api import json_body
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


# The byte cap of the endpoint running in this thread (endpoint(max_body=...)), for read_json.
_BODY_LIMIT: ContextVar[int | None] = ContextVar("body_limit", default=None)


def body_limit() -> int:
    """The running endpoint's byte cap; json_body.ACTION_BODY_BYTES outside one, or when it has none."""
    return _BODY_LIMIT.get() or json_body.ACTION_BODY_BYTES


def read_json(
    req, *, lenient_quotes: bool = False, required: bool = True, max_string_chars: int | None = None
) -> Any:
    """The request body as JSON, parsed by shared.api.json_body under the endpoint's byte cap and its depth,
    number and Unicode limits; never by a Python evaluator. `lenient_quotes` accepts PSI's single-quoted
    `{'messageId':'…'}` (PROTOCOL §4). `max_string_chars` bounds each string (json_body.JsonLimits).

    Errors: 411 LengthRequired (empty, no Content-Length), 413 PayloadTooLarge, 400 EmptyBody,
    InvalidUnicode, JsonTooDeep, JsonNumberTooLong, JsonStringTooLong or InvalidJson.
    """
    raw = req.get_body() or b""
    limits = json_body.JsonLimits(max_bytes=body_limit(), max_string_chars=max_string_chars)
    text = json_body.decode_body(raw, limits).strip()
    if not text:
        require_length(req)
        if required:
            raise ValidationError("the request body is empty; send a JSON object", code="EmptyBody")
        return None
    return json_body.parse_text(text, limits, lenient_quotes=lenient_quotes)


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


# Leading and trailing junk around an ID. Anchored matches (the trailing one on the reversed text) are
# linear; a `junk+$` search retried at every position was quadratic on long runs of spaces.
_ID_LEADING = re.compile(r"[\s\"'{]*")
_ID_TRAILING = re.compile(r"[\s\"'}]*")


def clean_id(value: str | None) -> str:
    """IDs come back quoted (RIS keeps `"guid"`), braced or percent-encoded; strip all of that."""
    text = urllib.parse.unquote(value or "").replace("\\", "")  # `"\"guid\""`: IDs never hold backslashes
    start = _ID_LEADING.match(text).end()
    end = len(text) - _ID_TRAILING.match(text[::-1]).end()
    return text[start:end] if end > start else ""


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


def require_partner(principal) -> None:
    """403 ApplicationNotAuthorized unless the caller is an admin, has an enabled application registration
    (shared.services.app_access), or has an enabled entry in the authorization policy of at least one job
    (enabled or not). Anything the OData actions show needs one of those (execution_access.may_see), so
    this refuses only callers that could never be answered, and refuses them before their body is read."""
    from shared import settings
    from shared.services import app_access
    from shared.services.registry import config_service

    if principal.is_admin(settings.admin_role(), settings.admin_apps()):
        return
    if app_access.registered(principal):
        return
    if not any(job.allows(principal.app_id) for job in config_service().cached_jobs()):
        raise ForbiddenError(
            f"application {principal.app_id} is not on the authorization policy of any job: an "
            "administrator adds it, enabled, to the policy of the jobs it works with",
            code="ApplicationNotAuthorized",
        )


_AUTH_LEVELS = ("anonymous", "caller", "partner", "admin")


def endpoint(
    *,
    auth: str = "admin",
    unknown_status: int | None = None,
    max_body: int | None = json_body.ACTION_BODY_BYTES,
) -> Callable:
    """Wraps a handler, in one order for every endpoint, so nothing is parsed for a caller who may not call
    (issue 17): the settings check (503 Misconfigured); authentication (401; skipped for `anonymous`); the
    role check (403: `admin` needs the admin role, `partner` an entry on some job's policy, `caller` none
    here, its handler authorizes on the job it names); the byte cap `max_body` (413 PayloadTooLarge; None
    when the handler checks the size itself after its own authorization, as enqueue does); then the
    handler, whose read_json parses under the same cap. AppError maps to the error envelope, anything
    unexpected to a logged 500 instead of a stack trace on the wire."""
    if auth not in _AUTH_LEVELS:
        raise ValueError(f"auth must be one of {', '.join(_AUTH_LEVELS)}, not {auth!r}")

    def decorate(handler: Callable) -> Callable:
        def wrapper(req: func.HttpRequest):
            from shared.setting_problems import misconfigured_message, startup_problems

            problems = startup_problems()
            if problems:
                return error_response("Misconfigured", misconfigured_message(problems), 503)
            try:
                principal = None
                if auth != "anonymous":
                    principal = authenticate(req)
                    if auth == "admin":
                        require_admin(principal)
                    elif auth == "partner":
                        require_partner(principal)
                if max_body is not None:
                    json_body.check_size(len(req.get_body() or b""), max_body)
                limit = _BODY_LIMIT.set(max_body)
                try:
                    return handler(req) if auth == "anonymous" else handler(req, principal)
                finally:
                    _BODY_LIMIT.reset(limit)
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


MAX_CONTINUATION_CHARS = 4096
# A Table continuation is {"PartitionKey": next, "RowKey": next}, each an opaque token that arrived in an
# HTTP header (printable ASCII; Azurite base64-encodes the key), at most a key's 1 KiB.
_CONTINUATION_KEYS = {"PartitionKey", "RowKey"}
_CONTINUATION_VALUE = re.compile(r"[\x20-\x7e]{0,1024}")


def decode_continuation(text: str | None) -> Any:
    """The Table continuation that encode_continuation wrote into a nextLink, checked for shape, so a forged
    one is a 400 InvalidContinuation, never a storage error."""
    if not text:
        return None
    import base64

    invalid = ValidationError(
        "the continuation token is not valid; follow nextLink as given", code="InvalidContinuation"
    )
    if len(text) > MAX_CONTINUATION_CHARS:
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        token = json_body.parse_bytes(
            raw, json_body.JsonLimits(max_bytes=MAX_CONTINUATION_CHARS, max_depth=2)
        )
    except (ValueError, AppError):
        raise invalid from None
    if (
        not isinstance(token, dict)
        or not token
        or not set(token) <= _CONTINUATION_KEYS
        or not all(
            v is None or (isinstance(v, str) and _CONTINUATION_VALUE.fullmatch(v)) for v in token.values()
        )
    ):
        raise invalid
    return token


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
        if len(raw) > 20:  # int() would parse thousands of digits first (quadratic) just to refuse them
            raise ValueError(raw)
        value = int(raw)
    except ValueError:
        raise ValidationError(f"{name} must be an integer", code="InvalidParameter") from None
    if not minimum <= value <= maximum:
        raise ValidationError(f"{name} must be between {minimum} and {maximum}", code="InvalidParameter")
    return value
