"""Export runs and the outbound (dequeue/ack/download) service against a real Azurite, in-process.

The services are built here with a private work queue, so that a local host running in the same
session never picks up these runs; the clock of the outbound service is injected to test
redelivery without waiting for it.
"""

from __future__ import annotations

import io
import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

pytestmark = pytest.mark.azurite

ENTITY = {
    "label": "Customer groups",
    "companySpecific": True,
    "keys": ["CUSTOMERGROUPID"],
    "fields": [
        {"name": "CUSTOMERGROUPID", "type": "string", "maxLength": 20},
        {"name": "DESCRIPTION", "type": "string"},
        {"name": "PAYMENTTERMS", "type": "enum", "values": ["Net30", "Net60"]},
        {"name": "CREDITLIMIT", "type": "decimal"},
        {"name": "PRIORITY", "type": "int"},
        {"name": "BLOCKED", "type": "bool"},
        {"name": "VALIDFROM", "type": "date"},
        {"name": "CREATED", "type": "datetime"},
    ],
}

ROWS = [
    {
        "CUSTOMERGROUPID": "10",
        "DESCRIPTION": "Wholesale, large",
        "PAYMENTTERMS": "Net30",
        "CREDITLIMIT": Decimal("1000.50"),
        "PRIORITY": 1,
        "BLOCKED": False,
        "VALIDFROM": date(2024, 1, 31),
        "CREATED": datetime(2024, 2, 1, 13, 45, 7, tzinfo=UTC),
    },
    {
        "CUSTOMERGROUPID": "20",
        "DESCRIPTION": 'Say "hi"\nsecond line',
        "PAYMENTTERMS": "Net60",
        "CREDITLIMIT": Decimal("0.8984500000000000"),
        "PRIORITY": 5_000_000_000,
        "BLOCKED": True,
        "VALIDFROM": None,
        "CREATED": None,
    },
    {
        "CUSTOMERGROUPID": "30",
        "DESCRIPTION": None,
        "PAYMENTTERMS": None,
        "CREDITLIMIT": Decimal("12345678901234567890.123456789"),
        "PRIORITY": None,
        "BLOCKED": None,
        "VALIDFROM": date(1999, 12, 31),
        "CREATED": datetime(2000, 1, 1, 0, 0, 0, tzinfo=UTC),
    },
]


@pytest.fixture(scope="module")
def env(app_env):
    from shared.services import registry
    from shared.services.export_service import ExportService
    from shared.storage import names
    from shared.storage.factory import get_clients

    clients = get_clients()
    work = clients.queue(f"itest-export-{uuid.uuid4().hex[:8]}")

    class Env:
        config = registry.config_service()
        messages = registry.message_repo()
        runs = registry.run_repo()
        entities = registry.entity_repo()
        outbound = clients.container(names.CONTAINER_OUTBOUND)
        queue = work
        service = ExportService(
            config=registry.config_service(),
            messages=registry.message_repo(),
            runs=registry.run_repo(),
            entities=registry.entity_repo(),
            outbound=clients.container(names.CONTAINER_OUTBOUND),
            queue=work,
            page_size=2,  # several pages even for a handful of rows
        )

    yield Env
    work.delete_queue()


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def _setup(env, *, fmt="CSV", filter_text=None, rows=ROWS, company="usmf", mapping=None, **job):
    name = f"Ent{uuid.uuid4().hex[:8]}"
    entity = env.config.upsert_entity(name, ENTITY).value
    project = f"Exp{uuid.uuid4().hex[:8]}"
    pe = {"entity": name, "format": fmt}
    if mapping:
        pe["mapping"] = mapping
    env.config.upsert_project(project, {"operation": "export", "filter": filter_text, "entities": [pe]})
    created = env.config.create_job(
        {
            "name": project,
            "project": project,
            "company": company,
            "authorizationPolicy": [{"applicationId": str(uuid.uuid4()), "enabled": True}],
            **job,
        }
    ).value
    _write(env, entity, rows, "usmf")
    # Another company's rows must never leak into a usmf export.
    _write(env, entity, [{**ROWS[0], "CUSTOMERGROUPID": "OTHER"}], "dat")
    return created, entity


def _write(env, entity, rows, company, modified=None):
    modified = modified or datetime.now(UTC)
    encoded = [env.entities.encode(entity, r, company, modified) for r in rows]
    result = env.entities.upsert_rows(entity, encoded)
    assert not result.failed, result.failed


def _run(env, job, trigger="manual"):
    from shared.services import work_items

    run_id = env.service.start(job, trigger)
    # The module shares one private queue; earlier tests may leave their own items on it.
    item = None
    while item is None or item.get("runId") != run_id:
        msg = env.queue.receive_message()
        assert msg is not None, f"no work item was queued for run {run_id}"
        item = work_items.decode(msg.content)
        env.queue.delete_message(msg)
    assert item == {"kind": "export", "jobId": job.activity_id, "runId": run_id, "trigger": trigger}
    result = env.service.handle(item)
    return env.runs.get_run(run_id), result


def _package(env, run):
    from shared.formats.package_reader import open_package

    data = env.outbound.download_blob(run["BlobName"]).readall()
    return data, open_package(io.BytesIO(data))


def _file(pkg, index=0):
    entity = pkg.entities()[index]
    with pkg.open_entity_file(entity) as stream:
        return entity, stream.read()


def test_csv_package_and_outbound_message(env):
    job, entity = _setup(env)
    run, result = _run(env, job)
    assert run["Status"] == "Ended", run
    assert run["TotalRecords"] == 3 and run["FileUploaded"] is True
    assert run["Counts"] == {entity.name: 3}
    assert run["BlobName"] == f"{job.activity_id}/{run['RunId']}.zip"
    assert run["PackageSize"] > 0 and run["StartedAt"] and run["EndedAt"]
    data, pkg = _package(env, run)
    assert run["PackageSize"] == len(data)
    assert sorted(pkg.names()) == ["Customer groups.csv", "Manifest.xml", "PackageHeader.xml"]
    me, content = _file(pkg)
    assert me.entity_name == "Customer groups" and me.source_format == "CSV"
    assert me.default_refresh_type == "FullPush" and me.target_entity == entity.name
    assert {m.entity_field for m in me.entity_maps} == {f["name"] for f in ENTITY["fields"]}
    assert content == (
        b"CUSTOMERGROUPID,DESCRIPTION,PAYMENTTERMS,CREDITLIMIT,PRIORITY,BLOCKED,VALIDFROM,CREATED\r\n"
        b'10,"Wholesale, large",Net30,1000.50,1,No,2024-01-31,2024-02-01 13:45:07\r\n'
        b'20,"Say ""hi""\nsecond line",Net60,0.8984500000000000,5000000000,Yes,,\r\n'
        b"30,,,12345678901234567890.123456789,,,1999-12-31,2000-01-01 00:00:00\r\n"
    )
    msg = env.messages.get_by_id(result.message_id)
    assert msg["PartitionKey"] == job.activity_id
    assert msg["Direction"] == "export" and msg["Status"] == "Enqueued"
    assert msg["BlobName"] == run["BlobName"] and msg["TotalRecords"] == 3 and msg["FileUploaded"] is True
    assert msg["RunId"] == run["RunId"] and run["Messages"] == [result.message_id]


def test_the_package_reads_back_with_the_import_readers(env):
    from shared.formats.readers import read_rows

    for fmt in ("CSV", "CSV-Unicode", "XML-Element", "XML-Attribute", "JSON", "EXCEL"):
        job, entity = _setup(env, fmt=fmt)
        run, _ = _run(env, job)
        assert run["Status"] == "Ended", (fmt, run)
        _, pkg = _package(env, run)
        me = pkg.entities()[0]
        assert me.source_format == fmt
        with pkg.open_entity_file(me) as stream:
            raw = stream.read()
        if fmt == "CSV-Unicode":
            assert raw.startswith(b"\xff\xfe")
        rows = [
            values
            for _, values in read_rows(
                io.BytesIO(raw),
                env.config.get_format(fmt),
                entity_name=entity.name,
                sheet=me.excel_sheet_name,
            )
        ]
        by_id = {r["CUSTOMERGROUPID"]: r for r in rows}
        assert set(by_id) == {"10", "20", "30"}, (fmt, rows)
        assert by_id["20"]["DESCRIPTION"] == 'Say "hi"\nsecond line', fmt
        assert by_id["30"]["CREDITLIMIT"] == "12345678901234567890.123456789", fmt
        assert (by_id["30"]["DESCRIPTION"] or "") == "", fmt


def test_mapping_names_the_columns(env):
    job, _ = _setup(env, mapping=[{"source": "GROUP", "target": "CUSTOMERGROUPID"}])
    run, _ = _run(env, job)
    _, pkg = _package(env, run)
    me, content = _file(pkg)
    assert content.startswith(b"GROUP,DESCRIPTION,")
    assert {(m.xml_field, m.entity_field) for m in me.entity_maps} >= {("GROUP", "CUSTOMERGROUPID")}


def test_filter_is_exact(env):
    # Decimals go through a Double prefilter; evaluate() makes the result exact.
    def ids(filter_text):
        job, _ = _setup(env, filter_text=filter_text)
        run, _ = _run(env, job)
        _, pkg = _package(env, run)
        _, content = _file(pkg)
        lines = content.decode().split("\r\n")
        found = [line.split(",")[0] for line in lines[1:] if line and line[0].isdigit()]
        assert run["TotalRecords"] == len(found)
        return found

    assert ids("CREDITLIMIT gt 0.89845") == ["10", "30"]  # 0.8984500000000000 is not greater
    assert ids("CREDITLIMIT ge 0.89845 and CREDITLIMIT lt 1000.5") == ["20"]
    assert ids("PAYMENTTERMS ne 'Net30' and CREDITLIMIT lt 1000") == ["20"]
    assert ids("PAYMENTTERMS ne 'Net30'") == ["20", "30"]  # a missing value is unequal to everything
    assert ids("company eq 'USMF' and VALIDFROM lt 2000-01-01") == ["30"]
    assert ids("PRIORITY eq 1 or PRIORITY gt 4999999999") == ["10", "20"]
    assert ids("CREATED ge 2024-02-01T13:45:07Z") == ["10"]

    job, _ = _setup(env, filter_text="PRIORITY ge 5000000000 or BLOCKED eq false")
    run, _ = _run(env, job)
    assert run["TotalRecords"] == 2


def test_incremental_exports_changes_since_the_last_successful_run(env):
    job, entity = _setup(env, incremental=True)
    first, _ = _run(env, job)
    assert first["TotalRecords"] == 3 and first["RefreshType"] == "FullPush"
    _write(env, entity, [{**ROWS[0], "DESCRIPTION": "changed"}, {**ROWS[0], "CUSTOMERGROUPID": "40"}], "usmf")
    second, _ = _run(env, job)
    assert second["TotalRecords"] == 2 and second["RefreshType"] == "IncrementalPush"
    _, pkg = _package(env, second)
    me, content = _file(pkg)
    assert me.default_refresh_type == "IncrementalPush"
    assert sorted(line.split(",")[0] for line in content.decode().split("\r\n")[1:] if line) == ["10", "40"]
    third, _ = _run(env, job)
    assert third["TotalRecords"] == 0 and third["FileUploaded"] is True


def test_zero_records(env):
    job, _ = _setup(env, rows=[], filter_text="CUSTOMERGROUPID eq 'none'", preventUploadWhenZeroRecords=True)
    before = len(list(env.messages.iter_messages(job.activity_id)))
    run, result = _run(env, job)
    assert run["Status"] == "Ended" and run["TotalRecords"] == 0 and run["FileUploaded"] is False
    assert not run.get("BlobName") and result.message_id is None
    assert len(list(env.messages.iter_messages(job.activity_id))) == before == 0
    assert not list(env.outbound.list_blobs(name_starts_with=f"{job.activity_id}/"))

    job, _ = _setup(env, rows=[], filter_text="CUSTOMERGROUPID eq 'none'")
    run, result = _run(env, job)
    assert run["TotalRecords"] == 0 and run["FileUploaded"] is True
    msg = env.messages.get_by_id(result.message_id)
    assert msg["TotalRecords"] == 0 and msg["Status"] == "Enqueued"
    _, pkg = _package(env, run)
    assert (
        _file(pkg)[1]
        == b"CUSTOMERGROUPID,DESCRIPTION,PAYMENTTERMS,CREDITLIMIT,PRIORITY,BLOCKED,VALIDFROM,CREATED\r\n"
    )


def test_a_retried_run_offers_its_package_once_and_an_ended_run_is_not_rerun(env):
    job, _ = _setup(env)
    run, result = _run(env, job)
    again = env.service.run_export(job, run["RunId"])  # as after a crash between the message and the end
    assert again.message_id == result.message_id
    assert len(list(env.messages.iter_messages(job.activity_id))) == 1
    item = {"kind": "export", "jobId": job.activity_id, "runId": run["RunId"]}
    assert env.service.handle(item) is None  # already Ended


def test_configuration_errors_end_the_run_and_poison_ends_it_too(env):
    job, entity = _setup(env)
    env.config.upsert_project(
        job.project, {"operation": "export", "entities": [{"entity": entity.name, "format": "CSV"}]}
    )
    env.config.upsert_project(job.project, {"operation": "import", "entities": [{"entity": entity.name}]})
    run, result = _run(env, job)
    assert run["Status"] == "Error" and "not an export project" in run["Errors"][0]

    job, _ = _setup(env)
    run_id = env.service.start(job, "manual")
    env.runs.update_run(run_id, Status="Executing", LastError="TimeoutError: storage went away", Attempts=5)
    env.service.handle_poison({"kind": "export", "jobId": job.activity_id, "runId": run_id})
    run = env.runs.get_run(run_id)
    assert run["Status"] == "Error" and "storage went away" in run["Errors"][0] and run["EndedAt"]


# Outbound ----------------------------------------------------------------------------------------


def _outbound(env, clock=None):
    from shared.services.outbound_service import OutboundService

    return OutboundService(messages=env.messages, outbound=env.outbound, clock=clock or Clock())


def _offer(env, job, n):
    """n export messages, as n runs would leave them (the package blob is shared)."""
    from shared.services.export_service import outbound_blob_name

    blob = outbound_blob_name(job.activity_id, "shared")
    env.outbound.upload_blob(blob, b"PK-not-really", overwrite=True)
    ids = []
    for _ in range(n):
        mid = str(uuid.uuid4())
        env.messages.create_message(
            job.activity_id,
            mid,
            {
                "Status": "Enqueued",
                "Direction": "export",
                "BlobName": blob,
                "BlobId": mid,
                "FileUploaded": True,
                "TotalRecords": 1,
            },
        )
        ids.append(mid)
    return ids


def test_dequeue_ack_and_redelivery(env):
    job, _ = _setup(env, redeliveryMinutes=1)
    ids = _offer(env, job, 2)
    clock = Clock()
    svc = _outbound(env, clock)
    first = svc.dequeue(job, "https://example.test")
    assert list(first) == [
        "CorrelationId",
        "PopReceipt",
        "DownloadLocation",
        "IsDownLoadFileExist",
        "FileDownLoadErrorMessage",
        "LastDequeueDateTime",
    ]
    assert first["CorrelationId"] == ids[0] and first["LastDequeueDateTime"] is None
    assert first["DownloadLocation"] == (
        f"https://example.test/api/connector/download/{job.activity_id}?correlation-id={ids[0]}&blob={ids[0]}"
    )
    second = svc.dequeue(job, "https://example.test")
    assert second["CorrelationId"] == ids[1]
    assert svc.dequeue(job, "https://example.test") is None  # both hidden

    clock.now += timedelta(seconds=61)
    again = svc.dequeue(job, "https://example.test")
    assert again["CorrelationId"] == ids[0] and again["PopReceipt"] != first["PopReceipt"]
    assert again["LastDequeueDateTime"] is not None
    assert env.messages.get_by_id(ids[0])["DequeueCount"] == 2

    with pytest.raises(Exception) as stale:
        svc.ack(job, {"CorrelationId": ids[0], "PopReceipt": first["PopReceipt"]})
    assert getattr(stale.value, "status", None) == 409
    svc.ack(job, {"CorrelationId": f'"{ids[0]}"', "PopReceipt": again["PopReceipt"], "Extra": 1})
    svc.ack(job, {"correlationid": ids[0], "popreceipt": again["PopReceipt"]})  # twice: fine
    acked = env.messages.get_by_id(ids[0])
    assert acked["Status"] == "Acked" and acked["AckedAt"]

    svc.ack(job, {"CorrelationId": "{" + ids[1].upper() + "}"})  # no PopReceipt: no check
    clock.now += timedelta(minutes=5)
    assert svc.dequeue(job, "https://example.test") is None  # acked messages never come back


def test_download_matches_on_query_parameters(env):
    job, _ = _setup(env)
    ids = _offer(env, job, 1)
    svc = _outbound(env)
    svc.dequeue(job, "http://x")
    msg, data = svc.get_package(job, f'"{ids[0]}"', ids[0].upper())
    assert data == b"PK-not-really" and msg["MessageId"] == ids[0]
    assert env.messages.get_by_id(ids[0])["DownloadCount"] == 1
    with pytest.raises(Exception) as wrong_blob:
        svc.get_package(job, ids[0], str(uuid.uuid4()))
    assert getattr(wrong_blob.value, "status", None) == 404
    other, _ = _setup(env)
    with pytest.raises(Exception) as other_job:
        svc.get_package(other, ids[0], None)
    assert getattr(other_job.value, "status", None) == 404


def test_concurrent_dequeues_never_share_a_message(env):
    job, _ = _setup(env)
    ids = _offer(env, job, 30)
    svc = _outbound(env)
    got: list[str] = []
    lock = threading.Lock()

    def worker():
        while True:
            reply = svc.dequeue(job, "http://x")
            if reply is None:
                return
            with lock:
                got.append(reply["CorrelationId"])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == sorted(ids)


def test_incremental_reaches_back_by_the_overlap_margin(env, monkeypatch):
    # A row stamped just before the previous run started may have been committed after that run's scan
    # passed it; the margin exports such rows again rather than never.
    monkeypatch.setenv("EXPORT_INCREMENTAL_OVERLAP_SECONDS", "300")
    job, _ = _setup(env, incremental=True)
    first, _ = _run(env, job)
    second, _ = _run(env, job)  # nothing changed, but every row is within 5 minutes of the first run
    assert first["TotalRecords"] == second["TotalRecords"] == 3
    assert second["RefreshType"] == "IncrementalPush"
    monkeypatch.setenv("EXPORT_INCREMENTAL_OVERLAP_SECONDS", "0")
    third, _ = _run(env, job)
    assert third["TotalRecords"] == 0
