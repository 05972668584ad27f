"""Creating a message is one insert of its row (shared/storage/message_repo.py); its newest-first index row is
written by the next listing, and by the create itself when the row was stored late (after LATE_CREATE_SECONDS),
which a listing's mark may have passed meanwhile."""

from __future__ import annotations

import uuid

import pytest
from azure.data.tables import UpdateMode

from shared.storage import message_repo as mr
from shared.storage.concurrency import update_if_unchanged

pytestmark = [pytest.mark.azurite]


def _partition(repo, job_id: str) -> list[str]:
    return [
        r["RowKey"] for r in repo._messages.query_entities("PartitionKey eq @pk", parameters={"pk": job_id})
    ]


def test_a_message_is_one_row_until_a_listing_indexes_it(services):
    repo = services.message_repo()
    job_id, message_id = str(uuid.uuid4()), str(uuid.uuid4())
    created = repo.create_message(job_id, message_id, {"Status": "Enqueued", "Direction": "import"})
    assert _partition(repo, job_id) == [created["RowKey"]]
    # The row as stored, with the insert's ETag: a write conditional on it succeeds.
    entity = {"PartitionKey": job_id, "RowKey": created["RowKey"], "Status": "Processing"}
    written, _ = update_if_unchanged(repo._messages, entity, created["_etag"], mode=UpdateMode.MERGE)
    assert written
    assert repo.find_by_id(message_id)["Status"] == "Processing"

    page, _ = repo.list_newest_first(job_id)
    assert [m["MessageId"] for m in page] == [message_id]
    assert sorted(_partition(repo, job_id)) == sorted(
        [created["RowKey"], mr.newest_row_key(created["RowKey"]), mr.INDEX_FROM]
    )


def test_a_late_create_indexes_itself(services, monkeypatch):
    repo = services.message_repo()
    job_id, message_id = str(uuid.uuid4()), str(uuid.uuid4())
    monkeypatch.setattr(mr, "LATE_CREATE_SECONDS", -1)  # every create is late
    created = repo.create_message(job_id, message_id, {"Status": "Enqueued", "Direction": "import"})
    assert sorted(_partition(repo, job_id)) == sorted(
        [created["RowKey"], mr.newest_row_key(created["RowKey"])]
    )


def test_a_listing_moves_its_mark_and_finds_rows_stored_behind_it_only_within_the_margin(
    services, monkeypatch
):
    """Why late creates index themselves: a listing looks again from its mark (its start minus the margin), so a
    row stored later with a key after the mark is found, and one with a key before it is not."""
    repo = services.message_repo()
    job_id = str(uuid.uuid4())
    first = str(uuid.uuid4())
    repo.create_message(job_id, first, {"Status": "Enqueued", "Direction": "import"})
    assert [m["MessageId"] for m in repo.list_newest_first(job_id)[0]] == [first]
    mark = int(repo._messages.get_entity(job_id, mr.INDEX_FROM)[mr.SCAN_FROM])

    def store(micros: int) -> str:
        message_id = str(uuid.uuid4())
        key = mr.ordered_row_key(message_id, micros=micros)
        repo._messages.create_entity({"PartitionKey": job_id, "RowKey": key, "MessageId": message_id})
        return message_id

    within = store(mark + 1)  # a key taken before the listing, stored after it: inside the margin
    behind = store(mark - 1)  # stored after the mark passed its key (what a late create must not do)
    listed = [m["MessageId"] for m in repo.list_newest_first(job_id)[0]]
    assert within in listed and first in listed
    assert behind not in listed
