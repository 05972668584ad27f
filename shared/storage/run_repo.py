"""Run records ("batch jobs"): a partition per job, newest first, plus an index by execution ID.

A *folded* run is the run of one process-on-arrival message (shared/services/import_worker.py): its execution
ID is the message ID and it has no index row. It is found through the message index (the message's `RunId` is
the run's ID), its row key is derived from the message's, and its row is written once when it ends (also when it
starts, for a bigger file). Until that row exists, find_run answers it from the message, `Executing`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.domain import statuses
from shared.errors import NotFoundError
from shared.storage.message_repo import now_utc
from shared.storage.retry import retry_call

_JSON_PROPS = ("Messages", "Counts", "Errors")
_MAX = 10**20


def _newest_first_key(run_id: str) -> str:
    return f"{_MAX - time.time_ns() // 1000:020d}-{run_id}"


# The message property that says its first attempt ran in a folded run (the worker's claim sets it).
FOLDED_RUN = "FoldedRun"


def folded_row_key(message_row_key: str, run_id: str) -> str:
    """The row key of a folded run: newest first by its message's enqueue time (message_repo.ordered_row_key)."""
    micros = int(message_row_key.split("-", 1)[0])
    return f"{_MAX - micros:020d}-{run_id}"


def folded_base(run_id: str, message: dict, trigger: str = statuses.TRIGGER_ON_ARRIVAL) -> dict:
    """The fields of a folded run that its message tells: started when the message was last claimed."""
    from datetime import datetime

    claims = [
        t.get("at")
        for t in message.get("Transitions") or []
        if isinstance(t, dict) and t.get("status") == statuses.PREPROCESSING
    ]
    started = (
        datetime.fromisoformat(claims[-1].replace("Z", "+00:00")) if claims and claims[-1] else now_utc()
    )
    return {
        "RunId": run_id,
        "Trigger": trigger,
        "Operation": "import",
        "Status": statuses.RUN_EXECUTING,
        "CreatedAt": started,
        "StartedAt": started,
        "Messages": [message.get("MessageId")],
        "Folded": True,
    }


def _decode(row: dict) -> dict:
    out = dict(row)
    for key in _JSON_PROPS:
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    return out


def _encode(fields: dict) -> dict:
    return {
        k: (json.dumps(v, separators=(",", ":")) if k in _JSON_PROPS and v is not None else v)
        for k, v in fields.items()
    }


class RunRepository:
    def __init__(self, runs: TableClient, index: TableClient, messages=None) -> None:
        """`messages`: the MessageRepository, which finds folded runs (module doc); without it there are none."""
        self._runs = runs
        self._index = index
        self._messages = messages

    def create_run(
        self,
        job_id: str,
        run_id: str,
        *,
        trigger: str,
        operation: str,
        status: str = statuses.RUN_EXECUTING,
        **fields: Any,
    ) -> dict:
        at = now_utc()
        where = self._indexed(run_id)
        if where is not None and where[0] == job_id:
            # The same execution started again (a retried package import keeps its ID): one row, not an
            # orphan left Executing beside a new one.
            try:
                current = self._runs.get_entity(job_id, where[1])
            except ResourceNotFoundError:
                current = {"PartitionKey": job_id, "RowKey": where[1], "RunId": run_id, "CreatedAt": at}
            row = {k: v for k, v in current.items() if k not in ("EndedAt", "StartedAt")}
            row.update(_encode({"Trigger": trigger, "Operation": operation, "Status": status, **fields}))
            if status == statuses.RUN_EXECUTING:
                row["StartedAt"] = at
            retry_call(lambda: self._runs.upsert_entity(row, mode=UpdateMode.REPLACE), what="recording a run")
            return _decode(row)
        row_key = _newest_first_key(run_id)
        # Upserts (a MERGE, or a PUT) of the same values are idempotent, and the SDK does not retry a MERGE after a
        # reset (azure-core retries only GET, HEAD, PUT, DELETE, OPTIONS and TRACE): retried here, so a reset
        # after the service acted does not fail the start of a run whose row is stored.
        retry_call(
            lambda: self._index.upsert_entity(
                {"PartitionKey": run_id, "RowKey": "", "JobId": job_id, "RunRowKey": row_key}
            ),
            what="indexing a run",
        )
        row = {
            "PartitionKey": job_id,
            "RowKey": row_key,
            "RunId": run_id,
            "Trigger": trigger,
            "Operation": operation,
            "Status": status,
            "CreatedAt": at,
            "StartedAt": at if status == statuses.RUN_EXECUTING else None,
            "Messages": [],
            **fields,
        }
        stored = _encode({k: v for k, v in row.items() if v is not None})
        retry_call(lambda: self._runs.upsert_entity(stored), what="recording a run")
        return row

    def _indexed(self, run_id: str) -> tuple[str, str] | None:
        try:
            idx = self._index.get_entity(run_id, "")
        except ResourceNotFoundError:
            return None
        return idx["JobId"], idx["RunRowKey"]

    def _folded(self, run_id: str) -> tuple[str, str, dict] | None:
        """(job ID, row key, message) of a folded run, or None."""
        if self._messages is None:
            return None
        message = self._messages.find_by_id(run_id)
        if message is None or not message.get(FOLDED_RUN):
            return None
        return message["PartitionKey"], folded_row_key(message["RowKey"], run_id), message

    def locate(self, run_id: str) -> tuple[str, str] | None:
        where = self._indexed(run_id)
        if where is None:
            folded = self._folded(run_id)
            where = folded[:2] if folded else None
        return where

    def find_run(self, run_id: str) -> dict | None:
        where = self._indexed(run_id)
        folded = None
        if where is None:
            folded = self._folded(run_id)
            if folded is None:
                return None
            where = folded[:2]
        try:
            return _decode(self._runs.get_entity(*where))
        except ResourceNotFoundError:
            if folded is None:
                return None
            # A folded run whose row is not written yet: executing, as its message tells.
            job_id, row_key, message = folded
            return {"PartitionKey": job_id, "RowKey": row_key, **folded_base(run_id, message)}

    def get_run(self, run_id: str) -> dict:
        run = self.find_run(run_id)
        if run is None:
            raise NotFoundError(f"execution {run_id} does not exist", code="ExecutionNotFound")
        return run

    def update_run(self, run_id: str, **fields: Any) -> None:
        where = self._indexed(run_id)
        base: dict = {}
        if where is None:
            folded = self._folded(run_id)
            if folded is None:
                raise NotFoundError(f"execution {run_id} does not exist", code="ExecutionNotFound")
            where, message = folded[:2], folded[2]
            base = folded_base(run_id, message)
        keys = {"PartitionKey": where[0], "RowKey": where[1]}

        def write() -> None:
            try:
                self._runs.update_entity({**keys, **_encode(fields)}, mode=UpdateMode.MERGE)
            except ResourceNotFoundError:
                if not base:
                    raise
                # A folded run whose row was never written (its worker stopped): written whole.
                self._runs.upsert_entity({**keys, **_encode({**base, **fields})}, mode=UpdateMode.MERGE)

        # A MERGE (PATCH) of the same values is idempotent, and the SDK does not retry a PATCH after a reset.
        retry_call(write, what="updating a run")

    def write_folded(self, job_id: str, message_row_key: str, run_id: str, fields: dict[str, Any]) -> None:
        """Write a folded run's row (module doc) with `fields` (folded_base's and more): one upsert."""
        row = {"PartitionKey": job_id, "RowKey": folded_row_key(message_row_key, run_id), **_encode(fields)}
        retry_call(lambda: self._runs.upsert_entity(row, mode=UpdateMode.MERGE), what="writing a run")

    def add_message(self, run_id: str, message_id: str) -> None:
        run = self.get_run(run_id)
        ids = list(run.get("Messages") or [])
        if message_id not in ids:
            ids.append(message_id)
            self.update_run(run_id, Messages=ids[-500:])  # bounded: a property holds 64 KB

    def end_run(self, run_id: str, status: str = statuses.RUN_ENDED, **fields: Any) -> None:
        self.update_run(run_id, Status=status, EndedAt=now_utc(), **fields)

    def list_runs(
        self, job_id: str, *, page_size: int = 50, continuation: Any = None
    ) -> tuple[list[dict], Any]:
        pager = self._runs.query_entities(
            "PartitionKey eq @job", parameters={"job": job_id}, results_per_page=page_size
        ).by_page(continuation_token=continuation)
        page = [_decode(r) for r in next(pager, [])]
        return page, pager.continuation_token
