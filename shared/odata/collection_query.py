"""OData query options on a small in-memory entity set ($filter, $select, $top, $skip, $count): the definition groups.

$filter is the app's filter language (shared/formats/filters.py: eq, ne, gt, ge, lt, le, and, or, not,
startswith, endswith, contains) over the set's properties, with an enum literal
(`Microsoft.Dynamics.DataEntities.DMFOperationType'Export'`) read as its member name. Pure code: no Azure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from shared.errors import ValidationError

_ENUM_LITERAL = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+'")
MAX_TOP = 10_000


def _schema(name: str, properties: Mapping[str, str]):
    from shared.domain.schema import Entity, Field

    fields = tuple(Field(name=p, type=t) for p, t in properties.items())
    return Entity(
        name=name, label=name, fields=fields, keys=(next(iter(properties)),), company_specific=False
    )


def _int_option(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not raw.strip().isdigit():
        raise ValidationError(f"{name} must be a whole number of at least 0", code="InvalidQueryOption")
    return MAX_TOP if len(raw.strip()) > 9 else min(int(raw), MAX_TOP)


def apply(
    rows: Iterable[dict], params: Mapping[str, str], *, set_name: str, properties: Mapping[str, str]
) -> tuple[list[dict], list[str] | None, int | None]:
    """The rows that `params` ($filter, $top, $skip, $select) ask for, the selected properties (None: all), and
    with `$count=true` the number of rows the filter matched before $top and $skip (None otherwise).
    `properties`: property name -> filter type (string, int). 400 InvalidQueryOption / InvalidFilter."""
    from shared.formats.filters import FilterError, evaluate, parse_filter

    unknown = sorted(
        k
        for k in params
        if k.startswith("$") and k not in ("$filter", "$select", "$top", "$skip", "$count", "$format")
    )
    if unknown:
        raise ValidationError(
            f"the query option {', '.join(unknown)} is not supported on {set_name} "
            "(supported: $filter, $select, $top, $skip, $count)",
            code="InvalidQueryOption",
        )
    out = list(rows)
    text = params.get("$filter")
    if text:
        try:
            expr = parse_filter(_ENUM_LITERAL.sub("'", text), _schema(set_name, properties))
        except FilterError as exc:
            raise ValidationError(f"$filter: {exc}", code="InvalidFilter") from None
        out = [r for r in out if evaluate(expr, r)]
    count_option = (params.get("$count") or "false").strip().lower()
    if count_option not in ("true", "false"):
        raise ValidationError("$count must be true or false", code="InvalidQueryOption")
    count = len(out) if count_option == "true" else None
    skip = _int_option(params, "$skip")
    if skip:
        out = out[skip:]
    top = _int_option(params, "$top")
    if top is not None:
        out = out[:top]
    select = None
    raw = params.get("$select")
    if raw and raw.strip() != "*":
        by_lower = {p.lower(): p for p in properties}
        select = []
        for part in raw.split(","):
            name = by_lower.get(part.strip().lower())
            if name is None:
                raise ValidationError(
                    f"$select: {set_name} has no property {part.strip()[:80]!r}", code="InvalidQueryOption"
                )
            if name not in select:
                select.append(name)
        out = [{k: r.get(k) for k in select} for r in out]
    return out, select, count
