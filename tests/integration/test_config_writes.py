"""Configuration writes against a real Azurite: conditional writes under concurrency, a write whose reply was
lost, the record count behind 409 EntityHasRecords, and an export after a forced type change."""

from __future__ import annotations

import threading
import uuid

import pytest
from azure.core.exceptions import ServiceResponseError

from shared.errors import AppError
from tests.integration.test_export_service import ENTITY, _file, _package, _run, _setup, env  # noqa: F401

pytestmark = pytest.mark.azurite


def _service():
    from shared.services.config_service import ConfigService
    from shared.storage import names
    from shared.storage.config_repo import ConfigRepository
    from shared.storage.factory import get_clients

    clients = get_clients()
    return ConfigService(
        ConfigRepository(clients.table(names.TABLE_CONFIG)), clients.container(names.CONTAINER_ARTIFACTS)
    )


def _job(config):
    name = f"Cw{uuid.uuid4().hex[:8]}"
    config.upsert_entity(name, {"keys": ["K"], "fields": [{"name": "K"}]})
    config.upsert_project(name, {"operation": "import", "entities": [{"entity": name}]})
    return config.create_job({"name": name, "project": name})


def _race(calls) -> list:
    """Runs the calls at once (one thread each, released together); their results or AppErrors."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except AppError as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_of_eight_writers_with_the_same_if_match_exactly_one_lands(app_env):
    """Eight instances (ConfigService objects, as on eight Flex instances) PATCH the job they all read."""
    job = _job(_service()).value
    etag = _service().get_job_versioned(job.activity_id).etag
    admins = [_service() for _ in range(8)]
    results = _race(
        [
            (lambda a=a, i=i: a.patch_job(job.activity_id, {"description": f"admin {i}"}, if_match=etag))
            for i, a in enumerate(admins)
        ]
    )
    landed = [r for r in results if not isinstance(r, AppError)]
    refused = [r for r in results if isinstance(r, AppError)]
    assert len(landed) == 1 and len(refused) == 7
    assert {(e.status, e.code) for e in refused} == {(412, "PreconditionFailed")}
    stored = _service().get_job_versioned(job.activity_id)
    assert stored.value.description == landed[0].value.description
    assert stored.etag == landed[0].etag


def test_patches_without_if_match_each_change_their_member_and_none_is_lost(app_env):
    """Without If-Match a PATCH applies to the version it meets; one that loses the race starts again from
    the winner's version, so concurrent patches of different members all survive."""
    job = _job(_service()).value
    patches = [
        {"description": "d"},
        {"enabled": False},
        {"processInOrder": True},
        {"processOnArrival": True},
        # An import job: its own options only (export-only ones are OptionNotApplicable).
        {"mode": "package"},
        {"monitoring": {"unit": "hours", "interval": 2}},
        {"recurrence": {"unit": "days", "interval": 3}},
        {"company": "usmf"},
    ]
    admins = [_service() for _ in patches]
    results = _race(
        [(lambda a=a, p=p: a.patch_job(job.activity_id, p)) for a, p in zip(admins, patches, strict=True)]
    )
    assert not [r for r in results if isinstance(r, AppError)], results
    final = _service().get_job_versioned(job.activity_id).value
    assert (final.description, final.enabled, final.process_in_order, final.process_on_arrival) == (
        "d",
        False,
        True,
        True,
    )
    assert final.mode == "package" and (final.monitoring.unit, final.monitoring.interval) == ("hours", 2)
    assert (final.recurrence.unit, final.recurrence.interval, final.company) == ("days", 3, "usmf")


class LosesReplies:
    """The real table client, except that the first write of each kind lands and then its reply is lost (a
    connection reset after the request, as shared/storage/retry.py describes)."""

    def __init__(self, table) -> None:
        self._table = table
        self.lost: list[str] = []

    def __getattr__(self, name):
        return getattr(self._table, name)

    def _lose(self, verb, *args, **kwargs):
        result = getattr(self._table, verb)(*args, **kwargs)
        if verb not in self.lost:
            self.lost.append(verb)
            raise ServiceResponseError("Connection reset by peer")
        return result

    def create_entity(self, *args, **kwargs):
        return self._lose("create_entity", *args, **kwargs)

    def update_entity(self, *args, **kwargs):
        return self._lose("update_entity", *args, **kwargs)


def test_a_write_whose_reply_was_lost_is_recognized_not_refused_or_repeated(app_env):
    from shared.storage import names
    from shared.storage.config_repo import ConfigRepository
    from shared.storage.factory import get_clients

    table = LosesReplies(get_clients().table(names.TABLE_CONFIG))
    repo = ConfigRepository(table)
    key = f"lost{uuid.uuid4().hex[:8]}"
    created = repo.write("format", key, {"name": key, "n": 1}, None)  # the insert's 409 is our own
    assert repo.get_stored("format", key).etag == created
    current = repo.get_stored("format", key)
    replaced = repo.write("format", key, {"name": key, "n": 2}, current)  # the replace's 412 is our own
    stored = repo.get_stored("format", key)
    assert stored.etag == replaced and stored.doc == {"name": key, "n": 2}
    assert table.lost == ["create_entity", "update_entity"]


def test_the_record_count_stops_at_the_cap_and_says_so(env, monkeypatch):  # noqa: F811
    from shared.services import config_service as module

    job, entity = _setup(env)  # 3 records in usmf, 1 in dat
    changed = {**ENTITY, "companySpecific": False}
    with pytest.raises(AppError) as caught:
        env.config.upsert_entity(entity.name, changed)
    assert (caught.value.status, caught.value.code) == (409, "EntityHasRecords")
    assert f"entity {entity.name} has 4 records stored" in caught.value.message
    monkeypatch.setattr(module, "RECORDS_COUNT_CAP", 2)
    with pytest.raises(AppError) as caught:
        env.config.upsert_entity(entity.name, changed)
    assert "has at least 2 records (counting stops there) stored" in caught.value.message


def test_an_export_after_a_forced_type_change_writes_the_misfits_empty_and_says_so(env):  # noqa: F811
    job, entity = _setup(env)
    fields = [f if f["name"] != "CREDITLIMIT" else {**f, "type": "int"} for f in ENTITY["fields"]]
    fields = [f if f["name"] != "PRIORITY" else {**f, "type": "decimal"} for f in fields]
    with pytest.raises(AppError):
        env.config.upsert_entity(entity.name, {**ENTITY, "fields": fields})
    env.config.upsert_entity(entity.name, {**ENTITY, "fields": fields}, force=True)

    run, _ = _run(env, job)
    assert run["Status"] == "Ended", run
    assert run["TotalRecords"] == 3
    (warning,) = run["Errors"]
    assert warning == (
        f"warning: entity {entity.name}: CREDITLIMIT (int): 3 stored values do not fit the field's type "
        "and are written empty, e.g. '1000.50'"
    )
    _, pkg = _package(env, run)
    _, content = _file(pkg)
    assert content == (
        b"CUSTOMERGROUPID,DESCRIPTION,PAYMENTTERMS,CREDITLIMIT,PRIORITY,BLOCKED,VALIDFROM,CREATED\r\n"
        b'10,"Wholesale, large",Net30,,1,No,2024-01-31,2024-02-01 13:45:07\r\n'
        b'20,"Say ""hi""\nsecond line",Net60,,5000000000,Yes,,\r\n'
        b"30,,,,,,1999-12-31,2000-01-01 00:00:00\r\n"
    )
