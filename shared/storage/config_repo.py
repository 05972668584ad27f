"""Configuration documents in Table storage: one partition per kind, one row per document."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.errors import ConflictError, NotFoundError

# A Table string property holds 32K UTF-16 characters; larger documents are split across properties.
_CHUNK = 30_000
_MAX_CHUNKS = 30


def _encode(doc: dict) -> dict[str, str]:
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    chunks = [text[i : i + _CHUNK] for i in range(0, len(text), _CHUNK)] or [""]
    if len(chunks) > _MAX_CHUNKS:
        raise ConflictError("the document is too large to store", code="DocumentTooLarge", status=413)
    return {f"Body{i}": chunk for i, chunk in enumerate(chunks)}


def _decode(row: dict) -> dict:
    parts = []
    i = 0
    while f"Body{i}" in row:
        parts.append(row[f"Body{i}"])
        i += 1
    return json.loads("".join(parts))


# Every write replaces this row, so its ETag changes: a cheap version of the whole configuration that
# processes on other instances compare against to know when their caches are stale.
_VERSION_KEY = ("meta", "version")


class ConfigRepository:
    def __init__(self, table: TableClient) -> None:
        self._table = table

    def get_version(self) -> str:
        """An opaque version of the whole configuration (the version row's ETag; "none" before any write).
        One point read."""
        try:
            row = self._table.get_entity(*_VERSION_KEY, select=["PartitionKey"])
        except ResourceNotFoundError:
            return "none"
        return row.metadata.get("etag") or "none"

    def _bump_version(self) -> None:
        self._table.upsert_entity(
            {"PartitionKey": _VERSION_KEY[0], "RowKey": _VERSION_KEY[1], "ChangedAt": datetime.now(UTC)},
            mode=UpdateMode.REPLACE,
        )

    def find(self, kind: str, key: str) -> dict | None:
        try:
            row = self._table.get_entity(kind, key.lower())
        except ResourceNotFoundError:
            return None
        return _decode(row)

    def get(self, kind: str, key: str) -> dict:
        doc = self.find(kind, key)
        if doc is None:
            raise NotFoundError(f"{kind} {key!r} does not exist", code=f"{kind.capitalize()}NotFound")
        return doc

    def _row(self, kind: str, key: str, doc: dict) -> dict[str, Any]:
        return {
            "PartitionKey": kind,
            "RowKey": key.lower(),
            "UpdatedAt": datetime.now(UTC),
            **_encode(doc),
        }

    def upsert(self, kind: str, key: str, doc: dict) -> bool:
        """Returns True when the document was created, False when it replaced one."""
        try:
            self._table.create_entity(self._row(kind, key, doc))
            created = True
        except ResourceExistsError:
            self._table.upsert_entity(self._row(kind, key, doc), mode=UpdateMode.REPLACE)
            created = False
        self._bump_version()
        return created

    def create(self, kind: str, key: str, doc: dict) -> None:
        try:
            self._table.create_entity(self._row(kind, key, doc))
        except ResourceExistsError as exc:
            raise ConflictError(f"{kind} {key!r} already exists") from exc
        self._bump_version()

    def delete(self, kind: str, key: str) -> bool:
        if self.find(kind, key) is None:
            return False
        self._table.delete_entity(kind, key.lower())
        self._bump_version()
        return True

    def list(self, kind: str) -> Iterator[dict]:
        for row in self._table.query_entities("PartitionKey eq @kind", parameters={"kind": kind}):
            yield _decode(row)
