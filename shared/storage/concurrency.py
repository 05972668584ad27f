"""Optimistic concurrency on Table rows: write only if nobody changed the row since we read it.

Every conditional write carries a fresh `WriteId`. When the connection drops after the service applied a
write (a reset after the request, shared/storage/retry.py), the caller cannot tell success from failure,
and the SDK's own retry of a PUT then meets a 412 caused by its first attempt. Re-reading the row and
finding our `WriteId` tells that the write landed, so it is neither lost nor applied twice.
"""

from __future__ import annotations

import random
import time
import uuid

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.storage.retry import DEFAULT_ATTEMPTS, DEFAULT_BASE_DELAY, is_transient

WRITE_ID = "WriteId"


def new_write_id() -> str:
    return uuid.uuid4().hex


def write_landed(table: TableClient, partition_key: str, row_key: str, write_id: str) -> bool:
    """True when the row now carries `write_id`: a write whose reply was lost was applied."""
    try:
        row = table.get_entity(partition_key, row_key, select=[WRITE_ID])
    except ResourceNotFoundError:
        return False
    return row.get(WRITE_ID) == write_id


def conditional_update(table: TableClient, row: dict, etag: str, *, mode: UpdateMode) -> bool:
    """Writes `row` (stamped with a new WriteId) if its ETag still matches. True when written; False when
    another writer got there first (412). Transient failures are retried after checking whether the lost
    attempt landed; anything else is raised."""
    return update_if_unchanged(table, row, etag, mode=mode)[0]


def update_if_unchanged(
    table: TableClient, row: dict, etag: str, *, mode: UpdateMode
) -> tuple[bool, str | None]:
    """conditional_update, with the row's new ETag: (written, new ETag). The ETag is None when it is unknown
    (a write found to have landed after its reply was lost); the caller then reads the row before writing
    it again."""
    row = {**row, WRITE_ID: new_write_id()}
    for attempt in range(1, DEFAULT_ATTEMPTS + 1):
        try:
            reply = table.update_entity(
                row, mode=mode, etag=etag, match_condition=MatchConditions.IfNotModified
            )
            return True, (reply or {}).get("etag")
        except HttpResponseError as exc:
            if exc.status_code == 412:
                # Another writer, or the SDK's retry of our own attempt that had landed.
                return write_landed(table, row["PartitionKey"], row["RowKey"], row[WRITE_ID]), None
            if not is_transient(exc) or attempt == DEFAULT_ATTEMPTS:
                raise
        except Exception as exc:
            if not is_transient(exc) or attempt == DEFAULT_ATTEMPTS:
                raise
        if write_landed(table, row["PartitionKey"], row["RowKey"], row[WRITE_ID]):
            return True, None
        time.sleep(random.uniform(0, DEFAULT_BASE_DELAY * 2**attempt))
    raise AssertionError("unreachable")


def replace_if_unchanged(table: TableClient, row: dict, etag: str) -> bool:
    """Replaces the row when its ETag still matches; False when another writer got there first (412)."""
    return conditional_update(table, row, etag, mode=UpdateMode.REPLACE)
