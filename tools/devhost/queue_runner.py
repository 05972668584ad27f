"""Poll Azure Storage queues for queue-triggered functions with the host's retry and poison semantics.

Like the Functions host: messages are received in batches and hidden for the duration of the
invocation (a lease, renewed while it runs), deleted on success, made visible again after
``visibilityTimeout`` on failure, and moved with their original content to ``<queue>-poison``
once ``dequeue_count`` reaches ``maxDequeueCount``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime
import logging
import sys
import threading
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage
from azure.storage.queue import LinearRetry, QueueClient

from .app_loader import QueueFunction, connection_string
from .settings import QueueSettings

log = logging.getLogger("devhost.queue")

MIN_POLLING_INTERVAL = 0.1
DEFAULT_LEASE_SECONDS = 300
_ERROR_LOG_EVERY = 30.0


class MessageDecodeError(ValueError):
    """A message is not valid for the configured messageEncoding."""


def decode_content(content: str | bytes | None, encoding: str) -> bytes:
    """The message body bytes, from the text the queue holds."""
    if content is None:
        return b""
    raw = content.encode("utf-8") if isinstance(content, str) else content
    if encoding == "none":
        return raw
    try:
        return base64.b64decode(raw, validate=True)
    except binascii.Error as error:
        raise MessageDecodeError(
            'message is not valid base64 (host.json messageEncoding is "base64"; '
            "send with TextBase64EncodePolicy)"
        ) from error


def manual_message(text: str) -> QueueMessage:
    """A message for an admin invocation: the input is the body, as if dequeued for the first time."""
    now = datetime.datetime.now(datetime.UTC)
    return QueueMessage(
        id=str(uuid.uuid4()),
        body=text.encode("utf-8"),
        pop_receipt=None,
        dequeue_count=1,
        insertion_time=now,
        expiration_time=now + datetime.timedelta(days=7),
        time_next_visible=now,
    )


def open_queue(connection_setting: str, queue_name: str) -> QueueClient:
    client = QueueClient.from_connection_string(
        connection_string(connection_setting),
        queue_name,
        # The SDK's default retry waits 15 s and more between attempts; a local poller should
        # notice a restarted Azurite within a couple of seconds instead.
        retry_policy=LinearRetry(backoff=1, retry_total=2, random_jitter_range=1),
        connection_timeout=5,
    )
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    return client


@dataclass
class _Lease:
    """An in-flight message: its latest pop receipt changes every time the lease is renewed."""

    message_id: str
    pop_receipt: str
    renew_at: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: bool = False


class QueuePoller:
    """One polling thread for one queue-triggered function, invoking on a thread pool."""

    def __init__(
        self,
        function: QueueFunction,
        settings: QueueSettings,
        stop: threading.Event,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
    ) -> None:
        self.function = function
        self.settings = settings
        self._stop = stop
        self.lease_seconds = max(1, int(lease_seconds))
        self.batch_size = settings.batch_size
        self.threshold = max(0, min(settings.new_batch_threshold, settings.batch_size))
        # The host runs up to batchSize + newBatchThreshold messages at once per function.
        self.capacity = self.batch_size + self.threshold
        self._client: QueueClient | None = None
        self._poison: QueueClient | None = None
        self._poison_lock = threading.Lock()
        self._leases: dict[str, _Lease] = {}
        self._inflight = 0
        self._cond = threading.Condition()
        self._executor = ThreadPoolExecutor(
            max_workers=self.capacity, thread_name_prefix=f"queue-{function.name}"
        )
        self._thread = threading.Thread(target=self._run, name=f"poll-{function.name}", daemon=True)
        self._last_error: tuple[str, float] | None = None

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def join(self, grace: float) -> bool:
        """After stop is set: wait for the poller and in-flight invocations; True if all finished."""
        deadline = time.monotonic() + grace
        self._thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            finished = self._cond.wait_for(lambda: self._inflight == 0, max(0.0, deadline - time.monotonic()))
        # Unfinished messages keep their lease and reappear later, as when a host instance dies.
        self._executor.shutdown(wait=False, cancel_futures=True)
        return finished

    # --- polling ----------------------------------------------------------------------------------
    def _report(self, what: str, error: BaseException) -> None:
        # Storage outages would otherwise log on every poll.
        text = f"{what}: {type(error).__name__}: {error}".splitlines()[0]
        now = time.monotonic()
        if (
            self._last_error is None
            or self._last_error[0] != text
            or now - self._last_error[1] > _ERROR_LOG_EVERY
        ):
            log.error("%s (queue %s, function %s)", text, self.function.queue_name, self.function.name)
            self._last_error = (text, now)

    def _run(self) -> None:
        delay = MIN_POLLING_INTERVAL
        max_delay = max(MIN_POLLING_INTERVAL, self.settings.local_polling_interval)
        while not self._stop.is_set():
            try:
                if self._client is None:
                    self._client = open_queue(self.function.connection, self.function.queue_name)
                self._wait_for_capacity()
                if self._stop.is_set():
                    break
                self._renew_leases()
                with self._cond:
                    room = min(self.batch_size, self.capacity - self._inflight)
                messages = self._receive(room) if room > 0 else []
            except Exception as error:
                self._report("polling failed", error)
                messages = []
                if isinstance(error, ResourceNotFoundError):
                    self._client = None  # the queue was deleted (e.g. by a test): create it again
            if messages:
                self._last_error = None
                delay = MIN_POLLING_INTERVAL
                for message in messages:
                    self._dispatch(message)
            else:
                self._stop.wait(delay)
                delay = min(delay * 2, max_delay)

    def _wait_for_capacity(self) -> None:
        # Fetch a new batch only when in-flight work drops to newBatchThreshold, like the host.
        while not self._stop.is_set():
            with self._cond:
                if self._inflight <= self.threshold:
                    return
                self._cond.wait(0.25)
            self._renew_leases()

    def _receive(self, count: int) -> list[Any]:
        assert self._client is not None
        pages = self._client.receive_messages(
            messages_per_page=count, max_messages=count, visibility_timeout=self.lease_seconds
        ).by_page()
        # One request per poll: the first page holds up to `count` messages.
        return list(next(pages, []))

    def _renew_leases(self) -> None:
        now = time.monotonic()
        with self._cond:
            leases = list(self._leases.values())
        for lease in leases:
            if lease.renew_at > now:
                continue
            with lease.lock:
                if lease.done:
                    continue
                try:
                    assert self._client is not None
                    updated = self._client.update_message(
                        lease.message_id, pop_receipt=lease.pop_receipt, visibility_timeout=self.lease_seconds
                    )
                    lease.pop_receipt = updated.pop_receipt
                    lease.renew_at = time.monotonic() + self.lease_seconds / 2
                except Exception as error:
                    self._report(f"renewing the lease of message {lease.message_id} failed", error)
                    lease.renew_at = time.monotonic() + 1

    # --- invocation -------------------------------------------------------------------------------
    def _dispatch(self, message: Any) -> None:
        lease = _Lease(message.id, message.pop_receipt, time.monotonic() + self.lease_seconds / 2)
        with self._cond:
            self._inflight += 1
            self._leases[message.id] = lease
        if message.dequeue_count and message.dequeue_count > self.settings.max_dequeue_count:
            # Already over the limit (a previous run died mid-invocation): poison without running.
            self._executor.submit(self._finish, message, lease, False)
            return
        self._executor.submit(self._process, message, lease)

    def _process(self, message: Any, lease: _Lease) -> None:
        started = time.perf_counter()
        ok = False
        try:
            body = decode_content(message.content, self.settings.message_encoding)
            # The worker's QueueMessage (azure.functions.queue), which carries the dequeue count.
            self.function.invoke(
                QueueMessage(
                    id=message.id,
                    body=body,
                    pop_receipt=lease.pop_receipt,
                    dequeue_count=message.dequeue_count,
                    insertion_time=message.inserted_on,
                    expiration_time=message.expires_on,
                    time_next_visible=message.next_visible_on,
                )
            )
            ok = True
        except MessageDecodeError as error:
            print(f"Message {message.id} on {self.function.queue_name}: {error}", file=sys.stderr, flush=True)
        except Exception:
            print(
                f"Function {self.function.name} failed on message {message.id} "
                f"(dequeue count {message.dequeue_count}):\n{traceback.format_exc()}",
                file=sys.stderr,
                flush=True,
            )
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            outcome = "Succeeded" if ok else "Failed"
            print(
                f"queue {self.function.queue_name} -> {self.function.name} {message.id} "
                f"dequeue={message.dequeue_count} {outcome} {elapsed:.1f}ms",
                file=sys.stderr,
                flush=True,
            )
            self._finish(message, lease, ok)

    def _finish(self, message: Any, lease: _Lease, ok: bool) -> None:
        try:
            with lease.lock:
                lease.done = True
                self._settle(message, lease, ok)
        except Exception as error:
            # The lease expires on its own, so the message is retried later.
            self._report(f"settling message {message.id} failed", error)
        finally:
            with self._cond:
                self._leases.pop(message.id, None)
                self._inflight -= 1
                self._cond.notify_all()

    def _settle(self, message: Any, lease: _Lease, ok: bool) -> None:
        assert self._client is not None
        if ok:
            self._client.delete_message(lease.message_id, pop_receipt=lease.pop_receipt)
        elif (message.dequeue_count or 0) >= self.settings.max_dequeue_count:
            poison = self._poison_queue()
            # The original, still-encoded text, so a requeue is a plain copy back.
            poison.send_message(message.content)
            self._client.delete_message(lease.message_id, pop_receipt=lease.pop_receipt)
            print(
                f"queue {self.function.queue_name}: message {message.id} moved to {poison.queue_name} "
                f"after {message.dequeue_count} attempts",
                file=sys.stderr,
                flush=True,
            )
        else:
            self._client.update_message(
                lease.message_id,
                pop_receipt=lease.pop_receipt,
                visibility_timeout=int(self.settings.visibility_timeout),
            )

    def _poison_queue(self) -> QueueClient:
        with self._poison_lock:
            if self._poison is None:
                self._poison = open_queue(self.function.connection, f"{self.function.queue_name}-poison")
            return self._poison
