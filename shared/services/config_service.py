"""Configuration service: entities, formats, transforms, projects and jobs, with the checks across them."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from shared.domain import config as cfg
from shared.domain.schema import BUILTIN_FORMATS, Entity, SourceFormat
from shared.errors import ConflictError, NotFoundError, ValidationError

KIND_ENTITY = "entity"
KIND_FORMAT = "format"
KIND_TRANSFORM = "transform"
KIND_PROJECT = "project"
KIND_JOB = "job"

MAX_TRANSFORM_BYTES = 2 * 1024 * 1024


class _VersionedCache:
    """Configuration documents cached per process, valid while the configuration's version is unchanged.

    On Flex Consumption the HTTP functions, each queue function and the timer run on instances of their
    own (HOST.md, "Indexing and processes"), so a write in one process cannot invalidate another's cache.
    Every configuration write changes one version row (ConfigRepository.get_version). A cache compares
    that version at most every `check_seconds` on reads, and at once on `refresh()`, which queue workers
    and the timer call at the start of each work item or tick. Bound: a worker sees every change made
    before its work item started; an HTTP request sees changes within `check_seconds`.
    """

    def __init__(self, read_version: Callable[[], str], check_seconds: float) -> None:
        self._read_version = read_version
        self._check_seconds = check_seconds
        self._data: dict[tuple[str, str], Any] = {}
        self._version: str | None = None
        self._checked_at = float("-inf")
        self._generation = 0  # bumped on every clear, so a load that raced a clear is not stored
        self._lock = threading.Lock()

    def refresh(self, *, force: bool = True) -> None:
        now = time.monotonic()
        with self._lock:
            if not force and now - self._checked_at < self._check_seconds:
                return
        version = self._read_version()
        with self._lock:
            if version != self._version:
                self._data.clear()
                self._generation += 1
                self._version = version
            self._checked_at = now

    def get(self, key: tuple[str, str], load: Callable[[], Any]) -> Any:
        self.refresh(force=False)
        with self._lock:
            if key in self._data:
                return self._data[key]
            generation = self._generation
        value = load()
        with self._lock:
            if generation == self._generation:
                self._data[key] = value
        return value

    def invalidate(self, kind: str, key: str) -> None:
        with self._lock:
            self._data.pop((kind, key.lower()), None)


class ConfigService:
    def __init__(self, repo, artifacts=None, *, check_seconds: float | None = None) -> None:
        from shared import settings

        self._repo = repo
        self._artifacts = artifacts  # blob container for XSLT documents
        if check_seconds is None:
            check_seconds = settings.config_check_seconds()
        self._cache = _VersionedCache(repo.get_version, check_seconds)

    def _cached(self, kind: str, key: str, load: Callable[[], Any]) -> Any:
        return self._cache.get((kind, key.lower()), load)

    def refresh(self) -> None:
        """Drop cached configuration if anything changed anywhere (one point read). Workers and the timer
        call this at the start of each work item or tick."""
        self._cache.refresh()

    # Entities ----------------------------------------------------------------------------------
    def upsert_entity(self, name: str, body: Any) -> tuple[Entity, bool]:
        entity = cfg.parse_entity(name, body)
        created = self._repo.upsert(KIND_ENTITY, name, cfg.entity_to_json(entity))
        self._cache.invalidate(KIND_ENTITY, name)
        return entity, created

    def get_entity(self, name: str) -> Entity:
        def load() -> Entity:
            doc = self._repo.get(KIND_ENTITY, name)
            return cfg.parse_entity(doc["name"], {k: v for k, v in doc.items() if k != "name"})

        return self._cached(KIND_ENTITY, name, load)

    def list_entities(self) -> list[Entity]:
        return [
            cfg.parse_entity(d["name"], {k: v for k, v in d.items() if k != "name"})
            for d in self._repo.list(KIND_ENTITY)
        ]

    def find_entity(self, name_or_label: str) -> Entity | None:
        """Entities by name or label, case-insensitively (D365 clients send either, e.g. `Customer groups`)."""
        try:
            return self.get_entity(name_or_label)
        except (NotFoundError, ValidationError):
            pass
        wanted = name_or_label.strip().lower()
        for entity in self.list_entities():
            if entity.label.lower() == wanted or entity.name.lower() == wanted:
                return entity
        return None

    def find_project_entity(self, project: cfg.Project, name_or_label: str) -> Entity | None:
        """The project's entity named or labelled so (labels are unique within a project, not globally)."""
        wanted = name_or_label.strip().lower()
        for pe in project.entities:
            entity = self.get_entity(pe.entity)
            if wanted in (entity.name.lower(), entity.label.lower()):
                return entity
        return None

    def delete_entity(self, name: str) -> bool:
        users = [
            p.name for p in self.list_projects() if any(e.entity.lower() == name.lower() for e in p.entities)
        ]
        if users:
            raise ConflictError(
                f"entity {name!r} is used by project(s) {', '.join(users)}; remove it from them first",
                code="EntityInUse",
            )
        self._cache.invalidate(KIND_ENTITY, name)
        return self._repo.delete(KIND_ENTITY, name)

    # Formats -----------------------------------------------------------------------------------
    def upsert_format(self, name: str, body: Any) -> tuple[SourceFormat, bool]:
        if name.upper() in BUILTIN_FORMATS:
            raise ConflictError(
                f"format {name!r} is built in and cannot be changed; pick another name", code="BuiltInFormat"
            )
        fmt = cfg.parse_format(name, body)
        created = self._repo.upsert(KIND_FORMAT, name, cfg.format_to_json(fmt))
        self._cache.invalidate(KIND_FORMAT, name)
        return fmt, created

    def get_format(self, name: str) -> SourceFormat:
        builtin = BUILTIN_FORMATS.get(name.upper())
        if builtin:
            return builtin

        def load() -> SourceFormat:
            doc = self._repo.get(KIND_FORMAT, name)
            return _format_from_doc(doc)

        return self._cached(KIND_FORMAT, name, load)

    def list_formats(self) -> list[SourceFormat]:
        return list(BUILTIN_FORMATS.values()) + [_format_from_doc(d) for d in self._repo.list(KIND_FORMAT)]

    def delete_format(self, name: str) -> bool:
        if name.upper() in BUILTIN_FORMATS:
            raise ConflictError(f"format {name!r} is built in and cannot be deleted", code="BuiltInFormat")
        users = [
            p.name for p in self.list_projects() if any(e.format.lower() == name.lower() for e in p.entities)
        ]
        if users:
            raise ConflictError(
                f"format {name!r} is used by project(s) {', '.join(users)}", code="FormatInUse"
            )
        self._cache.invalidate(KIND_FORMAT, name)
        return self._repo.delete(KIND_FORMAT, name)

    # Transforms (XSLT) -----------------------------------------------------------------------------
    def upsert_transform(self, name: str, xslt: bytes) -> bool:
        cfg.check_name(name, "transform")
        if not xslt:
            raise ValidationError("the transform body is empty; send the XSLT document")
        if len(xslt) > MAX_TRANSFORM_BYTES:
            raise ValidationError(
                f"the transform is larger than {MAX_TRANSFORM_BYTES} bytes",
                status=413,
                code="PayloadTooLarge",
            )
        from shared.errors import FormatError
        from shared.formats.xslt import compile_transform

        try:
            compile_transform(xslt)
        except FormatError as exc:
            raise ValidationError(f"the XSLT does not compile: {exc}", code="InvalidTransform") from exc
        import hashlib

        self._artifacts.upload_blob(_transform_blob(name), xslt, overwrite=True)
        created = self._repo.upsert(
            KIND_TRANSFORM,
            name,
            {"name": name, "size": len(xslt), "sha256": hashlib.sha256(xslt).hexdigest()},
        )
        self._cache.invalidate(KIND_TRANSFORM, name)
        return created

    def get_transform(self, name: str) -> bytes:
        def load() -> bytes:
            self._repo.get(KIND_TRANSFORM, name)
            return self._artifacts.download_blob(_transform_blob(name)).readall()

        return self._cached(KIND_TRANSFORM, name, load)

    def list_transforms(self) -> list[dict]:
        return list(self._repo.list(KIND_TRANSFORM))

    def delete_transform(self, name: str) -> bool:
        users = [
            p.name
            for p in self.list_projects()
            if any(name.lower() in (t.lower() for t in e.transforms) for e in p.entities)
        ]
        if users:
            raise ConflictError(
                f"transform {name!r} is used by project(s) {', '.join(users)}", code="TransformInUse"
            )
        self._cache.invalidate(KIND_TRANSFORM, name)
        existed = self._repo.delete(KIND_TRANSFORM, name)
        if existed:
            self._artifacts.delete_blob(_transform_blob(name))
        return existed

    # Projects ------------------------------------------------------------------------------------
    def upsert_project(self, name: str, body: Any) -> tuple[cfg.Project, bool]:
        project = cfg.parse_project(name, body)
        canonical = []
        for i, pe in enumerate(project.entities):
            entity = self.find_entity(pe.entity)
            if entity is None:
                raise ValidationError(
                    f"entities[{i}].entity: entity {pe.entity!r} does not exist", code="UnknownEntity"
                )
            try:
                self.get_format(pe.format)
            except NotFoundError as exc:
                raise ValidationError(
                    f"entities[{i}].format: format {pe.format!r} does not exist", code="UnknownFormat"
                ) from exc
            fields = entity.field_map()
            for j, rule in enumerate(pe.mapping):
                if rule.target.upper() not in fields:
                    raise ValidationError(
                        f"entities[{i}].mapping[{j}].target: {rule.target!r} is not a field of {entity.name}",
                        code="UnknownField",
                    )
            for t in pe.transforms:
                if self._repo.find(KIND_TRANSFORM, t) is None:
                    raise ValidationError(
                        f"entities[{i}].transforms: transform {t!r} does not exist", code="UnknownTransform"
                    )
            if project.filter:
                self._check_filter(project.filter, entity, i)
            canonical.append(_replace(pe, entity=entity.name))
        project = _replace(project, entities=tuple(canonical))
        created = self._repo.upsert(KIND_PROJECT, name, cfg.project_to_json(project))
        self._cache.invalidate(KIND_PROJECT, name)
        return project, created

    def _check_filter(self, text: str, entity: Entity, index: int) -> None:
        from shared.formats.filters import FilterError, parse_filter

        try:
            parse_filter(text, entity)
        except FilterError as exc:
            raise ValidationError(f"filter: {exc} (entity {entity.name})", code="InvalidFilter") from exc

    def get_project(self, name: str) -> cfg.Project:
        def load() -> cfg.Project:
            doc = self._repo.get(KIND_PROJECT, name)
            return _project_from_doc(doc)

        return self._cached(KIND_PROJECT, name, load)

    def list_projects(self) -> list[cfg.Project]:
        return [_project_from_doc(d) for d in self._repo.list(KIND_PROJECT)]

    def delete_project(self, name: str) -> bool:
        users = [j.name for j in self.list_jobs() if j.project.lower() == name.lower()]
        if users:
            raise ConflictError(f"project {name!r} is used by job(s) {', '.join(users)}", code="ProjectInUse")
        self._cache.invalidate(KIND_PROJECT, name)
        return self._repo.delete(KIND_PROJECT, name)

    # Jobs ------------------------------------------------------------------------------------------
    def _validate_job(self, job: cfg.Job) -> cfg.Job:
        try:
            project = self.get_project(job.project)
        except NotFoundError as exc:
            raise ValidationError(
                f"project: project {job.project!r} does not exist", code="UnknownProject"
            ) from exc
        return _replace(job, project=project.name)

    def create_job(self, body: Any) -> cfg.Job:
        activity_id = str(uuid.uuid4())
        if isinstance(body, dict) and body.get("activityId"):
            activity_id = cfg.parse_guid(body["activityId"], "activityId")
        job = self._validate_job(cfg.parse_job(activity_id, body))
        self._repo.create(KIND_JOB, activity_id, cfg.job_to_json(job))
        return job

    def upsert_job(self, activity_id: str, body: Any) -> tuple[cfg.Job, bool]:
        job = self._validate_job(cfg.parse_job(activity_id, body))
        created = self._repo.upsert(KIND_JOB, activity_id, cfg.job_to_json(job))
        self._cache.invalidate(KIND_JOB, activity_id)
        return job, created

    def get_job(self, activity_id: str, *, fresh: bool = False) -> cfg.Job:
        def load() -> cfg.Job:
            doc = self._repo.get(KIND_JOB, activity_id)
            return cfg.parse_job(doc["activityId"], doc)

        if fresh:
            self._cache.invalidate(KIND_JOB, activity_id)
        return self._cached(KIND_JOB, activity_id, load)

    def find_job(self, activity_id: str) -> cfg.Job | None:
        try:
            return self.get_job(activity_id)
        except NotFoundError:
            return None

    def list_jobs(self) -> list[cfg.Job]:
        return [cfg.parse_job(d["activityId"], d) for d in self._repo.list(KIND_JOB)]

    def delete_job(self, activity_id: str) -> bool:
        self._cache.invalidate(KIND_JOB, activity_id)
        return self._repo.delete(KIND_JOB, activity_id)


def _replace(obj, **changes):
    from dataclasses import replace

    return replace(obj, **changes)


def _transform_blob(name: str) -> str:
    return f"transforms/{name.lower()}.xslt"


def _format_from_doc(doc: dict) -> SourceFormat:
    body = {k: v for k, v in doc.items() if k != "name"}
    return cfg.parse_format(doc["name"], body)


def _project_from_doc(doc: dict) -> cfg.Project:
    return cfg.parse_project(doc["name"], {k: v for k, v in doc.items() if k != "name"})
