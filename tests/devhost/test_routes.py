"""Route templates compile and match like the Functions host's ASP.NET routing (Microsoft.AspNetCore.Routing
``Route`` and TemplateMatcher, with the paths Kestrel decodes)."""

from __future__ import annotations

import pytest

from tools.devhost.routes import RouteError, RouteTemplate, covers, join_prefix, name_order_key, split_path

GUID = "5f0c3a4e-1b2c-4d5e-8f90-123456789abc"


def match(template: str, path: str) -> dict[str, str] | None:
    return RouteTemplate(template).match(split_path(path))


def test_literal_and_parameters() -> None:
    assert match("api/connector/enqueue/{activityId}", "/api/connector/enqueue/abc") == {"activityId": "abc"}
    assert match("api/connector/enqueue/{activityId}", "/API/Connector/Enqueue/AbC/") == {"activityId": "AbC"}
    assert match("api/connector/enqueue/{activityId}", "/api/connector/enqueue") is None
    assert match("api/connector/enqueue/{activityId}", "/api/connector/enqueue/a/b") is None


def test_values_are_url_decoded_except_an_encoded_slash() -> None:
    """Kestrel decodes every escape in the path except %2F (as written), then drops "." and ".." segments."""
    assert match("a/{name}", "/a/hello%20w%C3%B6rld") == {"name": "hello wörld"}
    assert match("a/{name}", "/a/x%2Fy") == {"name": "x%2Fy"}
    assert match("a/{name}", "/a/x%2fy%25") == {"name": "x%2fy%"}
    assert split_path("/a/./b/../c/") == ["a", "c"]


def test_optional_and_default() -> None:
    assert match("api/manage/jobs/{activityId?}", "/api/manage/jobs") == {}
    assert match("api/manage/jobs/{activityId?}", "/api/manage/jobs/7") == {"activityId": "7"}
    assert match("a/{page=1}", "/a") == {"page": "1"}


def test_all_optional_templates_match_the_root() -> None:
    """Host PR #1102: a template whose segments are all optional, or a catch-all, matches "/"."""
    assert match("{ignored:maxlength(0)?}", "/") == {}
    assert match("{ignored:maxlength(0)?}", "/foo") is None
    assert match("{ignored:maxlength(0)?}", "/foo/bar") is None
    assert match("{x?}", "/") == {}
    assert match("{x?}", "/foo") == {"x": "foo"}


def test_catch_all() -> None:
    assert match("{*path}", "/") == {}
    assert match("{*path}", "/x/y%20z/") == {"path": "x/y z"}
    assert match("data/{**rest}", "/data/a/b") == {"rest": "a/b"}
    with pytest.raises(RouteError):
        RouteTemplate("{*path}/x")


@pytest.mark.parametrize(
    ("template", "good", "bad"),
    [
        ("{id:guid}", [GUID, GUID.upper(), GUID.replace("-", ""), "{" + GUID + "}"], ["x", GUID[:-1]]),
        ("{n:int}", ["0", "-5", "2147483647"], ["1.5", "a", "2147483648"]),
        ("{n:long}", ["9223372036854775807"], ["9223372036854775808"]),
        ("{n:int:min(2):max(4)}", ["2", "4"], ["1", "5"]),
        ("{n:range(1,3)}", ["1", "3"], ["0", "4"]),
        ("{b:bool}", ["true", "False"], ["yes"]),
        ("{s:alpha}", ["abc"], ["ab1"]),
        ("{s:length(2)}", ["ab"], ["a", "abc"]),
        ("{s:length(1,2)}", ["a", "ab"], ["abc"]),
        ("{s:minlength(2):maxlength(3)}", ["ab", "abc"], ["a", "abcd"]),
        ("{d:datetime}", ["2024-01-02", "2024-01-02T03:04:05"], ["yesterday"]),
        ("{f:double}", ["1.5", "-2"], ["x", "nan"]),
        ("{code:regex(^\\d{{3}}$)}", ["123"], ["12", "1234"]),
        ("{code:regex(^(a|b)+$)}", ["abba"], ["abc"]),
    ],
)
def test_constraints(template: str, good: list[str], bad: list[str]) -> None:
    for value in good:
        assert match(template, f"/{value}") is not None, value
    for value in bad:
        assert match(template, f"/{value}") is None, value


def test_unknown_constraint_fails_at_compile_time() -> None:
    with pytest.raises(RouteError, match="unknown route constraint"):
        RouteTemplate("{id:uuid}")


def test_complex_segment() -> None:
    assert match("files/{name}.{ext}", "/files/report.final.csv") == {"name": "report.final", "ext": "csv"}
    assert match("files/{name}.{ext}", "/files/report") is None


def test_function_names_sort_as_ordinal_ignore_case() -> None:
    """FunctionMetadataManager orders functions with StringComparer.OrdinalIgnoreCase: characters are
    upper-cased and compared by code, so "_" (0x5F) sorts after every letter."""
    names = ["get_entity", "getentity", "B", "a", "Get_Entity2", "zeta", "_x"]
    assert sorted(names, key=name_order_key) == [
        "a",
        "B",
        "getentity",
        "get_entity",
        "Get_Entity2",
        "zeta",
        "_x",
    ]


@pytest.mark.parametrize(
    ("earlier", "later", "expected"),
    [
        ("things/{name}", "things/special", True),
        ("things/special", "things/{name}", False),
        ("things/{name}", "things/{other}", True),
        ("things/{id:int}", "things/{n:int}", True),
        ("things/{id:int}", "things/5", True),
        ("things/{id:int}", "things/five", False),
        ("things/{id:int}", "things/{name}", False),
        ("things/{id:int}", "things/{n:range(1,3)}", False),  # only sure answers: not taken to cover
        ("{*path}", "anything/{at}/all", True),
        ("{*path}", "", True),
        ("files/{*rest}", "files/{name}.{ext}", True),
        ("files/{name}.{ext}", "files/{other}.{ext}", False),
        ("files/{name}.{ext}", "files/{name}.{ext}", True),
        ("files/{*rest}", "files", True),
        ("files/{name}", "files/{*rest}", False),
        ("items/{id?}", "items", True),
        ("items/{id?}", "items/{id}", True),
        ("items/{id}", "items/{id?}", False),
        ("{root:maxlength(0)?}", "", True),
        ("{root:maxlength(0)?}", "x", False),
        ("a/{x}", "a/{x}/b", False),
    ],
)
def test_covers(earlier: str, later: str, expected: bool) -> None:
    """routes.covers: the earlier template matches every path the later one does (the later one is shadowed
    in name-order routing)."""
    assert covers(RouteTemplate(earlier), RouteTemplate(later)) is expected


def test_prefix_joining_and_root_route() -> None:
    assert join_prefix("api", "/x/") == "api/x"
    assert join_prefix("", "x") == "x"
    assert join_prefix("api", "") == "api"
    assert match(join_prefix("", ""), "/") == {}
    assert match(join_prefix("", ""), "/x") is None
