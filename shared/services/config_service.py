"""Configuration service: entities, formats, transforms, projects and jobs, with the checks across them.

Writes are optimistic (shared/storage/config_repo.py): each reads the stored version, checks the request's
If-Match / If-None-Match against it, builds the new document from it (a PATCH merges into it, an entity
change is checked against the stored records) and stores it only if the row is still that version. When
another writer got there first, the write starts again from the new version, so the request's
preconditions are judged against what it would really replace: a stale If-Match is a 412, a request
without one simply applies to the newer version (last writer wins, as PUT always did).
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

from shared.domain import config as cfg
from shared.domain.config_changes import merge_patch, patch_object, record_breaking_changes
from shared.domain.schema import BUILTIN_FORMATS, Entity, SourceFormat
from shared.errors import ConflictError, NotFoundError, ValidationError
from shared.services.config_access import AccessConfigMixin
from shared.storage.config_repo import ConfigChanged, Preconditions, Stored, etag_of

KIND_ENTITY = "entity"
KIND_FORMAT = "format"
KIND_TRANSFORM = "transform"
KIND_PROJECT = "project"
KIND_JOB = "job"
KIND_VERSION_TOKEN = "versiontoken"

MAX_TRANSFORM_BYTES = 2 * 1024 * 1024
# Records counted before refusing an entity change: enough to say "at least", never a scan of a big table.
RECORDS_COUNT_CAP = 10_000
_ALL_JOBS = ("jobs", "*")  # the cache key of cached_jobs
_WRITE_ATTEMPTS = 10  # a write that keeps meeting newer versions gives up with 409 ConcurrentChange


class Saved(NamedTuple):
    """A write's outcome: the document as stored (typed), whether it was created, its new HTTP ETag."""

    value: Any
    created: bool
    etag: str


class Versioned(NamedTuple):
    """A document as read fresh from storage, with its HTTP ETag."""

    value: Any
    etag: str


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

    @property
    def version(self) -> str | None:
        return self._version

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


class ConfigService(AccessConfigMixin):
    def __init__(
        self,
        repo,
        artifacts=None,
        *,
        check_seconds: float | None = None,
        count_records: Callable[[Entity, int], int] | None = None,
    ) -> None:
        """`count_records(entity, cap)`: how many records the entity's table holds, counting at most `cap`
        (default: the process's EntityRepository.count_rows)."""
        from shared import settings

        self._repo = repo
        self._artifacts = artifacts  # blob container for XSLT documents
        if check_seconds is None:
            check_seconds = settings.config_check_seconds()
        self._cache = _VersionedCache(repo.get_version, check_seconds)
        self._count_records = count_records or _count_records

    def _cached(self, kind: str, key: str, load: Callable[[], Any]) -> Any:
        return self._cache.get((kind, key.lower()), load)

    def refresh(self) -> None:
        """Drop cached configuration if anything changed anywhere (one point read). Workers and the timer
        call this at the start of each work item or tick."""
        self._cache.refresh()

    def version(self) -> str | None:
        """The configuration version the cache holds (one point read when it was not checked lately); it
        changes on every configuration write anywhere. Import checkpoints are valid only within one."""
        self._cache.refresh(force=False)
        return self._cache.version

    # Versioned reads and writes ----------------------------------------------------------------------
    def _stored(self, kind: str, key: str) -> Stored:
        stored = self._repo.get_stored(kind, key)
        if stored is None:
            raise NotFoundError(f"{kind} {key!r} does not exist", code=f"{kind.capitalize()}NotFound")
        return stored

    def _save(
        self,
        kind: str,
        key: str,
        pre: Preconditions,
        build: Callable[[Stored | None], tuple[Any, dict]],
        *,
        must_exist: bool = False,
    ) -> Saved:
        """Read, check `pre`, `build(current) -> (value, document)`, store if unchanged; start again from
        the newer version when another writer got there first. `must_exist` (PATCH): 404 when there is no
        document, before the preconditions are judged."""
        what = f"{kind} {key!r}"
        for _ in range(_WRITE_ATTEMPTS):
            current = self._stored(kind, key) if must_exist else self._repo.get_stored(kind, key)
            pre.check(current, what)
            value, doc = build(current)
            try:
                etag = self._repo.write(kind, key, doc, current)
            except ConfigChanged:
                continue  # judged again, preconditions included, against the version that won
            finally:
                self._cache.invalidate(kind, key)
                if kind == KIND_JOB:
                    self._cache.invalidate(*_ALL_JOBS)
            return Saved(value, current is None, etag)
        raise ConflictError(
            f"{what} kept changing while this request ran ({_WRITE_ATTEMPTS} attempts); send it again",
            code="ConcurrentChange",
        )

    def _delete(
        self, kind: str, key: str, pre: Preconditions, check_users: Callable[[], None]
    ) -> Stored | None:
        """Deletes the document if `pre` holds and `check_users()` does not raise; the version deleted,
        None when there was none."""
        what = f"{kind} {key!r}"
        for _ in range(_WRITE_ATTEMPTS):
            current = self._repo.get_stored(kind, key)
            pre.check(current, what)
            check_users()
            if current is None:
                return None
            try:
                self._repo.remove(kind, key, current)
            except ConfigChanged:
                continue
            finally:
                self._cache.invalidate(kind, key)
                if kind == KIND_JOB:
                    self._cache.invalidate(*_ALL_JOBS)
            return current
        raise ConflictError(
            f"{what} kept changing while this request ran ({_WRITE_ATTEMPTS} attempts); send it again",
            code="ConcurrentChange",
        )

    # Entities ----------------------------------------------------------------------------------
    def upsert_entity(
        self,
        name: str,
        body: Any,
        *,
        if_match: str | None = None,
        if_none_match: str | None = None,
        force: bool = False,
    ) -> Saved:
        """PUT: the entity replaced by `body`. Saved.value is the Entity. 409 EntityHasRecords for a change
        stored records cannot follow (record_breaking_changes) unless `force`; 412 PreconditionFailed."""
        entity = cfg.parse_entity(name, body)

        def build(current: Stored | None) -> tuple[Entity, dict]:
            self._check_records_fit(current, entity, force)
            self._check_collection_name(entity)
            return entity, cfg.entity_to_json(entity)

        return self._save(KIND_ENTITY, name, Preconditions.of(if_match, if_none_match), build)

    def patch_entity(
        self, name: str, patch: Any, *, if_match: str | None = None, force: bool = False
    ) -> Saved:
        """PATCH (RFC 7396 merge patch on the stored document), then validated exactly as upsert_entity.
        404 EntityNotFound when there is none. `fields` and `keys` are arrays: a patch replaces them whole."""
        patch = patch_object(patch, "entity")

        def build(current: Stored | None) -> tuple[Entity, dict]:
            entity = cfg.parse_entity(name, merge_patch(_without_name(current.doc), patch))
            self._check_records_fit(current, entity, force)
            self._check_collection_name(entity)
            return entity, cfg.entity_to_json(entity)

        return self._save(KIND_ENTITY, name, Preconditions.of(if_match), build, must_exist=True)

    def _check_collection_name(self, entity: Entity) -> None:
        """400 DuplicateCollectionName when another entity is served under the same /data entity set name
        (its publicCollectionName, or the one derived from its name), ignoring case."""
        from shared.odata.names import collection_name

        wanted = collection_name(entity).lower()
        for other in self.list_entities():
            if other.name.lower() != entity.name.lower() and collection_name(other).lower() == wanted:
                raise ValidationError(
                    f"entity {other.name} is already served as the entity set {collection_name(other)} under "
                    f"/data; give entity {entity.name} another publicCollectionName",
                    code="DuplicateCollectionName",
                )

    def find_by_collection(self, collection: str) -> Entity | None:
        """The entity served as the /data entity set `collection` (ignoring case), or None."""
        from shared.odata.names import collection_name

        wanted = collection.lower()
        return next((e for e in self.list_entities() if collection_name(e).lower() == wanted), None)

    def _check_records_fit(self, current: Stored | None, entity: Entity, force: bool) -> None:
        """409 EntityHasRecords when the change breaks stored records (record_breaking_changes) and the
        entity's table holds any, counted up to RECORDS_COUNT_CAP; nothing when `force`."""
        if current is None or force:
            return
        old = _entity_from_doc(current.doc)
        changes = record_breaking_changes(old, entity)
        if not changes:
            return
        count = self._count_records(old, RECORDS_COUNT_CAP)
        if count == 0:
            return
        amount = (
            f"at least {RECORDS_COUNT_CAP:,} records (counting stops there)"
            if count >= RECORDS_COUNT_CAP
            else (f"{count:,} record{'s' if count != 1 else ''}")
        )
        raise ConflictError(
            f"entity {old.name} has {amount} stored, and this change does not fit them: {'; '.join(changes)}. "
            "Leave those parts as they are (add a new field or a new entity instead), or send the same request "
            "with ?force=true: the stored records are then kept as they are and read with the new definition; a "
            "stored value that does not fit its field's new type is shown as null when records are browsed "
            "and written empty in exports, with a warning; after a change of keys or companySpecific, a "
            "record imported again is stored beside its old row instead of replacing it",
            code="EntityHasRecords",
        )

    def get_entity(self, name: str) -> Entity:
        def load() -> Entity:
            return _entity_from_doc(self._repo.get(KIND_ENTITY, name))

        return self._cached(KIND_ENTITY, name, load)

    def get_entity_versioned(self, name: str) -> Versioned:
        """The entity read from storage (not the cache) with its ETag; 404 EntityNotFound."""
        stored = self._stored(KIND_ENTITY, name)
        return Versioned(_entity_from_doc(stored.doc), stored.etag)

    def list_entities(self) -> list[Entity]:
        return [_entity_from_doc(d) for d in self._repo.list(KIND_ENTITY)]

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

    def delete_entity(self, name: str, *, if_match: str | None = None) -> bool:
        """True when it existed. 409 EntityInUse while a project names it; 412 PreconditionFailed. The
        entity's stored records stay in its table."""

        def check_users() -> None:
            users = [
                p.name
                for p in self.list_projects()
                if any(e.entity.lower() == name.lower() for e in p.entities)
            ]
            if users:
                raise ConflictError(
                    f"entity {name!r} is used by project(s) {', '.join(users)}; remove it from them first",
                    code="EntityInUse",
                )

        return self._delete(KIND_ENTITY, name, Preconditions.of(if_match), check_users) is not None

    # Formats -----------------------------------------------------------------------------------
    def _check_not_builtin(self, name: str) -> None:
        if name.upper() in BUILTIN_FORMATS:
            raise ConflictError(
                f"format {name!r} is built in and cannot be changed; pick another name", code="BuiltInFormat"
            )

    def upsert_format(
        self, name: str, body: Any, *, if_match: str | None = None, if_none_match: str | None = None
    ) -> Saved:
        """PUT: Saved.value is the SourceFormat. 409 BuiltInFormat; 412 PreconditionFailed."""
        self._check_not_builtin(name)
        fmt = _check_format_options(cfg.parse_format(name, body))
        return self._save(
            KIND_FORMAT,
            name,
            Preconditions.of(if_match, if_none_match),
            lambda current: (fmt, cfg.format_to_json(fmt)),
        )

    def patch_format(self, name: str, patch: Any, *, if_match: str | None = None) -> Saved:
        """PATCH (RFC 7396) on the stored format, then validated exactly as upsert_format; 404."""
        self._check_not_builtin(name)
        patch = patch_object(patch, "format")

        def build(current: Stored | None) -> tuple[SourceFormat, dict]:
            fmt = cfg.parse_format(name, merge_patch(_without_name(current.doc), patch))
            # A new kind judges every setting against it; otherwise only what the patch changes.
            fmt = _check_format_options(fmt, None if "kind" in patch else set(patch))
            return fmt, cfg.format_to_json(fmt)

        return self._save(KIND_FORMAT, name, Preconditions.of(if_match), build, must_exist=True)

    def get_format(self, name: str) -> SourceFormat:
        builtin = BUILTIN_FORMATS.get(name.upper())
        if builtin:
            return builtin

        def load() -> SourceFormat:
            doc = self._repo.get(KIND_FORMAT, name)
            return _format_from_doc(doc)

        return self._cached(KIND_FORMAT, name, load)

    def get_format_versioned(self, name: str) -> Versioned:
        """The format with its ETag; a built-in one has a fixed ETag (it never changes). 404 FormatNotFound."""
        builtin = BUILTIN_FORMATS.get(name.upper())
        if builtin:
            return Versioned(builtin, etag_of(f"builtin:{builtin.name}"))
        stored = self._stored(KIND_FORMAT, name)
        return Versioned(_format_from_doc(stored.doc), stored.etag)

    def list_formats(self) -> list[SourceFormat]:
        return list(BUILTIN_FORMATS.values()) + [_format_from_doc(d) for d in self._repo.list(KIND_FORMAT)]

    def delete_format(self, name: str, *, if_match: str | None = None) -> bool:
        if name.upper() in BUILTIN_FORMATS:
            raise ConflictError(f"format {name!r} is built in and cannot be deleted", code="BuiltInFormat")

        def check_users() -> None:
            users = [
                p.name
                for p in self.list_projects()
                if any(e.format.lower() == name.lower() for e in p.entities)
            ]
            if users:
                raise ConflictError(
                    f"format {name!r} is used by project(s) {', '.join(users)}", code="FormatInUse"
                )

        return self._delete(KIND_FORMAT, name, Preconditions.of(if_match), check_users) is not None

    # Transforms (XSLT) -----------------------------------------------------------------------------
    def upsert_transform(
        self, name: str, xslt: bytes, *, if_match: str | None = None, if_none_match: str | None = None
    ) -> Saved:
        """PUT: Saved.value is the stored description {name, size, sha256}. The XSLT goes to a blob named
        by its digest before the document that points to it is written, so a reader never sees a document
        and a blob of two different writes; the replaced version's blob is deleted afterwards."""
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

        pre = Preconditions.of(if_match, if_none_match)
        pre.check(
            self._repo.get_stored(KIND_TRANSFORM, name), f"{KIND_TRANSFORM} {name!r}"
        )  # before uploading
        digest = hashlib.sha256(xslt).hexdigest()
        doc = {"name": name, "size": len(xslt), "sha256": digest, "blob": _transform_blob(name, digest)}
        self._artifacts.upload_blob(doc["blob"], xslt, overwrite=True)
        replaced: list[Stored | None] = [None]

        def build(current: Stored | None) -> tuple[dict, dict]:
            replaced[0] = current
            return _transform_view(doc), doc

        saved = self._save(KIND_TRANSFORM, name, pre, build)
        old_blob = _blob_of(replaced[0].doc) if replaced[0] is not None else None
        if old_blob and old_blob != doc["blob"]:
            self._delete_blob(old_blob)
        return saved

    def _delete_blob(self, blob: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self._artifacts.delete_blob(blob)
        except ResourceNotFoundError:
            pass

    def get_transform(self, name: str) -> bytes:
        return self._cached(KIND_TRANSFORM, name, lambda: self.get_transform_versioned(name).value)

    def get_transform_versioned(self, name: str) -> Versioned:
        """The XSLT bytes with the ETag of their document; 404 TransformNotFound. A blob replaced between
        reading the document and the blob is read again through the newer document."""
        from azure.core.exceptions import ResourceNotFoundError

        for _ in range(3):
            stored = self._stored(KIND_TRANSFORM, name)
            try:
                return Versioned(self._artifacts.download_blob(_blob_of(stored.doc)).readall(), stored.etag)
            except ResourceNotFoundError:
                continue
        raise NotFoundError(
            f"the XSLT of transform {name!r} is missing; PUT it again", code="TransformNotFound"
        )

    def list_transforms(self) -> list[dict]:
        return [_transform_view(d) for d in self._repo.list(KIND_TRANSFORM)]

    def delete_transform(self, name: str, *, if_match: str | None = None) -> bool:
        def check_users() -> None:
            users = [
                p.name
                for p in self.list_projects()
                if any(name.lower() in (t.lower() for t in e.transforms) for e in p.entities)
            ]
            if users:
                raise ConflictError(
                    f"transform {name!r} is used by project(s) {', '.join(users)}", code="TransformInUse"
                )

        deleted = self._delete(KIND_TRANSFORM, name, Preconditions.of(if_match), check_users)
        if deleted is not None:
            self._delete_blob(_blob_of(deleted.doc))
        return deleted is not None

    # Projects ------------------------------------------------------------------------------------
    # A project (D365's definition group) is keyed by its name AND its operation, as in D365: an import and
    # an export project may share a name. Rows are `project/<name>|<operation>`; a row stored before this
    # (`project/<name>`) is read as the project of its document's operation and moved to its new key by the
    # next write of that project. Jobs name a project by name only, so a name that jobs use names one project:
    # a second project of that name is refused (409 ProjectNameUsedByJob) and a job cannot name a shared one.
    def _project_rows(self, name: str) -> dict[str, tuple[str, Stored]]:
        """The stored projects named `name` (any case), by operation: (row key, stored version)."""
        found: dict[str, tuple[str, Stored]] = {}
        for operation in cfg.OPERATIONS:
            stored = self._repo.get_stored(KIND_PROJECT, project_key(name, operation))
            if stored is not None:
                found[operation] = (project_key(name, operation), stored)
        legacy = self._repo.get_stored(KIND_PROJECT, name)
        if legacy is not None:
            operation = legacy.doc.get("operation")
            if operation in cfg.OPERATIONS and operation not in found:
                found[operation] = (name, legacy)
        return found

    @staticmethod
    def _operation_selector(operation: str | None) -> str | None:
        if operation is None or operation == "":
            return None
        value = str(operation).strip().lower()
        if value not in cfg.OPERATIONS:
            raise ValidationError(
                f"operation {cfg.preview(operation)} must be 'import' or 'export'", code="InvalidOperation"
            )
        return value

    def _select_project(
        self, found: dict[str, tuple[str, Stored]], name: str, operation: str | None
    ) -> tuple[str, tuple[str, Stored]]:
        """The one project of `found` that `operation` (None: the only one) names; 404 ProjectNotFound,
        409 AmbiguousProject when the name is shared and no operation says which."""
        if operation is not None:
            if operation not in found:
                raise NotFoundError(
                    f"project {name!r} with operation {operation!r} does not exist", code="ProjectNotFound"
                )
            return operation, found[operation]
        if not found:
            raise NotFoundError(f"project {name!r} does not exist", code="ProjectNotFound")
        if len(found) > 1:
            raise ConflictError(
                f"an import and an export project are both named {name!r}; say which with "
                "operation=import or operation=export",
                code="AmbiguousProject",
            )
        return next(iter(found.items()))

    def _invalidate_project(self, name: str) -> None:
        for key in (name, project_key(name, ""), *(project_key(name, op) for op in cfg.OPERATIONS)):
            self._cache.invalidate(KIND_PROJECT, key)

    def _save_project(
        self,
        name: str,
        pick: Callable[[dict[str, tuple[str, Stored]]], str | None],
        pre: Preconditions,
        build: Callable[[Stored | None], cfg.Project],
    ) -> Saved:
        """Read the projects named `name`; `pick(found)` names the operation of the one this write replaces
        (None: it creates); check `pre` against it; `build(current)` the new project; store it under its key
        (moving it when its operation changed or its row is a legacy one); start again when another writer
        got there first."""
        what = f"{KIND_PROJECT} {name!r}"
        for _ in range(_WRITE_ATTEMPTS):
            found = self._project_rows(name)
            picked = pick(found)
            old_key, current = found[picked] if picked is not None else (None, None)
            pre.check(current, what)
            project = build(current)
            new_key = project_key(name, project.operation)
            if project.operation != picked and project.operation in found:
                raise ConflictError(
                    f"an {project.operation} project named {name!r} already exists",
                    code="ProjectExists",
                )
            if picked is None and found:
                self._check_name_free_of_jobs(name)
            doc = cfg.project_to_json(project)
            try:
                moving = old_key is not None and old_key.lower() != new_key.lower()
                etag = self._repo.write(KIND_PROJECT, new_key, doc, None if moving else current)
                if moving:
                    try:
                        self._repo.remove(KIND_PROJECT, old_key, current)
                    except ConfigChanged:
                        pass  # changed meanwhile: the newer write wins, the moved copy stays
            except ConfigChanged:
                continue
            finally:
                self._invalidate_project(name)
            return Saved(project, current is None, etag)
        raise ConflictError(
            f"{what} kept changing while this request ran ({_WRITE_ATTEMPTS} attempts); send it again",
            code="ConcurrentChange",
        )

    def _check_name_free_of_jobs(self, name: str) -> None:
        users = [j.name for j in self.list_jobs() if j.project.lower() == name.lower()]
        if users:
            raise ConflictError(
                f"a project named {name!r} exists and job(s) {', '.join(users)} use that name; a second "
                "project of the same name (the other operation) would leave them ambiguous: choose another name",
                code="ProjectNameUsedByJob",
            )

    def upsert_project(
        self,
        name: str,
        body: Any,
        *,
        operation: str | None = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> Saved:
        """PUT: Saved.value is the Project, its entities named as the entities are. 400 naming the field
        for a missing entity, format, mapping target or transform, or a filter that does not parse.

        It replaces the project of `operation` (the selector), else the only project of that name (its
        operation may change, as before projects were keyed by operation), else the one of the body's
        operation; it creates one otherwise."""
        selector = self._operation_selector(operation)
        project = self._validate_project(cfg.parse_project(name, body))
        if selector is not None and project.operation != selector:
            raise ValidationError(
                f"operation: the body says {project.operation!r} but the request selects the "
                f"{selector} project; send operation={project.operation} or change the body",
                code="OperationMismatch",
            )

        def pick(found: dict) -> str | None:
            if selector is not None:
                return selector if selector in found else None
            if len(found) == 1:
                return next(iter(found))
            return project.operation if project.operation in found else None

        return self._save_project(
            name, pick, Preconditions.of(if_match, if_none_match), lambda current: project
        )

    def create_project(self, project_body: Any, name: str) -> Saved:
        """Create only (the OData POST): 409 ProjectExists when a project of that name and operation exists."""
        project = self._validate_project(cfg.parse_project(name, project_body))

        def pick(found: dict) -> str | None:
            if project.operation in found:
                raise ConflictError(
                    f"an {project.operation} project named {name!r} already exists", code="ProjectExists"
                )
            return None

        return self._save_project(name, pick, Preconditions(), lambda current: project)

    def patch_project(
        self, name: str, patch: Any, *, operation: str | None = None, if_match: str | None = None
    ) -> Saved:
        """PATCH (RFC 7396) on the stored project, then validated exactly as upsert_project; 404.
        `entities` is an array: a patch replaces it whole."""
        patch = patch_object(patch, "project")
        selector = self._operation_selector(operation)

        def build(current: Stored | None) -> cfg.Project:
            project = cfg.parse_project(name, merge_patch(_without_name(current.doc), patch))
            # A new operation judges every option against it; otherwise only what the patch changes.
            return self._validate_project(project, None if "operation" in patch else set(patch))

        return self._save_project(
            name,
            lambda found: self._select_project(found, name, selector)[0],
            Preconditions.of(if_match),
            build,
        )

    def get_project(self, name: str, operation: str | None = None) -> cfg.Project:
        """The project named `name` of `operation` (None: the only one of that name). 404 ProjectNotFound;
        409 AmbiguousProject when the name is shared and `operation` is None."""
        selector = self._operation_selector(operation)

        def load() -> cfg.Project:
            _, (_, stored) = self._select_project(self._project_rows(name), name, selector)
            return _project_from_doc(stored.doc)

        return self._cached(KIND_PROJECT, project_key(name, selector or ""), load)

    def find_project(self, name: str, operation: str | None = None) -> cfg.Project | None:
        try:
            return self.get_project(name, operation)
        except NotFoundError:
            return None

    def get_project_versioned(self, name: str, operation: str | None = None) -> Versioned:
        _, (_, stored) = self._select_project(
            self._project_rows(name), name, self._operation_selector(operation)
        )
        return Versioned(_project_from_doc(stored.doc), stored.etag)

    def list_projects(self) -> list[cfg.Project]:
        """Every project once (a legacy row beside its moved copy counts once, the moved copy wins)."""
        out: dict[tuple[str, str], cfg.Project] = {}
        for doc in self._repo.list(KIND_PROJECT):
            project = _project_from_doc(doc)
            key = (project.name.lower(), project.operation)
            out.setdefault(key, project)
        return sorted(out.values(), key=lambda p: (p.name.lower(), p.operation))

    def delete_project(self, name: str, *, operation: str | None = None, if_match: str | None = None) -> bool:
        """True when it existed. 409 ProjectInUse while a job uses it, AmbiguousProject when the name is
        shared and `operation` is None; 412 PreconditionFailed."""
        selector = self._operation_selector(operation)
        pre = Preconditions.of(if_match)
        what = f"{KIND_PROJECT} {name!r}"
        for _ in range(_WRITE_ATTEMPTS):
            found = self._project_rows(name)
            if selector is not None and selector not in found or not found:
                pre.check(None, what)
                return False
            _, (key, current) = self._select_project(found, name, selector)
            pre.check(current, what)
            users = [j.name for j in self.list_jobs() if j.project.lower() == name.lower()]
            if users and len(found) == 1:
                raise ConflictError(
                    f"project {name!r} is used by job(s) {', '.join(users)}", code="ProjectInUse"
                )
            try:
                self._repo.remove(KIND_PROJECT, key, current)
                legacy = self._repo.get_stored(KIND_PROJECT, name)
                if legacy is not None and legacy.doc.get("operation") == current.doc.get("operation"):
                    self._repo.remove(KIND_PROJECT, name, legacy)
            except ConfigChanged:
                continue
            finally:
                self._invalidate_project(name)
            return True
        raise ConflictError(
            f"{what} kept changing while this request ran ({_WRITE_ATTEMPTS} attempts); send it again",
            code="ConcurrentChange",
        )

    def _validate_project(self, project: cfg.Project, judged: set[str] | None = None) -> cfg.Project:
        """The project with its entities named as the entities are. `judged`: the top-level members whose
        applicability is checked (None: all; a PATCH judges what it changes)."""
        canonical = []
        for i, pe in enumerate(project.entities):
            entity = self.find_entity(pe.entity)
            if entity is None:
                raise ValidationError(
                    f"entities[{i}].entity: entity {pe.entity!r} does not exist", code="UnknownEntity"
                )
            try:
                fmt = self.get_format(pe.format)
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
                if rule.conversions:
                    self._check_conversions(rule, entity, fmt, f"entities[{i}].mapping[{j}].conversions")
            for t in pe.transforms:
                if self._repo.find(KIND_TRANSFORM, t) is None:
                    raise ValidationError(
                        f"entities[{i}].transforms: transform {t!r} does not exist", code="UnknownTransform"
                    )
            if project.filter:
                self._check_filter(project.filter, entity, i)
            canonical.append(_replace(pe, entity=entity.name))
        project = _replace(project, entities=tuple(canonical))
        problems = cfg.project_option_problems(project, self._format_kind)
        if judged is not None:
            problems = [(n, w) for n, w in problems if re.split(r"[\[.]", n, maxsplit=1)[0] in judged]
        if problems:
            raise ValidationError(
                f"{cfg.describe_problems(problems)} (this is an {project.operation} project)",
                code=cfg.NOT_APPLICABLE,
            )
        if judged is None or judged & {"operation", "entities"}:
            self._check_jobs_fit(project)
        return project

    def _format_kind(self, name: str) -> str | None:
        try:
            return self.get_format(name).kind
        except (NotFoundError, ValidationError):
            return None

    def _check_jobs_fit(self, project: cfg.Project) -> None:
        """A project change (its operation, an entity's transforms or format) must not leave a job that uses
        it holding options that then do nothing; the job's own mode counts as stated only when it is not
        the default of a document written before exports took `package`."""
        for job in self.list_jobs():
            if job.project.lower() != project.name.lower():
                continue
            problems = self._job_problems(job, project, stated=set())
            if problems:
                raise ValidationError(
                    f"job {job.name!r} ({job.activity_id}) uses this project, and with this change "
                    f"{cfg.describe_problems(problems)}; change the job first",
                    code=cfg.NOT_APPLICABLE,
                )

    def _job_problems(
        self, job: cfg.Job, project: cfg.Project, stated: set[str] | None = None
    ) -> list[tuple[str, str]]:
        problems = cfg.job_option_problems(job, project.operation, stated)
        if project.operation == "import" and job.mode == "package":
            problems += [
                ("mode", f"'package' ignores {name} of project {project.name!r}: {why}")
                for name, why in cfg.package_mode_problems(project, self._format_kind)
            ]
        return problems

    def job_warnings(self, job: cfg.Job) -> list[str]:
        """What a stored job holds that does nothing (documents written before writes checked it); never
        raises, so a job whose project is gone still reads."""
        try:
            project = self.get_project(job.project)
        except (NotFoundError, ValidationError, ConflictError):
            return [f"project {job.project!r} does not exist"]
        return [f"{name} does not apply: {why}" for name, why in self._job_problems(job, project)]

    def project_warnings(self, project: cfg.Project) -> list[str]:
        return [
            f"{name} does not apply: {why}"
            for name, why in cfg.project_option_problems(project, self._format_kind)
        ]

    @staticmethod
    def _check_conversions(rule: cfg.MappingRule, entity: Entity, fmt: SourceFormat, path: str) -> None:
        """Each conversion's `to` must be a value the target field takes, read with the project entity's
        format (it replaces the file's text before the type conversion): 400 InvalidConversion."""
        from shared.formats.mapping import build_mapper

        item = {**rule.as_item(), "default": None}
        try:
            build_mapper(entity, None, [item], fmt)
        except ValueError as exc:
            raise ValidationError(f"{path}: {exc}", code="InvalidConversion") from None

    def _check_filter(self, text: str, entity: Entity, index: int) -> None:
        from shared.formats.filters import FilterError, parse_filter

        try:
            parse_filter(text, entity)
        except FilterError as exc:
            raise ValidationError(f"filter: {exc} (entity {entity.name})", code=exc.code) from exc

    # Version tokens (ResetVersionToken) --------------------------------------------------------------
    def reset_version_token(self, project_name: str, entity_name: str) -> None:
        """The next incremental export of this entity in this project exports it in full (D365's
        ResetVersionToken resets the change-tracking version of an entity in a definition group)."""
        from datetime import UTC, datetime

        key = f"{project_name.lower()}|{entity_name.lower()}"
        self._repo.upsert(KIND_VERSION_TOKEN, key, {"resetAt": datetime.now(UTC).isoformat()})
        self._cache.invalidate(KIND_VERSION_TOKEN, key)

    def version_token_reset_at(self, project_name: str, entity_name: str):
        """When the entity's watermark in the project was last reset (a UTC datetime), or None."""
        from datetime import datetime

        key = f"{project_name.lower()}|{entity_name.lower()}"

        def load():
            doc = self._repo.find(KIND_VERSION_TOKEN, key)
            return datetime.fromisoformat(doc["resetAt"]) if doc and doc.get("resetAt") else None

        return self._cached(KIND_VERSION_TOKEN, key, load)

    # Jobs ------------------------------------------------------------------------------------------
    def _validate_job(self, job: cfg.Job, stated: set[str], judged: set[str] | None = None) -> cfg.Job:
        """The job with its project's name as spelled there. `stated`: the keys the body gives; `judged`:
        the fields whose applicability is checked (None: all; a PATCH judges what it changes, so a stored
        value written before these checks does not block an unrelated change). An export job that states no
        mode is stored as `package`, what it produces."""
        try:
            project = self.get_project(job.project)
        except NotFoundError as exc:
            raise ValidationError(
                f"project: project {job.project!r} does not exist", code="UnknownProject"
            ) from exc
        except ConflictError as exc:
            raise ValidationError(
                f"project: an import and an export project are both named {job.project!r}; a job needs a "
                "project whose name is its own (rename one of them)",
                code="AmbiguousProject",
            ) from exc
        if project.operation == "export" and "mode" not in stated:
            job = _replace(job, mode="package")
        self._check_job_legal_entity(job, project, judged)
        problems = self._job_problems(job, project, stated)
        if judged is not None:
            problems = [(name, why) for name, why in problems if name in judged]
        if problems:
            raise ValidationError(
                f"{cfg.describe_problems(problems)} (project {project.name!r} is an {project.operation} project)",
                code=cfg.NOT_APPLICABLE,
            )
        return _replace(job, project=project.name)

    def _check_job_legal_entity(self, job: cfg.Job, project: cfg.Project, judged: set[str] | None) -> None:
        """The job's company must be a configured legal entity (400 UnknownLegalEntity). A recurring export
        job of a project with a company-specific entity needs one (400 LegalEntityRequired): an export
        runs in one legal entity and never mixes legal entities in a file."""
        if job.company:
            self.check_legal_entity(job.company, "company")
        if judged is not None and not judged & {"company", "recurrence", "project"}:
            return
        if project.operation == "export" and not job.company and job.recurrence is not None:
            specific = [e.entity for e in project.entities if self._company_specific(e.entity)]
            if specific:
                raise ValidationError(
                    f"company: a recurring export job needs a legal entity, because {', '.join(specific)} "
                    "of its project is company-specific and an export never mixes legal entities in one "
                    "file; set company, or remove the recurrence and export with ExportToPackage and its "
                    "legalEntityId",
                    code="LegalEntityRequired",
                )

    def _company_specific(self, name: str) -> bool:
        entity = self.find_entity(name)
        return entity is not None and entity.company_specific

    def create_job(self, body: Any) -> Saved:
        """POST: a new job (a new activity ID unless the body names one). 409 when that ID exists."""
        activity_id = str(uuid.uuid4())
        if isinstance(body, dict) and body.get("activityId"):
            activity_id = cfg.parse_guid(body["activityId"], "activityId")
        job = self._validate_job(cfg.parse_job(activity_id, body), _stated(body))

        def build(current: Stored | None) -> tuple[cfg.Job, dict]:
            if current is not None:
                raise ConflictError(f"{KIND_JOB} {activity_id!r} already exists")
            return job, cfg.job_to_json(job)

        return self._save(KIND_JOB, activity_id, Preconditions(), build)

    def upsert_job(
        self, activity_id: str, body: Any, *, if_match: str | None = None, if_none_match: str | None = None
    ) -> Saved:
        """PUT: Saved.value is the Job. 400 UnknownProject, OptionNotApplicable; 412 PreconditionFailed."""
        job = self._validate_job(cfg.parse_job(activity_id, body), _stated(body))
        return self._save(
            KIND_JOB,
            activity_id,
            Preconditions.of(if_match, if_none_match),
            lambda current: (job, cfg.job_to_json(job)),
        )

    def patch_job(self, activity_id: str, patch: Any, *, if_match: str | None = None) -> Saved:
        """PATCH (RFC 7396) on the stored job, then validated exactly as upsert_job; 404 JobNotFound.
        `{"enabled": false}` alone disables a job. `authorizationPolicy` is an array: replaced whole."""
        patch = patch_object(patch, "job")

        def build(current: Stored | None) -> tuple[cfg.Job, dict]:
            merged = merge_patch(current.doc, patch)
            # A new project judges every option against it; otherwise only what the patch changes.
            judged = None if "project" in patch else set(patch)
            job = self._validate_job(cfg.parse_job(activity_id, merged), _stated(merged), judged)
            return job, cfg.job_to_json(job)

        return self._save(KIND_JOB, activity_id, Preconditions.of(if_match), build, must_exist=True)

    def project_of(self, job: cfg.Job) -> cfg.Project:
        """The project a job runs: by name, and by operation too for a definition group's group job."""
        from shared.services.definition_groups import job_operation

        return self.get_project(job.project, job_operation(job))

    def get_job(self, activity_id: str, *, fresh: bool = False) -> cfg.Job:
        from shared.services.definition_groups import group_job_from_id

        group_job = group_job_from_id(activity_id)
        if group_job is not None:
            return group_job  # not stored: the ID says what it is (definition_groups)

        def load() -> cfg.Job:
            doc = self._repo.get(KIND_JOB, activity_id)
            return cfg.parse_job(doc["activityId"], doc)

        if fresh:
            self._cache.invalidate(KIND_JOB, activity_id)
        return self._cached(KIND_JOB, activity_id, load)

    def get_job_versioned(self, activity_id: str) -> Versioned:
        stored = self._stored(KIND_JOB, activity_id)
        return Versioned(cfg.parse_job(stored.doc["activityId"], stored.doc), stored.etag)

    def find_job(self, activity_id: str) -> cfg.Job | None:
        try:
            return self.get_job(activity_id)
        except NotFoundError:
            return None

    def list_jobs(self) -> list[cfg.Job]:
        return [cfg.parse_job(d["activityId"], d) for d in self._repo.list(KIND_JOB)]

    def cached_jobs(self) -> list[cfg.Job]:
        """Every job, cached like single documents (valid while the configuration's version is unchanged, so
        current within CONFIG_CHECK_SECONDS): for the checks every partner request makes (http.require_partner,
        execution_access.may_see), which would otherwise query the whole job list each time. Not for writes'
        consistency checks, which use list_jobs."""
        return self._cached(_ALL_JOBS[0], _ALL_JOBS[1], self.list_jobs)

    def delete_job(self, activity_id: str, *, if_match: str | None = None) -> bool:
        return self._delete(KIND_JOB, activity_id, Preconditions.of(if_match), lambda: None) is not None


def _check_format_options(fmt: SourceFormat, judged: set[str] | None = None) -> SourceFormat:
    """400 OptionNotApplicable for a setting the format's kind ignores (judged: those members only)."""
    problems = [(n, w) for n, w in cfg.format_option_problems(fmt) if judged is None or n in judged]
    if problems:
        raise ValidationError(cfg.describe_problems(problems), code=cfg.NOT_APPLICABLE)
    return fmt


def _stated(body: Any) -> set[str]:
    """The members a body gives a value (null means the default, as if absent)."""
    return {k for k, v in body.items() if v is not None} if isinstance(body, dict) else set()


def _count_records(entity: Entity, cap: int) -> int:
    from shared.services.registry import entity_repo

    return entity_repo().count_rows(entity, cap)


def _replace(obj, **changes):
    from dataclasses import replace

    return replace(obj, **changes)


def _transform_blob(name: str, digest: str) -> str:
    """The XSLT's blob: one per content, so a document and the blob it names always belong together."""
    return f"transforms/{name.lower()}/{digest}.xslt"


def _blob_of(doc: dict) -> str:
    # Documents written before blobs were named by content name none; their blob is the one per name.
    return doc.get("blob") or f"transforms/{doc['name'].lower()}.xslt"


def _transform_view(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "blob"}


def _without_name(doc: dict) -> dict:
    """A stored document as its PUT body: the name is the path's, never a member of the body."""
    return {k: v for k, v in doc.items() if k != "name"}


def _entity_from_doc(doc: dict) -> Entity:
    return cfg.parse_entity(doc["name"], _without_name(doc))


def _format_from_doc(doc: dict) -> SourceFormat:
    return cfg.parse_format(doc["name"], _without_name(doc))


def project_key(name: str, operation: str) -> str:
    """The row key of a project: its name and operation (`|` is in no name, NAME_RE)."""
    return f"{name}|{operation}"


def _project_from_doc(doc: dict) -> cfg.Project:
    return cfg.parse_project(doc["name"], _without_name(doc))
