"""How many times the Functions host delivers a queue message, so a worker knows its last chance.

The Storage Queues extension (azure-sdk-for-net, `Microsoft.Azure.WebJobs.Extensions.Storage.Common/src/
Shared/Queues/QueueProcessor.cs`) invokes a message while `DequeueCount <= MaxDequeueCount`; after a failed
invocation with `DequeueCount >= MaxDequeueCount` it copies the message to `<queue>-poison` and deletes it,
and a message received with `DequeueCount > MaxDequeueCount` (its last run died) goes there without being
invoked. So the delivery whose count equals the maximum is the last one that runs: a worker that ends its
work in a terminal status then never depends on anything reading the poison queue.

The maximum comes from where the host reads it: host.json `extensions.queues.maxDequeueCount` (default 5,
`QueuesOptions.MaxDequeueCount`), overridden by the app setting
`AzureFunctionsJobHost__extensions__queues__maxDequeueCount` ("Override host.json values" in the
host.json reference; .NET configuration, so keys are case-insensitive). Read once, on first use; only
`json`, `os` and `pathlib` are imported (cold start).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_MAX_DEQUEUE_COUNT = 5
OVERRIDE_SETTING = "AzureFunctionsJobHost__extensions__queues__maxDequeueCount"
# host.json is deployed beside function_app.py and shared/ (the script root).
HOST_JSON = Path(__file__).resolve().parent.parent / "host.json"


def _get_ci(mapping: dict, key: str):
    for k, v in mapping.items():
        if isinstance(k, str) and k.lower() == key.lower():
            return v
    return None


def _from_environment() -> str | None:
    for name, value in os.environ.items():
        if name.lower() == OVERRIDE_SETTING.lower() and value.strip():
            return value
    return None


def _from_host_json(path: Path) -> object:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s (%s); assuming maxDequeueCount %s", path, exc, DEFAULT_MAX_DEQUEUE_COUNT)
        return None
    queues = _get_ci(_get_ci(data, "extensions") or {}, "queues") or {}
    return _get_ci(queues, "maxDequeueCount")


def read_max_dequeue_count(host_json: Path = HOST_JSON) -> int:
    """The host's maxDequeueCount (>= 1): the app setting override, else host.json, else 5."""
    raw = _from_environment()
    source = OVERRIDE_SETTING
    if raw is None:
        raw, source = _from_host_json(host_json), f"{host_json} extensions.queues.maxDequeueCount"
    if raw is None:
        return DEFAULT_MAX_DEQUEUE_COUNT
    try:
        value = int(str(raw).strip())
    except ValueError:
        value = 0
    if value < 1:
        log.warning("%s is %r, not a positive integer; assuming %s", source, raw, DEFAULT_MAX_DEQUEUE_COUNT)
        return DEFAULT_MAX_DEQUEUE_COUNT
    return value


@cache
def max_dequeue_count() -> int:
    """read_max_dequeue_count(), once per process (settings do not change while a worker runs)."""
    return read_max_dequeue_count()


@dataclass(frozen=True)
class Delivery:
    """One delivery of a queue message: its dequeue count (1 for the first) and the host's maximum."""

    count: int
    limit: int

    @property
    def last(self) -> bool:
        """True when the host will not run this message again if this invocation fails."""
        return self.count >= self.limit

    def __str__(self) -> str:
        return f"queue delivery {self.count} of {self.limit}"


def delivery(dequeue_count: int | None) -> Delivery | None:
    """The Delivery of a triggered message; None when the count is unknown (then it is never the last)."""
    if dequeue_count is None:
        return None
    return Delivery(int(dequeue_count), max_dequeue_count())
