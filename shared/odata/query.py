"""The query options of a data entity set (`GET /data/{collection}?$filter=…`), parsed and checked against the
entity before anything is read.

Supported: `$filter` (the product's filter language, docs/filters.md, with `dataAreaId` for the company),
`$select`, `$top`, `$skip`, `$count`, `$orderby` (the entity's keys, ascending, in their order),
`cross-company`, and `$skiptoken` (the continuation a nextLink carries). Option names are case-insensitive
and the `$` may be left out (OData 4.01). Anything else is a 400: a client asking for `$expand` or
`$search` learns at once that it is not served, instead of reading an answer that ignored it.

Pure: no Azure import. Errors are ValidationError (400) with stable codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from shared.errors import ValidationError

# D365's name of the company property; the filter language's `company` is accepted too.
DATA_AREA_ID = "dataAreaId"
COMPANY_NAMES = ("dataAreaId", "company")

DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 5000
MAX_TOP = 2**31 - 1
SKIPTOKEN = "$skiptoken"

OPTIONS = ("$filter", "$select", "$top", "$skip", "$count", "$orderby", "cross-company", SKIPTOKEN)
# Options of OData that a read-only entity set here does not serve (named, so the 400 says so).
UNSUPPORTED = ("$expand", "$search", "$apply", "$compute", "$levels", "$index", "$schemaversion", "$format")
# On a single entity (a key lookup) only these mean anything.
KEY_OPTIONS = ("$select", "cross-company")

_SORTABLE_KEY_TYPES = {"string", "enum", "guid", "date", "datetime", "bool"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PREFER_PAGE = re.compile(r"(?:^|[,;\s])odata\.maxpagesize\s*=\s*\"?([0-9]{1,12})\"?", re.IGNORECASE)


def _bad(message: str, code: str = "InvalidQueryOption") -> ValidationError:
    return ValidationError(message, code=code)


@dataclass
class EntitySetQuery:
    """What the caller asked for. `company` is the legal entity a top-level `dataAreaId eq '…'` names."""

    filter_text: str | None = None
    expr: Any = None  # shared.formats.filters.FilterExpr
    select: list[str] | None = None  # output property names, in the entity's spelling; None: all
    top: int | None = None
    skip: int = 0
    count: bool = False
    orderby: list[str] = field(default_factory=list)  # key field names (dataAreaId first when given)
    cross_company: bool = False
    company: str | None = None
    skiptoken: str | None = None
    # The options that define the result, as sent (minus $skiptoken): a continuation is bound to them.
    canonical: str = ""


def normalize_options(params: dict[str, str], allowed: tuple[str, ...] = OPTIONS) -> dict[str, str]:
    """The query options by their canonical name (`$filter`, `cross-company`); 400 UnsupportedQueryOption
    for one outside `allowed`, and 400 for one given twice under different spellings."""
    out: dict[str, str] = {}
    by_plain = {o.lstrip("$").lower(): o for o in (*OPTIONS, *UNSUPPORTED)}
    for raw, value in params.items():
        name = by_plain.get(raw.strip().lstrip("$").lower())
        if name is None or name not in allowed:
            shown = raw if len(raw) <= 60 else raw[:60] + "…"
            served = ", ".join(allowed)
            why = "is not supported here" if name else "is not a query option of this entity set"
            raise _bad(f"the query option {shown!r} {why}; use {served}", "UnsupportedQueryOption")
        if name in out:
            raise _bad(f"the query option {name} is given twice")
        out[name] = value
    return out


def _int_option(name: str, text: str, maximum: int) -> int:
    text = text.strip()
    if not text.isdigit() or len(text) > 12:
        raise _bad(f"{name} must be a whole number from 0 to {maximum}")
    value = int(text)
    if value > maximum:
        raise _bad(f"{name} must be a whole number from 0 to {maximum}")
    return value


def _bool_option(name: str, text: str) -> bool:
    low = text.strip().lower()
    if low not in ("true", "false"):
        raise _bad(f"{name} must be true or false")
    return low == "true"


def property_names(entity) -> dict[str, str]:
    """The entity's output property names by their case-folded spelling (fields, and dataAreaId)."""
    names = {f.name.casefold(): f.name for f in entity.fields}
    if entity.company_specific:
        names[DATA_AREA_ID.casefold()] = DATA_AREA_ID
    return names


def _select(text: str, entity) -> list[str] | None:
    names = property_names(entity)
    out: list[str] = []
    for part in text.split(","):
        item = part.strip()
        if item == "*":
            return None
        canonical = names.get(item.casefold())
        if canonical is None:
            raise _bad(
                f"$select: {item[:60]!r} is not a property of {entity.name}; it has {', '.join(names.values())}"
            )
        if canonical not in out:
            out.append(canonical)
    if not out:
        raise _bad("$select names no property")
    return out


def _orderby(text: str, entity) -> list[str]:
    """The ordering, which must be the entity's keys in their order (a leading part of them), ascending,
    optionally led by dataAreaId: the order in which they are stored."""
    keys = list(entity.keys)
    allowed = ([DATA_AREA_ID] if entity.company_specific else []) + keys
    names = {n.casefold(): n for n in allowed}
    listed = ", ".join(allowed)
    out: list[str] = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise _bad(f"$orderby: {part.strip()[:60]!r} is not `property [asc|desc]`")
        name = names.get(words[0].casefold())
        if name is None:
            raise _bad(f"$orderby takes the keys of {entity.name} only: {listed} (in that order, ascending)")
        if len(words) == 2 and words[1].lower() == "desc":
            raise _bad(f"$orderby: {name} desc is not supported; records are read in ascending key order")
        out.append(name)
    expected = allowed if out and out[0] == DATA_AREA_ID else keys
    if out != expected[: len(out)] or len(set(out)) != len(out):
        raise _bad(f"$orderby takes the keys of {entity.name} only: {listed} (in that order, ascending)")
    for name in out:
        f = entity.field_map().get(name.upper())
        if f is not None and f.type not in _SORTABLE_KEY_TYPES:
            raise _bad(
                f"$orderby: the key {name} is {f.type}; keys are stored as text, so only text, enum, guid, "
                "date, datetime and bool keys can be ordered by"
            )
    return out


def filter_company(expr) -> str | None:
    """The legal entity that a top-level `dataAreaId eq '…'` of the filter names (alone, or in an `and`)."""
    from shared.formats.filters import COMPANY_FIELD, And, Comparison

    items = expr.items if isinstance(expr, And) else (expr,)
    for item in items:
        if (
            isinstance(item, Comparison)
            and item.field == COMPANY_FIELD
            and item.op == "eq"
            and isinstance(item.value, str)
        ):
            return item.value.lower()
    return None


def parse_query(params: dict[str, str], entity) -> EntitySetQuery:
    """The entity set query of `params` (the request's query string, one value per name)."""
    options = normalize_options(params)
    q = EntitySetQuery(skiptoken=options.pop(SKIPTOKEN, None) or None)
    if "cross-company" in options:
        q.cross_company = _bool_option("cross-company", options["cross-company"])
    text = options.get("$filter")
    if text is not None:
        from shared.formats.filters import FilterError, parse_filter

        try:
            q.expr = parse_filter(text, entity, company_names=COMPANY_NAMES)
        except FilterError as exc:
            raise ValidationError(f"$filter: {exc}", code=exc.code) from exc
        q.filter_text = text
        if entity.company_specific:
            q.company = filter_company(q.expr)
    if "$select" in options:
        q.select = _select(options["$select"], entity)
    if "$top" in options:
        q.top = _int_option("$top", options["$top"], MAX_TOP)
    if "$skip" in options:
        q.skip = _int_option("$skip", options["$skip"], MAX_TOP)
    if "$count" in options:
        q.count = _bool_option("$count", options["$count"])
    if "$orderby" in options:
        q.orderby = _orderby(options["$orderby"], entity)
    q.canonical = "&".join(f"{k}={options[k]}" for k in sorted(options))
    return q


def parse_key_options(params: dict[str, str], entity) -> EntitySetQuery:
    """The options of a key lookup (`Coll(…)?$select=…`)."""
    options = normalize_options(params, KEY_OPTIONS)
    q = EntitySetQuery()
    if "cross-company" in options:
        q.cross_company = _bool_option("cross-company", options["cross-company"])
    if "$select" in options:
        q.select = _select(options["$select"], entity)
    return q


def max_page_size(prefer: str | None) -> int | None:
    """The page size the `Prefer: odata.maxpagesize=N` header asks for (capped at MAX_PAGE_SIZE, at least 1),
    or None when it asks for none."""
    if not prefer:
        return None
    found = _PREFER_PAGE.search(prefer)
    if not found:
        return None
    return max(1, min(int(found.group(1)), MAX_PAGE_SIZE))
