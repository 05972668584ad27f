"""Configuration caches across processes: on Flex Consumption the HTTP functions, each queue function and the
timer run on instances of their own (HOST.md, "Indexing and processes"), so a write on one never invalidates
another's cache. Two ConfigService objects over one table stand for two instances here."""

from __future__ import annotations

import uuid

from shared.services.config_service import ConfigService
from shared.storage import names
from shared.storage.config_repo import ConfigRepository
from shared.storage.factory import get_clients


def instance(check_seconds: float) -> ConfigService:
    clients = get_clients()
    return ConfigService(
        ConfigRepository(clients.table(names.TABLE_CONFIG)),
        clients.container(names.CONTAINER_ARTIFACTS),
        check_seconds=check_seconds,
    )


def test_a_worker_sees_every_change_made_before_its_work_item(app_env):
    http, worker = instance(3600), instance(3600)
    name = f"Cache{uuid.uuid4().hex[:8]}"
    http.upsert_entity(name, {"label": "before", "keys": ["K"], "fields": [{"name": "K"}]})
    assert worker.get_entity(name).label == "before"  # now cached in the worker's process

    http.upsert_entity(name, {"label": "after", "keys": ["K"], "fields": [{"name": "K"}]})
    assert worker.get_entity(name).label == "before", "no version check yet: the cache holds"
    worker.refresh()  # what the import/export workers and the scheduler do at the start of each item
    assert worker.get_entity(name).label == "after"


def test_reads_revalidate_after_the_check_interval(app_env):
    writer, reader = instance(3600), instance(0)
    name = f"Cache{uuid.uuid4().hex[:8]}"
    writer.upsert_entity(name, {"label": "one", "keys": ["K"], "fields": [{"name": "K"}]})
    assert reader.get_entity(name).label == "one"
    writer.upsert_entity(name, {"label": "two", "keys": ["K"], "fields": [{"name": "K"}]})
    assert reader.get_entity(name).label == "two"
    writer.delete_entity(name)
    assert reader.find_entity(name) is None


def test_the_version_changes_on_every_write_and_only_then(app_env):
    repo = ConfigRepository(get_clients().table(names.TABLE_CONFIG))
    before = repo.get_version()
    assert repo.get_version() == before
    repo.upsert("format", f"f{uuid.uuid4().hex[:6]}", {"name": "x"})
    after = repo.get_version()
    assert after != before
