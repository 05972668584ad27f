"""Maps raw source rows onto an entity's typed fields, collecting every reason a row is rejected.

Mapping follows D365: explicit source -> target pairs from the project, then automatic mapping
by name (case-insensitive) for the fields left over, with defaults for empty values. The plan
for a set of columns is computed once, so mapping a row is a short loop over precomputed steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.domain.schema import Entity, Field, SourceFormat
from shared.formats.conversion import ConversionError, Converter, make_converter
from shared.formats.readers import ERROR_KEY

_MAX_CACHED_PLANS = 256
# Columns that feed no field, listed for the message (they are reported, not imported): at most this many
# names, each cut to this length, so a file of ever-new keys cannot grow the list or the message.
MAX_LISTED_UNMAPPED = 20
_MAX_UNMAPPED_NAME = 100


@dataclass(slots=True)
class MappedRow:
    """One mapped row: the typed record, or None when `errors` holds the reasons it was rejected."""

    record: dict[str, object] | None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def reason(self) -> str:
        """All reasons in one line, for the error file."""
        return "; ".join(self.errors)


@dataclass(frozen=True, slots=True)
class _Target:
    """What the mapping says about one entity field, before the file's columns are known."""

    field: Field
    source: str | None  # explicit source column, as written in the mapping
    has_default: bool
    default: object  # already converted to the field's type
    explicit: bool
    conversions: Mapping[str, str] | None = None  # source value (trimmed, exact case) -> target text


# One precomputed step of a plan: (field name, source column or None, converter, default,
# has default, message when the value is missing and must not be, value conversions or None).
_Step = tuple[str, str | None, Converter, object, bool, str | None, Mapping[str, str] | None]


def _text_default(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class RowMapper:
    """Maps reader rows (column -> raw text) to typed entity records."""

    def __init__(
        self, entity: Entity, targets: list[_Target], columns: list[str] | None, fmt: SourceFormat
    ) -> None:
        self.entity = entity
        self._fmt = fmt
        self._targets = targets
        self._keys = {k.upper() for k in entity.keys}
        self._plans: dict[tuple[str, ...], list[_Step]] = {}
        # Columns seen in the file that feed no field, in order of appearance (see unmapped()).
        self._unmapped: dict[str, None] = {}
        self.unmapped_more = False  # more than MAX_LISTED_UNMAPPED were seen
        self.columns = list(columns) if columns is not None else None
        self._fixed_plan = self._note_unmapped(self.columns) if self.columns is not None else None

    # -- planning ---------------------------------------------------------------------------
    def _plan(self, columns: Iterable[str]) -> list[_Step]:
        exact = {c: c for c in columns if c != ERROR_KEY}
        folded: dict[str, str] = {}
        for column in exact:
            folded.setdefault(column.casefold(), column)

        def resolve(name: str) -> str | None:
            return exact.get(name) or folded.get(name.casefold())

        steps: list[_Step] = []
        for target in self._targets:
            fld = target.field
            if target.explicit and target.source is not None:
                column = resolve(target.source) or target.source
            elif target.explicit:
                column = None  # a default-only mapping
            else:
                column = resolve(fld.name)
                if column is None and not target.has_default and not self._must_have(fld):
                    continue  # nothing feeds this optional field: leave it out of the record
            missing = self._missing_message(fld, column is None and not target.has_default)
            steps.append(
                (
                    fld.name,
                    column,
                    make_converter(fld, self._fmt),
                    target.default,
                    target.has_default,
                    missing,
                    target.conversions,
                )
            )
        return steps

    def _must_have(self, fld: Field) -> bool:
        return fld.required or fld.name.upper() in self._keys

    def _missing_message(self, fld: Field, no_column: bool) -> str | None:
        if not self._must_have(fld):
            return None
        message = f"{fld.name} is required"
        if fld.name.upper() in self._keys and not fld.required:
            message += " (it is part of the key)"
        if no_column:
            message += "; no column of the file maps to it"
        return message

    def _note_unmapped(self, columns: list[str] | tuple[str, ...]) -> list[_Step]:
        """The plan for these columns, noting the columns it leaves unused (once per plan, not per row)."""
        plan = self._plan(columns)
        used = {step[1] for step in plan if step[1] is not None}
        for column in columns:
            if column in used or column == ERROR_KEY or column in self._unmapped:
                continue
            if len(self._unmapped) >= MAX_LISTED_UNMAPPED:
                self.unmapped_more = True
                break
            self._unmapped[column[:_MAX_UNMAPPED_NAME]] = None
        return plan

    def unmapped(self) -> list[str]:
        """Columns (elements, attributes, keys) of the rows mapped so far that feed no field of the entity.

        D365 ignores such columns too, but nothing may vanish without a word: the import lists them on the
        message (Counts `unmappedColumns`). At most MAX_LISTED_UNMAPPED names; `unmapped_more` says if more.
        """
        return list(self._unmapped)

    def unmapped_columns(self, columns: Iterable[str]) -> list[str]:
        """Columns of the file that feed no field (D365 ignores them; useful as a warning)."""
        columns = list(columns)
        used = {step[1] for step in self._plan(columns) if step[1] is not None}
        return [c for c in columns if c not in used and c != ERROR_KEY]

    def missing_sources(self, columns: Iterable[str]) -> list[str]:
        """Explicit mapping sources that the file's columns do not contain."""
        names = {c.casefold() for c in columns}
        return [
            t.source
            for t in self._targets
            if t.explicit and t.source is not None and t.source.casefold() not in names
        ]

    # -- mapping ----------------------------------------------------------------------------
    def map_row(self, values: Mapping[str, str | None]) -> MappedRow:
        """Convert one reader row. Every problem of the row is reported, not just the first."""
        problem = values.get(ERROR_KEY)
        if problem is not None:
            return MappedRow(None, [str(problem)])
        plan = self._fixed_plan
        if plan is None:
            shape = tuple(values)
            plan = self._plans.get(shape)
            if plan is None:
                if len(self._plans) >= _MAX_CACHED_PLANS:
                    self._plans.clear()  # rows of ever-changing shapes: bound the cache
                plan = self._plans[shape] = self._note_unmapped(shape)
        get = values.get
        record: dict[str, object] = {}
        errors: list[str] | None = None
        for name, column, converter, default, has_default, missing, conversions in plan:
            raw = get(column) if column is not None else None
            if conversions is not None:
                # Value conversions come first: the converted text then goes through the default and
                # the field's type, exactly as if the file had carried it.
                converted = conversions.get(raw.strip() if raw is not None else "")
                if converted is not None:
                    raw = converted
            if raw is None or raw == "":
                value = default
            else:
                try:
                    value = converter(raw)
                except ConversionError as exc:
                    if errors is None:
                        errors = []
                    errors.append(exc.reason)
                    continue
                if value is None and has_default:
                    value = default  # blank (whitespace-only) text counts as empty
            if value is None and missing is not None:
                if errors is None:
                    errors = []
                errors.append(missing)
                continue
            record[name] = value
        if errors:
            return MappedRow(None, errors)
        return MappedRow(record, [])


def build_mapper(
    entity: Entity,
    columns: list[str] | None,
    mapping: list[dict] | None,
    fmt: SourceFormat,
) -> RowMapper:
    """Build the mapper for one file. Raises ValueError for a mapping that cannot work.

    `mapping` items are {"source": column, "target": field, "default": value or None,
    "conversions": [{"from": text, "to": text}, ...] (optional)}. Fields not explicitly mapped are
    mapped automatically to the column of the same name (ignoring case). `columns` is the file's
    header; None for formats without one (each row's own keys are used then).

    Value conversions (D365's EntityFieldConversionList) replace a source value before anything
    else: a value whose text, with surrounding blanks removed, equals a `from` exactly (case
    matters: "ja" does not match "Ja") is replaced by its `to`. `from: ""` matches an empty or
    missing value; `to: ""` makes the value empty (then the default and the required rules apply).
    A value that matches no `from` is kept. Raises ValueError for a conversion list that is not a
    list of {from, to} strings or names a `from` twice, or a `to` the field's type refuses.
    """
    fields = entity.field_map()
    targets: list[_Target] = []
    explicit: set[str] = set()
    for number, item in enumerate(mapping or (), 1):
        if not isinstance(item, Mapping):
            raise ValueError(f"mapping item {number} must be an object with source, target and default")
        target_name = item.get("target")
        if not target_name or not isinstance(target_name, str):
            raise ValueError(f"mapping item {number} has no target field")
        fld = fields.get(target_name.upper())
        if fld is None:
            known = ", ".join(f.name for f in entity.fields)
            raise ValueError(
                f"mapping target {target_name!r} is not a field of entity {entity.name!r}; "
                f"its fields are {known}"
            )
        if fld.name.upper() in explicit:
            raise ValueError(f"the field {fld.name} is the target of more than one mapping item")
        explicit.add(fld.name.upper())
        source = item.get("source")
        if source is not None and not isinstance(source, str):
            raise ValueError(f"mapping item {number}: the source must be a column name")
        source = source.strip() if source else None
        default = item.get("default")
        has_default = default is not None and default != ""
        converted: object = None
        if has_default:
            try:
                converted = make_converter(fld, fmt)(_text_default(default))
            except ConversionError as exc:
                raise ValueError(f"the default value for {fld.name} is not valid: {exc.reason}") from None
        if source is None and not has_default:
            raise ValueError(f"mapping item {number} ({fld.name}) has neither a source nor a default")
        conversions = _conversions(item.get("conversions"), fld, fmt, number)
        if conversions and source is None:
            raise ValueError(f"mapping item {number} ({fld.name}) has conversions but no source column")
        targets.append(_Target(fld, source, has_default, converted, True, conversions or None))
    for fld in entity.fields:
        if fld.name.upper() not in explicit:
            targets.append(_Target(fld, None, False, None, False))
    return RowMapper(entity, targets, columns, fmt)


def _conversions(raw: Any, fld: Field, fmt: SourceFormat, number: int) -> dict[str, str]:
    """A mapping item's value conversions as {source value: target text}, each target checked."""
    if raw is None:
        return {}
    if not isinstance(raw, list | tuple):
        raise ValueError(f"mapping item {number} ({fld.name}): conversions must be a list of {{from, to}}")
    table: dict[str, str] = {}
    convert = make_converter(fld, fmt)
    for k, pair in enumerate(raw):
        if isinstance(pair, Mapping):
            source, target = pair.get("from"), pair.get("to")
        elif isinstance(pair, list | tuple) and len(pair) == 2:
            source, target = pair
        else:
            source = target = None
        if not isinstance(source, str) or not isinstance(target, str):
            raise ValueError(
                f"mapping item {number} ({fld.name}): conversion {k + 1} must be {{from, to}} with two strings"
            )
        key = source.strip()
        if key in table:
            raise ValueError(f"mapping item {number} ({fld.name}): the value {key!r} is converted twice")
        if target.strip():
            try:
                convert(target)
            except ConversionError as exc:
                raise ValueError(
                    f"mapping item {number} ({fld.name}): conversion {key!r} -> {target!r} is not valid: "
                    f"{exc.reason}"
                ) from None
        table[key] = target
    return table
