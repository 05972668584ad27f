"""Data entities as read-only OData entity sets, through the local host (shared/api/odata_entity_sets.py,
docs/odata.md): paging by nextLink, query options, key lookups, cross-company reads, and the routes of the
other /data endpoints left alone."""

from __future__ import annotations

import urllib.parse
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

ODATA_JSON = "application/json; odata.metadata=minimal"
ACTION = "/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities."
USMF = 25
DEMF = 5


def entity_body(collection: str) -> dict:
    return {
        "label": f"OData {collection}",
        "publicCollectionName": collection,
        "keys": ["CODE"],
        "fields": [
            {"name": "CODE", "type": "string"},
            {"name": "NAME", "type": "string"},
            {"name": "AMOUNT", "type": "decimal"},
            {"name": "QTY", "type": "int"},
        ],
    }


def write_records(name: str, company: str, records: list[dict]) -> None:
    """Records straight into the entity's table, as an import writes them (the test shares the host's Azurite)."""
    from shared.services.registry import config_service, entity_repo

    config_service().refresh()
    entity = config_service().get_entity(name)
    now = datetime.now(UTC)
    rows = [entity_repo().encode(entity, r, company, now) for r in records]
    assert not entity_repo().upsert_rows(entity, rows).failed


class World:
    def __init__(self, api) -> None:
        self.api = api
        self.name = api.unique("OdEnt")
        self.coll = api.unique("OdSet")
        api.ok("PUT", f"/api/manage/entities/{self.name}", json=entity_body(self.coll))
        usmf = [
            {"CODE": f"C{n:03d}", "NAME": f"N{n}", "AMOUNT": Decimal(f"{n}.25"), "QTY": n}
            for n in range(USMF)
        ]
        demf = [
            {"CODE": f"D{n:03d}", "NAME": f"Dn{n}", "AMOUNT": Decimal("1"), "QTY": n} for n in range(DEMF)
        ]
        write_records(self.name, "usmf", usmf)
        write_records(self.name, "demf", demf)
        self.usmf_codes = sorted(r["CODE"] for r in usmf)
        self.demf_codes = sorted(r["CODE"] for r in demf)

    def get(self, query: str = "", *, page: int | None = None, token: str | None = None, path: str = ""):
        headers = {"Prefer": f"odata.maxpagesize={page}"} if page else {}
        url = f"/data/{self.coll}{path}" + (f"?{query}" if query else "")
        if token:
            return self.api.call("GET", url, token, headers=headers)
        return self.api.admin("GET", url, headers=headers)

    def follow(self, query: str, *, page: int) -> tuple[list[dict], list[dict]]:
        """Every record of the query, following nextLinks to the end; and each page's reply."""
        first = self.get(query, page=page)
        assert first.status_code == 200, first.text
        replies, records = [first], []
        body = first.json()
        while True:
            records.extend(body["value"])
            link = body.get("@odata.nextLink")
            if not link:
                return records, [r.json() for r in replies]
            split = urllib.parse.urlsplit(link)
            # The position is in the opaque $skiptoken; the query's own options come back as sent (a
            # $skip never grows from page to page).
            linked = urllib.parse.parse_qs(split.query)
            assert linked.pop("$skiptoken") and linked == urllib.parse.parse_qs(query)
            resp = self.api.admin(
                "GET", f"{split.path}?{split.query}", headers={"Prefer": f"odata.maxpagesize={page}"}
            )
            assert resp.status_code == 200, resp.text
            replies.append(resp)
            body = resp.json()


@pytest.fixture(scope="module")
def world(api) -> World:
    return World(api)


def usmf(query: str = "") -> str:
    return "$filter=" + urllib.parse.quote("dataAreaId eq 'usmf'") + (f"&{query}" if query else "")


def test_paging_follows_nextlinks_to_the_end_and_sends_every_record_once(world):
    resp = world.get(usmf(), page=7)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == ODATA_JSON
    assert resp.headers["OData-Version"] == "4.0"
    assert resp.headers["Preference-Applied"] == "odata.maxpagesize=7"
    body = resp.json()
    assert body["@odata.context"].endswith(f"/data/$metadata#{world.coll}")
    assert len(body["value"]) == 7
    records, pages = world.follow(usmf(), page=7)
    assert [len(p["value"]) for p in pages] == [7, 7, 7, 4]
    codes = [r["CODE"] for r in records]
    assert sorted(codes) == world.usmf_codes and len(set(codes)) == USMF
    assert {r["dataAreaId"] for r in records} == {"usmf"}
    first = next(r for r in records if r["CODE"] == "C003")
    assert list(first) == ["dataAreaId", "CODE", "NAME", "AMOUNT", "QTY"]
    assert first == {"dataAreaId": "usmf", "CODE": "C003", "NAME": "N3", "AMOUNT": 3.25, "QTY": 3}


def test_decimals_are_exact_json_numbers(world):
    resp = world.get("$filter=" + urllib.parse.quote("dataAreaId eq 'usmf' and CODE eq 'C007'"))
    assert resp.status_code == 200, resp.text
    assert '"AMOUNT":7.25,' in resp.text


def test_without_a_nextlink_when_everything_fits(world):
    body = world.get(usmf()).json()
    assert len(body["value"]) == USMF and "@odata.nextLink" not in body


def test_select_top_skip_count_and_orderby_on_the_key(world):
    resp = world.get(usmf("$select=CODE&$top=5&$skip=3&$count=true&$orderby=CODE"))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["@odata.count"] == USMF
    assert body["@odata.context"].endswith(f"#{world.coll}(CODE)")
    assert body["value"] == [{"CODE": c} for c in world.usmf_codes[3:8]]
    assert "@odata.nextLink" not in body


def test_orderby_on_the_key_holds_across_pages_and_top_spans_pages(world):
    records, pages = world.follow(usmf("$orderby=CODE&$count=true"), page=4)
    assert [r["CODE"] for r in records] == world.usmf_codes
    assert {p["@odata.count"] for p in pages} == {USMF}
    records, pages = world.follow(usmf("$top=10&$skip=2"), page=4)
    assert len(records) == 10 and len({r["CODE"] for r in records}) == 10
    assert [len(p["value"]) for p in pages] == [4, 4, 2]


def test_key_lookup(world):
    resp = world.get(path="(dataAreaId='usmf',CODE='C011')")
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == ODATA_JSON
    body = resp.json()
    assert body["@odata.context"].endswith(f"#{world.coll}/$entity")
    assert (body["dataAreaId"], body["CODE"], body["QTY"]) == ("usmf", "C011", 11)
    # Keys are case-insensitive, as in D365; the key's names too.
    assert world.get(path="(DATAAREAID='USMF',code='c011')").json()["CODE"] == "C011"
    selected = world.get("$select=NAME", path="(dataAreaId='demf',CODE='D001')")
    assert selected.status_code == 200 and selected.json() == {
        "@odata.context": selected.json()["@odata.context"],
        "NAME": "Dn1",
    }
    missing = world.get(path="(dataAreaId='usmf',CODE='D001')")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NotFound"
    for bad in (
        "(dataAreaId='usmf',NOPE='x')",
        "(dataAreaId='usmf')",
        "(dataAreaId='usmf',CODE='x',CODE='y')",
    ):
        resp = world.get(path=bad)
        assert resp.status_code == 400, (bad, resp.text)
        assert resp.json()["error"]["code"] == "InvalidKey"


def test_cross_company_reads_every_legal_entity(world):
    records, _ = world.follow("cross-company=true", page=10)
    mine = records
    assert sorted(r["CODE"] for r in mine) == sorted(world.usmf_codes + world.demf_codes)
    assert {r["dataAreaId"] for r in mine} == {"usmf", "demf"}
    only_demf = world.get("cross-company=true&$filter=" + urllib.parse.quote("dataAreaId eq 'demf'")).json()
    assert sorted(r["CODE"] for r in only_demf["value"]) == world.demf_codes


def test_without_cross_company_a_read_covers_the_default_legal_entity(world):
    # Nothing names a legal entity: the default (ODATA_DEFAULT_LEGAL_ENTITY, else dat, as D365's) holds none.
    body = world.get().json()
    assert body["value"] == []
    demf = world.get("$filter=" + urllib.parse.quote("dataAreaId eq 'demf'")).json()
    assert sorted(r["CODE"] for r in demf["value"]) == world.demf_codes


def test_filter(world):
    text = "AMOUNT gt 10 and (startswith(NAME, 'N1') or QTY eq 22) and dataAreaId eq 'usmf'"
    body = world.get("$filter=" + urllib.parse.quote(text)).json()
    assert sorted(r["CODE"] for r in body["value"]) == ["C010", "C011", "C012", "C013", "C014", "C015"] + [
        "C016",
        "C017",
        "C018",
        "C019",
        "C022",
    ]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("$expand=Lines", "UnsupportedQueryOption"),
        ("company=usmf", "UnsupportedQueryOption"),
        ("$orderby=NAME", "InvalidQueryOption"),
        ("$orderby=CODE&cross-company=true", "InvalidQueryOption"),
        ("$top=-1", "InvalidQueryOption"),
        ("$filter=" + urllib.parse.quote("NOPE eq 1"), "InvalidFilter"),
        ("$filter=" + urllib.parse.quote("tolower(NAME) eq 'x'"), "UnsupportedFilterFunction"),
        ("$skiptoken=abc", "InvalidSkipToken"),
    ],
)
def test_bad_queries_are_400_in_the_odata_error_shape(world, query, code):
    resp = world.get(query)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["code"] == code and error["message"]


def test_a_changed_or_moved_skiptoken_is_400(world):
    link = world.get(usmf(), page=5).json()["@odata.nextLink"]
    split = urllib.parse.urlsplit(link)
    params = urllib.parse.parse_qs(split.query)
    token = params["$skiptoken"][0]
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    for query in (
        usmf("$skiptoken=" + urllib.parse.quote(flipped)),
        # The same token with other options: bound to the query it continues.
        usmf("$top=3&$skiptoken=" + urllib.parse.quote(token)),
    ):
        resp = world.api.admin("GET", f"{split.path}?{query}")
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"]["code"] == "InvalidSkipToken"


def test_unknown_sets_are_404_and_names_are_unique(api, world):
    resp = api.admin("GET", f"/data/{api.unique('NoSuchSet')}")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "EntitySetNotFound"
    clash = api.admin(
        "PUT", f"/api/manage/entities/{api.unique('OdOther')}", json=entity_body(world.coll.upper())
    )
    assert clash.status_code == 400 and clash.json()["error"]["code"] == "DuplicateCollectionName", clash.text
    # The entity itself keeps its name on a PUT of its own.
    again = api.admin("PUT", f"/api/manage/entities/{world.name}", json=entity_body(world.coll))
    assert again.status_code == 200, again.text


def test_a_partner_reads_and_a_caller_without_a_token_does_not(api, world):
    assert api.call("GET", f"/data/{world.coll}", None).status_code == 401
    stranger = api.make_token(str(uuid.uuid4()))
    denied = api.call("GET", f"/data/{world.coll}?{usmf()}", stranger)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "ApplicationNotAuthorized"
    # Nor does it learn which sets exist.
    unknown = api.call("GET", f"/data/{api.unique('NoSuchSet')}", stranger)
    assert unknown.status_code == 403 and unknown.json() == {
        "error": {**denied.json()["error"], "message": unknown.json()["error"]["message"]}
    }
    app = str(uuid.uuid4())
    project = api.unique("OdPrj")
    api.ok(
        "PUT",
        f"/api/manage/projects/{project}",
        json={"operation": "export", "entities": [{"entity": world.name, "format": "CSV"}]},
    )
    api.ok(
        "POST",
        "/api/manage/jobs",
        json={
            "name": api.unique("OdJob"),
            "project": project,
            "authorizationPolicy": [{"applicationId": app, "enabled": True}],
        },
    )
    # A job's authorization policy does not let an application read data entities: its registration does.
    on_policy = world.get(usmf(), token=api.make_token(app))
    assert on_policy.status_code == 403 and on_policy.json()["error"]["code"] == "ApplicationNotAuthorized"
    assert f"/api/manage/applications/{app}" in on_policy.json()["error"]["message"]
    body = {"name": "OData reader", "capabilities": ["readDataEntities"], "legalEntities": ["usmf"]}
    api.ok("PUT", f"/api/manage/applications/{app}", json=body)
    resp = world.get(usmf(), token=api.make_token(app))
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["value"]) == USMF


def test_the_other_data_routes_still_reach_their_functions(api, world):
    """With the entity set route registered, the actions and /api routes are untouched (HOST.md: routes are
    tried in function-name order; ours excludes `$…` and `DataManagementDefinitionGroup…` by its regex)."""
    status = api.admin("POST", ACTION + "GetMessageStatus", json={"messageId": str(uuid.uuid4())})
    assert status.status_code == 404, status.text
    assert status.json()["error"]["code"] != "EntitySetNotFound"
    assert api.call("GET", "/api/health", None).status_code == 200
    assert api.admin("GET", f"/api/manage/entities/{world.name}").json()["publicCollectionName"] == world.coll
    # Paths of the other /data endpoints are never answered by this function, whoever serves them.
    for path in (
        "/data/$metadata",
        "/data/DataManagementDefinitionGroups",
        "/data/DataManagementDefinitionGroupDetails",
    ):
        resp = api.admin("GET", path)
        assert not (resp.content and "EntitySetNotFound" in resp.text), (path, resp.text)
    wrong_method = api.admin("GET", ACTION + "GetMessageStatus")
    assert wrong_method.status_code == 404 and b"EntitySetNotFound" not in wrong_method.content


def read_all(principal, collection: str, params: dict, page_size: int) -> tuple[list[dict], int | None]:
    """Every record of a read through the service in this process (same storage as the host), page by page."""
    from shared.services.entity_sets import read_page

    page = read_page(principal, collection, dict(params), page_size=page_size)
    records, count = list(page.records), page.count
    while page.next_state:
        page = read_page(
            principal, collection, {**params, "$skiptoken": page.next_state}, page_size=page_size
        )
        records.extend(page.records)
        assert page.count == count
    return records, count


def test_a_caller_reads_only_the_legal_entities_it_may_see(world, monkeypatch):
    """app_access decides (its rules are another module's): cross-company keeps to allowed_legal_entities, a
    legal entity `require` refuses is left out silently, and a named one is a 403."""
    from shared.auth.principal import Principal
    from shared.errors import ForbiddenError
    from shared.services import app_access

    caller = Principal(app_id=str(uuid.uuid4()))
    monkeypatch.setattr(app_access, "require", lambda principal, capability, legal_entity=None: None)
    monkeypatch.setattr(app_access, "allowed_legal_entities", lambda principal: {"demf", "zz"})
    records, count = read_all(caller, world.coll, {"cross-company": "true", "$count": "true"}, 2)
    assert sorted(r["CODE"] for r in records) == world.demf_codes and count == DEMF
    asked_for_usmf, _ = read_all(
        caller, world.coll, {"cross-company": "true", "$filter": "dataAreaId eq 'usmf'"}, 2
    )
    assert asked_for_usmf == []
    # Its only legal entity is its default one.
    monkeypatch.setattr(app_access, "allowed_legal_entities", lambda principal: {"DEMF"})
    records, _ = read_all(caller, world.coll, {}, 100)
    assert sorted(r["CODE"] for r in records) == world.demf_codes

    def require(principal, capability, legal_entity=None):
        if legal_entity == "usmf":
            raise ForbiddenError("not usmf", code="ApplicationNotAuthorized")

    monkeypatch.setattr(app_access, "require", require)
    monkeypatch.setattr(app_access, "allowed_legal_entities", lambda principal: None)
    records, count = read_all(caller, world.coll, {"cross-company": "true", "$count": "true"}, 4)
    assert sorted(r["CODE"] for r in records) == world.demf_codes and count == DEMF
    with pytest.raises(ForbiddenError):
        read_all(caller, world.coll, {"$filter": "dataAreaId eq 'usmf'"}, 4)


def test_pages_in_storage_order_resume_exactly_across_table_pages(world, monkeypatch):
    """Pages that end inside a Table page, at its end, and between legal entities all resume where they
    stopped: small Table pages make every case happen."""
    from shared.auth.principal import Principal
    from shared.services import entity_sets

    monkeypatch.setattr(entity_sets, "TABLE_PAGE", 3)
    admin = Principal(app_id=str(uuid.uuid4()), roles=frozenset({"Integrations.Admin"}))
    expected = sorted(world.usmf_codes + world.demf_codes)
    for size in (1, 2, 3, 4, 7, 30):
        records, _ = read_all(admin, world.coll, {"cross-company": "true"}, size)
        codes = [r["CODE"] for r in records]
        assert sorted(codes) == expected and len(codes) == len(expected), size
