"""Checkpoints of an import message, so that an attempt that dies or gives up resumes where the last one stopped.

What a checkpoint holds, in the `staging` container under `<job activity ID>/<message row key>/`:

- `checkpoint.json`: the staged entities in execution order, each with its counts so far (read, written,
  rejected, status), its spool blob and how far it is written (`offset`: bytes of the spool whose rows are
  all written or rejected), the error file's count and summary, the configuration version the file was
  staged with and the attempt that staged it (shape: `Checkpoint.to_json`);
- `<n>.spool`: the staged rows of entity n, as shared/services/import_pipeline.preprocess wrote them;
- `errors.csv`: the rejected records so far.

When (shared/services/message_import.py): after staging, when the staged rows reach
`IMPORT_CHECKPOINT_MIN_BYTES` (smaller files are staged again: it costs less than the checkpoint's own
writes), then every `IMPORT_CHECKPOINT_ROWS` rows while writing, and when an entity is done. Upserts are
idempotent (same key, same row), so rows written after the last checkpoint and written again by the next
attempt stay one row each; the counts come from the checkpoint, so they are not counted twice.

A checkpoint is used only with the configuration version it was staged with: a change (an administrator's
fix before a reprocess, a new mapping) may change what the rows are, so the file is staged again. It is
deleted when its message ends Processed, ProcessedWithErrors or PreProcessingError; a message that ended
PostProcessingFailed keeps it, so that reprocessing it writes only the rest. The container's lifecycle rule
(infra/bicep/modules/storage.bicep) deletes what is left after the file retention days.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from typing import IO, BinaryIO

from shared import settings

log = logging.getLogger(__name__)

CHECKPOINT_BLOB = "checkpoint.json"
ERRORS_BLOB = "errors.csv"
FORMAT_VERSION = 1
MIN_BYTES_SETTING = "IMPORT_CHECKPOINT_MIN_BYTES"
ROWS_SETTING = "IMPORT_CHECKPOINT_ROWS"
DEFAULT_MIN_BYTES = 16 * 1024 * 1024  # about 50,000 typical rows: staging that again takes seconds
DEFAULT_ROWS = 20_000  # a checkpoint costs one blob write and a few part-filled batches


def _int_setting(name: str, default: int) -> int:
    # A worker setting: a bad value must not stop imports (nor the HTTP endpoints, as the settings of
    # shared/setting_problems.py do), so it is logged and the default used.
    try:
        return settings.get_int(name, default)
    except ValueError:
        log.error("%s=%r is not a whole number; using %s", name, settings.get(name), default)
        return default


def min_bytes() -> int:
    """Staged bytes from which a message is checkpointed (IMPORT_CHECKPOINT_MIN_BYTES; 0: always)."""
    return max(0, _int_setting(MIN_BYTES_SETTING, DEFAULT_MIN_BYTES))


def every_rows() -> int:
    """Rows written between two checkpoints (IMPORT_CHECKPOINT_ROWS, at least 100)."""
    return max(100, _int_setting(ROWS_SETTING, DEFAULT_ROWS))


@dataclass
class EntityCheckpoint:
    """One staged entity: `key` in the message's Counts, `entity` the configured entity written (None when it
    could not be read), `outcome` its EntityOutcome fields, `spool` its blob (None: nothing to write),
    `offset` bytes of the spool written, `done` when nothing is left to do for it."""

    key: str
    entity: str | None
    outcome: dict
    spool: str | None = None
    offset: int = 0
    done: bool = False
    # Its place in execution order and fail flags (a data package's manifest; 1 and False for a file job).
    execution_unit: int = 1
    level: int = 1
    fail_level_on_error: bool = False
    fail_unit_on_error: bool = False


@dataclass
class Checkpoint:
    message_id: str
    config_version: str | None
    staged_attempt: int
    entities: list[EntityCheckpoint] = field(default_factory=list)
    error_count: int = 0
    error_summary: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"formatVersion": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, doc: dict) -> Checkpoint:
        """Raises ValueError for a document this code did not write (another format version, missing keys)."""
        if doc.get("formatVersion") != FORMAT_VERSION:
            raise ValueError(f"checkpoint format {doc.get('formatVersion')!r} is not {FORMAT_VERSION}")
        try:
            entities = [EntityCheckpoint(**e) for e in doc["entities"]]
            return cls(
                message_id=doc["message_id"],
                config_version=doc["config_version"],
                staged_attempt=int(doc["staged_attempt"]),
                entities=entities,
                error_count=int(doc["error_count"]),
                error_summary=[str(s) for s in doc["error_summary"]],
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"checkpoint document is incomplete: {exc}") from exc

    def written(self) -> int:
        return sum(int(e.outcome.get("written") or 0) for e in self.entities)


class CheckpointStore:
    """A message's checkpoint in the staging container (see the module doc). Storage errors are raised, except
    by `delete`, which is a clean-up."""

    def __init__(self, container) -> None:
        self._container = container

    @staticmethod
    def prefix(job_id: str, row_key: str) -> str:
        return f"{job_id}/{row_key}/"

    def load(self, job_id: str, row_key: str) -> Checkpoint | None:
        """The message's checkpoint, or None when there is none (or it is unreadable: then it is logged and
        the message is staged again, which is always correct)."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            raw = self._container.download_blob(self.prefix(job_id, row_key) + CHECKPOINT_BLOB).readall()
        except ResourceNotFoundError:
            return None
        try:
            return Checkpoint.from_json(json.loads(raw))
        except ValueError as exc:
            log.warning("ignoring the checkpoint of message %s of job %s: %s", row_key, job_id, exc)
            return None

    def save(self, job_id: str, row_key: str, checkpoint: Checkpoint) -> None:
        body = json.dumps(checkpoint.to_json(), separators=(",", ":")).encode()
        self._container.upload_blob(self.prefix(job_id, row_key) + CHECKPOINT_BLOB, body, overwrite=True)

    def save_spool(self, job_id: str, row_key: str, name: str, spool: BinaryIO) -> None:
        """Upload a staged spool from its start, leaving it positioned at its start."""
        from shared.storage.blob_io import upload_stream

        spool.seek(0)
        upload_stream(self._container, self.prefix(job_id, row_key) + name, spool)
        spool.seek(0)

    def open_spool(self, job_id: str, row_key: str, name: str, offset: int) -> IO[bytes]:
        """A staged spool as a local temporary file, positioned at `offset`. Raises ResourceNotFoundError."""
        from shared.storage.blob_io import download_to_file

        spool = tempfile.TemporaryFile()
        try:
            download_to_file(self._container, self.prefix(job_id, row_key) + name, spool)
        except BaseException:
            spool.close()
            raise
        spool.seek(offset)
        return spool

    def save_errors(self, job_id: str, row_key: str, errors) -> None:
        errors.upload(self._container, self.prefix(job_id, row_key) + ERRORS_BLOB)

    def open_errors(self, job_id: str, row_key: str) -> IO[bytes]:
        from shared.storage.blob_io import download_to_file

        target = tempfile.TemporaryFile()
        download_to_file(self._container, self.prefix(job_id, row_key) + ERRORS_BLOB, target)
        target.seek(0)
        return target

    def delete(self, job_id: str, row_key: str) -> None:
        """Remove the message's checkpoint and staged files; failures are logged (the lifecycle rule removes
        anything left)."""
        try:
            for blob in self._container.list_blobs(name_starts_with=self.prefix(job_id, row_key)):
                self._container.delete_blob(blob.name)
        except Exception:
            log.warning(
                "deleting the checkpoint of message %s of job %s failed", row_key, job_id, exc_info=True
            )
