"""Messages in Table storage: a partition per job with time-ordered row keys, plus an index by message ID
and a newest-first index per job (what the "Manage messages" grid lists).

The newest-first index rows live in the job's message partition, after every message (their row keys start
with INDEX_FROM). Creating a message writes none: the listing that reads the index first writes the rows of the
messages created since it last looked (list_newest_first), so enqueue costs one insert of the row, not a
transaction (measured: an entity-group transaction of two rows costs about three times the client CPU of an
insert, most of it azure-core's multipart handling).

Status changes are compare-and-swap on the row's ETag, so two workers (or a worker and the poison
handler) never both win the same transition.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.errors import ConflictError, NotFoundError
from shared.storage.concurrency import replace_if_unchanged, update_if_unchanged
from shared.storage.retry import retry_call
from shared.storage.together import run_together

_JSON_PROPS = ("Transitions", "Counts")
# Where a message lives (job, row key) never changes, so each process remembers the latest ones it met: a status
# poll is then one point read (the message) instead of two (its index row, then the message).
LOCATIONS_CACHED = 10_000
# A key of update_message's `change` result: transitions that happened before the new status, with their times,
# written in the same MERGE (a worker folds Processing into the terminal write of a small file).
EARLIER_TRANSITIONS = "_earlier_transitions"
# Another: when the new status was reached (an ISO time), if earlier than the write (a deferred transition).
STATUS_AT = "_status_at"


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z") if value else None


def ordered_row_key(message_id: str, at: datetime | None = None, *, micros: int | None = None) -> str:
    """Sorts in enqueue order: microseconds since the epoch (`at`, `micros` or now), zero-padded, then the ID as a
    tie-break."""
    if micros is None:
        micros = int(at.timestamp() * 1_000_000) if at else time.time_ns() // 1000
    return f"{micros:020d}-{message_id}"


_NEWEST_MAX = 10**20 - 1
_MESSAGE_KEY = re.compile(r"^[0-9]{20}-")
# In a job's message partition, row keys from INDEX_FROM on are its newest-first index, not messages (message
# row keys start with a digit, which sorts before "~"): every listing of messages stops before it.
INDEX_FROM = "~"
# The marker row of a job's newest-first index; it sorts before every index entry. Its SCAN_FROM field is the row
# key prefix (microseconds) before which every message is indexed.
_NEWEST_DONE = INDEX_FROM
SCAN_FROM = "ScanFrom"
# A listing indexes the messages from the marker's SCAN_FROM on, then moves it to its own start minus this margin,
# so that a message whose row key was taken before that start but whose row was stored after the listing's query
# is still ahead of the mark. It covers LATE_CREATE_SECONDS plus clock skew between processes.
RESCAN_MARGIN_SECONDS = 120
# A create whose row is stored more than this long after its row key was taken (retries, a paused process) may be
# behind a listing's mark: it writes its index row itself.
LATE_CREATE_SECONDS = 10
# The marker is rewritten when the mark moves at least this far (or rows were indexed): not on every listing.
MARK_STEP_SECONDS = 30
_INDEX_END = "~~"  # after every index entry ("~" + digits)
# Where the previous version kept the newest-first index (a partition of the message-ID index table); its rows
# are deleted when a job's messages are indexed in their own partition.
_OLD_NEWEST_PARTITION = "newest-{job_id}"


def newest_row_key(row_key: str) -> str:
    """A message row key's place in the newest-first index (in the message's own partition): INDEX_FROM, the
    microseconds inverted, then the message ID. Table queries return rows in ascending key order only, so the
    enqueue-ordered messages cannot be read from their end; these rows can."""
    micros, _, message_id = row_key.partition("-")
    return f"{INDEX_FROM}{_NEWEST_MAX - int(micros):020d}-{message_id}"


def _decode(row: dict) -> dict:
    out = dict(row)
    for key in _JSON_PROPS:
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    out["_etag"] = row.metadata.get("etag") if hasattr(row, "metadata") else None
    return out


def _encode(fields: dict) -> dict:
    out = {}
    for key, value in fields.items():
        if key.startswith("_"):
            continue
        out[key] = (
            json.dumps(value, separators=(",", ":")) if key in _JSON_PROPS and value is not None else value
        )
    return out


def _newest_row(job_id: str, row_key: str) -> dict:
    return {"PartitionKey": job_id, "RowKey": newest_row_key(row_key), "MessageRowKey": row_key}


def _late(micros: int) -> bool:
    return time.time_ns() // 1000 - micros > LATE_CREATE_SECONDS * 1_000_000


class MessageRepository:
    def __init__(self, messages: TableClient, index: TableClient) -> None:
        self._messages = messages
        self._index = index
        self._locations: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._locations_lock = threading.Lock()

    def _remember(self, message_id: str, job_id: str, row_key: str) -> None:
        with self._locations_lock:
            self._locations[message_id] = (job_id, row_key)
            self._locations.move_to_end(message_id)
            while len(self._locations) > LOCATIONS_CACHED:
                self._locations.popitem(last=False)

    # Create and look up -----------------------------------------------------------------------
    def create_message(
        self,
        job_id: str,
        message_id: str,
        fields: dict[str, Any],
        *,
        before: Callable[[], Any] | None = None,
    ) -> dict:
        """Create a message's ID index row, then its row; the row as stored (with its ETag). Two calls in two
        steps. Its newest-first index row is written by the next listing (list_newest_first); a row stored more
        than LATE_CREATE_SECONDS after its row key was taken writes it here (one more call), as a listing may
        have moved its mark past that key meanwhile.

        `before`: another write that must be stored before the row (enqueue's file), sent at the same time as the
        ID index row (shared/storage/together.py); the row is created only once both succeeded."""
        micros = time.time_ns() // 1000
        row_key = ordered_row_key(message_id, micros=micros)
        at = now_utc()
        status = fields.get("Status")
        # ID index first: a lookup that finds an index row without its message answers "not found" (the client
        # was never told the ID), never a half-written message. It and `before` do not depend on each other, so
        # they are sent at once.
        run_together(
            lambda: retry_call(
                lambda: self._index.upsert_entity(
                    {"PartitionKey": message_id, "RowKey": "", "JobId": job_id, "MessageRowKey": row_key}
                ),
                what="indexing a message",
            ),
            *([before] if before is not None else []),
        )
        row = {
            "PartitionKey": job_id,
            "RowKey": row_key,
            "MessageId": message_id,
            "EnqueuedAt": at,
            "UpdatedAt": at,
            "Transitions": [{"status": status, "at": iso(at)}] if status else [],
            **fields,
        }
        # Already late: the index row goes first, so that no crash leaves the row behind a listing's mark unindexed.
        indexed = _late(micros)
        if indexed:
            self._upsert_newest(job_id, row_key)

        reply: dict = {}

        def create() -> None:
            try:
                reply.update(self._messages.create_entity(_encode(row)) or {})
            except ResourceExistsError:
                # An earlier attempt whose reply was lost (a reset after the request) created it.
                if self._messages.get_entity(job_id, row_key).get("MessageId") != message_id:
                    raise

        retry_call(create, what="creating a message")  # an insert is a POST: the SDK does not retry it
        if not indexed and _late(micros):
            self._upsert_newest(job_id, row_key)
        self._remember(message_id, job_id, row_key)
        if not reply.get("etag"):
            return self.get_message(job_id, row_key)
        # The row as stored, without reading it back: what was written, with the ETag of the insert's reply.
        return {**row, "_etag": reply["etag"]}

    def _upsert_newest(self, job_id: str, row_key: str) -> None:
        retry_call(
            lambda: self._messages.upsert_entity(_newest_row(job_id, row_key)), what="indexing a message"
        )

    def locate(self, message_id: str) -> tuple[str, str] | None:
        """(job ID, row key) of a message, or None. Remembered per process once found (it never changes)."""
        with self._locations_lock:
            known = self._locations.get(message_id)
        if known is not None:
            return known
        try:
            idx = self._index.get_entity(message_id, "")
        except ResourceNotFoundError:
            return None
        self._remember(message_id, idx["JobId"], idx["MessageRowKey"])
        return idx["JobId"], idx["MessageRowKey"]

    def get_message(self, job_id: str, row_key: str) -> dict:
        try:
            return _decode(self._messages.get_entity(job_id, row_key))
        except ResourceNotFoundError as exc:
            raise NotFoundError("the message does not exist", code="MessageNotFound") from exc

    def find_by_id(self, message_id: str) -> dict | None:
        where = self.locate(message_id)
        if where is None:
            return None
        try:
            return self.get_message(*where)
        except NotFoundError:
            return None

    def get_by_id(self, message_id: str) -> dict:
        msg = self.find_by_id(message_id)
        if msg is None:
            raise NotFoundError(f"message {message_id} does not exist", code="MessageNotFound")
        return msg

    # Lists -------------------------------------------------------------------------------------
    def list_messages(
        self,
        job_id: str,
        *,
        statuses: list[str] | None = None,
        page_size: int = 100,
        continuation: Any = None,
        select: list[str] | None = None,
    ) -> tuple[list[dict], Any]:
        """One page of a job's messages in enqueue order, with the token for the next page."""
        query = "PartitionKey eq @job and RowKey lt @index"
        params: dict[str, Any] = {"job": job_id, "index": INDEX_FROM}
        if statuses:
            parts = []
            for i, status in enumerate(statuses):
                params[f"s{i}"] = status
                parts.append(f"Status eq @s{i}")
            query += " and ( " + " or ".join(parts) + " )"  # placeholders must stand alone as words
        pager = self._messages.query_entities(
            query, parameters=params, results_per_page=page_size, select=select
        ).by_page(continuation_token=continuation)
        page = [_decode(row) for row in next(pager, [])]
        return page, pager.continuation_token

    def list_newest_first(
        self,
        job_id: str,
        *,
        statuses: list[str] | None = None,
        page_size: int = 100,
        continuation: Any = None,
        max_index_pages: int = 20,
    ) -> tuple[list[dict], Any]:
        """One page of a job's messages, newest first, with the token of the next page.

        Reads the newest-first index a page at a time, then the messages that page names with one range query
        of the message partition (its rows are in the same time order; rows of the range that the page does not
        name, ties at the same microsecond, are left to their own page). With `statuses`, a page may hold fewer
        than `page_size` messages after `max_index_pages` index pages, and still have a next page. The token is
        {"PartitionKey": the job's partition, "RowKey": the last index row read}."""
        pk = job_id
        after = _NEWEST_DONE
        if continuation:
            given = continuation if isinstance(continuation, dict) else {}
            after = str(given.get("RowKey") or "")
            if given.get("PartitionKey") != pk or not after.startswith(INDEX_FROM):
                from shared.errors import ValidationError

                raise ValidationError(
                    "the continuation token is not valid; follow nextLink as given",
                    code="InvalidContinuation",
                )
        else:
            self._index_new_messages(job_id)
        found: list[dict] = []
        for _ in range(max_index_pages):
            want = page_size - len(found)
            pager = self._messages.query_entities(
                "PartitionKey eq @pk and RowKey gt @after and RowKey lt @end",
                parameters={"pk": pk, "after": after, "end": _INDEX_END},
                results_per_page=want,
                select=["RowKey", "MessageRowKey"],
            ).by_page()
            rows = list(next(pager, []))[:want]
            if rows:
                after = rows[-1]["RowKey"]
                found.extend(self._messages_named(job_id, [r["MessageRowKey"] for r in rows], statuses))
            if len(rows) < want and pager.continuation_token is None:
                return found, None  # the index is read to its end
            if len(found) >= page_size:
                break
        return found, {"PartitionKey": pk, "RowKey": after}

    def _messages_named(self, job_id: str, row_keys: list[str], statuses: list[str] | None) -> list[dict]:
        """The messages with these row keys (newest first, as given) that have one of `statuses`; one query."""
        query = "PartitionKey eq @job and RowKey ge @lo and RowKey le @hi"
        params: dict[str, Any] = {"job": job_id, "lo": min(row_keys), "hi": max(row_keys)}
        if statuses:
            parts = []
            for i, status in enumerate(statuses):
                params[f"s{i}"] = status
                parts.append(f"Status eq @s{i}")
            query += " and ( " + " or ".join(parts) + " )"
        by_key = {row["RowKey"]: row for row in self._messages.query_entities(query, parameters=params)}
        return [_decode(by_key[k]) for k in row_keys if k in by_key]

    def _index_new_messages(self, job_id: str) -> None:
        """Write the newest-first index rows of the job's messages created since a listing last looked (creating
        a message writes none, create_message). The marker row's SCAN_FROM says where to look from: every message
        with a smaller row key is indexed. Reads the marker, the message keys from there and the index rows of
        the same span (two queries of keys only), upserts the missing rows (100 per transaction), then moves
        the mark to this listing's start minus RESCAN_MARGIN_SECONDS (rewritten when rows were added or it
        moved MARK_STEP_SECONDS). Why the mark is safe: a message stored later than that was created at most
        LATE_CREATE_SECONDS after its key was taken (later ones index themselves), so its key is still ahead.
        Two racing listings both upsert the same rows, harmlessly, and either mark is safe.

        Without a marker (a job never listed, or listed by a version that kept the index elsewhere) it looks from
        the start, then deletes the previous version's index partition (in the ID index table)."""
        started = time.time_ns() // 1000
        try:
            marker = self._messages.get_entity(job_id, _NEWEST_DONE)
        except ResourceNotFoundError:
            marker = None
        scan_from = str((marker or {}).get(SCAN_FROM) or "")
        added = 0
        pages = self._messages.query_entities(
            "PartitionKey eq @job and RowKey ge @from and RowKey lt @index",
            parameters={"job": job_id, "from": scan_from, "index": INDEX_FROM},
            select=["RowKey"],
            results_per_page=1000,
        ).by_page()
        for page in pages:  # a page at a time: a first listing of a large job holds one page of keys
            keys = [row["RowKey"] for row in page if _MESSAGE_KEY.match(row["RowKey"])]
            if not keys:
                continue
            # The index rows of the page's span: from its newest key's place to its oldest's (any ID at that
            # microsecond).
            indexed = {
                row.get("MessageRowKey")
                for row in self._messages.query_entities(
                    "PartitionKey eq @job and RowKey ge @lo and RowKey lt @hi",
                    parameters={
                        "job": job_id,
                        "lo": newest_row_key(keys[-1]).partition("-")[0],
                        "hi": newest_row_key(keys[0]).partition("-")[0] + INDEX_FROM,
                    },
                    select=["MessageRowKey"],
                )
            }
            missing = [key for key in keys if key not in indexed]
            self._submit_in_batches(self._messages, (("upsert", _newest_row(job_id, key)) for key in missing))
            added += len(missing)
        mark = max(started - RESCAN_MARGIN_SECONDS * 1_000_000, 0)
        moved = mark - int(scan_from or 0) >= MARK_STEP_SECONDS * 1_000_000
        if marker is None or added or moved:
            retry_call(
                lambda: self._messages.upsert_entity(
                    {
                        "PartitionKey": job_id,
                        "RowKey": _NEWEST_DONE,
                        "At": now_utc(),
                        SCAN_FROM: f"{mark:020d}",
                    }
                ),
                what="indexing messages",
            )
        if marker is not None:
            return
        old = _OLD_NEWEST_PARTITION.format(job_id=job_id)
        self._submit_in_batches(
            self._index,
            (
                ("delete", {"PartitionKey": old, "RowKey": row["RowKey"]})
                for row in self._index.query_entities(
                    "PartitionKey eq @pk", parameters={"pk": old}, select=["RowKey"]
                )
            ),
        )

    @staticmethod
    def _submit_in_batches(table: TableClient, operations: Iterator[tuple[str, dict]]) -> None:
        """Submit operations of one partition 100 at a time (a Table transaction's limit), each retried."""
        batch: list[tuple[str, dict]] = []
        for op in operations:
            batch.append(op)
            if len(batch) == 100:
                ops, batch = batch, []
                retry_call(lambda ops=ops: table.submit_transaction(ops), what="indexing messages")
        if batch:
            retry_call(lambda: table.submit_transaction(batch), what="indexing messages")

    def iter_messages(
        self, job_id: str, *, statuses: list[str] | None = None, select: list[str] | None = None
    ) -> Iterator[dict]:
        token = None
        while True:
            page, token = self.list_messages(job_id, statuses=statuses, continuation=token, select=select)
            yield from page
            if not token:
                return

    # Updates -----------------------------------------------------------------------------------
    def update_message(
        self,
        job_id: str,
        row_key: str,
        change: Callable[[dict], dict | None],
        *,
        attempts: int = 10,
        known: dict | None = None,
    ) -> dict | None:
        """Read, let `change` compute new fields (or None to leave the row alone), write only if the row is
        unchanged since the read; retried on a lost race. Returns the updated row (its `_etag` the new one, or
        None when unknown), or None.

        `known`: the row as the caller last wrote or read it (with its `_etag`), used for the first try instead
        of a read; when someone changed the row since, the write fails its precondition and the row is read.
        A change may give EARLIER_TRANSITIONS, [{"status", "at"}] to record before the new status, and STATUS_AT,
        the time the new status was reached when that was before this write."""
        for _ in range(attempts):
            if known is not None and known.get("_etag"):
                current, known = known, None
            else:
                current, known = self.get_message(job_id, row_key), None
            fields = change(current)
            if fields is None:
                return None
            fields = dict(fields)
            earlier = fields.pop(EARLIER_TRANSITIONS, None) or []
            status_at = fields.pop(STATUS_AT, None)
            at = now_utc()
            new_status = fields.get("Status")
            if new_status and new_status != current.get("Status"):
                fields["Transitions"] = [
                    *current.get("Transitions", []),
                    *earlier,
                    {"status": new_status, "at": status_at or iso(at)},
                ]
            fields["UpdatedAt"] = at
            written, etag = update_if_unchanged(
                self._messages,
                {"PartitionKey": job_id, "RowKey": row_key, **_encode(fields)},
                current["_etag"],
                mode=UpdateMode.MERGE,
            )
            if not written:
                continue  # lost the race: read again and let `change` decide
            return {**current, **fields, "_etag": etag}
        raise ConflictError("the message is being changed by someone else; try again", code="Busy")

    def transition(
        self,
        job_id: str,
        row_key: str,
        to_status: str,
        *,
        allowed_from: set[str] | None = None,
        known: dict | None = None,
        **fields: Any,
    ) -> dict | None:
        """update_message to `to_status` (with `fields`) if the status is in `allowed_from` (any when None)."""

        def change(current: dict) -> dict | None:
            if allowed_from is not None and current.get("Status") not in allowed_from:
                return None
            return {"Status": to_status, **fields}

        return self.update_message(job_id, row_key, change, known=known)

    # Idempotent enqueue ------------------------------------------------------------------------
    def claim_dedup(
        self,
        job_id: str,
        dedup_key: str,
        message_id: str,
        window_seconds: int,
        *,
        replaceable: Callable[[str], bool] | None = None,
    ) -> str | None:
        """Record that `message_id` holds this (external ID, content) for the job. Returns the ID of an
        earlier message within the window instead, when there is one, unless `replaceable(earlier ID)` says
        the earlier one no longer counts (it ended in a failed status: a re-send is new work)."""
        pk = f"dedup-{job_id}"
        row = {"PartitionKey": pk, "RowKey": dedup_key, "MessageId": message_id, "CreatedAt": now_utc()}
        for _ in range(5):
            try:
                self._index.create_entity(row)
                return None
            except ResourceExistsError:
                try:
                    existing = self._index.get_entity(pk, dedup_key)
                except ResourceNotFoundError:
                    continue
                age = (now_utc() - existing["CreatedAt"]).total_seconds()
                if age <= window_seconds and not (replaceable and replaceable(existing["MessageId"])):
                    return existing["MessageId"]
                if replace_if_unchanged(self._index, row, existing.metadata["etag"]):
                    return None
        raise ConflictError("the same file is being enqueued concurrently; try again", code="Busy")

    def release_dedup(self, job_id: str, dedup_key: str, message_id: str) -> None:
        """Undo claim_dedup when the enqueue did not complete, so a retry is not answered with a dead ID."""
        try:
            existing = self._index.get_entity(f"dedup-{job_id}", dedup_key)
        except ResourceNotFoundError:
            return
        if existing.get("MessageId") == message_id:
            self._index.delete_entity(f"dedup-{job_id}", dedup_key)
