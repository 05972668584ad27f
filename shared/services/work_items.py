"""The work-queue message shapes shared by dispatchers and workers."""

from __future__ import annotations

import json
from typing import Any

KIND_MESSAGE = "message"  # import one message
KIND_DRAIN = "drain"  # import a process-in-order job's waiting messages, one at a time
KIND_EXPORT = "export"  # run an export


def encode(**item: Any) -> str:
    return json.dumps({k: v for k, v in item.items() if v is not None}, separators=(",", ":"))


def snapshot(row: dict) -> dict:
    """A message row for a work item (the fields the worker needs to claim and import it without reading it):
    dates as ISO strings, no private keys (`_etag`), no empty values."""
    from datetime import datetime

    out = {}
    for key, value in row.items():
        if key.startswith("_") or value is None:
            continue
        out[key] = value.isoformat() if isinstance(value, datetime) else value
    return out


def decode(body: bytes | str) -> dict:
    data = json.loads(body)
    if not isinstance(data, dict) or "kind" not in data or "jobId" not in data:
        raise ValueError(f"not a work item: {str(body)[:200]}")
    return data
