"""Data entities as read-only OData entity sets, as D365 serves them: `GET /data/{collection}` and a key lookup
`GET /data/{collection}(dataAreaId='usmf',KEY='…')` (shared/services/entity_sets.py; docs/odata.md).

Routes: the host tries routes in function-name order and the first match wins (HOST.md), so these are kept
off every other /data path by their regex, not by their order. The collection must be an OData identifier
that does not start with `$` (`$metadata`, `$batch`) nor with `DataManagementDefinitionGroup` (the
definition-group sets and their actions live in other blueprints). ASP.NET evaluates the regex
case-insensitively and unanchored, so it carries its own anchors. A key lookup is the same route (the segment
is split at its first `(`): a complex segment `{collection}({key})` is matched right to left, at the last
`(`, so a key value holding `(` would never reach the function, and OpenAPI cannot tell `/data/{a}` from
`/data/{b}` as two paths.
"""

from __future__ import annotations

import azure.functions as func

from shared.api.http import endpoint, public_base_url

bp = func.Blueprint()

ODATA_JSON = "application/json; odata.metadata=minimal"
_NAME = r"(?!\$|DataManagementDefinitionGroup)[A-Za-z_][A-Za-z0-9_]*"
# `Name` or `Name(key predicate)`: one segment, one function. `(…|)`, not `(…)?`: ASP.NET ends a constraint's
# argument at a `)` followed by `:` or `=` (RouteParameterParser.ParseConstraints), and older parsers also at `?`.
ROUTE = "data/{collection:regex(^" + _NAME + r"(\(.*\)|)$)}"


def _headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"Content-Type": ODATA_JSON, "OData-Version": "4.0", **(extra or {})}


def _context(req, collection: str, select: list[str] | None, suffix: str = "") -> str:
    shown = f"{collection}({','.join(select)})" if select else collection
    return f"{public_base_url(req)}/data/$metadata#{shown}{suffix}"


def _next_link(req, token: str) -> str:
    import urllib.parse

    path = urllib.parse.urlsplit(req.url).path
    params = [(k, v) for k, v in req.params.items() if k.lstrip("$").lower() != "skiptoken"]
    params.append(("$skiptoken", token))
    query = urllib.parse.urlencode(params, quote_via=urllib.parse.quote, safe="$,'")
    return f"{public_base_url(req)}{path}?{query}"


@bp.route(route=ROUTE, methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@endpoint(auth="caller")
def odata_entity_set(req: func.HttpRequest, principal) -> func.HttpResponse:
    segment = req.route_params["collection"]
    if "(" in segment:
        opening = segment.index("(")
        return _by_key(req, principal, segment[:opening], segment[opening:])
    return _collection(req, principal, segment)


def _collection(req, principal, collection: str) -> func.HttpResponse:
    from shared.odata.names import collection_name
    from shared.odata.payload import dumps_collection
    from shared.odata.query import DEFAULT_PAGE_SIZE, max_page_size
    from shared.services.entity_sets import read_page

    preferred = max_page_size(req.headers.get("Prefer"))
    page = read_page(principal, collection, dict(req.params), page_size=preferred or DEFAULT_PAGE_SIZE)
    head: dict = {"@odata.context": _context(req, collection_name(page.entity), page.select)}
    if page.count is not None:
        head["@odata.count"] = page.count
    tail = {"@odata.nextLink": _next_link(req, page.next_state)} if page.next_state else {}
    extra = {"Preference-Applied": f"odata.maxpagesize={preferred}"} if preferred else None
    return func.HttpResponse(
        dumps_collection(head, page.records, tail), status_code=200, headers=_headers(extra)
    )


def _by_key(req, principal, collection: str, predicate: str) -> func.HttpResponse:
    from shared.odata.names import collection_name
    from shared.odata.payload import dumps_entity
    from shared.services.entity_sets import get_by_key

    entity, record, select = get_by_key(principal, collection, predicate, dict(req.params))
    context = _context(req, collection_name(entity), select, "/$entity")
    return func.HttpResponse(
        dumps_entity({"@odata.context": context}, record), status_code=200, headers=_headers()
    )
