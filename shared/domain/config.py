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

from shared.domain import limits
from shared.domain.limits import MAX_ROW_PROPERTIES
from shared.domain.schema import (
    DEFAULT_FALSE_VALUES,
    DEFAULT_TRUE_VALUES,
    FIELD_TYPES,
    FORMAT_KINDS,
    Entity,
    Field,
    SourceFormat,
)
from shared.errors import ValidationError

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")
FIELD_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
COMPANY_RE = re.compile(limits.COMPANY_PATTERN)
RECURRENCE_UNITS = ("minutes", "hours", "days", "weeks", "months")
OPERATIONS = ("import", "export")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1  # a mapping default is stored as a Table Int64
JOB_MODES = ("file", "package")
DEFAULT_REDELIVERY_MINUTES = 30
# Read-only members of a GET reply that a client may send back unchanged (GET, edit, PUT): ignored on write.
READ_ONLY_FIELDS = {"warnings"}

# XSLT runs on XML input only when the file comes in a data package (D365 applies a manifest's or project's
# transforms to XML source formats only; shared/services/package_import.py); a file job transforms any input.
XML_FORMAT_KINDS = ("xml-element", "xml-attribute")

# Codes of the ValidationErrors below that concern a limit (the message names the field and the limit).
TOO_LONG = "ValueTooLong"
TOO_MANY = "TooManyItems"
OUT_OF_RANGE = "OutOfRange"


def preview(value: Any, limit: int = 60) -> str:
    """repr(value), shortened to about `limit` characters: messages quote what was sent, not all of it."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 12]}…{text[-8:]} ({len(text)} chars)"


def check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or len(name) > limits.NAME_MAX_LENGTH or not NAME_RE.match(name):
        raise ValidationError(
            f"{what} name {preview(name)} is not valid: use 1-{limits.NAME_MAX_LENGTH} letters, digits, '_' "
            "or '-', starting with a letter",
            code="InvalidName",
        )
    return name


def _obj(body: Any, what: str) -> dict:
    if not isinstance(body, dict):
        raise ValidationError(f"the {what} must be a JSON object")
    return body


def _unknown(body: dict, allowed: set[str], path: str) -> None:
    extra = sorted(set(body) - allowed) if len(body) <= 100 else [k for k in body if k not in allowed]
    if extra:
        where = f"{path}: " if path else ""
        shown = ", ".join(preview(k, 40).strip("'\"") for k in extra[:5])
        more = f" and {len(extra) - 5} more" if len(extra) > 5 else ""
        raise ValidationError(f"{where}unknown field(s) {shown}{more}; allowed: {', '.join(sorted(allowed))}")


def _str(
    body: dict,
    key: str,
    path: str,
    *,
    required: bool = False,
    default: str | None = None,
    max_length: int | None = None,
) -> str | None:
    value = body.get(key)
    if value is None:  # absent and null alike mean the default
        value = default
    if value is None:
        if required:
            raise ValidationError(f"{path}{key} is required")
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{path}{key} must be a string")
    if max_length is not None and len(value) > max_length:
        raise ValidationError(
            f"{path}{key} is {len(value)} characters long; the limit is {max_length}", code=TOO_LONG
        )
    return value


def _bool(body: dict, key: str, path: str, default: bool) -> bool:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ValidationError(f"{path}{key} must be true or false")
    return value


def _int(body: dict, key: str, path: str, default: int | None, *, minimum: int, maximum: int) -> int | None:
    """An integer within [minimum, maximum] (absent or null: `default`); the message names the range, never
    the value (which may have 5,000 digits)."""
    value = body.get(key)
    if value is None:
        value = default
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{path}{key} must be an integer")
    if not minimum <= value <= maximum:
        raise ValidationError(f"{path}{key} must be between {minimum} and {maximum}", code=OUT_OF_RANGE)
    return value


def _list(body: dict, key: str, path: str, *, max_items: int, required: bool = False) -> list:
    """A JSON list of at most `max_items` items (non-empty when `required`); absent or null is []."""
    value = body.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list) or (required and not value):
        raise ValidationError(f"{path}{key} must be a {'non-empty ' if required else ''}list")
    if len(value) > max_items:
        raise ValidationError(f"{path}{key} has {len(value)} items; the limit is {max_items}", code=TOO_MANY)
    return value


_DATETIME_SHAPE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_datetime(value: Any, path: str) -> datetime | None:
    """An ISO-8601 date-time (UTC when it names no offset) within limits.DATETIME_MIN/MAX, both as written
    and in UTC."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40 or not _DATETIME_SHAPE.match(value):
        raise ValidationError(f"{path} must be an ISO-8601 date-time string (yyyy-MM-ddTHH:mm:ssZ)")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise ValidationError(f"{path}: {preview(value)} is not an ISO-8601 date-time") from exc
    written = parsed.year
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    low, high = limits.DATETIME_MIN, limits.DATETIME_MAX
    # Compare the year as written first: converting year 1 or 9999 with an offset overflows.
    if not low.year <= written <= high.year or not low <= parsed <= high:
        raise ValidationError(
            f"{path} must be between {iso(low)} and {iso(high.replace(microsecond=0))}", code=OUT_OF_RANGE
        )
    return parsed


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def parse_guid(value: Any, path: str) -> str:
    if not isinstance(value, str) or len(value) > limits.GUID_MAX_LENGTH:
        raise ValidationError(f"{path} must be a GUID string")
    try:
        return str(uuid.UUID(value.strip().strip("{}")))
    except ValueError as exc:
        raise ValidationError(f"{path}: {preview(value)} is not a GUID") from exc


# Entities ------------------------------------------------------------------------------------


def parse_entity(name: str, body: Any) -> Entity:
    check_name(name, "entity")
    body = _obj(body, "entity")
    _unknown(body, {"label", "fields", "keys", "companySpecific", "publicCollectionName"}, "")
    raw_fields = _list(body, "fields", "", max_items=limits.FIELDS_MAX, required=True)
    fields: list[Field] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_fields):
        path = f"fields[{i}]."
        raw = _obj(raw, f"field {i}")
        _unknown(raw, {"name", "type", "required", "maxLength", "values"}, f"fields[{i}]")
        fname = _str(raw, "name", path, required=True)
        if len(fname) > limits.FIELD_NAME_MAX_LENGTH or not FIELD_NAME_RE.match(fname):
            raise ValidationError(
                f"{path}name {preview(fname)} is not valid: 1-{limits.FIELD_NAME_MAX_LENGTH} letters, digits "
                "and '_', not starting with a digit"
            )
        if fname.upper() in seen or fname.upper() in ("PARTITIONKEY", "ROWKEY", "TIMESTAMP", "COMPANY"):
            raise ValidationError(f"{path}name {fname!r} is duplicated or reserved")
        seen.add(fname.upper())
        ftype = _str(raw, "type", path, default="string")
        if ftype not in FIELD_TYPES:
            raise ValidationError(
                f"{path}type {preview(ftype)} is not a field type; use one of {', '.join(FIELD_TYPES)}"
            )
        if ftype == "enum":
            values = _list(raw, "values", path, max_items=limits.ENUM_VALUES_MAX, required=True)
            for j, v in enumerate(values):
                if not isinstance(v, str) or not v:
                    raise ValidationError(f"{path}values[{j}] must be a non-empty string")
                if len(v) > limits.ENUM_VALUE_MAX_LENGTH:
                    raise ValidationError(
                        f"{path}values[{j}] is {len(v)} characters long; the limit is "
                        f"{limits.ENUM_VALUE_MAX_LENGTH}",
                        code=TOO_LONG,
                    )
            if len(set(values)) != len(values):
                raise ValidationError(f"{path}values lists a value twice")
        elif raw.get("values") is not None:
            raise ValidationError(f"{path}values is only allowed on enum fields")
        else:
            values = []
        max_length = _int(raw, "maxLength", path, None, minimum=1, maximum=limits.STRING_MAX_LENGTH)
        if max_length is not None and ftype != "string":
            raise ValidationError(f"{path}maxLength is only allowed on string fields")
        fields.append(
            Field(
                name=fname,
                type=ftype,
                required=_bool(raw, "required", path, False),
                max_length=max_length,
                values=tuple(values),
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
    keys = _list(body, "keys", "", max_items=limits.KEYS_MAX, required=True)
    if not all(isinstance(k, str) for k in keys):
        raise ValidationError("keys must be a non-empty list of field names")
    by_upper = {f.name.upper(): f.name for f in fields}
    canonical_keys: list[str] = []
    for k in keys:
        if k.upper() not in by_upper:
            raise ValidationError(
                f"keys: {preview(k)} is not among the fields ({', '.join(f.name for f in fields)})"
            )
        if by_upper[k.upper()] in canonical_keys:
            raise ValidationError(f"keys: {k!r} is listed twice")
        canonical_keys.append(by_upper[k.upper()])
    # Key fields are always required: a record without its key cannot be stored. The user's own `required`
    # and key spellings are kept for GET (issue 12: what a PUT sent is what a GET returns).
    written = {
        "keys": list(keys),
        "required": {f.name: f.required for f in fields if f.name in canonical_keys},
    }
    fields = [replace(f, required=True) if f.name in canonical_keys else f for f in fields]
    return Entity(
        name=name,
        label=_str(body, "label", "", default=name, max_length=limits.LABEL_MAX_LENGTH) or name,
        fields=tuple(fields),
        keys=tuple(canonical_keys),
        company_specific=_bool(body, "companySpecific", "", True),
        public_collection_name=_collection_name(body),
        written=written,
    )


COLLECTION_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# /data routes these to the definition-group endpoints (shared/api/odata_entity_sets.py), never to an entity.
RESERVED_COLLECTION_PREFIX = "datamanagementdefinitiongroup"


def _collection_name(body: dict) -> str | None:
    """`publicCollectionName`: an OData identifier (letters, digits, '_'; not starting with a digit), at most
    128 characters, not one of the definition-group sets. Unique across entities (the configuration
    service checks that)."""
    value = _str(body, "publicCollectionName", "")
    if value is None or value == "":
        return None
    if not COLLECTION_NAME_RE.match(value) or value.lower().startswith(RESERVED_COLLECTION_PREFIX):
        raise ValidationError(
            f"publicCollectionName {preview(value)} is not valid: an OData identifier of 1-128 letters, digits "
            "and '_', not starting with a digit, and not starting with DataManagementDefinitionGroup",
            code="InvalidCollectionName",
        )
    return value


def entity_to_json(entity: Entity) -> dict:
    fields = []
    required_written = entity.written.get("required", {})
    for f in entity.fields:
        item: dict[str, Any] = {
            "name": f.name,
            "type": f.type,
            "required": required_written.get(f.name, f.required),
        }
        if f.max_length is not None:
            item["maxLength"] = f.max_length
        if f.values:
            item["values"] = list(f.values)
        fields.append(item)
    return {
        "name": entity.name,
        "label": entity.label,
        "companySpecific": entity.company_specific,
        "keys": list(entity.written.get("keys", entity.keys)),
        "fields": fields,
    } | ({"publicCollectionName": entity.public_collection_name} if entity.public_collection_name else {})


# Source data formats ---------------------------------------------------------------------------


def parse_encoding(value: Any, path: str) -> str | None:
    """A text encoding's canonical codec name (None: detect from the BOM, else UTF-8).

    Only what the codec registry flags as a text encoding (`CodecInfo._is_text_encoding`, False for the
    bytes-to-bytes codecs base64, zlib, rot13, hex, ...) and that describes a file's characters
    (limits.NOT_FILE_ENCODINGS). Source: CPython Lib/codecs.py (CodecInfo) and Lib/encodings/*.py."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{path} must be a string")
    if len(value) > limits.ENCODING_MAX_LENGTH:
        raise ValidationError(
            f"{path} is {len(value)} characters long; the limit is {limits.ENCODING_MAX_LENGTH}",
            code=TOO_LONG,
        )
    import codecs

    try:
        info = codecs.lookup(value)
    except LookupError:
        info = None
    if info is None or not getattr(info, "_is_text_encoding", True) or info.name in limits.NOT_FILE_ENCODINGS:
        raise ValidationError(
            f"{path} {preview(value)} is not a text encoding; use a character set such as utf-8, utf-16-le, "
            "cp1252 or iso8859-1",
            code="UnknownEncoding",
        )
    return value  # kept as written; SourceFormat.codec gives the canonical name


def _one_char(value: str, path: str, *, empty: bool) -> str:
    if value in ("\r", "\n") or len(value) > 1 or (not value and not empty):
        expected = "one character (not a line break)" + (" or empty" if empty else "")
        raise ValidationError(f"{path} must be {expected}")
    return value


THOUSANDS_SEPARATORS = (",", ".", " ", "'", "\u00a0", "\u202f")  # comma, dot, space, apostrophe, NBSP, NNBSP
FORMAT_FIELDS = {
    "kind",
    "delimiter",
    "textQualifier",
    "encoding",
    "headerRow",
    "dateFormat",
    "datetimeFormat",
    "acceptIsoDates",
    "decimalSeparator",
    "thousandsSeparator",
    *READ_ONLY_FIELDS,  # a GET's reply may be PUT back
    "trueValues",
    "falseValues",
}


def _words(body: dict, key: str) -> tuple[str, ...] | None:
    """A list of yes (or no) words, kept as written; null or absent: the defaults."""
    raw = body.get(key)
    if raw is None:
        return None
    values = _list(body, key, "", max_items=limits.BOOL_WORDS_MAX, required=True)
    for i, word in enumerate(values):
        if not isinstance(word, str) or not word.strip():
            raise ValidationError(f"{key}[{i}] must be a non-empty string")
        if len(word) > limits.BOOL_WORD_MAX_LENGTH:
            raise ValidationError(
                f"{key}[{i}] is {len(word)} characters long; the limit is {limits.BOOL_WORD_MAX_LENGTH}",
                code=TOO_LONG,
            )
    folded = [w.strip().casefold() for w in values]
    if len(set(folded)) != len(folded):
        raise ValidationError(f"{key} lists a word twice (words match ignoring case)")
    return tuple(values)


def _pattern(body: dict, key: str, default: str, *, with_time: bool) -> str:
    from shared.formats.conversion import check_date_pattern

    pattern = _str(body, key, "", default=default, max_length=limits.PATTERN_MAX_LENGTH) or default
    problem = check_date_pattern(pattern, with_time=with_time)
    if problem:
        raise ValidationError(f"{key} {preview(pattern)} is not usable: {problem}", code="InvalidDateFormat")
    return pattern


def parse_format(name: str, body: Any) -> SourceFormat:
    """A source data format from its JSON. Every value is kept as written (GET returns what PUT sent);
    readers derive what they need (SourceFormat.delimiter_char, .codec, conversion.strptime_pattern).

    Raises ValidationError (400) naming the field: an unknown kind, a delimiter that is not one
    character or word, an encoding that is no text encoding, a date pattern that cannot read the dates it
    writes (InvalidDateFormat), separators that are not allowed or equal, yes/no words that repeat or
    appear in both lists."""
    check_name(name, "format")
    body = _obj(body, "format")
    _unknown(body, FORMAT_FIELDS, "")
    kind = _str(body, "kind", "", default="csv")
    if kind not in FORMAT_KINDS:
        raise ValidationError(
            f"kind {preview(kind)} is not a format kind; use one of {', '.join(FORMAT_KINDS)}"
        )
    delimiter = _str(body, "delimiter", "", default=",")
    # A word ("tab") is kept as written; the character it names is what must be valid.
    char = "\t" if delimiter in ("\\t", "tab", "TAB") else delimiter
    if not char or len(char) != 1 or char in "\r\n":
        raise ValidationError("delimiter must be a single character (or 'tab'), not a line break")
    qualifier = _one_char(_str(body, "textQualifier", "", default='"') or "", "textQualifier", empty=True)
    if qualifier == char:
        raise ValidationError("textQualifier must differ from the delimiter")
    encoding = parse_encoding(body.get("encoding"), "encoding")
    decimal_sep = _str(body, "decimalSeparator", "", default=".")
    if decimal_sep not in (".", ","):
        raise ValidationError("decimalSeparator must be '.' or ','")
    thousands = _str(body, "thousandsSeparator", "", default="")
    if thousands and thousands not in THOUSANDS_SEPARATORS:
        raise ValidationError(
            "thousandsSeparator must be empty (none), ',', '.', ' ', \"'\", a no-break space (U+00A0) or a "
            "narrow no-break space (U+202F)"
        )
    if thousands and thousands == decimal_sep:
        raise ValidationError(f"thousandsSeparator must differ from the decimalSeparator {decimal_sep!r}")
    true_values = _words(body, "trueValues")
    false_values = _words(body, "falseValues")
    both = {w.strip().casefold() for w in true_values or DEFAULT_TRUE_VALUES} & {
        w.strip().casefold() for w in false_values or DEFAULT_FALSE_VALUES
    }
    if both:
        raise ValidationError(
            f"falseValues: {', '.join(sorted(both))} cannot mean both yes and no (trueValues has it too)"
        )
    date_format = _pattern(body, "dateFormat", "yyyy-MM-dd", with_time=False)
    datetime_format = _pattern(body, "datetimeFormat", "yyyy-MM-dd HH:mm:ss", with_time=True)
    return SourceFormat(
        name=name,
        kind=kind,
        delimiter=delimiter,
        text_qualifier=qualifier,
        encoding=encoding,
        header_row=_bool(body, "headerRow", "", True),
        date_format=date_format,
        datetime_format=datetime_format,
        decimal_separator=decimal_sep,
        thousands_separator=thousands,
        true_values=true_values,
        false_values=false_values,
        accept_iso_dates=_bool(body, "acceptIsoDates", "", False),
        extra={"source": body},
    )


def format_to_json(fmt: SourceFormat) -> dict:
    """The format's JSON, every value as the user wrote it (absent values: their defaults; null words:
    the English defaults)."""
    return {
        "name": fmt.name,
        "kind": fmt.kind,
        "delimiter": fmt.delimiter,
        "textQualifier": fmt.text_qualifier,
        "encoding": fmt.encoding,
        "headerRow": fmt.header_row,
        "dateFormat": fmt.date_format,
        "datetimeFormat": fmt.datetime_format,
        "acceptIsoDates": fmt.accept_iso_dates,
        "decimalSeparator": fmt.decimal_separator,
        "thousandsSeparator": fmt.thousands_separator,
        "trueValues": list(fmt.true_values) if fmt.true_values is not None else None,
        "falseValues": list(fmt.false_values) if fmt.false_values is not None else None,
    }


# Projects ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MappingRule:
    source: str | None  # None: a default-only rule (kept as null, as written)
    target: str
    default: Any = None
    # Value conversions (D365's EntityFieldConversionList): (from, to) pairs, in the order written.
    conversions: tuple[tuple[str, str], ...] = ()

    def as_item(self) -> dict:
        """The rule as formats.mapping.build_mapper takes it."""
        return {
            "source": self.source or None,
            "target": self.target,
            "default": self.default,
            "conversions": [{"from": f, "to": t} for f, t in self.conversions],
        }


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
    # Exports: prefix text cells that a spreadsheet would run as a formula with a quote (writers.py).
    neutralize_formulas: bool = True

    def ordered_entities(self) -> list[ProjectEntity]:
        return sorted(self.entities, key=lambda e: e.sequence)


def _parse_mapping_rule(rule: Any, rpath: str) -> MappingRule:
    rule = _obj(rule, rpath.rstrip("."))
    _unknown(rule, {"source", "target", "default", "conversions"}, rpath.rstrip("."))
    target = _str(rule, "target", rpath, required=True, max_length=limits.FIELD_NAME_MAX_LENGTH)
    source = _str(rule, "source", rpath, max_length=limits.COLUMN_MAX_LENGTH)
    default = rule.get("default")
    if isinstance(default, str):
        if len(default) > limits.DEFAULT_MAX_LENGTH:
            raise ValidationError(
                f"{rpath}default is {len(default)} characters long; the limit is {limits.DEFAULT_MAX_LENGTH}",
                code=TOO_LONG,
            )
    elif isinstance(default, bool) or default is None:
        pass
    elif isinstance(default, int | float):
        if not _INT64_MIN <= default <= _INT64_MAX:  # False for NaN and the infinities too
            raise ValidationError(
                f"{rpath}default must be a number between {_INT64_MIN} and {_INT64_MAX}", code=OUT_OF_RANGE
            )
    else:
        raise ValidationError(f"{rpath}default must be a string, number or boolean")
    if source is None and default is None:
        raise ValidationError(f"{rpath} needs a source column or a default")
    conversions = _parse_conversions(rule, rpath)
    if conversions and not (source or "").strip():
        raise ValidationError(f"{rpath}conversions apply to a source column's values; set source")
    return MappingRule(source=source, target=target, default=default, conversions=conversions)


def _parse_conversions(rule: dict, rpath: str) -> tuple[tuple[str, str], ...]:
    """`conversions`: [{"from": text, "to": text}]. `from` matches a value with its surrounding blanks
    removed, case-sensitively; so two `from`s that differ only in those blanks are the same one (400).
    Whether each `to` suits the target field's type is checked by the configuration service, which knows
    the entity and the format."""
    items = _list(rule, "conversions", rpath, max_items=limits.CONVERSIONS_MAX)
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for k, item in enumerate(items):
        cpath = f"{rpath}conversions[{k}]"
        item = _obj(item, cpath)
        _unknown(item, {"from", "to"}, cpath)
        source = _str(item, "from", f"{cpath}.", required=True, max_length=limits.DEFAULT_MAX_LENGTH)
        target = _str(item, "to", f"{cpath}.", required=True, max_length=limits.DEFAULT_MAX_LENGTH)
        if source.strip() in seen:
            raise ValidationError(
                f"{cpath}.from {preview(source)} is converted twice (values match without surrounding blanks)",
                code="DuplicateConversion",
            )
        seen.add(source.strip())
        pairs.append((source, target))
    return tuple(pairs)


def parse_project(name: str, body: Any) -> Project:
    check_name(name, "project")
    body = _obj(body, "project")
    _unknown(
        body, {"operation", "description", "filter", "entities", "neutralizeFormulas", *READ_ONLY_FIELDS}, ""
    )
    operation = _str(body, "operation", "", required=True)
    if operation not in OPERATIONS:
        raise ValidationError(f"operation {preview(operation)} must be 'import' or 'export'")
    if body.get("entities") is None:
        # Empty is allowed: a definition group made over OData gets its entities one by one (issue 13).
        raise ValidationError("entities must be a list (empty for a project without entities yet)")
    raw_entities = _list(body, "entities", "", max_items=limits.PROJECT_ENTITIES_MAX)
    entities = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_entities):
        path = f"entities[{i}]."
        raw = _obj(raw, f"entities[{i}]")
        _unknown(raw, {"entity", "format", "sequence", "mapping", "transforms", "sheet"}, f"entities[{i}]")
        ename = _str(raw, "entity", path, required=True, max_length=limits.REFERENCE_MAX_LENGTH)
        if not ename.strip():
            raise ValidationError(f"{path}entity must not be empty")
        if ename.upper() in seen:
            raise ValidationError(f"{path}entity {ename!r} is listed twice")
        seen.add(ename.upper())
        rules = _list(raw, "mapping", path, max_items=limits.MAPPING_RULES_MAX)
        mapping = [_parse_mapping_rule(rule, f"{path}mapping[{j}].") for j, rule in enumerate(rules)]
        transforms = _list(raw, "transforms", path, max_items=limits.TRANSFORMS_MAX)
        for j, t in enumerate(transforms):
            if not isinstance(t, str):
                raise ValidationError(f"{path}transforms must be a list of transform names")
            check_name(t, f"{path}transforms[{j}]: transform")
        fmt = _str(raw, "format", path, default="CSV", max_length=limits.NAME_MAX_LENGTH) or "CSV"
        entities.append(
            ProjectEntity(
                entity=ename,
                format=fmt,
                sequence=_int(raw, "sequence", path, i + 1, minimum=0, maximum=limits.SEQUENCE_MAX) or 0,
                mapping=tuple(mapping),
                transforms=tuple(transforms),
                sheet=_str(raw, "sheet", path, max_length=limits.SHEET_MAX_LENGTH),
            )
        )
    flt = _str(body, "filter", "", max_length=limits.FILTER_MAX_LENGTH)
    if flt is not None and operation != "export":
        raise ValidationError("filter applies to export projects only")
    return Project(
        name=name,
        operation=operation,
        description=_str(body, "description", "", default="", max_length=limits.DESCRIPTION_MAX_LENGTH) or "",
        filter=flt,  # as written: "" stays "" (no filter either way)
        entities=tuple(entities),
        neutralize_formulas=_bool(body, "neutralizeFormulas", "", True),
    )


def project_to_json(project: Project) -> dict:
    return {
        "name": project.name,
        "operation": project.operation,
        "description": project.description,
        "filter": project.filter,
        "neutralizeFormulas": project.neutralize_formulas,
        "entities": [
            {
                "entity": e.entity,
                "format": e.format,
                "sequence": e.sequence,
                "mapping": [
                    {
                        "source": m.source,
                        "target": m.target,
                        "default": m.default,
                        "conversions": [{"from": f, "to": t} for f, t in m.conversions],
                    }
                    for m in e.mapping
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
    # start and end as the user wrote them ("2030-06-01T12:00:00+02:00"), returned by GET; the datetimes
    # above are what the scheduler computes with. None: not given as text (built in code).
    start_text: str | None = None
    end_text: str | None = None


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

    @property
    def legal_entity(self) -> str | None:
        """The job's legal entity ID in lower case, as records and messages carry it; `company` keeps the
        user's spelling ("USMF") for GET."""
        return self.company.lower() if self.company else None

    def allows(self, app_id: str) -> bool:
        app_id = app_id.lower()
        return any(p.enabled and p.application_id == app_id for p in self.authorization_policy)

    def resolve_company(self, requested: str | None, what: str = "company") -> str | None:
        """The legal entity a caller's import writes to: the one asked for (checked as an ID), else the
        job's. A job bound to a legal entity writes only to it, so a partner mapped to a `demf` job cannot
        import into `usmf` by naming it. Raises ValidationError (a malformed ID) or ForbiddenError."""
        from shared.errors import ForbiddenError

        wanted = (requested or "").strip().lower()
        if wanted:
            check_company(wanted, what)
        if self.company and wanted and wanted != self.company.lower():
            raise ForbiddenError(
                f"{what} {wanted!r} is not the legal entity of the job {self.name!r} ({self.company.lower()}); "
                "a job imports only into its own legal entity",
                code="LegalEntityNotAllowed",
            )
        return wanted or (self.company or "").lower() or None


def check_company(value: str, what: str = "company") -> None:
    """A legal entity ID as Table partition keys can hold it (ValidationError otherwise)."""
    if len(value) > limits.COMPANY_MAX_LENGTH or not COMPANY_RE.match(value):
        raise ValidationError(
            f"{what} {preview(value)} is not a legal entity ID: 1-{limits.COMPANY_MAX_LENGTH} letters, "
            "digits, '_' or '-', starting with a letter or digit",
            code="InvalidLegalEntity",
        )


def _unit(raw: dict, p: str) -> str:
    unit = _str(raw, "unit", p, default="minutes")
    if unit not in RECURRENCE_UNITS:
        raise ValidationError(f"{p}unit {preview(unit)} must be one of {', '.join(RECURRENCE_UNITS)}")
    return unit


def _parse_recurrence(raw: Any, path: str) -> Recurrence | None:
    if raw is None:
        return None
    raw = _obj(raw, path)
    _unknown(raw, {"unit", "interval", "start", "end", "count"}, path)
    p = f"{path}."
    unit = _unit(raw, p)
    interval = _int(raw, "interval", p, 1, minimum=limits.INTERVAL_MIN, maximum=limits.INTERVAL_MAX)
    start = parse_datetime(raw.get("start"), f"{p}start")
    end = parse_datetime(raw.get("end"), f"{p}end")
    count = _int(
        raw, "count", p, None, minimum=limits.RECURRENCE_COUNT_MIN, maximum=limits.RECURRENCE_COUNT_MAX
    )
    if start and end and end <= start:
        raise ValidationError(f"{p}end must be after {p}start")
    if end and count:
        raise ValidationError(f"{path}: set an end date or a count, not both")
    return Recurrence(
        unit=unit,
        interval=interval or 1,
        start=start,
        end=end,
        count=count,
        start_text=raw.get("start") if start else None,
        end_text=raw.get("end") if end else None,
    )


def _parse_monitoring(raw: Any, path: str) -> Monitoring | None:
    if raw is None:
        return None
    raw = _obj(raw, path)
    _unknown(raw, {"unit", "interval", "backlogThreshold"}, path)
    p = f"{path}."
    unit = _unit(raw, p)
    interval = _int(raw, "interval", p, 5, minimum=limits.INTERVAL_MIN, maximum=limits.INTERVAL_MAX)
    threshold = _int(
        raw,
        "backlogThreshold",
        p,
        100,
        minimum=limits.BACKLOG_THRESHOLD_MIN,
        maximum=limits.BACKLOG_THRESHOLD_MAX,
    )
    return Monitoring(unit=unit, interval=interval or 5, backlog_threshold=threshold or 100)


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
    *READ_ONLY_FIELDS,
}


def parse_job(activity_id: str, body: Any) -> Job:
    body = _obj(body, "job")
    _unknown(body, JOB_FIELDS, "")
    body_id = body.get("activityId")
    if body_id is not None and parse_guid(body_id, "activityId") != activity_id:
        raise ValidationError("activityId in the body differs from the one in the path")
    name = _str(body, "name", "", required=True, max_length=limits.JOB_NAME_MAX_LENGTH)
    if not name.strip():
        raise ValidationError("name must not be empty")
    mode = _str(body, "mode", "", default="file")
    if mode not in JOB_MODES:
        raise ValidationError(f"mode {preview(mode)} must be 'file' or 'package'")
    policy_raw = body.get("authorizationPolicy")
    if policy_raw is not None and not isinstance(policy_raw, list):
        raise ValidationError("authorizationPolicy must be a list of {applicationId, enabled}")
    policy_raw = _list(body, "authorizationPolicy", "", max_items=limits.POLICY_ENTRIES_MAX)
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
    if company:
        check_company(company)
    redelivery = _int(
        body,
        "redeliveryMinutes",
        "",
        DEFAULT_REDELIVERY_MINUTES,
        minimum=limits.REDELIVERY_MINUTES_MIN,
        maximum=limits.REDELIVERY_MINUTES_MAX,
    )
    return Job(
        activity_id=activity_id,
        name=name,
        project=_str(body, "project", "", required=True, max_length=limits.NAME_MAX_LENGTH),
        description=_str(body, "description", "", default="", max_length=limits.DESCRIPTION_MAX_LENGTH) or "",
        enabled=_bool(body, "enabled", "", True),
        mode=mode,
        process_in_order=_bool(body, "processInOrder", "", False),
        process_on_arrival=_bool(body, "processOnArrival", "", False),
        company=company or None,  # as written; Job.legal_entity is the lower-case ID
        recurrence=_parse_recurrence(body.get("recurrence"), "recurrence"),
        monitoring=_parse_monitoring(body.get("monitoring"), "monitoring"),
        prevent_upload_when_zero_records=_bool(body, "preventUploadWhenZeroRecords", "", False),
        redelivery_minutes=redelivery or DEFAULT_REDELIVERY_MINUTES,
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
            "start": rec.start_text or iso(rec.start),  # as written (issue 12), not converted to UTC
            "end": rec.end_text or iso(rec.end),
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


# Options that do not apply ----------------------------------------------------------------------------
#
# Each option below is read by one side only (import or export, file or package mode, one format kind). A
# value other than the option's "off" value on the other side would be accepted and then do nothing, so
# writes refuse it (400 OptionNotApplicable, naming the field and why). These checks run on writes only:
# documents stored before them still load, and GET reports what they hold that does nothing (`warnings`).

NOT_APPLICABLE = "OptionNotApplicable"


def job_option_problems(job: Job, operation: str, stated: set[str] | None = None) -> list[tuple[str, str]]:
    """(field, why) for each option of `job` that its project's `operation` ignores. `mode` counts only when
    `stated` (the body's keys; None: every key) names it: a job written before exports took `package` as
    their mode holds the default `file`."""
    problems: list[tuple[str, str]] = []
    if operation == "export":
        if job.process_on_arrival:
            problems.append(
                ("processOnArrival", "it applies to import jobs only (an export job receives no files)")
            )
        if job.process_in_order:
            problems.append(("processInOrder", "it applies to import jobs only (it orders received files)"))
        if job.monitoring is not None:
            problems.append(
                (
                    "monitoring",
                    "it applies to import jobs only (it samples the backlog of received files; an export "
                    "job has none); use recurrence to schedule exports",
                )
            )
        if job.mode == "file" and (stated is None or "mode" in stated):
            problems.append(
                (
                    "mode",
                    "'file' applies to import jobs only: an export job always produces a data package "
                    "(PROTOCOL §3); leave mode out or set 'package'",
                )
            )
    else:
        if job.prevent_upload_when_zero_records:
            problems.append(
                (
                    "preventUploadWhenZeroRecords",
                    "it applies to export jobs only (an import job uploads nothing)",
                )
            )
        if job.incremental:
            problems.append(("incremental", "it applies to export jobs only"))
        if job.redelivery_minutes != DEFAULT_REDELIVERY_MINUTES:
            problems.append(
                (
                    "redeliveryMinutes",
                    "it applies to export jobs only (how long a dequeued export file stays hidden)",
                )
            )
    return problems


def project_option_problems(project: Project, format_kind) -> list[tuple[str, str]]:
    """(field, why) for each option of `project` that its operation or its entities' formats ignore.
    `format_kind(name)`: the kind of a format (csv, xml-element, ...), None when unknown."""
    problems: list[tuple[str, str]] = []
    export = project.operation == "export"
    if not export and not project.neutralize_formulas:
        problems.append(
            ("neutralizeFormulas", "it applies to export projects only (it guards exported cells)")
        )
    for i, pe in enumerate(project.entities):
        kind = format_kind(pe.format)
        if pe.transforms and export:
            problems.append(
                (
                    f"entities[{i}].transforms",
                    "XSLT transforms apply to imports only (they transform received XML)",
                )
            )
        if pe.sheet and kind is not None and kind != "excel":
            problems.append(
                (f"entities[{i}].sheet", f"it applies to Excel formats only; {pe.format} is {kind}")
            )
        if export:
            for j, rule in enumerate(pe.mapping):
                if rule.default is not None:
                    problems.append(
                        (
                            f"entities[{i}].mapping[{j}].default",
                            "a default fills empty source values on import; an export writes stored values",
                        )
                    )
    return problems


def package_mode_problems(project: Project, format_kind) -> list[tuple[str, str]]:
    """(field, why) for each project option a package-mode import job ignores: transforms on a non-XML format
    (a data package's entity files are transformed only when their format is XML, as in D365)."""
    problems: list[tuple[str, str]] = []
    for i, pe in enumerate(project.entities):
        kind = format_kind(pe.format)
        if pe.transforms and kind is not None and kind not in XML_FORMAT_KINDS:
            problems.append(
                (
                    f"entities[{i}].transforms",
                    f"a package-mode job applies XSLT to XML formats only, and {pe.format} is {kind}",
                )
            )
    return problems


def describe_problems(problems: list[tuple[str, str]], prefix: str = "") -> str:
    return "; ".join(f"{prefix}{name} does not apply: {why}" for name, why in problems)


def format_option_problems(fmt: SourceFormat) -> list[tuple[str, str]]:
    """(field, why) for each setting of a source data format that its kind ignores: the delimiter, text
    qualifier and header row belong to CSV (the readers and writers of the other kinds never read them), and
    an Excel workbook has no text encoding."""
    problems: list[tuple[str, str]] = []
    if fmt.kind != "csv":
        if fmt.delimiter != ",":
            problems.append(("delimiter", f"it applies to CSV formats only; this one is {fmt.kind}"))
        if fmt.text_qualifier != '"':
            problems.append(("textQualifier", f"it applies to CSV formats only; this one is {fmt.kind}"))
        if not fmt.header_row:
            problems.append(("headerRow", f"it applies to CSV formats only; this one is {fmt.kind}"))
    if fmt.kind == "excel" and fmt.encoding is not None:
        problems.append(("encoding", "an Excel workbook is not text; it has no encoding"))
    return problems
