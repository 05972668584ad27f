"""Per-job leases in Table storage, so one worker at a time drains a process-in-order job."""

from __future__ import annotations

from datetime import timedelta

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient

from shared.storage.concurrency import replace_if_unchanged
from shared.storage.message_repo import now_utc


class LeaseRepository:
    def __init__(self, table: TableClient, *, scope: str = "job") -> None:
        self._table = table
        self._scope = scope

    def acquire(self, key: str, holder: str, duration: timedelta) -> bool:
        """Takes the lease when it is free, expired, or already ours; never when another holder has it."""
        row = {
            "PartitionKey": self._scope,
            "RowKey": key,
            "Holder": holder,
            "ExpiresAt": now_utc() + duration,
        }
        try:
            self._table.create_entity(row)
            return True
        except ResourceExistsError:
            pass
        try:
            current = self._table.get_entity(self._scope, key)
        except ResourceNotFoundError:
            return self.acquire(key, holder, duration)
        if current.get("Holder") != holder and current["ExpiresAt"] > now_utc():
            return False
        return replace_if_unchanged(self._table, row, current.metadata["etag"])

    def renew(self, key: str, holder: str, duration: timedelta) -> bool:
        return self.acquire(key, holder, duration)

    def release(self, key: str, holder: str) -> None:
        try:
            current = self._table.get_entity(self._scope, key)
        except ResourceNotFoundError:
            return
        if current.get("Holder") != holder:
            return
        try:
            self._table.delete_entity(
                self._scope, key, etag=current.metadata["etag"], match_condition=MatchConditions.IfNotModified
            )
        except HttpResponseError as exc:
            if exc.status_code not in (404, 412):
                raise

    def holder(self, key: str) -> str | None:
        try:
            current = self._table.get_entity(self._scope, key)
        except ResourceNotFoundError:
            return None
        return current.get("Holder") if current["ExpiresAt"] > now_utc() else None
