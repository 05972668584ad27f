"""Configuration documents in Table storage: one partition per kind, one row per document.

Optimistic concurrency: every document has an HTTP entity tag (`etag_of`), a strong, quoted value derived
from its row's Table ETag, so it changes on every write and stays the same across reads. A write names the
stored version it was based on (`Stored`, from `get_stored`) and lands only if the row is still that
version (a conditional insert when there was none, a replace with If-Match on the row's ETag otherwise);
otherwise it raises `ConfigChanged`, and the caller decides between a 412 (the client sent a precondition)
and reading again. `Preconditions` evaluates a request's If-Match / If-None-Match (RFC 9110 §13.1).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.errors import AppError, ConflictError, NotFoundError, ValidationError
from shared.storage.concurrency import WRITE_ID, new_write_id
from shared.storage.retry import DEFAULT_ATTEMPTS, DEFAULT_BASE_DELAY, is_transient

# A Table string property holds 32K UTF-16 characters; larger documents are split across properties.
_CHUNK = 30_000
# Characters Table storage refuses in PartitionKey and RowKey ("Understanding the Table service data model",
# learn.microsoft.com): / \ # ? and control characters; also lone surrogates, which UTF-8 cannot carry.
_KEY_REFUSED = re.compile("[/\\\\#?\\x00-\\x1f\\x7f-\\x9f\\ud800-\\udfff]")
_KEY_MAX_CHARS = 512  # 1 KiB of UTF-16, the key size limit


def _storable_key(key: str) -> bool:
    return len(key) <= _KEY_MAX_CHARS and not _KEY_REFUSED.search(key)


_MAX_CHUNKS = 30
MAX_ETAG_HEADER_CHARS = 2048  # a few dozen tags; a longer If-Match is not a client we serve


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


def etag_of(row_etag: str) -> str:
    """The HTTP ETag of a document: `"<32 hex>"`, a digest of its row's Table ETag (`W/"datetime'…'"`, weak
    and full of quotes, so not usable as is). Strong: a new row ETag on every write, the same on every read."""
    return '"' + hashlib.sha256(row_etag.encode()).hexdigest()[:32] + '"'


@dataclass(frozen=True)
class Stored:
    """A document as read, with the version it was read at: `etag` for HTTP, `row_etag` for the Table."""

    doc: dict
    etag: str
    row_etag: str


class ConfigChanged(Exception):
    """The row is no longer the version a write was based on (changed, created or deleted meanwhile)."""


def precondition_failed(message: str) -> AppError:
    return AppError(message, code="PreconditionFailed", status=412)


def parse_etags(header: str | None) -> tuple[str, ...] | None:
    """An If-Match / If-None-Match value as its entity tags: None when absent or blank, ("*",) for `*`,
    else the tags as sent (`"x"`, `W/"x"`; a bare `x` is read as `"x"`). 400 InvalidPrecondition when
    longer than MAX_ETAG_HEADER_CHARS."""
    if header is None or not header.strip():
        return None
    if len(header) > MAX_ETAG_HEADER_CHARS:
        raise ValidationError(
            f"the precondition header is longer than {MAX_ETAG_HEADER_CHARS} characters; send the ETag "
            "from your last GET",
            code="InvalidPrecondition",
        )
    if header.strip() == "*":
        return ("*",)
    tags = []
    for part in header.split(","):
        part = part.strip()
        if part:
            tags.append(part if part.startswith(('"', "W/")) else f'"{part}"')
    return tuple(tags) or None


@dataclass(frozen=True)
class Preconditions:
    """A write's If-Match / If-None-Match (parse_etags of each header). Strong comparison, as If-Match
    requires (RFC 9110 §13.1.1): a weak tag never matches."""

    if_match: tuple[str, ...] | None = None
    if_none_match: tuple[str, ...] | None = None

    @classmethod
    def of(cls, if_match: str | None, if_none_match: str | None = None) -> Preconditions:
        return cls(parse_etags(if_match), parse_etags(if_none_match))

    @property
    def given(self) -> bool:
        return self.if_match is not None or self.if_none_match is not None

    def check(self, current: Stored | None, what: str) -> None:
        """412 PreconditionFailed unless the stored version `current` (None: no document) satisfies them."""
        again = f"GET {what} again, reapply your change and send it with the new ETag in If-Match"
        if self.if_match is not None:
            if current is None:
                raise precondition_failed(f"{what} does not exist (any more), so If-Match cannot match")
            if "*" not in self.if_match and current.etag not in self.if_match:
                raise precondition_failed(
                    f"{what} was changed since you read it (its ETag is now {current.etag}); {again}"
                )
        if self.if_none_match is not None and current is not None:
            if "*" in self.if_none_match:
                raise precondition_failed(
                    f"{what} already exists and If-None-Match: * asks to create it only; GET it to change it"
                )
            if current.etag in self.if_none_match:
                raise precondition_failed(f"{what} is still at the ETag given in If-None-Match")


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

    def get_stored(self, kind: str, key: str) -> Stored | None:
        """The document with its version; None when there is none. One point read."""
        if not _storable_key(key):
            # Nothing is stored under a key Table storage refuses; asking would be a storage error (Azurite
            # answers 500), not "absent" (a project naming the entity "a/b" must be 400 UnknownEntity).
            return None
        try:
            row = self._table.get_entity(kind, key.lower())
        except ResourceNotFoundError:
            return None
        row_etag = row.metadata["etag"]
        return Stored(_decode(row), etag_of(row_etag), row_etag)

    def find(self, kind: str, key: str) -> dict | None:
        stored = self.get_stored(kind, key)
        return None if stored is None else stored.doc

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
            WRITE_ID: new_write_id(),
            **_encode(doc),
        }

    def _landed(self, row: dict) -> str | None:
        """The row ETag when the row now carries this write's WriteId (a write whose reply was lost)."""
        try:
            found = self._table.get_entity(row["PartitionKey"], row["RowKey"], select=[WRITE_ID])
        except ResourceNotFoundError:
            return None
        return found.metadata["etag"] if found.get(WRITE_ID) == row[WRITE_ID] else None

    def write(self, kind: str, key: str, doc: dict, based_on: Stored | None) -> str:
        """Stores `doc` if the row is still the version `based_on` (None: there is no row) and returns the
        new HTTP ETag. ConfigChanged when it is not.

        An insert is a POST, which the SDK does not retry after a connection reset, and the SDK's retry of
        a replace (a PUT) meets a 412 caused by its own first attempt when that one landed
        (shared/storage/concurrency.py): transient failures are retried here, and a 409/412 is a success
        when the row carries this write's WriteId."""
        row = self._row(kind, key, doc)
        for attempt in range(1, DEFAULT_ATTEMPTS + 1):
            try:
                if based_on is None:
                    meta = self._table.create_entity(row)
                else:
                    meta = self._table.update_entity(
                        row,
                        mode=UpdateMode.REPLACE,
                        etag=based_on.row_etag,
                        match_condition=MatchConditions.IfNotModified,
                    )
                self._bump_version()
                return etag_of(meta["etag"])
            except (ResourceExistsError, ResourceNotFoundError) as exc:
                landed = self._landed(row)
                if landed is None:
                    raise ConfigChanged() from exc
                self._bump_version()
                return etag_of(landed)
            except HttpResponseError as exc:
                if exc.status_code == 412:
                    landed = self._landed(row)
                    if landed is None:
                        raise ConfigChanged() from exc
                    self._bump_version()
                    return etag_of(landed)
                if not is_transient(exc) or attempt == DEFAULT_ATTEMPTS:
                    raise
            except Exception as exc:
                if not is_transient(exc) or attempt == DEFAULT_ATTEMPTS:
                    raise
            landed = self._landed(row)
            if landed is not None:
                self._bump_version()
                return etag_of(landed)
            time.sleep(random.uniform(0, DEFAULT_BASE_DELAY * 2**attempt))
        raise AssertionError("unreachable")

    def remove(self, kind: str, key: str, based_on: Stored) -> None:
        """Deletes the row if it is still the version `based_on`; ConfigChanged when it is not. A row that
        is already gone counts as deleted (the SDK ignores a 404 on delete, as when its retry of a DELETE
        that landed finds nothing)."""
        try:
            self._table.delete_entity(
                kind, key.lower(), etag=based_on.row_etag, match_condition=MatchConditions.IfNotModified
            )
        except HttpResponseError as exc:
            if exc.status_code == 412:
                raise ConfigChanged() from exc
            raise
        self._bump_version()

    def upsert(self, kind: str, key: str, doc: dict) -> bool:
        """Stores `doc` whatever the stored version (last writer wins). True when it created the document."""
        for _ in range(10):
            current = self.get_stored(kind, key)
            try:
                self.write(kind, key, doc, current)
            except ConfigChanged:
                continue
            return current is None
        raise ConflictError(f"{kind} {key!r} kept changing; send it again", code="ConcurrentChange")

    def list(self, kind: str) -> Iterator[dict]:
        for row in self._table.query_entities("PartitionKey eq @kind", parameters={"kind": kind}):
            yield _decode(row)
