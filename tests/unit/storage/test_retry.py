"""Transient storage failures are retried at the call, with backoff and jitter; others are raised at once."""

from __future__ import annotations

import pytest
from azure.core.exceptions import (
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from shared.storage.retry import TransientRetry, is_transient


def status_error(status: int) -> HttpResponseError:
    error = HttpResponseError(message=f"status {status}")
    error.status_code = status
    return error


@pytest.mark.parametrize(
    "error",
    [
        ServiceRequestError("connection refused"),
        ServiceResponseError("Connection reset by peer"),
        ConnectionResetError(),
        TimeoutError(),
        *(status_error(s) for s in (408, 429, 500, 502, 503, 504)),
    ],
)
def test_transient_errors(error):
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [status_error(400), status_error(409), status_error(412), ResourceNotFoundError("gone"), ValueError()],
)
def test_other_errors_are_not_transient(error):
    assert not is_transient(error)


def flaky(failures: list[BaseException], result="done"):
    calls = []

    def fn():
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return result

    return fn, calls


def test_retries_until_success_with_growing_jittered_backoff():
    sleeps, seen = [], []
    retry = TransientRetry(
        attempts=5, base_delay=1.0, max_delay=3.0, sleep=sleeps.append, on_retry=lambda n, e: seen.append(n)
    )
    fn, calls = flaky([ServiceResponseError("reset")] * 3)
    assert retry.call(fn) == "done"
    assert len(calls) == 4 and retry.retries == 3 and seen == [1, 2, 3]
    caps = [min(3.0, 2.0**n) for n in (1, 2, 3)]
    assert all(0 <= s <= cap for s, cap in zip(sleeps, caps, strict=True))


def test_gives_up_after_the_attempts_with_the_last_error():
    retry = TransientRetry(attempts=3, sleep=lambda s: None)
    fn, calls = flaky([ServiceRequestError(f"refused {i}") for i in range(5)])
    with pytest.raises(ServiceRequestError, match="refused 2"):
        retry.call(fn)
    assert len(calls) == 3


def test_a_permanent_error_is_raised_at_once():
    retry = TransientRetry(attempts=5, sleep=lambda s: None)
    fn, calls = flaky([status_error(400)])
    with pytest.raises(HttpResponseError):
        retry.call(fn)
    assert len(calls) == 1
