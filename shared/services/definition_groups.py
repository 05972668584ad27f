"""Definition groups (D365's data projects) over OData: the projects themselves, seen as D365 shows them.

One model, not a second store: a `DataManagementDefinitionGroups` row is a project (name, operation, description)
and a `DataManagementDefinitionGroupDetails` row is one entity of its `entities` (format, sequence). Writes go
through ConfigService, with its checks (entities, formats, jobs that use the project).

**Sequence.** D365 orders a project's entities by ExecutionUnit, LevelInExecutionUnit and SequenceInLevel; a
project here has one `sequence` per entity. The three are packed into it as
`(ExecutionUnit - 1) * 1000 + (LevelInExecutionUnit - 1) * 100 + SequenceInLevel` (units 1-10, levels 1-10,
sequence in level 0-99), so the order is the same and a sequence written by the management API (1, 2, 3)
reads as unit 1, level 1, sequence 1, 2, 3.

**Group jobs.** The package API runs a project's imports and exports as runs and messages of a job. A project
that no enabled recurring job serves (a group made over OData, or one that ImportFromPackage is about to create
from the package's manifest) runs them on its *group job*: a job that is not stored, whose activity ID
`group~<operation>~<name>~<legal entity>` says everything it is (ConfigService.get_job builds it back from the ID),
enabled, package mode, no recurrence, no authorization policy. Its executions are seen by admins and by the
application that started them (execution_access).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.domain import config as cfg
from shared.errors import ValidationError

GROUP_JOB_PREFIX = "group~"
OPERATION_TYPES = {"import": "Import", "export": "Export"}  # DMFOperationType members
_SEQ_UNIT, _SEQ_LEVEL, _SEQ_MAX_IN_LEVEL = 1000, 100, 99
MAX_UNIT = MAX_LEVEL = 10


@dataclass(frozen=True)
class GroupJob(cfg.Job):
    """A project's group job (not stored; see the module docstring)."""

    operation: str = "export"


def group_job_id(operation: str, name: str, company: str | None) -> str:
    return f"{GROUP_JOB_PREFIX}{operation}~{name.lower()}~{(company or '').lower()}"


def is_group_job_id(job_id: str | None) -> bool:
    return bool(job_id) and job_id.startswith(GROUP_JOB_PREFIX)


def group_job(operation: str, name: str, company: str | None, *, incremental: bool = False) -> GroupJob:
    return GroupJob(
        activity_id=group_job_id(operation, name, company),
        name=f"definition group {name}",
        project=name,
        enabled=True,
        mode="package",
        company=(company or "").lower() or None,
        incremental=incremental,
        operation=operation,
    )


def group_job_from_id(job_id: str) -> GroupJob | None:
    """The group job an activity ID names; None when it is not a group job's ID."""
    if not is_group_job_id(job_id):
        return None
    parts = job_id[len(GROUP_JOB_PREFIX) :].split("~")
    if len(parts) != 3 or parts[0] not in cfg.OPERATIONS or not cfg.NAME_RE.match(parts[1]):
        return None
    return group_job(parts[0], parts[1], parts[2] or None)


def job_operation(job: cfg.Job) -> str | None:
    """The operation of the project a job runs when the job says it (group jobs); None otherwise."""
    return getattr(job, "operation", None)


# Sequence packing ----------------------------------------------------------------------------------------
def pack_sequence(unit: int, level: int, in_level: int) -> int:
    for value, what, low, high in (
        (unit, "ExecutionUnit", 1, MAX_UNIT),
        (level, "LevelInExecutionUnit", 1, MAX_LEVEL),
        (in_level, "SequenceInLevel", 0, _SEQ_MAX_IN_LEVEL),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValidationError(
                f"{what} must be a whole number from {low} to {high} (a project orders at most {MAX_UNIT} "
                f"execution units of {MAX_LEVEL} levels of {_SEQ_MAX_IN_LEVEL} entities)",
                code="SequenceOutOfRange",
            )
    return (unit - 1) * _SEQ_UNIT + (level - 1) * _SEQ_LEVEL + in_level


def unpack_sequence(sequence: int) -> tuple[int, int, int]:
    unit, rest = divmod(max(sequence, 0), _SEQ_UNIT)
    level, in_level = divmod(rest, _SEQ_LEVEL)
    return unit + 1, level + 1, in_level


# OData views -----------------------------------------------------------------------------------------------
def operation_of(value) -> str:
    """`Import` / `Export` (any case; also the enum literal's member) → `import` / `export`; 400 otherwise."""
    text = str(value or "").strip()
    if "'" in text:  # Microsoft.Dynamics.DataEntities.DMFOperationType'Export'
        text = text.split("'")[1]
    lowered = text.lower()
    if lowered not in OPERATION_TYPES:
        raise ValidationError(
            f"OperationType {cfg.preview(value)} must be Import or Export", code="InvalidOperationType"
        )
    return lowered


def group_view(project: cfg.Project) -> dict:
    """A project as a DataManagementDefinitionGroups entity."""
    return {
        "Name": project.name,
        "OperationType": OPERATION_TYPES[project.operation],
        "Description": project.description,
        "ProjectCategory": "Project",
        "GenerateDataPackage": "Yes",
    }


def detail_views(project: cfg.Project, config) -> list[dict]:
    """The project's entities as DataManagementDefinitionGroupDetails entities, in execution order."""
    out = []
    for pe in project.ordered_entities():
        entity = config.find_entity(pe.entity)
        unit, level, in_level = unpack_sequence(pe.sequence)
        out.append(
            {
                "DefinitionGroupId": project.name,
                "EntityName": entity.label if entity is not None else pe.entity,
                "TargetEntity": pe.entity,
                "OperationType": OPERATION_TYPES[project.operation],
                "SourceFormat": pe.format,
                "ExecutionUnit": unit,
                "LevelInExecutionUnit": level,
                "SequenceInLevel": in_level,
                "DefaultRefreshType": "FullPush",
                "ExcelSheetName": pe.sheet or "",
            }
        )
    return out


GROUP_PROPERTIES = ("Name", "OperationType", "Description", "ProjectCategory", "GenerateDataPackage")
DETAIL_PROPERTIES = (
    "DefinitionGroupId",
    "EntityName",
    "TargetEntity",
    "OperationType",
    "SourceFormat",
    "ExecutionUnit",
    "LevelInExecutionUnit",
    "SequenceInLevel",
    "DefaultRefreshType",
    "ExcelSheetName",
)
# POST and PATCH bodies may carry any other property of D365's entities (ProjectCategory, GenerateDataPackage,
# PackageApiExecute, AutoGenerateMapping, RunBusinessLogic, …): accepted and not kept. Refusing them would be a
# 400, which clients read as "exists already" (issue 13).


def _lower_keys(body, what: str) -> dict:
    if not isinstance(body, dict):
        raise ValidationError(f"the body must be a JSON object ({what})")
    return {str(k).lower(): v for k, v in body.items()}


def _text(value, what: str, *, max_length: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a string")
    if len(value) > max_length:
        raise ValidationError(f"{what} is longer than {max_length} characters")
    return value


def _int(value, what: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{what} must be a whole number", code="SequenceOutOfRange")
    return value


class DefinitionGroups:
    """The OData face of projects; every write is a ConfigService write."""

    def __init__(self, config) -> None:
        self._config = config

    # Groups ------------------------------------------------------------------------------------------
    def list_groups(self) -> list[dict]:
        return [group_view(p) for p in self._config.list_projects()]

    def get_group(self, name: str, operation: str | None) -> dict:
        return group_view(self._config.get_project(name, operation))

    def create_group(self, body) -> tuple[dict, bool]:
        """POST: the new group (no entities yet). 409 ProjectExists when that name and operation exist."""
        b = _lower_keys(body, "DataManagementDefinitionGroups")
        name = b.get("name")
        if not isinstance(name, str) or not name:
            raise ValidationError("the body needs Name", code="MissingParameter")
        operation = operation_of(b.get("operationtype") or "Import")
        description = _text(b.get("description"), "Description", max_length=1000)
        saved = self._config.create_project(
            {"operation": operation, "description": description, "entities": []}, name
        )
        return group_view(saved.value), saved.created

    def patch_group(self, name: str, operation: str | None, body) -> dict:
        b = _lower_keys(body, "DataManagementDefinitionGroups")
        project = self._config.get_project(name, operation)
        if "name" in b and str(b["name"]).lower() != project.name.lower():
            raise ValidationError("Name is the key and cannot change; create a new group", code="KeyChange")
        if "operationtype" in b and operation_of(b["operationtype"]) != project.operation:
            raise ValidationError("OperationType is part of the key and cannot change", code="KeyChange")
        patch = {}
        if "description" in b:
            patch["description"] = _text(b.get("description"), "Description", max_length=1000)
        if not patch:
            return group_view(project)
        saved = self._config.patch_project(name, patch, operation=project.operation)
        return group_view(saved.value)

    def delete_group(self, name: str, operation: str | None) -> bool:
        return self._config.delete_project(name, operation=operation)

    # Details -----------------------------------------------------------------------------------------
    def list_details(self) -> list[dict]:
        out = []
        for project in self._config.list_projects():
            out += detail_views(project, self._config)
        return out

    def _detail_index(self, project: cfg.Project, entity_name: str) -> int:
        wanted = entity_name.casefold()
        for i, pe in enumerate(project.entities):
            entity = self._config.find_entity(pe.entity)
            names = {pe.entity.casefold()}
            if entity is not None:
                names |= {entity.name.casefold(), entity.label.casefold()}
            if wanted in names:
                return i
        from shared.errors import NotFoundError

        raise NotFoundError(
            f"the definition group {project.name!r} has no entity {entity_name!r}", code="DetailNotFound"
        )

    def get_detail(self, group: str, entity_name: str, operation: str | None) -> dict:
        project = self._config.get_project(group, operation)
        index = self._detail_index(project, entity_name)
        target = project.entities[index].entity
        return next(d for d in detail_views(project, self._config) if d["TargetEntity"] == target)

    def _entity_body(self, b: dict, current: dict | None) -> dict:
        entity_name = b.get("entityname") or b.get("targetentity") or (current or {}).get("entity")
        if not isinstance(entity_name, str) or not entity_name.strip():
            raise ValidationError("the body needs EntityName", code="MissingParameter")
        entity = self._config.find_entity(entity_name)
        if entity is None:
            raise ValidationError(
                f"EntityName: there is no data entity {entity_name!r}", code="UnknownEntity"
            )
        cur_unit, cur_level, cur_in = unpack_sequence((current or {}).get("sequence", 1))
        sequence = pack_sequence(
            _int(b.get("executionunit"), "ExecutionUnit", cur_unit),
            _int(b.get("levelinexecutionunit"), "LevelInExecutionUnit", cur_level),
            _int(b.get("sequenceinlevel"), "SequenceInLevel", cur_in),
        )
        out = dict(current or {})
        out.update(
            {
                "entity": entity.name,
                "format": _text(b.get("sourceformat"), "SourceFormat", max_length=64)
                or (current or {}).get("format")
                or "CSV",
                "sequence": sequence,
            }
        )
        if "excelsheetname" in b:
            out["sheet"] = _text(b.get("excelsheetname"), "ExcelSheetName", max_length=31) or None
        return out

    def create_detail(self, body) -> dict:
        """POST: adds an entity to its group. 409 DetailExists when the group has it already."""
        from shared.errors import ConflictError

        b = _lower_keys(body, "DataManagementDefinitionGroupDetails")
        group = b.get("definitiongroupid")
        if not isinstance(group, str) or not group:
            raise ValidationError("the body needs DefinitionGroupId", code="MissingParameter")
        operation = operation_of(b["operationtype"]) if b.get("operationtype") else None
        new = self._entity_body(b, None)
        if operation is None:
            operation = self._operation_for_new_detail(group, new["entity"])
        project = self._config.get_project(group, operation)
        docs = cfg.project_to_json(project)["entities"]
        if any(d["entity"].casefold() == new["entity"].casefold() for d in docs):
            raise ConflictError(
                f"the definition group {project.name!r} has the entity {new['entity']!r} already",
                code="DetailExists",
            )
        saved = self._config.patch_project(
            project.name, {"entities": [*docs, new]}, operation=project.operation
        )
        return next(d for d in detail_views(saved.value, self._config) if d["TargetEntity"] == new["entity"])

    def _operation_for_new_detail(self, group: str, entity: str) -> str | None:
        """A detail POST without OperationType whose group name an import and an export group share: the one
        group of the two without this entity yet (a client adds the entities of the group it just made);
        None (then 409 AmbiguousProject) when that does not decide."""
        candidates = []
        for operation in cfg.OPERATIONS:
            project = self._config.find_project(group, operation)
            if project is not None and not any(
                pe.entity.casefold() == entity.casefold() for pe in project.entities
            ):
                candidates.append(operation)
        shared = all(self._config.find_project(group, op) is not None for op in cfg.OPERATIONS)
        return candidates[0] if shared and len(candidates) == 1 else None

    def patch_detail(self, group: str, entity_name: str, operation: str | None, body) -> dict:
        b = _lower_keys(body, "DataManagementDefinitionGroupDetails")
        project = self._config.get_project(group, operation)
        index = self._detail_index(project, entity_name)
        docs = cfg.project_to_json(project)["entities"]
        for key in ("definitiongroupid", "entityname", "targetentity"):
            b.pop(key, None)  # the key: never changed by a PATCH
        docs[index] = self._entity_body(b, docs[index])
        saved = self._config.patch_project(project.name, {"entities": docs}, operation=project.operation)
        target = docs[index]["entity"]
        return next(d for d in detail_views(saved.value, self._config) if d["TargetEntity"] == target)

    def delete_detail(self, group: str, entity_name: str, operation: str | None) -> None:
        project = self._config.get_project(group, operation)
        index = self._detail_index(project, entity_name)
        docs = cfg.project_to_json(project)["entities"]
        del docs[index]
        self._config.patch_project(project.name, {"entities": docs}, operation=project.operation)

    # A group from a package manifest -------------------------------------------------------------------
    def create_from_manifest(self, name: str, manifest) -> cfg.Project | None:
        """ImportFromPackage into a group that does not exist: D365 makes the project from the package. The
        manifest's entities that are configured here, each with its source format (CSV when that format is not
        defined), its sequence and its field mapping. None when another caller created it meanwhile."""
        from shared.errors import ConflictError
        from shared.formats.package_manifest import ordered_entities
        from shared.services.package_import import manifest_mapping

        entities, seen = [], set()
        for me in ordered_entities(manifest):
            entity = self._config.find_entity((me.target_entity or "").strip() or me.entity_name)
            if entity is None:
                entity = self._config.find_entity(me.entity_name)
            if entity is None or entity.name.casefold() in seen:
                continue
            seen.add(entity.name.casefold())
            fmt = (me.source_format or "").strip() or "CSV"
            try:
                self._config.get_format(fmt)
            except Exception:
                fmt = "CSV"
            try:
                sequence = pack_sequence(me.execution_unit, me.level_in_execution_unit, me.sequence_in_level)
            except ValidationError:
                sequence = len(entities) + 1
            entities.append(
                {
                    "entity": entity.name,
                    "format": fmt,
                    "sequence": sequence,
                    "mapping": manifest_mapping(me, entity),
                    "sheet": (me.excel_sheet_name or None) if fmt.upper() == "EXCEL" else None,
                }
            )
        body = {"operation": "import", "description": manifest.description or "", "entities": entities}
        try:
            return self._config.create_project(body, name).value
        except ConflictError:
            return None
