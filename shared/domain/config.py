"""Configuration documents (entities, formats, transforms, projects, jobs): parsing, validation, JSON shapes.

Every parse function takes the camelCase JSON of the management API and either returns a typed object or
raises ValidationError naming the field at fault. Cross-document checks (a project naming a missing
entity) live in the configuration service.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from shared.domain.schema import FIELD_TYPES, FORMAT_KINDS, Entity, Field, SourceFormat
from shared.errors import ValidationError

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")
RECURRENCE_UNITS = ("minutes", "hours", "days", "weeks", "months")
OPERATIONS = ("import", "export")
JOB_MODES = ("file", "package")
MAX_ROW_PROPERTIES = 252  # Azure Table storage, excluding PartitionKey, RowKey and Timestamp


def check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValidationError(
            f"{what} name {name!r} is not valid: use 1-64 letters, digits, '_' or '-', starting with a letter",
            code="InvalidName",
        )
    return name


def _obj(body: Any, what: str) -> dict:
    if not isinstance(body, dict):
        raise ValidationError(f"the {what} must be a JSON object")
    return body


def _unknown(body: dict, allowed: set[str], path: str) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        where = f"{path}: " if path else ""
        raise ValidationError(
            f"{where}unknown field(s) {', '.join(extra)}; allowed: {', '.join(sorted(allowed))}"
        )


def _str(
    body: dict, key: str, path: str, *, required: bool = False, default: str | None = None
) -> str | None:
    value = body.get(key, default)
    if value is None:
        if required:
            raise ValidationError(f"{path}{key} is required")
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{path}{key} must be a string")
    return value


def _bool(body: dict, key: str, path: str, default: bool) -> bool:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ValidationError(f"{path}{key} must be true or false")
    return value


def _int(body: dict, key: str, path: str, default: int | None, *, minimum: int | None = None) -> int | None:
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{path}{key} must be an integer")
    if minimum is not None and value < minimum:
        raise ValidationError(f"{path}{key} must be at least {minimum}")
    return value


def parse_datetime(value: Any, path: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{path} must be an ISO-8601 date-time string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationError(f"{path}: {value!r} is not an ISO-8601 date-time") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def parse_guid(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{path} must be a GUID string")
    try:
        return str(uuid.UUID(value.strip().strip("{}")))
    except ValueError as exc:
        raise ValidationError(f"{path}: {value!r} is not a GUID") from exc


# Entities ------------------------------------------------------------------------------------


def parse_entity(name: str, body: Any) -> Entity:
    check_name(name, "entity")
    body = _obj(body, "entity")
    _unknown(body, {"label", "fields", "keys", "companySpecific"}, "")
    raw_fields = body.get("fields")
    if not isinstance(raw_fields, list) or not raw_fields:
        raise ValidationError("fields must be a non-empty list")
    fields: list[Field] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_fields):
        path = f"fields[{i}]."
        raw = _obj(raw, f"field {i}")
        _unknown(raw, {"name", "type", "required", "maxLength", "values"}, f"fields[{i}]")
        fname = _str(raw, "name", path, required=True)
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$", fname or ""):
            raise ValidationError(f"{path}name {fname!r} is not valid: letters, digits and '_' only")
        if fname.upper() in seen or fname.upper() in ("PARTITIONKEY", "ROWKEY", "TIMESTAMP", "COMPANY"):
            raise ValidationError(f"{path}name {fname!r} is duplicated or reserved")
        seen.add(fname.upper())
        ftype = _str(raw, "type", path, default="string")
        if ftype not in FIELD_TYPES:
            raise ValidationError(
                f"{path}type {ftype!r} is not a field type; use one of {', '.join(FIELD_TYPES)}"
            )
        values = raw.get("values")
        if ftype == "enum":
            if (
                not isinstance(values, list)
                or not values
                or not all(isinstance(v, str) and v for v in values)
            ):
                raise ValidationError(f"{path}values must list the enum's values (non-empty strings)")
        elif values is not None:
            raise ValidationError(f"{path}values is only allowed on enum fields")
        max_length = _int(raw, "maxLength", path, None, minimum=1)
        if max_length is not None and ftype != "string":
            raise ValidationError(f"{path}maxLength is only allowed on string fields")
        fields.append(
            Field(
                name=fname,
                type=ftype,
                required=_bool(raw, "required", path, False),
                max_length=max_length,
                values=tuple(values or ()),
            )
        )
    # A Table row holds at most 252 custom properties; ints and decimals also store a Double shadow for
    # filtering, and every row carries the company and the modification time.
    properties = len(fields) + sum(f.type in ("int", "decimal") for f in fields) + 2
    if properties > MAX_ROW_PROPERTIES:
        raise ValidationError(
            f"fields: the entity needs {properties} stored properties (ints and decimals count twice), more than "
            f"the {MAX_ROW_PROPERTIES} a Table row holds; split it into several entities",
            code="TooManyFields",
        )
    keys = body.get("keys")
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
        raise ValidationError("keys must be a non-empty list of field names")
    by_upper = {f.name.upper(): f.name for f in fields}
    canonical_keys = []
    for k in keys:
        if k.upper() not in by_upper:
            raise ValidationError(
                f"keys: {k!r} is not among the fields ({', '.join(f.name for f in fields)})"
            )
        canonical_keys.append(by_upper[k.upper()])
    # Key fields are always required: a record without its key cannot be stored.
    fields = [replace(f, required=True) if f.name in canonical_keys else f for f in fields]
    return Entity(
        name=name,
        label=_str(body, "label", "", default=name) or name,
        fields=tuple(fields),
        keys=tuple(canonical_keys),
        company_specific=_bool(body, "companySpecific", "", True),
    )


def entity_to_json(entity: Entity) -> dict:
    fields = []
    for f in entity.fields:
        item: dict[str, Any] = {"name": f.name, "type": f.type, "required": f.required}
        if f.max_length is not None:
            item["maxLength"] = f.max_length
        if f.values:
            item["values"] = list(f.values)
        fields.append(item)
    return {
        "name": entity.name,
        "label": entity.label,
        "companySpecific": entity.company_specific,
        "keys": list(entity.keys),
        "fields": fields,
    }


# Source data formats ---------------------------------------------------------------------------

_NET_TOKENS = [
    ("yyyy", "%Y"),
    ("MM", "%m"),
    ("dd", "%d"),
    ("HH", "%H"),
    ("mm", "%M"),
    ("ss", "%S"),
    ("fff", "%f"),
]


def dotnet_to_strftime(pattern: str) -> str:
    """D365 users write `yyyy-MM-dd`; Python wants `%Y-%m-%d`. Patterns already using % pass through."""
    if "%" in pattern:
        return pattern
    out = pattern
    for token, repl in _NET_TOKENS:
        out = out.replace(token, repl)
    return out


def parse_format(name: str, body: Any) -> SourceFormat:
    check_name(name, "format")
    body = _obj(body, "format")
    allowed = {
        "kind",
        "delimiter",
        "textQualifier",
        "encoding",
        "headerRow",
        "dateFormat",
        "datetimeFormat",
        "decimalSeparator",
    }
    _unknown(body, allowed, "")
    kind = _str(body, "kind", "", default="csv")
    if kind not in FORMAT_KINDS:
        raise ValidationError(f"kind {kind!r} is not a format kind; use one of {', '.join(FORMAT_KINDS)}")
    delimiter = _str(body, "delimiter", "", default=",")
    if delimiter in ("\\t", "tab", "TAB"):
        delimiter = "\t"
    if not delimiter or len(delimiter) != 1:
        raise ValidationError("delimiter must be a single character (or 'tab')")
    qualifier = _str(body, "textQualifier", "", default='"')
    if qualifier is not None and len(qualifier) > 1:
        raise ValidationError("textQualifier must be one character or empty")
    encoding = _str(body, "encoding", "")
    if encoding:
        import codecs

        try:
            encoding = codecs.lookup(encoding).name
        except LookupError as exc:
            raise ValidationError(f"encoding {encoding!r} is not known") from exc
    decimal_sep = _str(body, "decimalSeparator", "", default=".")
    if decimal_sep not in (".", ","):
        raise ValidationError("decimalSeparator must be '.' or ','")
    return SourceFormat(
        name=name,
        kind=kind,
        delimiter=delimiter,
        text_qualifier=qualifier or "",
        encoding=encoding or None,
        header_row=_bool(body, "headerRow", "", True),
        date_format=dotnet_to_strftime(_str(body, "dateFormat", "", default="yyyy-MM-dd") or "yyyy-MM-dd"),
        datetime_format=dotnet_to_strftime(
            _str(body, "datetimeFormat", "", default="yyyy-MM-dd HH:mm:ss") or "yyyy-MM-dd HH:mm:ss"
        ),
        decimal_separator=decimal_sep,
        extra={"source": body},
    )


def format_to_json(fmt: SourceFormat) -> dict:
    return {
        "name": fmt.name,
        "kind": fmt.kind,
        "delimiter": fmt.delimiter,
        "textQualifier": fmt.text_qualifier,
        "encoding": fmt.encoding,
        "headerRow": fmt.header_row,
        "dateFormat": fmt.date_format,
        "datetimeFormat": fmt.datetime_format,
        "decimalSeparator": fmt.decimal_separator,
    }


# Projects ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MappingRule:
    source: str
    target: str
    default: Any = None


@dataclass(frozen=True)
class ProjectEntity:
    entity: str
    format: str = "CSV"
    sequence: int = 1
    mapping: tuple[MappingRule, ...] = ()
    transforms: tuple[str, ...] = ()
    sheet: str | None = None


@dataclass(frozen=True)
class Project:
    name: str
    operation: str
    description: str = ""
    filter: str | None = None
    entities: tuple[ProjectEntity, ...] = ()

    def ordered_entities(self) -> list[ProjectEntity]:
        return sorted(self.entities, key=lambda e: e.sequence)


def parse_project(name: str, body: Any) -> Project:
    check_name(name, "project")
    body = _obj(body, "project")
    _unknown(body, {"operation", "description", "filter", "entities"}, "")
    operation = _str(body, "operation", "", required=True)
    if operation not in OPERATIONS:
        raise ValidationError(f"operation {operation!r} must be 'import' or 'export'")
    raw_entities = body.get("entities")
    if not isinstance(raw_entities, list) or not raw_entities:
        raise ValidationError("entities must be a non-empty list")
    entities = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_entities):
        path = f"entities[{i}]."
        raw = _obj(raw, f"entities[{i}]")
        _unknown(raw, {"entity", "format", "sequence", "mapping", "transforms", "sheet"}, f"entities[{i}]")
        ename = _str(raw, "entity", path, required=True)
        if ename.upper() in seen:
            raise ValidationError(f"{path}entity {ename!r} is listed twice")
        seen.add(ename.upper())
        mapping = []
        for j, rule in enumerate(raw.get("mapping") or []):
            rpath = f"{path}mapping[{j}]."
            rule = _obj(rule, f"{rpath}")
            _unknown(rule, {"source", "target", "default"}, rpath.rstrip("."))
            target = _str(rule, "target", rpath, required=True)
            source = _str(rule, "source", rpath)
            default = rule.get("default")
            if default is not None and not isinstance(default, str | int | float | bool):
                raise ValidationError(f"{rpath}default must be a string, number or boolean")
            if source is None and default is None:
                raise ValidationError(f"{rpath} needs a source column or a default")
            mapping.append(MappingRule(source=source or "", target=target, default=default))
        transforms = raw.get("transforms") or []
        if not isinstance(transforms, list) or not all(isinstance(t, str) for t in transforms):
            raise ValidationError(f"{path}transforms must be a list of transform names")
        entities.append(
            ProjectEntity(
                entity=ename,
                format=_str(raw, "format", path, default="CSV") or "CSV",
                sequence=_int(raw, "sequence", path, i + 1, minimum=0) or 0,
                mapping=tuple(mapping),
                transforms=tuple(transforms),
                sheet=_str(raw, "sheet", path),
            )
        )
    flt = _str(body, "filter", "")
    if flt is not None and operation != "export":
        raise ValidationError("filter applies to export projects only")
    return Project(
        name=name,
        operation=operation,
        description=_str(body, "description", "", default="") or "",
        filter=flt or None,
        entities=tuple(entities),
    )


def project_to_json(project: Project) -> dict:
    return {
        "name": project.name,
        "operation": project.operation,
        "description": project.description,
        "filter": project.filter,
        "entities": [
            {
                "entity": e.entity,
                "format": e.format,
                "sequence": e.sequence,
                "mapping": [
                    {"source": m.source, "target": m.target, "default": m.default} for m in e.mapping
                ],
                "transforms": list(e.transforms),
                "sheet": e.sheet,
            }
            for e in project.entities
        ],
    }


# Jobs --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recurrence:
    unit: str = "minutes"
    interval: int = 1
    start: datetime | None = None
    end: datetime | None = None
    count: int | None = None


@dataclass(frozen=True)
class Monitoring:
    unit: str = "minutes"
    interval: int = 5
    backlog_threshold: int = 100


@dataclass(frozen=True)
class PolicyEntry:
    application_id: str
    enabled: bool = True


@dataclass(frozen=True)
class Job:
    activity_id: str
    name: str
    project: str
    description: str = ""
    enabled: bool = True
    mode: str = "file"
    process_in_order: bool = False
    process_on_arrival: bool = False
    company: str | None = None
    recurrence: Recurrence | None = None
    monitoring: Monitoring | None = None
    prevent_upload_when_zero_records: bool = False
    redelivery_minutes: int = 30
    incremental: bool = False
    authorization_policy: tuple[PolicyEntry, ...] = field(default=())

    def allows(self, app_id: str) -> bool:
        app_id = app_id.lower()
        return any(p.enabled and p.application_id == app_id for p in self.authorization_policy)


def _parse_recurrence(raw: Any, path: str) -> Recurrence | None:
    if raw is None:
        return None
    raw = _obj(raw, path)
    _unknown(raw, {"unit", "interval", "start", "end", "count"}, path)
    p = f"{path}."
    unit = _str(raw, "unit", p, default="minutes")
    if unit not in RECURRENCE_UNITS:
        raise ValidationError(f"{p}unit {unit!r} must be one of {', '.join(RECURRENCE_UNITS)}")
    interval = _int(raw, "interval", p, 1, minimum=1)
    start = parse_datetime(raw.get("start"), f"{p}start")
    end = parse_datetime(raw.get("end"), f"{p}end")
    count = _int(raw, "count", p, None, minimum=1)
    if start and end and end <= start:
        raise ValidationError(f"{p}end must be after {p}start")
    if end and count:
        raise ValidationError(f"{path}: set an end date or a count, not both")
    return Recurrence(unit=unit, interval=interval or 1, start=start, end=end, count=count)


def _parse_monitoring(raw: Any, path: str) -> Monitoring | None:
    if raw is None:
        return None
    raw = _obj(raw, path)
    _unknown(raw, {"unit", "interval", "backlogThreshold"}, path)
    p = f"{path}."
    unit = _str(raw, "unit", p, default="minutes")
    if unit not in RECURRENCE_UNITS:
        raise ValidationError(f"{p}unit {unit!r} must be one of {', '.join(RECURRENCE_UNITS)}")
    return Monitoring(
        unit=unit,
        interval=_int(raw, "interval", p, 5, minimum=1) or 5,
        backlog_threshold=_int(raw, "backlogThreshold", p, 100, minimum=1) or 100,
    )


JOB_FIELDS = {
    "name",
    "description",
    "project",
    "enabled",
    "mode",
    "processInOrder",
    "processOnArrival",
    "company",
    "recurrence",
    "monitoring",
    "preventUploadWhenZeroRecords",
    "redeliveryMinutes",
    "incremental",
    "authorizationPolicy",
    "activityId",
}


def parse_job(activity_id: str, body: Any) -> Job:
    body = _obj(body, "job")
    _unknown(body, JOB_FIELDS, "")
    body_id = body.get("activityId")
    if body_id is not None and parse_guid(body_id, "activityId") != activity_id:
        raise ValidationError("activityId in the body differs from the one in the path")
    name = _str(body, "name", "", required=True)
    if not name.strip():
        raise ValidationError("name must not be empty")
    mode = _str(body, "mode", "", default="file")
    if mode not in JOB_MODES:
        raise ValidationError(f"mode {mode!r} must be 'file' or 'package'")
    policy_raw = body.get("authorizationPolicy") or []
    if not isinstance(policy_raw, list):
        raise ValidationError("authorizationPolicy must be a list of {applicationId, enabled}")
    policy = []
    for i, raw in enumerate(policy_raw):
        path = f"authorizationPolicy[{i}]"
        raw = _obj(raw, path)
        _unknown(raw, {"applicationId", "enabled"}, path)
        policy.append(
            PolicyEntry(
                application_id=parse_guid(raw.get("applicationId"), f"{path}.applicationId"),
                enabled=_bool(raw, "enabled", f"{path}.", True),
            )
        )
    company = _str(body, "company", "")
    return Job(
        activity_id=activity_id,
        name=name,
        project=_str(body, "project", "", required=True),
        description=_str(body, "description", "", default="") or "",
        enabled=_bool(body, "enabled", "", True),
        mode=mode,
        process_in_order=_bool(body, "processInOrder", "", False),
        process_on_arrival=_bool(body, "processOnArrival", "", False),
        company=company.lower() if company else None,
        recurrence=_parse_recurrence(body.get("recurrence"), "recurrence"),
        monitoring=_parse_monitoring(body.get("monitoring"), "monitoring"),
        prevent_upload_when_zero_records=_bool(body, "preventUploadWhenZeroRecords", "", False),
        redelivery_minutes=_int(body, "redeliveryMinutes", "", 30, minimum=1) or 30,
        incremental=_bool(body, "incremental", "", False),
        authorization_policy=tuple(policy),
    )


def job_to_json(job: Job) -> dict:
    rec = job.recurrence
    mon = job.monitoring
    return {
        "activityId": job.activity_id,
        "name": job.name,
        "description": job.description,
        "project": job.project,
        "enabled": job.enabled,
        "mode": job.mode,
        "processInOrder": job.process_in_order,
        "processOnArrival": job.process_on_arrival,
        "company": job.company,
        "recurrence": None
        if rec is None
        else {
            "unit": rec.unit,
            "interval": rec.interval,
            "start": iso(rec.start),
            "end": iso(rec.end),
            "count": rec.count,
        },
        "monitoring": None
        if mon is None
        else {"unit": mon.unit, "interval": mon.interval, "backlogThreshold": mon.backlog_threshold},
        "preventUploadWhenZeroRecords": job.prevent_upload_when_zero_records,
        "redeliveryMinutes": job.redelivery_minutes,
        "incremental": job.incremental,
        "authorizationPolicy": [
            {"applicationId": p.application_id, "enabled": p.enabled} for p in job.authorization_policy
        ],
    }
