"""Independent storage calls sent at once: a request's latency is then its slowest call, not their sum.

Enqueue uses it for what must be stored before a message's row (its file and its two index rows): they do not
depend on each other, and each is written before the row, so a crash between them leaves only rows nobody
can reach (an index row without its message answers "not found"; a blob without a row is never read).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

# Requests of one process share this pool; each uses it only for the calls beyond its first (which runs in the
# request's own thread), so at most (POOL - 1) / 2 requests of three calls overlap before they queue here.
POOL = 16
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=POOL, thread_name_prefix="together")
        return _pool


def run_together(*calls: Callable[[], Any]) -> list[Any]:
    """Run `calls` at once (the first in this thread) and wait for all of them; their results, in order.

    Every call runs to its end even when another fails; then the first failure (in the order given) is raised."""
    if len(calls) <= 1:
        return [call() for call in calls]
    futures: list[Future] = [_executor().submit(call) for call in calls[1:]]
    first: Any = None
    error: BaseException | None = None
    try:
        first = calls[0]()
    except BaseException as exc:  # noqa: BLE001 - raised below, after the others ended
        error = exc
    results = [first]
    for future in futures:
        try:
            results.append(future.result())
        except BaseException as exc:  # noqa: BLE001
            error = error or exc
            results.append(None)
    if error is not None:
        raise error
    return results
