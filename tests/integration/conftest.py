"""Fixtures for service-level tests against the session's Azurite (no HTTP)."""

from __future__ import annotations

import uuid

import pytest

from shared.auth.principal import Principal


@pytest.fixture(scope="module")
def services(app_env):
    """The service registry, wired to the test Azurite through the settings `app_env` applied."""
    from shared.services import registry

    return registry


@pytest.fixture
def make_import_job(services):
    """Creates a one-entity (K string, V int) import project and a job for a new application:
    returns (job, principal, entity name). Extra keyword arguments go into the job."""

    def create(prefix: str = "It", **job_fields):
        config = services.config_service()
        entity = f"{prefix}{uuid.uuid4().hex[:8]}"
        config.upsert_entity(entity, {"keys": ["K"], "fields": [{"name": "K"}, {"name": "V", "type": "int"}]})
        config.upsert_project(entity, {"operation": "import", "entities": [{"entity": entity}]})
        app = str(uuid.uuid4())
        job = config.create_job(
            {
                "name": entity,
                "project": entity,
                "company": "usmf",
                "authorizationPolicy": [{"applicationId": app}],
                **job_fields,
            }
        ).value
        return job, Principal(app_id=app), entity

    return create
