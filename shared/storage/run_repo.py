"""Run records ("batch jobs"): a partition per job, newest first, plus an index by execution ID."""

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
    def __init__(self, runs: TableClient, index: TableClient) -> None:
        self._runs = runs
        self._index = index

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
        where = self.locate(run_id)
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
            self._runs.upsert_entity(row, mode=UpdateMode.REPLACE)
            return _decode(row)
        row_key = _newest_first_key(run_id)
        self._index.upsert_entity(
            {"PartitionKey": run_id, "RowKey": "", "JobId": job_id, "RunRowKey": row_key}
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
        self._runs.upsert_entity(_encode({k: v for k, v in row.items() if v is not None}))
        return row

    def locate(self, run_id: str) -> tuple[str, str] | None:
        try:
            idx = self._index.get_entity(run_id, "")
        except ResourceNotFoundError:
            return None
        return idx["JobId"], idx["RunRowKey"]

    def find_run(self, run_id: str) -> dict | None:
        where = self.locate(run_id)
        if where is None:
            return None
        try:
            return _decode(self._runs.get_entity(*where))
        except ResourceNotFoundError:
            return None

    def get_run(self, run_id: str) -> dict:
        run = self.find_run(run_id)
        if run is None:
            raise NotFoundError(f"execution {run_id} does not exist", code="ExecutionNotFound")
        return run

    def update_run(self, run_id: str, **fields: Any) -> None:
        where = self.locate(run_id)
        if where is None:
            raise NotFoundError(f"execution {run_id} does not exist", code="ExecutionNotFound")
        # A MERGE (PATCH) of the same values is idempotent, and the SDK does not retry a PATCH after a reset.
        retry_call(
            lambda: self._runs.update_entity(
                {"PartitionKey": where[0], "RowKey": where[1], **_encode(fields)}, mode=UpdateMode.MERGE
            ),
            what="updating a run",
        )

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
