"""Optimistic concurrency on Table rows: write only if nobody changed the row since we read it."""

from __future__ import annotations

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError
from azure.data.tables import TableClient, UpdateMode


def replace_if_unchanged(table: TableClient, row: dict, etag: str) -> bool:
    """Replaces the row when its ETag still matches; False when another writer got there first (412)."""
    try:
        table.update_entity(
            row, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
        )
        return True
    except HttpResponseError as exc:
        if exc.status_code == 412:
            return False
        raise
