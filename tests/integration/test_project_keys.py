"""Projects keyed by name and operation (issue 13: a definition group is a project, and D365 keys groups by Name
and OperationType), against a real Azurite: two projects of one name, the `operation` selector, a project row
stored before the key change read and moved, and the rule that a name jobs use names one project."""

from __future__ import annotations

import uuid

import pytest

from shared.errors import AppError

pytestmark = pytest.mark.azurite


@pytest.fixture
def config(app_env):
    from shared.services.config_service import ConfigService
    from shared.storage import names
    from shared.storage.config_repo import ConfigRepository
    from shared.storage.factory import get_clients

    clients = get_clients()
    return ConfigService(
        ConfigRepository(clients.table(names.TABLE_CONFIG)),
        clients.container(names.CONTAINER_ARTIFACTS),
        check_seconds=0,
    )


@pytest.fixture
def entity(config):
    name = f"Pk{uuid.uuid4().hex[:8]}"
    config.upsert_entity(name, {"keys": ["K"], "fields": [{"name": "K"}]})
    return name


def code(call) -> str:
    with pytest.raises(AppError) as err:
        call()
    return err.value.code


def test_an_import_and_an_export_project_share_a_name(config, entity):
    name = f"Twin{uuid.uuid4().hex[:6]}"
    body = {"entities": [{"entity": entity}]}
    assert config.upsert_project(name, {"operation": "import", **body}).created
    # Without a selector, PUT replaces the only project of the name (as before projects were keyed so).
    assert not config.upsert_project(name, {"operation": "import", "description": "d", **body}).created
    assert config.upsert_project(name, {"operation": "export", **body}, operation="export").created
    assert code(lambda: config.get_project(name)) == "AmbiguousProject"
    assert config.get_project(name, "import").description == "d"
    assert config.get_project(name, "export").operation == "export"
    assert sorted(p.operation for p in config.list_projects() if p.name == name) == ["export", "import"]
    assert code(lambda: config.upsert_project(name, {"operation": "import", **body}, operation="export")) == (
        "OperationMismatch"
    )
    assert code(lambda: config.create_project({"operation": "export", **body}, name)) == "ProjectExists"
    assert code(lambda: config.delete_project(name)) == "AmbiguousProject"
    assert config.delete_project(name, operation="import")
    assert config.get_project(name).operation == "export"
    assert not config.delete_project(name, operation="import")


def test_a_name_jobs_use_names_one_project(config, entity):
    name = f"Used{uuid.uuid4().hex[:6]}"
    config.upsert_project(name, {"operation": "import", "entities": [{"entity": entity}]})
    config.create_job({"name": name, "project": name})
    assert code(lambda: config.create_project({"operation": "export", "entities": []}, name)) == (
        "ProjectNameUsedByJob"
    )


def test_a_project_stored_before_the_key_change_is_read_and_moved_by_its_next_write(config, entity):
    from shared.domain.config import parse_project, project_to_json
    from shared.services.config_service import KIND_PROJECT

    name = f"Old{uuid.uuid4().hex[:6]}"
    doc = project_to_json(parse_project(name, {"operation": "export", "entities": [{"entity": entity}]}))
    config._repo.upsert(KIND_PROJECT, name, doc)  # the row key of a project written before issue 13
    assert config.get_project(name).operation == "export"
    assert config.get_project(name, "export").name == name
    assert [p.name for p in config.list_projects()].count(name) == 1
    config.patch_project(name, {"description": "moved"})
    assert config._repo.find(KIND_PROJECT, name) is None
    assert config._repo.find(KIND_PROJECT, f"{name}|export")["description"] == "moved"
    assert config.get_project(name).description == "moved"
    # An operation change moves the row too.
    config.upsert_project(name, {"operation": "import", "entities": [{"entity": entity}]})
    assert config._repo.find(KIND_PROJECT, f"{name}|export") is None
    assert config.get_project(name).operation == "import"
