"""Browsing imported entity data: company scope, an optional filter, and paging."""

from __future__ import annotations

from typing import Any

from shared.errors import NotFoundError, ValidationError


def build_query(entity, *, company: str | None, filter_text: str | None) -> tuple[str | None, dict, Any]:
    """The Table query (parameterized), its parameters, and the parsed filter for exact re-checking."""
    from shared.formats.filters import FilterError, compile_filter, parse_filter
    from shared.storage.entity_repo import company_range

    parts: list[str] = []
    params: dict[str, Any] = {}
    expr = None
    if company:
        if not entity.company_specific:
            raise ValidationError(f"entity {entity.name} is not company-specific; omit company")
        lo, hi = company_range(company)
        parts.append("PartitionKey ge @co_lo and PartitionKey lt @co_hi")
        params.update({"co_lo": lo, "co_hi": hi})
    if filter_text:
        try:
            expr = parse_filter(filter_text, entity)
        except FilterError as exc:
            raise ValidationError(f"filter: {exc}", code=exc.code) from exc
        text, fparams = compile_filter(expr, param_prefix="f")
        if text:
            parts.append(f"( {text} )")  # placeholders must stand alone as words
            params.update(fparams)
    return (" and ".join(parts) or None), params, expr


def list_records(
    entity_name: str, *, company: str | None, filter_text: str | None, top: int, continuation: Any = None
) -> tuple[list[dict], Any, list[str]]:
    """A page of records as JSON, its continuation, and warnings: one per field whose stored values do not
    fit the field's current type (after an entity change made with ?force=true); such values are null."""
    import logging

    from shared.formats.filters import evaluate
    from shared.services.registry import config_service, entity_repo
    from shared.storage.entity_repo import Misfits, decode_record, record_to_json

    entity = config_service().find_entity(entity_name)
    if entity is None:
        raise NotFoundError(f"entity {entity_name!r} does not exist", code="EntityNotFound")
    query, params, expr = build_query(entity, company=company, filter_text=filter_text)
    rows, token = entity_repo().list_page(entity, query, params, top=top, continuation=continuation)
    misfits = Misfits()
    records = [
        record_to_json(decode_record(entity, row, misfits))
        for row in rows
        if expr is None or evaluate(expr, row)
    ]
    warnings = misfits.warnings()
    if warnings:
        logging.getLogger(__name__).warning("entity %s: %s", entity.name, "; ".join(warnings))
    return records, token, warnings
