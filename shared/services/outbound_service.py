"""Dequeue, download and ack of export messages (PROTOCOL §3).

A message is Enqueued when its export run uploaded a package. Dequeue hands out the oldest one that
is ready: Enqueued, or Dequeued but not acked within the job's redelivery timeout. Handing out is a
compare-and-swap on the message row (ETag), so two concurrent dequeues never get the same message,
and each delivery gets a new PopReceipt. Ack matches on the CorrelationId (the message ID) and checks
the PopReceipt when the client sends one: a receipt from before a redelivery is stale (409).
"""

from __future__ import annotations

import logging
import re
import urllib.parse
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from shared.domain import statuses
from shared.domain.config import Job
from shared.errors import ConflictError, NotFoundError, ValidationError
from shared.storage.message_repo import iso, now_utc

log = logging.getLogger(__name__)

MAX_TRANSITIONS = 50  # a message redelivered forever must not outgrow its 64 KB property
_SELECT = ["PartitionKey", "RowKey", "MessageId", "Status", "Direction", "HiddenUntil"]


def download_location(base_url: str, activity_id: str, message: dict) -> str:
    query = urllib.parse.urlencode(
        {"correlation-id": message["MessageId"], "blob": message.get("BlobId") or message["MessageId"]}
    )
    return f"{base_url.rstrip('/')}/api/connector/download/{activity_id}?{query}"


class OutboundService:
    def __init__(self, *, messages, outbound, clock: Callable[[], datetime] = now_utc) -> None:
        self._messages = messages
        self._outbound = outbound  # the outbound blob container
        self._clock = clock

    # Dequeue -----------------------------------------------------------------------------------
    def dequeue(self, job: Job, base_url: str) -> dict | None:
        """The six-field dequeue reply for the next ready message, or None (the caller answers 204).

        No field is ever null except the two that D365 itself sends as null (PROTOCOL §3):
        FileDownLoadErrorMessage, and LastDequeueDateTime on a first delivery; clients declare both
        nullable (Microsoft's sample client types them `object`). The contract walker of
        tests/e2e/test_d365_reply_contract.py checks every other field.
        """
        for candidate in self._messages.iter_messages(
            job.activity_id, statuses=[statuses.ENQUEUED, statuses.DEQUEUED], select=_SELECT
        ):
            if candidate.get("Direction") != "export" or not self._ready(candidate, self._clock()):
                continue
            try:
                claimed = self._claim(job, candidate["RowKey"])
            except ConflictError:  # lost the race too often; someone else is handing it out
                continue
            if claimed is None:
                continue  # taken by a concurrent dequeue
            message, previous = claimed
            return {
                "CorrelationId": message["MessageId"],
                "PopReceipt": message["PopReceipt"],
                "DownloadLocation": download_location(base_url, job.activity_id, message),
                "IsDownLoadFileExist": bool(message.get("FileUploaded", True)),
                "FileDownLoadErrorMessage": None,
                "LastDequeueDateTime": iso(previous) if previous else None,
            }
        return None

    def _ready(self, message: dict, now: datetime) -> bool:
        status = message.get("Status")
        if status == statuses.ENQUEUED:
            return True
        hidden = message.get("HiddenUntil")
        return status == statuses.DEQUEUED and (not isinstance(hidden, datetime) or hidden <= now)

    def _claim(self, job: Job, row_key: str) -> tuple[dict, datetime | None] | None:
        previous: list[datetime | None] = [None]

        def change(current: dict) -> dict | None:
            now = self._clock()
            if current.get("Direction") != "export" or not self._ready(current, now):
                return None
            fields: dict[str, Any] = {
                "Status": statuses.DEQUEUED,
                "PopReceipt": uuid.uuid4().hex,
                "HiddenUntil": now + timedelta(minutes=job.redelivery_minutes),
                "DequeuedAt": now,
                "DequeueCount": int(current.get("DequeueCount") or 0) + 1,
            }
            previous[0] = None
            if current.get("Status") == statuses.DEQUEUED:  # a redelivery
                previous[0] = current.get("DequeuedAt")
                fields["LastDequeueAt"] = previous[0]
                fields["Transitions"] = [
                    *(current.get("Transitions") or []),
                    {"status": statuses.DEQUEUED, "at": iso(now), "redelivery": True},
                ][-MAX_TRANSITIONS:]
            return fields

        message = self._messages.update_message(job.activity_id, row_key, change)
        return None if message is None else (message, previous[0])

    # Download ----------------------------------------------------------------------------------
    def get_package(self, job: Job, correlation_id: str | None, blob_id: str | None) -> tuple[dict, bytes]:
        """The message and its package bytes. Matching is on the query parameters only: clients rewrite
        the scheme, host and port of DownloadLocation, and may reorder its parameters."""
        message = self._export_message(job, correlation_id, what="correlation-id")
        if blob_id:
            wanted = _clean_guid(blob_id)
            if wanted not in {_clean_guid(message.get("BlobId")), _clean_guid(message.get("MessageId"))}:
                raise NotFoundError(
                    f"blob {blob_id} is not the package of message {message['MessageId']}",
                    code="FileNotFound",
                )
        if not message.get("FileUploaded") or not message.get("BlobName"):
            raise NotFoundError(f"message {message['MessageId']} has no file", code="FileNotFound")
        from azure.core.exceptions import ResourceNotFoundError

        try:
            data = self._outbound.download_blob(message["BlobName"], max_concurrency=4).readall()
        except ResourceNotFoundError as exc:
            raise NotFoundError(
                f"the package of message {message['MessageId']} is no longer available (retention)",
                code="FileNotFound",
            ) from exc
        try:
            at = self._clock()
            self._messages.update_message(
                job.activity_id,
                message["RowKey"],
                lambda cur: {"DownloadedAt": at, "DownloadCount": int(cur.get("DownloadCount") or 0) + 1},
            )
        except Exception:  # bookkeeping only; the download itself succeeded
            log.warning("could not record the download of %s", message["MessageId"], exc_info=True)
        return message, data

    # Ack -----------------------------------------------------------------------------------------
    def ack(self, job: Job, body: Any) -> dict:
        """Ack a delivery. The body is the dequeue reply echoed back: RIS sends CorrelationId, PopReceipt and
        DownloadLocation; PSI all six fields. Unknown fields are ignored, DownloadLocation is not compared."""
        if not isinstance(body, dict):
            raise ValidationError(
                "the ack body must be the JSON object that dequeue returned", code="InvalidAck"
            )
        fields = {str(k).lower(): v for k, v in body.items()}
        correlation_id = fields.get("correlationid")
        if not correlation_id:
            raise ValidationError("the ack body has no CorrelationId", code="InvalidAck")
        receipt = fields.get("popreceipt")
        receipt = str(receipt).strip().strip('"') if receipt not in (None, "") else None
        message = self._export_message(job, str(correlation_id), what="CorrelationId")
        outcome: list[str] = [""]

        def change(current: dict) -> dict | None:
            if receipt and receipt != current.get("PopReceipt"):
                outcome[0] = "stale"
                return None
            if current.get("Status") == statuses.ACKED:
                outcome[0] = "already"
                return None
            if current.get("Status") != statuses.DEQUEUED:
                outcome[0] = "not-dequeued"
                return None
            outcome[0] = "acked"
            return {"Status": statuses.ACKED, "AckedAt": self._clock()}

        updated = self._messages.update_message(job.activity_id, message["RowKey"], change)
        if outcome[0] == "stale":
            raise ConflictError(
                f"the PopReceipt is stale: message {message['MessageId']} was delivered again since this "
                "receipt was issued (the redelivery timeout passed); the current holder must ack it",
                code="StalePopReceipt",
            )
        if outcome[0] == "not-dequeued":
            raise ConflictError(
                f"message {message['MessageId']} has not been dequeued; dequeue it first", code="NotDequeued"
            )
        return updated or self._messages.get_message(job.activity_id, message["RowKey"])

    # Helpers ---------------------------------------------------------------------------------------
    def _export_message(self, job: Job, raw_id: str | None, *, what: str) -> dict:
        message_id = _clean_guid(raw_id)
        if not message_id:
            raise NotFoundError(f"{what} {raw_id!r} is not a message ID", code="MessageNotFound")
        message = self._messages.find_by_id(message_id)
        if (
            message is None
            or message.get("PartitionKey") != job.activity_id
            or message.get("Direction") != "export"
        ):
            raise NotFoundError(
                f"message {message_id} is not an export message of this job", code="MessageNotFound"
            )
        return message


_ID_JUNK = re.compile(r'^[\s"\'{\\]+|[\s"\'}\\]+$')


def _clean_guid(value: Any) -> str | None:
    """A message ID as clients send it back: quoted (RIS keeps `"guid"`), braced, escaped or percent-encoded."""
    if value in (None, ""):
        return None
    text, previous = urllib.parse.unquote(str(value)), None
    while previous != text:
        previous = text
        text = _ID_JUNK.sub("", text).replace('\\"', "")
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None
