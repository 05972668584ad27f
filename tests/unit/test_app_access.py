"""The access rules of shared.services.app_access (issue 13, item 5), over an in-memory configuration."""

from __future__ import annotations

import uuid

import pytest

from shared.auth.principal import Principal
from shared.domain.applications import parse_application
from shared.domain.config import Job, PolicyEntry
from shared.domain.legal_entities import parse_legal_entity
from shared.errors import ForbiddenError, ValidationError
from shared.services import app_access
from shared.services.app_access import EXPORT, IMPORT, MANAGE_DEFINITION_GROUPS, READ_DATA_ENTITIES
from shared.services.config_access import AccessConfigMixin

ADMIN_ROLE = "Integrations.Admin"


class FakeConfig(AccessConfigMixin):
    def __init__(self, legal_entities=("usmf", "demf", "dat")) -> None:
        self.ids = frozenset(legal_entities)
        self.apps: dict = {}
        self.jobs: list[Job] = []

    def legal_entity_ids(self):
        return self.ids

    def find_application(self, application_id):
        return self.apps.get((application_id or "").lower())

    def list_jobs(self):
        return self.jobs

    def register(self, app: str, body: dict) -> None:
        self.apps[app] = parse_application(app, body)

    def job(self, company: str | None, app: str, *, enabled: bool = True, entry: bool = True) -> None:
        policy = (PolicyEntry(app, entry),)
        self.jobs.append(
            Job(str(uuid.uuid4()), "job", "P", enabled=enabled, company=company, authorization_policy=policy)
        )


@pytest.fixture
def config(monkeypatch):
    fake = FakeConfig()
    monkeypatch.setattr(app_access, "_config", lambda: fake)
    monkeypatch.setenv("AUTH_ADMIN_ROLE", ADMIN_ROLE)
    monkeypatch.setenv("AUTH_ADMIN_APPS", "")
    return fake


def caller(*roles: str) -> Principal:
    return Principal(app_id=str(uuid.uuid4()), roles=frozenset(roles))


def refused(call, *args, **kw):
    with pytest.raises((ForbiddenError, ValidationError)) as caught:
        call(*args, **kw)
    return caught.value


def test_an_admin_may_do_everything_in_every_configured_legal_entity(config):
    admin = caller(ADMIN_ROLE)
    for capability in app_access.CAPABILITIES:
        app_access.require(admin, capability, "USMF")
    assert app_access.allowed_legal_entities(admin) is None
    error = refused(app_access.require, admin, EXPORT, "Input")
    assert (error.status, error.code) == (400, "UnknownLegalEntity")
    assert error.message.endswith("may use are: dat, demf, usmf")
    assert refused(app_access.require, admin, EXPORT, "us/mf").code == "InvalidLegalEntity"


def test_a_registration_grants_its_capabilities_in_its_legal_entities(config):
    app = caller()
    config.register(app.app_id, {"capabilities": ["export", "readDataEntities"], "legalEntities": ["usmf"]})
    app_access.require(app, EXPORT, "usmf")
    app_access.require(app, READ_DATA_ENTITIES)
    assert app_access.allowed_legal_entities(app) == {"usmf"}
    for capability in (IMPORT, MANAGE_DEFINITION_GROUPS):
        error = refused(app_access.require, app, capability, "usmf")
        assert (error.status, error.code) == (403, "ApplicationNotAuthorized")
        assert f"PUT /api/manage/applications/{app.app_id}" in error.message
    # demf exists but is not the application's: answered exactly as a legal entity that does not exist.
    other = refused(app_access.require, app, EXPORT, "demf")
    unknown = refused(app_access.require, app, EXPORT, "zzzz")
    assert (other.status, other.code) == (unknown.status, unknown.code) == (400, "UnknownLegalEntity")
    assert other.message.endswith("may use are: usmf") and unknown.message.endswith("may use are: usmf")
    assert "demf" not in unknown.message and "dat" not in other.message


def test_a_capability_is_checked_before_any_legal_entity(config):
    app = caller()
    config.register(app.app_id, {"capabilities": ["import"], "legalEntities": ["usmf"]})
    error = refused(app_access.require, app, EXPORT, "Input")
    assert (error.status, error.code) == (403, "ApplicationNotAuthorized")


def test_every_legal_entity_and_a_disabled_registration(config):
    app = caller()
    config.register(app.app_id, {"capabilities": ["import"], "legalEntities": "*"})
    app_access.require(app, IMPORT, "DAT")
    assert app_access.allowed_legal_entities(app) is None
    config.register(app.app_id, {"capabilities": ["import"], "legalEntities": "*", "enabled": False})
    error = refused(app_access.require, app, IMPORT)
    assert error.code == "ApplicationNotAuthorized" and "disabled" in error.message
    assert app_access.allowed_legal_entities(app) == set()
    assert not app_access.registered(app)


def test_a_registration_replaces_the_job_policies(config):
    app = caller()
    config.job(None, app.app_id)  # a job of every legal entity
    config.register(app.app_id, {"capabilities": ["export"], "legalEntities": ["dat"]})
    assert app_access.allowed_legal_entities(app) == {"dat"}
    assert refused(app_access.require, app, IMPORT).code == "ApplicationNotAuthorized"


def test_upgrade_rule_an_unregistered_partner_keeps_its_jobs_legal_entities(config):
    app = caller()
    config.job("demf", app.app_id)
    config.job("usmf", app.app_id, enabled=False)  # a disabled job grants nothing
    config.job("dat", app.app_id, entry=False)  # nor does a disabled policy entry
    app_access.require(app, IMPORT, "demf")
    app_access.require(app, EXPORT, "DEMF")
    assert app_access.allowed_legal_entities(app) == {"demf"}
    error = refused(app_access.require, app, EXPORT, "usmf")
    assert error.code == "UnknownLegalEntity" and error.message.endswith("may use are: demf")
    for capability in (MANAGE_DEFINITION_GROUPS, READ_DATA_ENTITIES):
        assert refused(app_access.require, app, capability).code == "ApplicationNotAuthorized"
    config.job(None, app.app_id)  # now also on a job of every legal entity
    assert app_access.allowed_legal_entities(app) is None
    app_access.require(app, EXPORT, "usmf")


def test_anyone_else_may_do_nothing(config):
    stranger = caller()
    for capability in app_access.CAPABILITIES:
        error = refused(app_access.require, stranger, capability, "usmf")
        assert (error.status, error.code) == (403, "ApplicationNotAuthorized")
    assert app_access.allowed_legal_entities(stranger) == set()
    assert not app_access.may(stranger, IMPORT)


def test_legal_entity_and_application_documents():
    assert parse_legal_entity("USMF", {"name": " Contoso "}).id == "usmf"
    assert parse_legal_entity("usmf", {"name": "x"}).name == "x"
    for bad in ("abcde", "a/b", "", "-ab"):
        with pytest.raises(ValidationError):
            parse_legal_entity(bad, {})
    assert parse_legal_entity("legacy-10c", {}, legacy=True).id == "legacy-10c"
    app = parse_application(
        "{6F0B1C2D-3E4F-4A5B-8C6D-7E8F9A0B1C2D}",
        {"capabilities": ["Import", "export"], "legalEntities": ["USMF"]},
    )
    assert app.application_id == "6f0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
    assert app.capabilities == {"import", "export"} and app.legal_entities == {"usmf"} and app.enabled
    assert parse_application(app.application_id, {}).capabilities == frozenset()
    assert parse_application(app.application_id, {"legalEntities": ["*"]}).legal_entities is None
    for body in (
        {"capabilities": ["delete"]},
        {"legalEntities": "usmf"},
        {"legalEntities": ["a/b"]},
        {"x": 1},
    ):
        with pytest.raises(ValidationError):
            parse_application(app.application_id, body)
