"""A message's row and its newest-first index row are created in one transaction (shared/storage/message_repo.py);
a retry after a lost reply (a reset after the service acted) finds both stored and answers the row."""

from __future__ import annotations

import uuid

import pytest
from azure.data.tables import TableTransactionError

from shared.storage import message_repo as mr

pytestmark = [pytest.mark.azurite]


def test_a_repeated_create_transaction_is_recognized_as_already_done(services):
    repo = services.message_repo()
    job_id, message_id = str(uuid.uuid4()), str(uuid.uuid4())
    row_key = mr.ordered_row_key(message_id)
    ops = [
        ("create", {"PartitionKey": job_id, "RowKey": row_key, "MessageId": message_id}),
        ("upsert", mr._newest_row(job_id, row_key)),
    ]
    repo._messages.submit_transaction(ops)
    with pytest.raises(TableTransactionError) as caught:
        repo._messages.submit_transaction(ops)  # what a retry of a create whose reply was lost sends
    assert mr._already_exists(caught.value)


def test_the_row_and_its_index_row_are_stored_together(services):
    repo = services.message_repo()
    job_id, message_id = str(uuid.uuid4()), str(uuid.uuid4())
    created = repo.create_message(job_id, message_id, {"Status": "Enqueued", "Direction": "import"})
    rows = list(repo._messages.query_entities("PartitionKey eq @pk", parameters={"pk": job_id}))
    assert sorted(r["RowKey"] for r in rows) == sorted(
        [created["RowKey"], mr.newest_row_key(created["RowKey"])]
    )
    # The row as stored, with the transaction's ETag: a write conditional on it succeeds (a wrong one fails).
    from azure.data.tables import UpdateMode

    from shared.storage.concurrency import update_if_unchanged

    entity = {"PartitionKey": job_id, "RowKey": created["RowKey"], "Status": "Processing"}
    written, _ = update_if_unchanged(repo._messages, entity, created["_etag"], mode=UpdateMode.MERGE)
    assert written
    assert repo.find_by_id(message_id)["Status"] == "Processing"
