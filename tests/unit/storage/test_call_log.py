"""The storage call log's operation names and its reader (shared/storage/call_log.py), on real SDK requests."""

from __future__ import annotations

from azure.core.rest import HttpRequest

from shared.storage import call_log

ACCOUNT = "devstoreaccount1"
TABLES = "http://127.0.0.1:10002/devstoreaccount1"


def op(service: str, method: str, url: str, headers=None, body=None) -> str:
    return call_log.operation(service, HttpRequest(method, url, headers=headers or {}, content=body), ACCOUNT)


def test_table_operations():
    keyed = f"{TABLES}/messages(PartitionKey='j',RowKey='r')"
    assert op("table", "GET", keyed) == "table:get messages"
    assert op("table", "GET", f"{TABLES}/messages()?$filter=x") == "table:query messages"
    assert op("table", "PATCH", keyed, {"If-Match": "*"}) == "table:merge messages"
    assert op("table", "PATCH", keyed) == "table:upsert messages"
    assert op("table", "PUT", keyed) == "table:upsert-replace messages"
    assert op("table", "POST", f"{TABLES}/messages") == "table:insert messages"
    assert op("table", "GET", f"{TABLES}/config(PartitionKey='meta',RowKey='version')") == (
        "table:get config-version"
    )
    assert op("table", "POST", f"{TABLES}/Tables", body=b'{"TableName": "entCustomers"}') == (
        "table:create-table ent*"
    )
    batch = b"--changeset\r\nPATCH http://127.0.0.1:10002/devstoreaccount1/entCustomers(PartitionKey='a') HTTP/1.1"
    assert op("table", "POST", f"{TABLES}/$batch", body=batch) == "table:batch ent*"


def test_blob_and_queue_operations():
    blobs = "http://127.0.0.1:10000/devstoreaccount1"
    assert op("blob", "PUT", f"{blobs}/inbound/job/message") == "blob:put inbound"
    assert op("blob", "PUT", f"{blobs}/inbound/job/m?comp=block&blockid=x") == "blob:put-block inbound"
    assert op("blob", "GET", f"{blobs}/inbound/job/message") == "blob:get inbound"
    assert op("blob", "PUT", f"{blobs}/inbound?restype=container") == "blob:create-container inbound"
    # In Azure the account is the host name, not the first segment.
    assert (
        call_log.operation("blob", HttpRequest("HEAD", "https://acct.blob.core.windows.net/outbound/x"), None)
        == "blob:head outbound"
    )
    queues = "http://127.0.0.1:10001/devstoreaccount1"
    assert op("queue", "POST", f"{queues}/import-work/messages") == "queue:send import-work"
    assert (
        op("queue", "DELETE", f"{queues}/import-work/messages/id?popreceipt=p") == "queue:delete import-work"
    )


def test_read_counts_whole_lines_since_an_offset_and_leaves_out_a_process(tmp_path):
    path = tmp_path / "calls.log"
    path.write_text("1 table:get messages\n2 table:get messages\n2 blob:put inbound\n3 queue:send q")
    counts, offset = call_log.read(str(path), 0, exclude_pid=1)
    assert dict(counts) == {"table:get messages": 1, "blob:put inbound": 1}
    with open(path, "a") as log:
        log.write("\n")
    counts, _ = call_log.read(str(path), offset)
    assert dict(counts) == {"queue:send q": 1}  # the line that was being written, now whole
    assert call_log.read(str(tmp_path / "absent"), 0)[0] == {}


def test_describe_change_lists_old_and_new_per_operation():
    text = call_log.describe_change({"a": 2, "b": 1}, {"a": 1, "c": 4})
    assert "  a: 2 -> 1" in text and "  b: 1 -> 0" in text and "  c: 0 -> 4" in text
    assert "total: 3 -> 5" in text


def test_off_unless_local_mode(monkeypatch, tmp_path):
    monkeypatch.setenv(call_log.SETTING, str(tmp_path / "c.log"))
    monkeypatch.setenv("AUTH_MODE", "entra")
    assert call_log.transport_kwargs("blob", None) == {}
    monkeypatch.setenv("AUTH_MODE", "local")
    monkeypatch.setenv("WEBSITE_INSTANCE_ID", "x")
    assert call_log.transport_kwargs("blob", None) == {}
    monkeypatch.delenv("WEBSITE_INSTANCE_ID")
    assert "transport" in call_log.transport_kwargs("blob", None)
