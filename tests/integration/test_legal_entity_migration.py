"""The upgrade to legal entities (issue 13, item 5): a deployment whose jobs name companies but that has no
legal-entity rows gets one legal entity per distinct company on its first read, so its jobs and the
enqueues naming their companies keep working. Each test uses a configuration table of its own (a fresh,
pre-upgrade deployment); the session's table already has the test legal entities."""

from __future__ import annotations

import uuid

import pytest

from shared.services.config_access import KIND_LEGAL_ENTITY, MIGRATED_NAME
from shared.services.config_service import KIND_JOB, ConfigService
from shared.storage import names
from shared.storage.config_repo import ConfigRepository
from shared.storage.factory import get_clients

pytestmark = [pytest.mark.azurite]


@pytest.fixture
def deployment(app_env):
    """(ConfigService, ConfigRepository) over a new configuration table; the table is dropped afterwards."""
    clients = get_clients()
    name = f"cfgmig{uuid.uuid4().hex[:10]}"
    table = clients.table(name)
    repo = ConfigRepository(table)
    yield ConfigService(repo, clients.container(names.CONTAINER_ARTIFACTS), check_seconds=0), repo
    clients.table_service.delete_table(name)
    clients.forget_table(name)


def stored_job(repo: ConfigRepository, company: str | None) -> str:
    """A job document as an older version stored it (no legal-entity check when it was written)."""
    activity = str(uuid.uuid4())
    doc = {"activityId": activity, "name": f"job-{activity[:8]}", "project": "P", "company": company}
    repo.write(KIND_JOB, activity, doc, None)
    return activity


def test_the_companies_of_existing_jobs_become_legal_entities(deployment):
    config, repo = deployment
    stored_job(repo, "USMF")
    stored_job(repo, "usmf")
    stored_job(repo, "Legacy-10c")  # longer than a DataAreaId: older versions allowed up to 10 characters
    stored_job(repo, None)

    assert config.legal_entity_ids() == {"usmf", "legacy-10c"}
    listed = config.list_legal_entities()
    assert [(e.id, e.name) for e in listed] == [("legacy-10c", MIGRATED_NAME), ("usmf", MIGRATED_NAME)]
    assert config.check_legal_entity("USMF") == "usmf"
    # Stored once: a second read (another process) creates nothing more.
    assert config.migrate_legal_entities() == []
    assert len(list(repo.list(KIND_LEGAL_ENTITY))) == 2
    # A migrated ID longer than a DataAreaId can still be renamed, never created anew.
    assert config.upsert_legal_entity("legacy-10c", {"name": "Legacy"}).value.name == "Legacy"


def test_a_deployment_without_companies_has_no_legal_entities(deployment):
    config, repo = deployment
    stored_job(repo, None)
    assert config.list_legal_entities() == []
    assert config.legal_entity_ids() == frozenset()


def test_the_migration_runs_before_a_job_is_checked(deployment):
    """A job written after the upgrade is checked against the migrated legal entities: an unknown company
    is refused, a company that the stored jobs had is accepted."""
    from shared.errors import ValidationError

    config, repo = deployment
    stored_job(repo, "demf")
    with pytest.raises(ValidationError) as refused:
        config.check_legal_entity("Input")
    assert refused.value.code == "UnknownLegalEntity" and "demf" in refused.value.message
    assert config.get_legal_entity_versioned("DEMF").value.id == "demf"
