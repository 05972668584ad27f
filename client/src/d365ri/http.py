"""HTTP with the retry rules D365 clients need, and errors a person can act on.

Retried (with exponential backoff and full jitter, at most `retries` times):
- network errors (connection refused or reset, timeouts, a body cut short);
- 429 and 503, after `Retry-After` seconds when the server sends it (PROTOCOL §1: integer seconds; an
  HTTP-date is honoured too);
- 502, 504, and 500 without the app's JSON error (a host-made 500 has an empty body).
Not retried: a 500 with a JSON error (UnknownActivity: no job has this activity ID), other 4xx.
A 401 gets one new token and one more try. Every request that is retried is safe to send again: enqueue
repeats the external ID and content (the server returns the first message ID), package calls repeat their
execution ID, dequeue hands out nothing new until the redelivery timeout, and ack is idempotent.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from d365ri.auth import TokenProvider, claims, token_app_id
from d365ri.errors import ApiError, AuthError, NetworkError, TooLargeError

log = logging.getLogger("d365ri")

MAX_RETRY_AFTER = 600.0  # seconds; a longer Retry-After is capped so a mistaken header cannot stall a job
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: an integer (what D365 sends), or an HTTP-date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff(attempt: int, *, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    """Full jitter: a random wait in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(cap, base * (2**attempt)))


def error_of(resp) -> tuple[str | None, str]:
    """(code, message) from the {"error":{"code","message"}} envelope (also OData's), else the text."""
    try:
        body = resp.json()
    except ValueError:
        return None, (resp.text or "").strip()[:500]
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return err.get("code"), str(err.get("message") or "")
    if isinstance(body, dict) and "Message" in body:  # D365's own error replies
        return None, str(body["Message"])
    return None, (resp.text or "").strip()[:500]


class Transport:
    """One requests.Session against one base URL, with a token provider and the retry rules above."""

    def __init__(
        self,
        base_url: str,
        tokens: TokenProvider | None,
        *,
        retries: int = 6,
        timeout: float = 300.0,
        verify: bool | str = True,
        sleep: Callable[[float], None] = time.sleep,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        import requests

        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.retries = max(0, retries)
        self.timeout = (15.0, timeout)  # connect, read
        self.sleep = sleep
        self.on_wait = on_wait or (lambda text: log.warning("%s", text))
        self.session = requests.Session()
        adapter = _LargeBlockAdapter(pool_maxsize=8)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        # Passed on each request: a session-wide verify loses to $REQUESTS_CA_BUNDLE (psf/requests#3829).
        self.verify = verify
        self.session.headers["User-Agent"] = "d365ri"
        self.waits: list[float] = []  # every sleep between attempts (seconds), for messages and tests

    def url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return self.base_url + path_or_url

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        what: str,
        auth: bool = True,
        body: Callable[[], Any] | bytes | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        stream: bool = False,
        ok: tuple[int, ...] = (200,),
        job: str | None = None,
        retry: bool = True,
    ):
        """Send with retries; the response when its status is in `ok`, else an ApiError subclass.

        `body` may be a callable that returns a fresh body (a file wrapper) for each attempt.
        """
        import requests

        url = self.url(path_or_url)
        attempt = 0
        refreshed = False
        while True:
            hdrs = dict(headers or {})
            token = None
            if auth and self.tokens is not None:
                token = self.tokens.token()
                hdrs["Authorization"] = f"Bearer {token}"
            data = body() if callable(body) else body
            try:
                resp = self.session.request(
                    method,
                    url,
                    data=data,
                    json=json_body,
                    headers=hdrs,
                    params=params,
                    stream=stream,
                    timeout=self.timeout,
                    verify=self.verify,
                    allow_redirects=False,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                if not retry or attempt >= self.retries:
                    raise NetworkError(
                        f"{what}: {type(exc).__name__} talking to {self._host(url)} after {attempt + 1} "
                        f"attempt(s): {_short(exc)}",
                        hint="check the base URL, the network and proxies (HTTPS_PROXY); try again later",
                    ) from None
                self._wait(backoff(attempt), f"{what}: network error ({_short(exc)}); retrying")
                attempt += 1
                continue
            finally:
                close = getattr(data, "close", None)
                if close is not None:
                    close()
            status = resp.status_code
            if status in ok:
                return resp
            code, message = error_of(resp)
            if status == 401 and token is not None and not refreshed:
                refreshed = True  # one new token: the cached one may have been revoked or rotated
                resp.close()
                if self.tokens is not None:
                    self.tokens.token(force=True)
                continue
            if retry and attempt < self.retries and self._retryable(status, code, resp):
                wait = retry_after_seconds(resp.headers.get("Retry-After"))
                reason = f"HTTP {status}" + (f" {code}" if code else "")
                if wait is not None:
                    wait = min(wait, MAX_RETRY_AFTER)
                    self._wait(wait, f"{what}: {reason}; the server asks to wait {wait:.0f} s (Retry-After)")
                else:
                    self._wait(backoff(attempt), f"{what}: {reason}; retrying")
                resp.close()
                attempt += 1
                continue
            raise self._error(resp, status, code, message, what, token, job)

    @staticmethod
    def _retryable(status: int, code: str | None, resp) -> bool:
        if status in (429, 503, 502, 504, 408):
            return True
        # A host-made 500 has no body; the app's 500s carry a JSON error (UnknownActivity) and mean it.
        return status == 500 and code is None

    def _wait(self, seconds: float, text: str) -> None:
        self.waits.append(seconds)
        self.on_wait(f"{text} (waiting {seconds:.1f} s)")
        self.sleep(seconds)

    @staticmethod
    def _host(url: str) -> str:
        from urllib.parse import urlsplit

        return urlsplit(url).netloc

    def _error(self, resp, status, code, message, what, token, job) -> ApiError:
        resp.close()
        if status in (401, 403) and token is None:  # a SAS URL (no token): expired, or not for this operation
            return ApiError(
                status,
                code,
                message,
                what=what,
                hint="the storage URL (SAS) was refused: it has expired or does not allow this operation; "
                "run the command again for a fresh URL",
            )
        if status == 401:
            return AuthError(status, code, message, what=what, hint=self._hint_401(token))
        if status == 403:
            return AuthError(status, code, message, what=what, hint=self._hint_403(token, job))
        if status == 413:
            return TooLargeError(
                status,
                code,
                message or "the request body is over the server's limit",
                what=what,
                hint="files over the enqueue limit go through the package API: `d365ri enqueue` switches by "
                "itself when it knows the data project (--project, or the job's 'project' in the profile)",
            )
        if status == 500 and code == "UnknownActivity":
            return ApiError(
                status,
                code,
                message,
                what=what,
                hint="no recurring job has this activity ID: copy the job's ID from the recurring data job "
                "(D365: Data management > Recurring data jobs) or the job list of this product",
            )
        if status == 404 and code is None and not message:
            return ApiError(
                status,
                code,
                "not found",
                what=what,
                hint=f"check the base URL {self.base_url} (no such route)",
            )
        return ApiError(status, code, message, what=what)

    def _hint_401(self, token: str | None) -> str:
        c = claims(token or "")
        parts = [
            "the server refused the token (401): it did not accept its signature, issuer, audience or expiry."
        ]
        if c.get("aud"):
            parts.append(
                f"The token's audience is {c['aud']!r}: it must be the API's App ID URI or, for D365, the "
                "environment URL (scope '<base URL>/.default'); set the profile's scope to match."
            )
        if c.get("iss"):
            parts.append(f"Its issuer is {c['iss']!r}: the tenant must be the one the API trusts.")
        parts.append(
            "D365: register the application under System administration > Setup > Microsoft Entra "
            "applications. This product: the audience must be in AUTH_AUDIENCES and the tenant AUTH_TENANT_ID."
        )
        return " ".join(parts)

    def _hint_403(self, token: str | None, job: str | None) -> str:
        app = token_app_id(token or "") or "(unknown application)"
        where = f"the recurring job {job}" if job else "a recurring job of that data project"
        return (
            f"the token is valid, but application {app} is not allowed on {where}. Grant it: D365 - Data "
            "management > Recurring data jobs > the job > Manage > Application ID (enabled); this product - add "
            '{"applicationId": "' + app + '", "enabled": true} to the job\'s authorizationPolicy '
            "(PUT /api/manage/jobs/{activityId}). A job bound to a legal entity also refuses other companies."
        )


def _large_block_adapter_class():
    import requests.adapters

    class LargeBlockAdapter(requests.adapters.HTTPAdapter):
        """Sends request bodies in 1 MiB writes instead of urllib3's 16 KiB (a third less CPU per upload)."""

        def init_poolmanager(self, *args, **kwargs):
            kwargs.setdefault("blocksize", 1024 * 1024)
            super().init_poolmanager(*args, **kwargs)

    return LargeBlockAdapter


def _LargeBlockAdapter(**kwargs):  # noqa: N802 (a class, built lazily so that importing this module stays cheap)
    return _large_block_adapter_class()(**kwargs)


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."
