"""Poll Azure Storage queues for queue-triggered functions with the Storage Queues extension's semantics.

Modelled on Azure/azure-sdk-for-net, sdk/storage/Microsoft.Azure.WebJobs.Extensions.Storage.Common/src/Shared/
Queues/QueueListener.cs and QueueProcessor.cs, and Storage.Queues/src/Listeners/QueueListenerFactory.cs and
QueueServiceClientProvider.cs:

- the trigger queue is never created: while it does not exist the listener backs off and checks again;
- a batch is received hidden for 10 minutes (``--queue-lease``), renewed at half-time while the function runs;
- success deletes the message; failure makes it visible again after ``visibilityTimeout``, or, once
  ``dequeue_count >= maxDequeueCount``, copies it with its original text to ``<queue>-poison`` (created on
  demand) and deletes it;
- a message that is not valid for ``messageEncoding`` goes to the poison queue at once, uninvoked;
- a message received with ``dequeue_count > maxDequeueCount`` (a worker died mid-invocation) goes to the poison
  queue without invoking;
- a queue whose name ends in ``-poison`` (or whose ``-poison`` name would exceed 63 characters) has no poison
  queue: a failure leaves the message invisible until its lease lapses, and a message over the limit or not
  decodable is skipped, neither invoked nor deleted, until its time-to-live ends.
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
# QueueListener: "_visibilityTimeout = TimeSpan.FromMinutes(10)", renewed when half of it is left.
DEFAULT_LEASE_SECONDS = 600
POISON_SUFFIX = "-poison"
MAX_QUEUE_NAME = 63  # Azure queue names are 3-63 characters
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


def poison_queue_name(queue_name: str) -> str | None:
    """``<queue>-poison``, or None when the queue has no poison queue (QueueListenerFactory.CreatePoisonQueueReference)."""
    if queue_name.endswith(POISON_SUFFIX) or len(queue_name) + len(POISON_SUFFIX) > MAX_QUEUE_NAME:
        return None
    return queue_name + POISON_SUFFIX


def open_queue(connection_setting: str, queue_name: str, *, create: bool = False) -> QueueClient:
    """A client for the queue; ``create`` only for poison queues, which the host creates on first use."""
    client = QueueClient.from_connection_string(
        connection_string(connection_setting),
        queue_name,
        # The SDK's default retry waits 15 s and more between attempts; a local poller should
        # notice a restarted Azurite within a couple of seconds instead.
        retry_policy=LinearRetry(backoff=1, retry_total=2, random_jitter_range=1),
        connection_timeout=5,
    )
    if create:
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
        invocations: ThreadPoolExecutor | None = None,
    ) -> None:
        """`invocations`: the worker's thread pool, which the real Python worker shares between every sync
        function (HOST.md; DevHost passes the one its HTTP server uses). Without one the poller invokes on
        threads of its own. Host-side work (poisoning a message without invoking) never takes a worker thread."""
        self.function = function
        self.settings = settings
        self._stop = stop
        self.lease_seconds = max(1, int(lease_seconds))
        self.batch_size = settings.batch_size
        self.threshold = max(0, min(settings.new_batch_threshold, settings.batch_size))
        # The host runs up to batchSize + newBatchThreshold messages at once per function.
        self.capacity = self.batch_size + self.threshold
        self.poison_name = poison_queue_name(function.queue_name)
        self._client: QueueClient | None = None
        self._poison: QueueClient | None = None
        self._poison_lock = threading.Lock()
        self._leases: dict[str, _Lease] = {}
        self._inflight = 0
        self._cond = threading.Condition()
        self._executor = ThreadPoolExecutor(
            max_workers=self.capacity, thread_name_prefix=f"queue-{function.name}"
        )
        self._invocations = invocations or self._executor
        self._thread = threading.Thread(target=self._run, name=f"poll-{function.name}", daemon=True)
        self._last_error: tuple[str, float] | None = None
        self._missing_reported = False

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

    def _queue_missing(self) -> None:
        # QueueListener checks that the queue exists and backs off while it does not; it never creates it.
        if not self._missing_reported:
            log.info(
                "queue %s does not exist; function %s waits for it (the host never creates trigger queues)",
                self.function.queue_name,
                self.function.name,
            )
            self._missing_reported = True

    def _run(self) -> None:
        delay = MIN_POLLING_INTERVAL
        max_delay = max(MIN_POLLING_INTERVAL, self.settings.local_polling_interval)
        while not self._stop.is_set():
            messages: list[Any] = []
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
            except ResourceNotFoundError:
                self._queue_missing()
            except Exception as error:
                self._report("polling failed", error)
            if messages:
                self._last_error = None
                self._missing_reported = False
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
        with self._cond:
            self._inflight += 1
        dequeue_count = message.dequeue_count or 0
        if dequeue_count > self.settings.max_dequeue_count:
            # QueueProcessor.BeginProcessingMessageAsync: a previous run died mid-invocation; not invoked again.
            why = f"over maxDequeueCount {self.settings.max_dequeue_count}"
            self._executor.submit(
                self._finish, message, None, lambda lease: self._handle_poison(message, why)
            )
            return
        try:
            body = decode_content(message.content, self.settings.message_encoding)
        except MessageDecodeError as error:
            # QueueServiceClientProvider's MessageDecodingFailed handler poisons at once, uninvoked.
            why = str(error)
            self._executor.submit(
                self._finish, message, None, lambda lease: self._handle_poison(message, why)
            )
            return
        # Only an invocation holds a lease that is renewed; skipped messages keep their receive visibility.
        lease = _Lease(message.id, message.pop_receipt, time.monotonic() + self.lease_seconds / 2)
        with self._cond:
            self._leases[message.id] = lease
        # Received messages wait here for a worker thread with their leases renewed, as in the real host.
        self._invocations.submit(self._process, message, lease, body)

    def _process(self, message: Any, lease: _Lease, body: bytes) -> None:
        started = time.perf_counter()
        ok = False
        try:
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
        except Exception:
            _say(
                f"Function {self.function.name} failed on message {message.id} "
                f"(dequeue count {message.dequeue_count}):\n{traceback.format_exc()}"
            )
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            outcome = "Succeeded" if ok else "Failed"
            _say(
                f"queue {self.function.queue_name} -> {self.function.name} {message.id} "
                f"dequeue={message.dequeue_count} {outcome} {elapsed:.1f}ms"
            )
            self._finish(message, lease, lambda held: self._complete(message, held, ok))

    def _finish(self, message: Any, lease: _Lease | None, settle: Any) -> None:
        """Run ``settle(lease)`` (delete, release, poison or leave), then free the in-flight slot."""
        try:
            if lease is None:
                settle(None)
            else:
                with lease.lock:
                    lease.done = True
                    settle(lease)
        except Exception as error:
            # The lease expires on its own, so the message is retried later.
            self._report(f"settling message {message.id} failed", error)
        finally:
            with self._cond:
                self._leases.pop(message.id, None)
                self._inflight -= 1
                self._cond.notify_all()

    def _complete(self, message: Any, lease: _Lease, ok: bool) -> None:
        """QueueProcessor.CompleteProcessingMessageAsync."""
        assert self._client is not None
        if ok:
            self._client.delete_message(message.id, pop_receipt=lease.pop_receipt)
        elif self.poison_name is None:
            # "For queues without a corresponding poison queue, leave the message invisible when processing
            # fails to prevent a fast infinite loop." It reappears when its lease lapses.
            _say(
                f"queue {self.function.queue_name}: message {message.id} failed and stays invisible for up "
                f"to {self.lease_seconds}s (a queue ending in {POISON_SUFFIX!r} has no poison queue)"
            )
        elif (message.dequeue_count or 0) >= self.settings.max_dequeue_count:
            self._move_to_poison(message, lease.pop_receipt, f"after {message.dequeue_count} attempts")
        else:
            self._client.update_message(
                message.id,
                pop_receipt=lease.pop_receipt,
                visibility_timeout=int(self.settings.visibility_timeout),
            )

    def _handle_poison(self, message: Any, why: str) -> None:
        """QueueProcessor.HandlePoisonMessageAsync for a message that is not invoked."""
        if self.poison_name is None:
            # Nothing is copied or deleted: the message stays hidden for its receive visibility, then comes
            # back (with a higher dequeue count) until its time-to-live ends.
            _say(
                f"queue {self.function.queue_name}: message {message.id} skipped without invoking "
                f"{self.function.name} ({why}); it is not deleted (a queue ending in {POISON_SUFFIX!r} "
                "has no poison queue) and reappears until it expires"
            )
            return
        self._move_to_poison(message, message.pop_receipt, f"without invoking ({why})")

    def _move_to_poison(self, message: Any, pop_receipt: str, why: str) -> None:
        assert self._client is not None
        poison = self._poison_queue()
        # The original, still-encoded text, so a requeue is a plain copy back.
        poison.send_message(message.content)
        self._client.delete_message(message.id, pop_receipt=pop_receipt)
        _say(
            f"queue {self.function.queue_name}: message {message.id} moved to {poison.queue_name} {why} "
            f"(dequeue count {message.dequeue_count})"
        )

    def _poison_queue(self) -> QueueClient:
        assert self.poison_name is not None
        with self._poison_lock:
            if self._poison is None:
                # AddMessageAndCreateIfNotExistsAsync: the poison queue is created on first use.
                self._poison = open_queue(self.function.connection, self.poison_name, create=True)
            return self._poison


def _say(text: str) -> None:
    """Invocation outcomes go to stderr unbuffered, in order with the functions' own output."""
    print(text, file=sys.stderr, flush=True)
