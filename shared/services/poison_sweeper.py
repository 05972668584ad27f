"""Ends the work of items the host moved to a poison queue, so that nothing stays non-terminal.

The workers end failed work themselves on the last allowed delivery (shared.queue_limits); an item still
reaches `<queue>-poison` when that terminal write failed, or when the worker died during its last
delivery (the host then poisons the item on the next receive without invoking it: `QueueProcessor.
BeginProcessingMessageAsync` in the Storage Queues extension). A queue trigger on a `-poison` queue would
not do: such a queue has no poison queue of its own, so a failing handler leaves the item invisible and,
after maxDequeueCount, skipped for good (HOST.md, "Queue triggers"). A timer reads the queues instead.

The sweep is idempotent: each item's message or run is ended only if it has not ended (compare-and-swap
on the row), and the item is deleted only after that write succeeded. An item whose write fails stays,
and becomes visible again for the next sweep. An item that cannot be read is logged with the start of its
content and deleted: no sweep could ever do anything with it.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from shared.services import work_items

log = logging.getLogger(__name__)

BATCH = 16  # items received at once (the service allows 32)
HIDE_SECONDS = 60  # how long a received item stays invisible; ending one takes a few table calls
MAX_ITEMS_PER_QUEUE = 1000  # per sweep, so one tick stays short; the next tick takes the rest
CONTENT_PREFIX = 200  # characters of an unreadable item written to the log


@dataclass
class SweepCounts:
    """What one sweep did with one queue's items."""

    ended: int = 0  # the work item's message or run was ended (or had ended already) and the item deleted
    unreadable: int = 0  # not base64 or not a work item: logged and deleted
    failed: int = 0  # ending the work failed: the item stays for the next sweep
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"ended": self.ended, "unreadable": self.unreadable, "failed": self.failed}


class PoisonSweeper:
    """`queues` maps a poison queue's name to (its QueueClient, the handler that ends an item's work).

    The clients must not decode messages (no message_decode_policy): the host writes work items base64
    encoded (host.json messageEncoding), and an item that is not valid base64 must be deletable, where a
    decoding client would fail the whole receive on it.
    """

    def __init__(self, queues: dict[str, tuple[object, Callable[[dict], None]]]) -> None:
        self._queues = queues

    def sweep(self) -> dict[str, dict]:
        """Sweep every poison queue once; returns counts per queue name."""
        return {name: self.sweep_queue(name).to_json() for name in self._queues}

    def sweep_queue(self, name: str) -> SweepCounts:
        client, end_work = self._queues[name]
        counts = SweepCounts()
        seen = 0
        while seen < MAX_ITEMS_PER_QUEUE:
            try:
                batch = list(
                    client.receive_messages(
                        messages_per_page=BATCH, max_messages=BATCH, visibility_timeout=HIDE_SECONDS
                    )
                )
            except ResourceNotFoundError:
                return counts  # the poison queue was never created: nothing ever failed
            if not batch:
                break
            for message in batch:
                seen += 1
                self._sweep_one(name, client, end_work, message, counts)
        if counts.ended or counts.unreadable or counts.failed:
            log.info("poison sweep of %s: %s", name, counts.to_json())
        return counts

    def _sweep_one(self, name: str, client, end_work, message, counts: SweepCounts) -> None:
        try:
            item = _decode(message.content)
        except ValueError as exc:
            log.error(
                "deleting an unreadable item %s from %s (%s); its content starts with %r",
                message.id,
                name,
                exc,
                _prefix(message.content),
            )
            if _delete(client, message):
                counts.unreadable += 1
            return
        try:
            end_work(item)
        except Exception as exc:
            # Kept: it becomes visible again after HIDE_SECONDS and the next sweep tries again.
            counts.failed += 1
            counts.errors.append(f"{type(exc).__name__}: {exc}")
            log.exception(
                "ending the work of poison item %s from %s failed; kept for the next sweep", message.id, name
            )
            return
        if _delete(client, message):
            counts.ended += 1


def _decode(content) -> dict:
    """The work item in a poison queue item's text (base64 of the JSON, as the host wrote it)."""
    if content is None:
        raise ValueError("the item is empty")
    raw = content.encode("utf-8") if isinstance(content, str) else bytes(content)
    try:
        body = base64.b64decode(raw, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64: {exc}") from None
    try:
        item = work_items.decode(body)
    except (UnicodeDecodeError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"not a work item: {exc}"[:300]) from None
    needed = _REQUIRED.get(item["kind"])
    if needed is None:
        raise ValueError(f"not a work item: unknown kind {item['kind']!r}")
    if not all(isinstance(item.get(key), str) and item[key] for key in needed):
        raise ValueError(f"not a work item: a {item['kind']} item needs {', '.join(needed)}")
    return item


# What each kind of work item must carry for its work to be found.
_REQUIRED = {
    work_items.KIND_MESSAGE: ("jobId", "rowKey"),
    work_items.KIND_DRAIN: ("jobId",),
    work_items.KIND_EXPORT: ("jobId", "runId"),
}


def _prefix(content) -> str:
    text = content if isinstance(content, str) else repr(content)
    return (text or "")[:CONTENT_PREFIX]


def _delete(client, message) -> bool:
    """Delete a received item; False (logged) when that fails: the next sweep sees it again and, the work
    having ended, only deletes it."""
    try:
        client.delete_message(message.id, pop_receipt=message.pop_receipt)
        return True
    except ResourceNotFoundError:
        return False  # gone already, or received again after HIDE_SECONDS (a new pop receipt)
    except HttpResponseError as exc:
        log.warning("deleting poison item %s failed: %s", message.id, exc)
        return False
