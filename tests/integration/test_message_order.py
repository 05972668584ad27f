"""A job's messages list newest first (docs/openapi.yaml, list messages), page by page and with a status
filter, including messages stored before the newest-first index existed (shared/storage/message_repo.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.storage.message_repo import INDEX_FROM, ordered_row_key

pytestmark = [pytest.mark.azurite]


@pytest.fixture
def repo(services):
    return services.message_repo()


def _create(repo, job_id: str, n: int, status=lambda i: "Enqueued") -> list[str]:
    ids = []
    for i in range(n):
        message_id = str(uuid.uuid4())
        repo.create_message(job_id, message_id, {"Status": status(i), "Direction": "import"})
        ids.append(message_id)
    return ids


def _all_pages(repo, job_id: str, **kw) -> tuple[list[str], int]:
    seen, token, pages = [], None, 0
    while True:
        page, token = repo.list_newest_first(job_id, continuation=token, **kw)
        seen += [m["MessageId"] for m in page]
        pages += 1
        if not token:
            return seen, pages
        assert pages < 50


def test_messages_list_newest_first_across_pages(repo):
    job_id = str(uuid.uuid4())
    ids = _create(repo, job_id, 7)
    first, token = repo.list_newest_first(job_id, page_size=3)
    assert [m["MessageId"] for m in first] == ids[::-1][:3]
    assert token is not None
    seen, _ = _all_pages(repo, job_id, page_size=3)
    assert seen == ids[::-1]
    # The enqueue-ordered listing the workers use is unchanged.
    assert [m["MessageId"] for m in repo.iter_messages(job_id)] == ids


def test_a_status_filter_keeps_the_order_and_skips_the_others(repo):
    job_id = str(uuid.uuid4())
    ids = _create(repo, job_id, 9, status=lambda i: "Processed" if i % 3 == 0 else "Enqueued")
    seen, _ = _all_pages(repo, job_id, page_size=2, statuses=["Processed"])
    assert seen == [ids[6], ids[3], ids[0]]
    assert _all_pages(repo, job_id, statuses=["PostProcessingFailed"])[0] == []


def test_messages_stored_before_the_index_are_indexed_on_first_listing(repo, services):
    """Rows written as earlier versions wrote them: the message and its ID index, with no newest-first row
    (stop 19) or with one in a partition of the ID index table (stop 20). The first listing indexes them in
    their own partition and deletes the old index partition; the enqueue-ordered listing never sees the index."""
    job_id = str(uuid.uuid4())
    tables = repo._messages, repo._index
    base = datetime.now(UTC) - timedelta(days=3)
    old = []
    for i in range(105):  # more than one 100-operation transaction
        message_id = str(uuid.uuid4())
        row_key = ordered_row_key(message_id, base + timedelta(seconds=i))
        tables[0].create_entity(
            {"PartitionKey": job_id, "RowKey": row_key, "MessageId": message_id, "Status": "Processed"}
        )
        tables[1].upsert_entity(
            {"PartitionKey": message_id, "RowKey": "", "JobId": job_id, "MessageRowKey": row_key}
        )
        if i % 2:
            tables[1].upsert_entity(
                {"PartitionKey": f"newest-{job_id}", "RowKey": f"{i:020d}", "MessageRowKey": row_key}
            )
        old.append(message_id)
    new = _create(repo, job_id, 2)  # written by this version: indexed by the listing too
    seen, _ = _all_pages(repo, job_id, page_size=40)
    assert seen == new[::-1] + old[::-1]
    rows = list(tables[0].query_entities("PartitionKey eq @pk", parameters={"pk": job_id}))
    index = [r for r in rows if r["RowKey"].startswith(INDEX_FROM)]
    assert len(rows) == 107 + 107 + 1  # the messages, their index rows, the marker
    assert sorted(r["MessageRowKey"] for r in index if "MessageRowKey" in r) == sorted(
        r["RowKey"] for r in rows if not r["RowKey"].startswith(INDEX_FROM)
    )
    old_partition = tables[1].query_entities("PartitionKey eq @pk", parameters={"pk": f"newest-{job_id}"})
    assert list(old_partition) == []
    assert [m["MessageId"] for m in repo.iter_messages(job_id)] == old + new


def test_a_forged_continuation_is_refused(repo):
    from shared.errors import ValidationError

    with pytest.raises(ValidationError):
        repo.list_newest_first(
            str(uuid.uuid4()), continuation={"PartitionKey": "newest-other", "RowKey": "x"}
        )
    job_id = str(uuid.uuid4())
    for forged in ({"PartitionKey": job_id, "RowKey": "00000000000000000001-x"}, "not a token"):
        with pytest.raises(ValidationError):
            repo.list_newest_first(job_id, continuation=forged)
