"""Legal entities and application registrations as configuration documents (issue 13, item 5).

A mixin of ConfigService (same table, same optimistic writes with If-Match / If-None-Match, same version
row, so every process's cache refreshes), kept apart so the configuration service does not keep growing.

Upgrade: deployments that predate legal entities have jobs naming companies but no legal-entity rows. The
first read of the legal entities that finds none creates one per distinct company of the stored jobs
(`migrate_legal_entities`), so those jobs, and enqueues naming their companies, keep working. Afterwards
no row can be deleted while a job or an application names it, so "no rows" again means "no job names a
company" and the migration finds nothing more to create.
"""

from __future__ import annotations

import logging
from typing import Any

from shared.domain import applications as apps
from shared.domain import legal_entities as les
from shared.domain.config import check_company
from shared.errors import ConflictError, NotFoundError, ValidationError
from shared.storage.config_repo import ConfigChanged, Preconditions

log = logging.getLogger(__name__)

KIND_LEGAL_ENTITY = "legalentity"
KIND_APPLICATION = "application"
_ALL = "*"  # the cache key of a kind's whole list (never a stored row key)
MIGRATED_NAME = "created from the company of existing jobs"


class AccessConfigMixin:
    """Needs ConfigService's _repo, _cache, _cached, _save, _delete and list_jobs."""

    # Legal entities ----------------------------------------------------------------------------
    def upsert_legal_entity(
        self,
        legal_entity_id: str,
        body: Any,
        *,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ):
        """PUT: Saved.value is the LegalEntity. An existing (migrated) ID longer than 4 characters may be
        renamed; new IDs are DataAreaIds (at most 4 characters)."""
        stored = (
            self._repo.get_stored(KIND_LEGAL_ENTITY, legal_entity_id)
            if isinstance(legal_entity_id, str)
            else None
        )
        entity = les.parse_legal_entity(legal_entity_id, body, legacy=stored is not None)
        try:
            return self._save(
                KIND_LEGAL_ENTITY,
                entity.id,
                Preconditions.of(if_match, if_none_match),
                lambda current: (entity, les.legal_entity_to_json(entity)),
            )
        finally:
            self._cache.invalidate(KIND_LEGAL_ENTITY, _ALL)

    def get_legal_entity_versioned(self, legal_entity_id: str):
        from shared.services.config_service import Versioned

        self._legal_entity_docs()  # an upgraded deployment's first read migrates
        stored = self._repo.get_stored(KIND_LEGAL_ENTITY, legal_entity_id)
        if stored is None:
            raise NotFoundError(
                f"legal entity {legal_entity_id!r} does not exist", code="LegalEntityNotFound"
            )
        return Versioned(_legal_entity(stored.doc), stored.etag)

    def list_legal_entities(self) -> list[les.LegalEntity]:
        return sorted((_legal_entity(d) for d in self._legal_entity_docs()), key=lambda e: e.id)

    def legal_entity_ids(self) -> frozenset[str]:
        """The configured legal entity IDs in lower case (cached; migrates on an upgraded deployment)."""
        return self._cached(
            KIND_LEGAL_ENTITY, _ALL, lambda: frozenset(d["id"] for d in self._legal_entity_docs())
        )

    def _legal_entity_docs(self) -> list[dict]:
        docs = list(self._repo.list(KIND_LEGAL_ENTITY))
        if not docs and self.migrate_legal_entities():
            docs = list(self._repo.list(KIND_LEGAL_ENTITY))
        return docs

    def migrate_legal_entities(self) -> list[str]:
        """Create a legal entity for each distinct company of the stored jobs that has none; returns the IDs
        created. Safe to run concurrently (a row another process created first is left as it is)."""
        created = []
        companies = sorted({j.legal_entity for j in self.list_jobs() if j.legal_entity})
        for company in companies:
            doc = les.legal_entity_to_json(les.LegalEntity(company, MIGRATED_NAME))
            try:
                if self._repo.get_stored(KIND_LEGAL_ENTITY, company) is None:
                    self._repo.write(KIND_LEGAL_ENTITY, company, doc, None)
                    created.append(company)
            except ConfigChanged:
                pass
        if created:
            log.warning("legal entities created from the companies of existing jobs: %s", ", ".join(created))
            self._cache.invalidate(KIND_LEGAL_ENTITY, _ALL)
        return created

    def check_legal_entity(self, value: str, what: str = "company", visible=None) -> str:
        """`value` as a configured legal entity ID (lower case). 400 InvalidLegalEntity when malformed, 400
        UnknownLegalEntity when not configured or not in `visible` (a set, None: every one), naming the
        configured ones within `visible` only."""
        check_company(value, what)
        wanted = value.lower()
        ids = self.legal_entity_ids()
        if wanted not in ids or (visible is not None and wanted not in visible):
            shown = ids if visible is None else ids & set(visible)
            raise les.unknown_legal_entity(value, shown, what)
        return wanted

    def delete_legal_entity(self, legal_entity_id: str, *, if_match: str | None = None) -> bool:
        """True when it existed. 409 LegalEntityInUse while a job or an application names it. Its records
        stay in the entity tables."""
        wanted = legal_entity_id.lower()

        def check_users() -> None:
            jobs = [j.name for j in self.list_jobs() if j.legal_entity == wanted]
            registered = [
                a.name or a.application_id
                for a in self.list_applications()
                if a.legal_entities is not None and wanted in a.legal_entities
            ]
            if jobs or registered:
                users = [f"job(s) {', '.join(jobs)}"] if jobs else []
                users += [f"application(s) {', '.join(registered)}"] if registered else []
                raise ConflictError(
                    f"legal entity {wanted!r} is used by {' and '.join(users)}; change them first",
                    code="LegalEntityInUse",
                )

        try:
            return (
                self._delete(KIND_LEGAL_ENTITY, wanted, Preconditions.of(if_match), check_users) is not None
            )
        finally:
            self._cache.invalidate(KIND_LEGAL_ENTITY, _ALL)

    # Applications ------------------------------------------------------------------------------
    def upsert_application(
        self, application_id: str, body: Any, *, if_match: str | None = None, if_none_match: str | None = None
    ):
        """PUT: Saved.value is the Application. 400 UnknownLegalEntity for a legal entity not configured."""
        app = apps.parse_application(application_id, body)
        if app.legal_entities:
            ids = self.legal_entity_ids()
            for le in sorted(app.legal_entities):
                if le not in ids:
                    raise les.unknown_legal_entity(le, ids, "legalEntities:")
        try:
            return self._save(
                KIND_APPLICATION,
                app.application_id,
                Preconditions.of(if_match, if_none_match),
                lambda current: (app, apps.application_to_json(app)),
            )
        finally:
            self._cache.invalidate(KIND_APPLICATION, _ALL)

    def get_application_versioned(self, application_id: str):
        from shared.services.config_service import Versioned

        stored = self._repo.get_stored(KIND_APPLICATION, _app_key(application_id))
        if stored is None:
            raise NotFoundError(
                f"application {application_id!r} is not registered", code="ApplicationNotFound"
            )
        return Versioned(_application(stored.doc), stored.etag)

    def find_application(self, application_id: str | None) -> apps.Application | None:
        """The registration of an application (cached), None when it has none."""
        if not application_id:
            return None
        key = application_id.lower()

        def load():
            doc = self._repo.find(KIND_APPLICATION, key)
            return None if doc is None else _application(doc)

        return self._cached(KIND_APPLICATION, key, load)

    def list_applications(self) -> list[apps.Application]:
        found = [_application(d) for d in self._repo.list(KIND_APPLICATION)]
        return sorted(found, key=lambda a: (a.name.casefold(), a.application_id))

    def delete_application(self, application_id: str, *, if_match: str | None = None) -> bool:
        try:
            deleted = self._delete(
                KIND_APPLICATION, _app_key(application_id), Preconditions.of(if_match), lambda: None
            )
            return deleted is not None
        finally:
            self._cache.invalidate(KIND_APPLICATION, _ALL)


def _app_key(application_id: str) -> str:
    from shared.domain.config import parse_guid

    return parse_guid(application_id, "applicationId").lower()


def _legal_entity(doc: dict) -> les.LegalEntity:
    return les.LegalEntity(str(doc["id"]).lower(), doc.get("name") or "")


def _application(doc: dict) -> apps.Application:
    return apps.parse_application(doc["applicationId"], doc)


__all__ = ["AccessConfigMixin", "KIND_APPLICATION", "KIND_LEGAL_ENTITY", "ValidationError"]
