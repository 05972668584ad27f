"""Data entities read as OData entity sets (`GET /data/{collection}`): which legal entities a read covers, who may
read them, and server-driven paging that streams from Table storage.

Scope, as D365 has it: without `cross-company=true` a read covers one legal entity, the caller's default (see
default_company); with it, every legal entity the caller may see (app_access.allowed_legal_entities), one after
another, and a caller never learns of records in the others. A top-level `dataAreaId eq '…'` in `$filter` names
the legal entity in both modes.

Paging: at most `page_size` records per reply, then a nextLink whose `$skiptoken` (shared/odata/skiptoken.py)
holds where the next page starts: the Table continuation of the page being read and the last record sent
(records are read in storage order), or, with `$orderby` on the keys, the last key sent (the entity's
partitions of one legal entity are merged in key order). One reply reads one Table page at a time and keeps at
most one reply's records; `$skip` and `$count` stream too.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from shared.errors import AppError, NotFoundError, ValidationError
from shared.odata import query as odq
from shared.odata import skiptoken

# The legal entity a read without cross-company covers when nothing names one: D365 uses the user's default
# company (DAT for a new user); here an application's only legal entity, else this setting, else `dat`.
DEFAULT_LEGAL_ENTITY_SETTING = "ODATA_DEFAULT_LEGAL_ENTITY"
DEFAULT_LEGAL_ENTITY = "dat"
TABLE_PAGE = 1000  # rows per Table request when scanning (the service's maximum)
SIGNING_KEY = "odata-skiptoken"
_ALL = "*"  # every legal entity (cross-company for a caller who may see all)


@dataclass
class Page:
    entity: Any
    records: list[dict]  # OData JSON properties, in output order
    next_state: str | None  # the $skiptoken of the next page, or None when this is the last
    count: int | None  # @odata.count, when asked for
    select: list[str] | None = None  # the properties of $select, when given


def signing_key() -> bytes:
    from shared.storage import names
    from shared.storage.factory import get_clients
    from shared.storage.signing_keys import shared_key

    return shared_key(get_clients().container(names.CONTAINER_ARTIFACTS), SIGNING_KEY)


def _may_read(principal) -> None:
    """403 before anything is looked up for a caller that may read no entity set: it learns nothing, not even
    which sets exist."""
    from shared.services import app_access

    app_access.require(principal, app_access.READ_DATA_ENTITIES, None)


def find_entity(collection: str):
    from shared.services.registry import config_service

    entity = config_service().find_by_collection(collection)
    if entity is None:
        raise NotFoundError(
            f"there is no entity set {collection[:130]!r}; GET /data lists them", code="EntitySetNotFound"
        )
    return entity


def default_company(principal) -> str:
    """The caller's default legal entity: the only one it may see, else ODATA_DEFAULT_LEGAL_ENTITY, else dat."""
    from shared import settings
    from shared.services import app_access

    allowed = app_access.allowed_legal_entities(principal)
    if allowed is not None and len(allowed) == 1:
        return next(iter(allowed)).lower()
    return (settings.get(DEFAULT_LEGAL_ENTITY_SETTING) or DEFAULT_LEGAL_ENTITY).lower()


class _Scope:
    """The legal entities a read covers, in reading order (None for a shared entity, _ALL for all), and
    whether each must still be checked as it is met (cross-company: one the caller may not see is skipped)."""

    def __init__(self, principal, companies: list, lazy: bool) -> None:
        self.principal = principal
        self.companies = companies
        self.lazy = lazy
        self._verdicts: dict[str | None, bool] = {}

    def visible(self, company: str | None) -> bool:
        if not self.lazy:
            return True
        if company not in self._verdicts:
            from shared.services import app_access

            try:
                app_access.require(self.principal, app_access.READ_DATA_ENTITIES, company)
                self._verdicts[company] = True
            except AppError:
                self._verdicts[company] = False
        return self._verdicts[company]


def _scope(principal, entity, q: odq.EntitySetQuery) -> _Scope:
    from shared.domain.config import check_company
    from shared.services import app_access

    read = app_access.READ_DATA_ENTITIES
    if not entity.company_specific:
        app_access.require(principal, read, None)
        return _Scope(principal, [None], lazy=False)
    if q.company:
        check_company(q.company, "dataAreaId")
    if not q.cross_company:
        company = q.company or default_company(principal)
        app_access.require(principal, read, company)
        return _Scope(principal, [company], lazy=False)
    app_access.require(principal, read, None)
    allowed = app_access.allowed_legal_entities(principal)
    allowed = None if allowed is None else {c.lower() for c in allowed}
    if q.company:
        companies = [q.company] if allowed is None or q.company in allowed else []
    else:
        companies = [_ALL] if allowed is None else sorted(allowed)
    return _Scope(principal, companies, lazy=True)


def _segment_query(
    company, expr, extra: str = "", extra_params: dict | None = None
) -> tuple[str | None, dict]:
    from shared.formats.filters import MAX_TABLE_COMPARISONS, compile_filter
    from shared.storage.entity_repo import COMPANY, company_range

    parts, params = [], dict(extra_params or {})
    if company not in (None, _ALL):
        lo, hi = company_range(company)
        # `company eq` too: the range of `us` also holds the partitions of a legal entity `us-mf`.
        parts.append(f"PartitionKey ge @co_lo and PartitionKey lt @co_hi and {COMPANY} eq @co")
        params.update({"co_lo": lo, "co_hi": hi, "co": company.lower()})
    if extra:
        parts.append(extra)
    if expr is not None:
        # Azure Tables takes at most 15 comparisons in one query: the scope's own count against them.
        own = 3 * (company not in (None, _ALL)) + extra.count(" gt ") + extra.count(" eq ")
        text, fparams = compile_filter(expr, param_prefix="f", max_comparisons=MAX_TABLE_COMPARISONS - own)
        if text:
            parts.append(f"( {text} )")
            params.update(fparams)
    return (" and ".join(parts) or None), params


def _matcher(entity, scope: _Scope, expr) -> Callable[[dict], bool]:
    from shared.formats.filters import evaluate
    from shared.storage.entity_repo import COMPANY

    def match(row: dict) -> bool:
        if scope.lazy and not scope.visible(row.get(COMPANY) if entity.company_specific else None):
            return False
        return expr is None or evaluate(expr, row)

    return match


def _segment_name(company: str | None) -> str:
    return company or ""


def _scan(entity, scope: _Scope, expr, state: dict, select=None) -> Iterator[tuple[dict, dict]]:
    """Matching rows in storage order from the position in `state`, each with the position after it."""
    from shared.services.registry import entity_repo

    repo, match = entity_repo(), _matcher(entity, scope, expr)
    names = [_segment_name(c) for c in scope.companies]  # sorted: legal entities are read in name order
    token, last, first = state.get("t"), tuple(state["p"]) if state.get("p") else None, 0
    if "c" in state:
        # By name, not by index: the legal entities the caller may see can change between two pages.
        first = next((i for i, name in enumerate(names) if name >= state["c"]), len(names))
        if first == len(names) or names[first] != state["c"]:
            token, last = None, None
    for index in range(first, len(scope.companies)):
        query, params = _segment_query(scope.companies[index], expr)
        for start, rows, following in repo.iter_pages(
            entity, query, params, page_size=TABLE_PAGE, continuation=token, select=select
        ):
            for n, row in enumerate(rows):
                where = (row["PartitionKey"], row["RowKey"])
                if last is not None and where <= last:
                    continue
                if not match(row):
                    continue
                if n < len(rows) - 1:
                    after = {"c": names[index], "t": start, "p": list(where)}
                elif following:
                    after = {"c": names[index], "t": following, "p": None}
                else:  # the next legal entity, from its start
                    after = {"c": names[index] + "\x00", "t": None, "p": None}
                yield row, after
        token, last = None, None


def _merged(entity, scope: _Scope, expr, state: dict, page_size: int) -> Iterator[tuple[dict, dict]]:
    """Matching rows of the one legal entity in the scope in key order (the RowKey): each of its partitions
    is read in RowKey order from after the last key sent, and the partitions are merged."""
    from shared.services.registry import entity_repo

    repo, match = entity_repo(), _matcher(entity, scope, expr)
    (company,) = scope.companies
    after_key = state.get("k")
    partitions = repo.partitions(company)
    per_partition = max(10, min(odq.DEFAULT_PAGE_SIZE, page_size * 2 // len(partitions) + 1))
    streams = []
    for pk in partitions:
        extra = "PartitionKey eq @pk" + (" and RowKey gt @rk" if after_key else "")
        query, params = _segment_query(
            None, expr, extra, {"pk": pk, "rk": after_key} if after_key else {"pk": pk}
        )
        streams.append(repo.iter_rows(entity, query, params, page_size=per_partition))
    for row in heapq.merge(*streams, key=lambda r: r["RowKey"]):
        if match(row):
            yield row, {"k": row["RowKey"]}


def _fingerprint(entity, q: odq.EntitySetQuery) -> str:
    return skiptoken.fingerprint(entity.name.lower(), q.canonical)


def _count(entity, scope: _Scope, expr) -> int:
    select = None if expr is not None else ["PartitionKey", "RowKey", "company"]
    return sum(1 for _ in _scan(entity, scope, expr, {}, select=select))


def read_page(principal, collection: str, params: dict[str, str], *, page_size: int) -> Page:
    """One page of the entity set `collection` for the query options `params`."""
    _may_read(principal)
    entity = find_entity(collection)
    q = odq.parse_query(params, entity)
    scope = _scope(principal, entity, q)
    if q.orderby and (len(scope.companies) > 1 or scope.companies == [_ALL]):
        raise ValidationError(
            "$orderby orders the records of one legal entity: add $filter=dataAreaId eq '…', or leave out "
            "cross-company=true (records are otherwise read one legal entity after another)",
            code="InvalidQueryOption",
        )
    fingerprint = _fingerprint(entity, q)
    key = signing_key()
    if q.skiptoken:
        state = skiptoken.decode(q.skiptoken, key, fingerprint)
    else:
        state = {"f": fingerprint, "s": q.skip, "r": q.top}
        if q.count:
            state["n"] = _count(entity, scope, q.expr)
    skip, remaining = int(state.get("s") or 0), state.get("r")
    if not scope.companies or remaining == 0:
        return Page(entity, [], None, state.get("n"), q.select)
    source = (
        _merged(entity, scope, q.expr, state, page_size)
        if q.orderby and scope.companies
        else _scan(entity, scope, q.expr, state)
    )
    records: list[dict] = []
    position: dict | None = None
    more = False
    from shared.storage.entity_repo import Misfits

    misfits = Misfits()
    for row, after in source:
        if skip:
            skip -= 1
            continue
        if len(records) == page_size:
            more = True  # one more matching record exists: a next page is due
            break
        records.append(to_odata(entity, row, q.select, misfits))
        position = after
        if remaining is not None:
            remaining -= 1
            if remaining == 0:
                break
    if misfits:
        import logging

        logging.getLogger(__name__).warning("entity %s: %s", entity.name, "; ".join(misfits.warnings()))
    next_state = None
    if more and position is not None:
        payload = {"f": fingerprint, "s": 0, "r": remaining, **position}
        if "n" in state:
            payload["n"] = state["n"]
        next_state = skiptoken.encode(payload, key)
    return Page(entity, records, next_state, state.get("n"), q.select)


def _typed_key_value(entity, name: str, value: Any) -> Any:
    f = entity.field_map()[name.upper()]
    try:
        if f.type == "int":
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ValueError(value)
            return int(value)
        if f.type == "decimal":
            return Decimal(str(value))
        if f.type == "bool":
            if isinstance(value, bool):
                return value
            raise ValueError(value)
        if f.type == "date":
            return date.fromisoformat(str(value)[:10])
        if f.type == "datetime":
            return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (ValueError, ArithmeticError):
        raise ValidationError(
            f"the key {name} is {f.type}; {str(value)[:60]!r} is not one", code="InvalidKey"
        ) from None
    if value is None:
        raise ValidationError(f"the key {name} cannot be null", code="InvalidKey")
    return value if isinstance(value, str) else str(value)


def get_by_key(
    principal, collection: str, predicate: str, params: dict[str, str]
) -> tuple[Any, dict, list[str] | None]:
    """The one record the key predicate names (`(dataAreaId='usmf',KEY='…')`), as OData properties; 404 when
    there is none."""
    from shared.domain.config import check_company
    from shared.odata.keys import SINGLE, parse_key
    from shared.services import app_access
    from shared.services.registry import entity_repo
    from shared.storage.entity_repo import Misfits

    _may_read(principal)
    entity = find_entity(collection)
    q = odq.parse_key_options(params, entity)
    values = parse_key(predicate)
    keys = {k.casefold(): k for k in entity.keys}
    named = ", ".join(([odq.DATA_AREA_ID] if entity.company_specific else []) + list(entity.keys))
    record: dict[str, Any] = {}
    company = None
    for name, value in values.items():
        if name == SINGLE:
            if len(entity.keys) != 1:
                raise ValidationError(
                    f"the key of {entity.name} has several parts: {named}", code="InvalidKey"
                )
            name = entity.keys[0]
        if entity.company_specific and name.casefold() == odq.DATA_AREA_ID.casefold():
            company = str(value).lower()
            check_company(company, "dataAreaId")
            continue
        canonical = keys.get(name.casefold())
        if canonical is None:
            raise ValidationError(
                f"{name!r} is not part of the key of {entity.name}: {named}", code="InvalidKey"
            )
        record[canonical] = _typed_key_value(entity, canonical, value)
    missing = [k for k in entity.keys if k not in record]
    if missing:
        raise ValidationError(
            f"the key lacks {', '.join(missing)}; the key of {entity.name} is {named}", code="InvalidKey"
        )
    if entity.company_specific:
        company = company or default_company(principal)
    app_access.require(principal, app_access.READ_DATA_ENTITIES, company)
    row = entity_repo().get_row(entity, company, record)
    if row is None:
        raise NotFoundError(f"{collection}{predicate} does not exist", code="NotFound")
    return entity, to_odata(entity, row, q.select, Misfits()), q.select


def to_odata(entity, row: dict, select: list[str] | None, misfits) -> dict:
    """A stored row as OData properties: dataAreaId first for a company-specific entity, then the fields, as
    typed Python values (dumps() writes them); only `select` when given."""
    from shared.storage.entity_repo import COMPANY, decode_record

    record = decode_record(entity, row, misfits)
    out: dict[str, Any] = {}
    if entity.company_specific:
        out[odq.DATA_AREA_ID] = record.pop(COMPANY, None)
    out.update(record)
    if select is not None:
        out = {name: out.get(name) for name in select}
    return out
