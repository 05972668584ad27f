"""Retries of storage calls that failed transiently, at the level of the failed call or batch.

The Azure SDK's RetryPolicy (azure-core `policies/_retry.py`) retries connection and read errors only for
HEAD, GET, PUT, DELETE, OPTIONS and TRACE, and a POST or PATCH only on a 500/503/504 *response*. A Table
transaction is a POST (`$batch`), so a connection reset inside `submit_transaction` reaches the caller
at once; so does one in a MERGE (PATCH) or an insert (POST). Where the operation is idempotent (a batch of
upserts, an upsert, a conditional update that is re-read first) this module retries it with exponential
backoff and full jitter, instead of letting one reset throw a whole file back to the start.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

log = logging.getLogger(__name__)

T = TypeVar("T")

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
DEFAULT_ATTEMPTS = 6  # 1 try + 5 retries: about 0.2 + 0.4 + 0.8 + 1.6 + 3.2 s of backoff at most
DEFAULT_BASE_DELAY = 0.2
DEFAULT_MAX_DELAY = 10.0


def is_transient(error: BaseException) -> bool:
    """A connection refused or reset, a timeout, or a 408/429/500/502/503/504 from the service."""
    if isinstance(error, (ServiceRequestError, ServiceResponseError, ConnectionError, TimeoutError)):
        return True
    if isinstance(error, HttpResponseError):
        return error.status_code in TRANSIENT_STATUS
    return False


def is_unsent(error: BaseException) -> bool:
    """A transient failure after which the request surely had no effect: the connection failed before the
    request was sent (azure-core's ServiceRequestError), or the service refused it as busy (429, 503). For
    operations that must not run twice (a work item whose duplicate would start the same export twice)."""
    if isinstance(error, ServiceRequestError):
        return True
    return isinstance(error, HttpResponseError) and error.status_code in (429, 503)


def describe(error: BaseException) -> str:
    """One line for logs and a message's `lastTransientError`."""
    return f"{type(error).__name__}: {error}".splitlines()[0][:500]


class TransientRetry:
    """Calls a function until it succeeds, a non-transient error is raised, or attempts run out.

    `on_retry(attempt, error)` is told of each transient failure that is retried (for a message's
    last transient error). Sleeps are `uniform(0, min(max_delay, base_delay * 2**attempt))` (full jitter).
    """

    def __init__(
        self,
        *,
        attempts: int = DEFAULT_ATTEMPTS,
        base_delay: float = DEFAULT_BASE_DELAY,
        max_delay: float = DEFAULT_MAX_DELAY,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[int, BaseException], None] | None = None,
        retryable: Callable[[BaseException], bool] = is_transient,
    ) -> None:
        self.attempts = max(1, attempts)
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep
        self._on_retry = on_retry
        self._retryable = retryable
        self.retries = 0  # transient failures retried, over the object's life

    def call(self, fn: Callable[[], T], *, what: str = "storage call") -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except Exception as error:
                if attempt == self.attempts or not self._retryable(error):
                    raise
                self.retries += 1
                log.warning(
                    "%s failed transiently (attempt %d), retrying: %s", what, attempt, describe(error)
                )
                if self._on_retry is not None:
                    self._on_retry(attempt, error)
                self._sleep(random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt)))
        raise AssertionError("unreachable")


def retry_call(fn: Callable[[], T], *, what: str = "storage call", **options) -> T:
    """`TransientRetry(**options).call(fn)`: for one idempotent call."""
    return TransientRetry(**options).call(fn, what=what)
