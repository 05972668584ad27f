"""Data package jobs: one entity input per manifest entity, in execution order.

The import pipeline (shared/services/message_import.py) calls `package_inputs` for a message of a Data package job. It spools the blob to a
temporary file (a zip's directory sits at its end, so reading needs a seekable file), opens it with
the zip checks of `open_package`, and turns each manifest entity into a `PackageEntityInput`:

- **Entity**: the manifest's TargetEntity (v2) or EntityName, matched case-insensitively against the
  configured entities' names and labels, the job's project entities first. An entity that matches
  nothing is an error of that entity alone ("unknown entity"), not of the package.
- **Format**: SourceFormat (a built-in name such as CSV, CSV-Unicode, XML-Element, XML-Attribute,
  EXCEL, JSON, or a user-defined format), else the project's format for the entity, else the data
  file's extension. ExcelSheetName (else the project's sheet) picks the Excel sheet.
- **Mapping**: EntityMapList (XMLField -> EntityField; maps with an empty XMLField or EntityField are
  skipped, and so are maps to a field the configured entity does not have: D365 packages map every
  field of the real entity, while a configured entity models the ones that matter). With no map in
  the manifest, the project's mapping for the entity; fields left over are mapped by name.
- **XSLT**: EntityTransformList in SequenceNumber order (else the project's transforms), applied to
  XML formats only, as D365 does. Each transform is the package's own file (XsltResourceFileName,
  then XsltFileName), or failing that a stored transform of that name (with or without its
  extension). Package transforms may include or document() the package's other small files.
- Entities with `Disable` set (v2) are listed with the status Disabled and not read.
- **Data files no entity reads** (a root `.csv`, `.txt`, `.xml`, `.xlsx`, `.json` other than the manifest and
  header that no InputFilePath or XSLT names; root `.xml` files are exempt when a package XSLT could read
  them) are listed in Counts under their file name with the status Error and the reason, so the message is
  ProcessedWithErrors, never Processed with a file silently left out (issue 12).
- **Attachments** (`Resources/<entity label>/<file>`, as D365 packages of document attachments carry
  them) are kept with the message: they stay in the package, which is the message's own file (inbound,
  or uploads for ImportFromPackage, under the same retention as the message's other files), and each
  entity's Counts on the message list them (`attachments`: how many; `attachmentFiles`: the first
  MAX_LISTED_ATTACHMENTS entry names, to read from the package). The folder is matched to the entity by
  the manifest's EntityName or TargetEntity or the configured entity's label or name, case-insensitively.
  Entities are configured table rows, so the files' bytes are not imported into them.

Fail-on-error rules (FailLevelOnError, FailExecutionUnitOnError) and the order of staging and writing are
shared/services/import_plan.py's, for file and package messages alike.

The message then ends `PreProcessingError` when no entity could be staged at all (the package, or
every entity in it, could not be read), otherwise `ProcessedWithErrors` when any record was
rejected or any entity failed or was not run, otherwise `Processed`. Counts have one key per
manifest entity with read/written/rejected, the entity's status (Processed, ProcessedWithErrors,
Error, NotRun, Disabled) and, for Error and NotRun, the reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO

from shared.domain.config import NAME_RE, Project, ProjectEntity
from shared.domain.schema import BUILTIN_FORMATS, Entity, SourceFormat
from shared.errors import AppError, FormatError
from shared.formats.package_manifest import ManifestEntity
from shared.services.import_pipeline import EntityInput, EntityOutcome

_COPY_CHUNK = 1024 * 1024
# Attachment names listed per entity in the message's Counts (a Table property holds at most 64 KiB);
# the count is always exact and the package, kept as the message's file, holds them all.
MAX_LISTED_ATTACHMENTS = 20
MAX_ATTACHMENT_NAME = 300
# Package files offered to a package's XSLT as resources (xsl:include, document()): each at most
# the stylesheet limit, and all of them together at most this.
_MAX_XSLT_RESOURCES_BYTES = 16 * 1024 * 1024
_XML_KINDS = ("xml-element", "xml-attribute")
_FORMAT_BY_EXTENSION = {
    ".csv": "CSV",
    ".txt": "CSV",
    ".xlsx": "EXCEL",
    ".xml": "XML-Element",
    ".json": "JSON",
}


@dataclass
class PackageEntityInput(EntityInput):
    """An EntityInput plus its place in the manifest. `entity`, `fmt` and `open_stream` are None
    when `error` says why the entity cannot be read (they are never used then)."""

    key: str = ""  # its key in the message's Counts: the configured entity, else the manifest's name
    error: str | None = None
    disabled: bool = False
    execution_unit: int = 1
    level: int = 1
    sequence: int = 1
    fail_level_on_error: bool = False
    fail_unit_on_error: bool = False
    attachments: list[str] = field(default_factory=list)  # Resources/<entity label>/… of the package


@dataclass
class PackageEntityOutcome(EntityOutcome):
    """An entity's outcome in a package: its Counts also list the entity's attachments (at most
    MAX_LISTED_ATTACHMENTS names, and how many there are), which stay in the package."""

    attachments: list[str] = field(default_factory=list)

    def counts(self) -> dict:
        out = super().counts()
        if self.attachments:
            out["attachments"] = len(self.attachments)
            out["attachmentFiles"] = [
                n[:MAX_ATTACHMENT_NAME] for n in self.attachments[:MAX_LISTED_ATTACHMENTS]
            ]
        return out

    @classmethod
    def of(cls, outcome: EntityOutcome, attachments: list[str]) -> PackageEntityOutcome:
        fields_ = {f.name: getattr(outcome, f.name) for f in dataclasses.fields(EntityOutcome)}
        return cls(**fields_, attachments=list(attachments))


def spool_to_tempfile(source: BinaryIO) -> IO[bytes]:
    """Copy a stream to a temporary file on disk, positioned at 0; the caller closes it."""
    target = tempfile.TemporaryFile()  # noqa: SIM115 - returned open
    try:
        with source:
            shutil.copyfileobj(source, target, _COPY_CHUNK)
        target.seek(0)
    except BaseException:
        target.close()
        raise
    return target


def package_inputs(
    *,
    config,
    project: Project | None,
    open_blob: Callable[[], BinaryIO],
    resources: contextlib.ExitStack,
    on_manifest: Callable[[object], None] | None = None,
) -> list[PackageEntityInput]:
    """The manifest's entities as inputs, in execution order; FormatError when the package is unusable.

    The spooled package and the open zip are registered on `resources`: keep it open until every
    input has been read. `on_manifest(manifest)` is called once the manifest is read (a definition group
    made from the package).
    """
    from shared.formats.package_reader import open_package

    spool = resources.enter_context(spool_to_tempfile(open_blob()))
    package = resources.enter_context(open_package(spool))
    if on_manifest is not None:
        on_manifest(package.manifest)
    ordered = package.entities()
    if not ordered:
        raise FormatError("Manifest.xml lists no entities (PackageEntityList is empty)")
    resolver = _Resolver(config, project)
    xslt_resources: dict[str, bytes] | None = None

    def package_resources() -> dict[str, bytes]:
        nonlocal xslt_resources
        if xslt_resources is None:
            xslt_resources = _xslt_resources(package)
        return xslt_resources

    attachments = {folder.casefold(): files for folder, files in package.attachments().items() if folder}
    inputs: list[PackageEntityInput] = []
    used_keys: set[str] = set()
    for me in ordered:
        inp = _entity_input(me, package, resolver, package_resources)
        inp.attachments = _attachments_of(me, inp, attachments)
        # Two manifest entries for one entity would share a Counts key; keep both visible.
        key, n = inp.key, 2
        while key.casefold() in used_keys:
            key, n = f"{inp.key} #{n}", n + 1
        inp.key = key
        used_keys.add(key.casefold())
        inputs.append(inp)
    # A data file that no entity reads would otherwise vanish while the message says Processed. Each is
    # an error of its own, after every entity and in an execution unit of its own: no fail-on-error rule
    # blocks it (which would hide why), and it blocks nothing.
    spare_unit = max(me.execution_unit for me in ordered) + 1
    for name in package.unreferenced_data_files():
        key = name
        n = 2
        while key.casefold() in used_keys:
            key, n = f"{name} #{n}", n + 1
        used_keys.add(key.casefold())
        inputs.append(
            PackageEntityInput(
                entity=None,  # type: ignore[arg-type]
                fmt=None,  # type: ignore[arg-type]
                open_stream=None,  # type: ignore[arg-type]
                key=key,
                error=(
                    f"the package holds '{name}', which Manifest.xml names for no entity, so its records were "
                    "not imported; add the entity to Manifest.xml (InputFilePath) or leave the file out"
                ),
                execution_unit=spare_unit,
            )
        )
    return inputs


def _attachments_of(
    me: ManifestEntity, inp: PackageEntityInput, by_folder: dict[str, list[str]]
) -> list[str]:
    """The package's `Resources/<folder>/` files of this entity: the folder is its label (D365 writes the
    manifest's EntityName), matched case-insensitively, as are its TargetEntity and the configured names."""
    names = [me.entity_name, me.target_entity]
    if inp.entity is not None:
        names += [inp.entity.label, inp.entity.name]
    out: list[str] = []
    for folder in dict.fromkeys(n.strip().casefold() for n in names if n and n.strip()):
        out += by_folder.get(folder, [])
    return out


def _manifest_label(me: ManifestEntity) -> str:
    return (me.target_entity or me.entity_name or "").strip() or (me.input_file_path or "?")


def _entity_input(me: ManifestEntity, package, resolver: _Resolver, package_resources) -> PackageEntityInput:
    base: dict[str, Any] = {
        "execution_unit": me.execution_unit,
        "level": me.level_in_execution_unit,
        "sequence": me.sequence_in_level,
        "fail_level_on_error": me.fail_level_on_error,
        "fail_unit_on_error": me.fail_execution_unit_on_error,
    }

    def failed(key: str, reason: str) -> PackageEntityInput:
        return PackageEntityInput(entity=None, fmt=None, open_stream=None, key=key, error=reason, **base)  # type: ignore[arg-type]

    entity, pe = resolver.entity(me)
    if entity is None:
        names = " / ".join(dict.fromkeys(n for n in (me.entity_name, me.target_entity) if n))
        return failed(
            _manifest_label(me),
            f"the entity '{names}' is not configured; create it (PUT /api/manage/entities/{{name}}) "
            "with that name or label",
        )
    if me.disable:
        return PackageEntityInput(
            entity=entity,
            fmt=None,
            open_stream=None,
            key=entity.name,
            disabled=True,
            **base,  # type: ignore[arg-type]
        )
    try:
        fmt = resolver.format(me, pe)
        transforms = _transforms(me, pe, fmt, package, resolver, package_resources)
    except FormatError as exc:
        return failed(entity.name, str(exc))
    if not me.input_file_path:
        return failed(entity.name, f"Manifest.xml gives the entity '{me.entity_name}' no InputFilePath")
    try:
        data_file = package.find_data_file(me.input_file_path)
    except FormatError as exc:
        return failed(entity.name, str(exc))
    if data_file is None:
        return failed(
            entity.name, f"Manifest.xml names '{me.input_file_path}' but the package has no such file"
        )
    return PackageEntityInput(
        entity=entity,
        fmt=fmt,
        open_stream=lambda: package.open_entity_file(me),
        mapping=_mapping(me, pe, entity),
        transforms=transforms,
        sheet=(me.excel_sheet_name or "").strip() or (pe.sheet if pe else None),
        source_name=me.entity_name or entity.label,
        key=entity.name,
        **base,
    )


class _Resolver:
    """Looks up configured entities (one table scan per package), formats and stored transforms."""

    def __init__(self, config, project: Project | None) -> None:
        self._config = config
        self._project = project
        self._entities: list[Entity] | None = None

    def _all(self) -> list[Entity]:
        if self._entities is None:
            self._entities = list(self._config.list_entities())
        return self._entities

    def entity(self, me: ManifestEntity) -> tuple[Entity | None, ProjectEntity | None]:
        wanted = [n.strip().casefold() for n in (me.target_entity, me.entity_name) if n and n.strip()]
        if not wanted:
            return None, None
        entities = self._all()
        by_name = {e.name.casefold(): e for e in entities}
        # The job's project first: it disambiguates entities that share a label.
        project_entities = []
        for pe in self._project.entities if self._project else ():
            found = by_name.get(pe.entity.casefold())
            if found is not None:
                project_entities.append((found, pe))
        for candidates in (project_entities, [(e, None) for e in entities]):
            for name in wanted:
                for entity, pe in candidates:
                    if name in (entity.name.casefold(), entity.label.casefold()):
                        return entity, pe if pe is not None else self._project_entity(entity)
        return None, None

    def _project_entity(self, entity: Entity) -> ProjectEntity | None:
        for pe in self._project.entities if self._project else ():
            if pe.entity.casefold() == entity.name.casefold():
                return pe
        return None

    def format(self, me: ManifestEntity, pe: ProjectEntity | None) -> SourceFormat:
        name = (me.source_format or "").strip()
        if not name and pe is not None:
            name = pe.format
        if not name:
            path = (me.input_file_path or "").lower()
            name = next((f for ext, f in _FORMAT_BY_EXTENSION.items() if path.endswith(ext)), "")
        if not name:
            raise FormatError(f"Manifest.xml gives the entity '{me.entity_name}' no SourceFormat")
        try:
            # A name that cannot be a stored format's never reaches the table as a key.
            if name.upper() in BUILTIN_FORMATS or NAME_RE.match(name):
                return self._config.get_format(name)
        except AppError:
            pass
        raise FormatError(
            f"the source data format '{name}' is not defined; create it (PUT /api/manage/formats/{{name}}) "
            "or use CSV, CSV-Unicode, XML-Element, XML-Attribute, EXCEL or JSON"
        )

    def stored_transform(self, name: str) -> bytes | None:
        stem = name.rsplit(".", 1)[0] if "." in name else name
        for candidate in dict.fromkeys((name, stem)):
            if not NAME_RE.match(candidate):
                continue  # not a storable name (and never sent to the table as a key)
            try:
                return self._config.get_transform(candidate)
            except AppError:  # NotFoundError included
                continue
        return None


def manifest_mapping(me: ManifestEntity, entity: Entity) -> list[dict]:
    """The manifest entity's field mapping onto `entity`, as project mapping rules (a group made from a package)."""
    return _mapping(me, None, entity)


def _mapping(me: ManifestEntity, pe: ProjectEntity | None, entity: Entity) -> list[dict]:
    fields = entity.field_map()
    mapping: list[dict] = []
    seen: set[str] = set()
    for m in me.entity_maps:
        source = (m.xml_field or "").strip()
        target = (m.entity_field or "").strip()
        if not source or not target:
            continue
        fld = fields.get(target.upper())
        if fld is None or fld.name in seen:
            continue  # a field the configured entity does not model, or an array's second element
        seen.add(fld.name)
        conversions = m.conversions(f"Manifest.xml entity '{me.entity_name}' field {fld.name}")
        mapping.append(
            {
                "source": source,
                "target": fld.name,
                "default": None,
                "conversions": [{"from": f, "to": t} for f, t in conversions],
            }
        )
    if mapping or pe is None:
        return mapping
    return [m.as_item() for m in pe.mapping]


def _transforms(
    me: ManifestEntity,
    pe: ProjectEntity | None,
    fmt: SourceFormat,
    package,
    resolver: _Resolver,
    package_resources,
) -> list[Callable[[BinaryIO], BinaryIO]]:
    from shared.formats.package_reader import MAX_RESOURCE_BYTES
    from shared.formats.xslt import apply_transform_to_stream, compile_transform
    from shared.services.import_pipeline import MAX_TRANSFORM_INPUT

    if fmt.kind not in _XML_KINDS:
        return []  # D365 applies XSLT to XML source formats only
    compiled = []
    listed = sorted(me.transforms, key=lambda t: t.sequence_number)
    if listed:
        for t in listed:
            names = [n.strip() for n in (t.xslt_resource_file_name, t.xslt_file_name) if n and n.strip()]
            if not names:
                raise FormatError(f"Manifest.xml lists an XSLT for '{me.entity_name}' without a file name")
            xslt, in_package = None, False
            for name in names:
                info = package.find(name)
                if info is not None:
                    if info.file_size > MAX_RESOURCE_BYTES:
                        raise FormatError(f"the XSLT '{name}' is {info.file_size} bytes; too large")
                    xslt, in_package = package.read_resource(name), True
                    break
            if xslt is None:
                for name in names:
                    xslt = resolver.stored_transform(name)
                    if xslt is not None:
                        break
            if xslt is None:
                raise FormatError(
                    f"the XSLT '{names[0]}' is neither in the package nor a stored transform "
                    "(PUT /api/manage/transforms/{name})"
                )
            try:
                compiled.append(
                    compile_transform(xslt, resources=package_resources() if in_package else None)
                )
            except FormatError as exc:
                raise FormatError(f"the XSLT '{names[0]}': {exc}") from None
    elif pe is not None:
        for name in pe.transforms:
            xslt = resolver.stored_transform(name)
            if xslt is None:
                raise FormatError(f"the project's transform '{name}' no longer exists")
            try:
                compiled.append(compile_transform(xslt))
            except FormatError as exc:
                raise FormatError(f"the transform '{name}': {exc}") from None
    return [
        lambda stream, c=c: apply_transform_to_stream(c, stream, max_input_bytes=MAX_TRANSFORM_INPUT)
        for c in compiled
    ]


def _xslt_resources(package) -> dict[str, bytes]:
    """The package's small files other than the manifest, header and entity data, for XSLT includes."""
    from shared.formats.package_reader import HEADER_NAME, MANIFEST_NAME
    from shared.formats.xslt import MAX_STYLESHEET_BYTES

    excluded = {MANIFEST_NAME.casefold(), HEADER_NAME.casefold()}
    for me in package.entities():
        if me.input_file_path:
            with contextlib.suppress(FormatError):
                info = package.find_data_file(me.input_file_path)
                if info is not None:
                    excluded.add(info.filename.casefold())
    for files in package.attachments().values():  # attachments are data, not stylesheets
        excluded.update(name.casefold() for name in files)
    out: dict[str, bytes] = {}
    total = 0
    for info in package.files():  # no folder entries, no macOS metadata
        if info.filename.casefold() in excluded or info.file_size > MAX_STYLESHEET_BYTES:
            continue
        if total + info.file_size > _MAX_XSLT_RESOURCES_BYTES:
            break
        out[info.filename] = package.read_resource(info.filename)
        total += info.file_size
    return out


# --------------------------------------------------------------------------------------------
# Running a package: staging and writing with the fail-on-error rules
