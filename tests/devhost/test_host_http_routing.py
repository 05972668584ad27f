"""The local host routes HTTP requests as the Functions host does: which function serves which path, which
routes it refuses at start, and what it answers itself when no function does. In-process DevHost, real HTTP.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import requests

from tests.devhost.http_apps import MASTER_KEY, serve
from tools.devhost.http_server import Router, Shadowed

HEADER = (
    "import azure.functions as func\n\napp = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)\n"
)


def fn(name: str, route: str | None, methods: list[str] | None = None, body: str | None = None) -> str:
    """Source of an HTTP function answering ``body`` (default: its name) as text."""
    args = [] if route is None else [f"route={route!r}"]
    if methods is not None:
        args.append(f"methods={methods!r}")
    answer = repr(body or name)
    return (
        f"\n@app.route({', '.join(args)})\n"
        f"def {name}(req: func.HttpRequest) -> func.HttpResponse:\n"
        f"    return func.HttpResponse({answer})\n"
    )


def get(host, path: str, method: str = "GET", **kw) -> requests.Response:
    return requests.request(method, host.url + path, timeout=10, **kw)


def test_an_empty_route_is_served_at_the_function_name(tmp_path: Path) -> None:
    """An empty or whitespace route is the function's name (ScriptHost.ValidateHttpFunction;
    WebScriptHostHttpRoutesManager.InitializeHttpFunctionRoutes), after the routePrefix."""
    source = HEADER + fn("root", "", ["GET"]) + fn("blank", "   ", ["GET"])
    with serve(tmp_path, source) as host:
        assert get(host, "/root").text == "root"
        assert get(host, "/blank").text == "blank"
        assert get(host, "/").status_code == 200  # the homepage, not the function
        assert get(host, "/").headers["Content-Type"].startswith("text/html")
    with serve(tmp_path, source, route_prefix="api") as host:
        assert get(host, "/api/root").text == "root"
        assert get(host, "/api").status_code == 404


def test_the_homepage_answers_slash_when_no_function_does(tmp_path: Path) -> None:
    """HomepageMiddleware: Request.Path exactly "/" and no function ran: 204 with no body when
    AzureWebJobsDisableHomepage is "true" (any case), the HTML homepage otherwise; whatever the method."""
    source = HEADER + fn("things", "things")
    with serve(tmp_path, source) as host:
        for method in ("GET", "POST"):
            page = get(host, "/", method)
            assert page.status_code == 200 and page.headers["Content-Type"] == "text/html", method
            assert b"<html" in page.content
        assert get(host, "/?x=1").status_code == 200
        assert get(host, "/nothing").status_code == 404
    with serve(tmp_path, source, settings={"AzureWebJobsDisableHomepage": "True"}) as host:
        for method in ("GET", "POST", "DELETE"):
            disabled = get(host, "/", method)
            assert disabled.status_code == 204 and disabled.content == b"", method


def test_an_all_optional_template_serves_slash_and_nothing_else(tmp_path: Path) -> None:
    """A template whose segments are all optional matches "/" (host PR #1102, Azure/Azure-Functions#2473);
    {x:maxlength(0)?} matches no other one-segment path, so the rest falls through to 404."""
    source = HEADER + fn("probe", "{ignored:maxlength(0)?}", ["GET"]) + fn("named", "named", ["GET"])
    with serve(tmp_path, source, settings={"AzureWebJobsDisableHomepage": "true"}) as host:
        assert get(host, "/").text == "probe"
        assert get(host, "/named").text == "named"
        for path in ("/foo", "/probe", "/foo/bar"):
            missing = get(host, path)
            assert missing.status_code == 404 and missing.content == b"", path
        assert get(host, "/", "POST").status_code == 204  # a method the probe does not take: the homepage


def test_reserved_route_prefixes_are_refused_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """ScriptHost.ValidateHttpFunction: a route whose lower-cased text, without surrounding slashes, begins
    with "admin" or "runtime" (a plain string prefix) conflicts with the built-in routes; ScriptHost
    .GetFunctionDescriptorsAsync leaves that function out with an error and starts the others. The check is on
    the function's own route, so routePrefix does not save it."""
    source = (
        HEADER
        + fn("admin_route", "admin/things", ["GET"])
        + fn("administrator", "/Administrator", ["GET"])
        + fn("runtime_route", "RUNTIME", ["GET"])
        + fn("runtimes", "runtimes/x", ["GET"])
        + fn("fine", "api/admin", ["GET"])
    )
    refused = {"admin_route", "administrator", "runtime_route", "runtimes"}
    for prefix in ("", "api"):
        caplog.clear()
        with caplog.at_level(logging.ERROR), serve(tmp_path, source, route_prefix=prefix) as host:
            assert set(host.index.errors) == refused
            base = f"/{prefix}" if prefix else ""
            assert get(host, f"{base}/api/admin").text == "fine"
            assert get(host, f"{base}/Administrator").status_code == 404
            for name in refused:
                message = f"The '{name}' function is in error: The specified route conflicts with one or more built in routes."
                assert message in caplog.text
            assert "administrator: in error" in "\n".join(host.describe())


def test_a_second_function_on_the_same_route_and_method_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """ScriptHost.HttpRoutesConflict: the same route (surrounding slashes trimmed, case ignored) and an
    intersecting method (none listed means all) conflict; functions are validated in name order, so the later
    name is the one left out ("The route specified conflicts with the route defined by function '...'")."""
    source = (
        HEADER
        + fn("b_get", "items/{id}", ["GET"])
        + fn("a_get", "items/{id}", ["GET", "PUT"])
        + fn("c_post", "/ITEMS/{id}/", ["POST"])
        + fn("d_all", "items/{id}")
        + fn("e_other_name", "items/{other}", ["GET"])  # other text: no conflict, though never reached by GET
    )
    with caplog.at_level(logging.ERROR), serve(tmp_path, source) as host:
        assert host.index.errors == {
            "b_get": "The route specified conflicts with the route defined by function 'a_get'.",
            "d_all": "The route specified conflicts with the route defined by function 'a_get'.",
        }
        assert "The 'b_get' function is in error" in caplog.text
        assert get(host, "/items/1").text == "a_get"
        assert get(host, "/items/1", "POST").text == "c_post"
        assert [f.name for f in host._server.router.functions] == ["a_get", "c_post", "e_other_name"]


def test_routes_are_tried_in_function_name_order_first_match_wins(tmp_path: Path) -> None:
    """No precedence: FunctionMetadataManager orders functions by name with StringComparer.OrdinalIgnoreCase
    (characters upper-cased, so "_" sorts after letters), WebScriptHostHttpRoutesManager maps them in that
    order and the RouteCollection built by WebJobsRouteBuilder takes the first route that matches, the method
    being one of its constraints (HttpMethodRouteConstraint)."""
    source = (
        HEADER
        + fn("thing_special", "things/special", ["GET", "POST"])
        + fn("Thing_param", "things/{name}", ["GET"])  # "THING_PARAM" < "THING_SPECIAL", whatever the case
        + fn("get_entity", "entity/{x}", ["GET"])
        + fn("getentity", "entity/{y}", ["GET"])  # "GETENTITY" < "GET_ENTITY": "E" is 0x45, "_" 0x5F
    )
    with serve(tmp_path, source) as host:
        assert get(host, "/things/special").text == "Thing_param"
        assert get(host, "/things/special", "POST").text == "thing_special"
        assert get(host, "/entity/1").text == "getentity"


def test_shadowed_lists_routes_an_earlier_function_always_takes(tmp_path: Path) -> None:
    """Router.shadowed(): what name-order routing (see the test above; FunctionMetadataManager,
    WebJobsRouteBuilder) makes unreachable, per method. Partial overlap is not shadowing."""
    source = (
        HEADER
        + fn("a_any", "files/{*path}", ["GET"])
        + fn("b_file", "files/{name}.{ext}", ["GET", "POST"])  # GET always taken by a_any
        + fn("c_int", "n/{id:int}", ["GET"])
        + fn("d_literal", "n/5", ["GET"])  # "5" is an int
        + fn("e_word", "n/five", ["GET"])  # not an int: reachable
        + fn("f_all", "m/{x}")
        + fn("g_get", "m/{y}", ["GET"])  # every method taken
    )
    with serve(tmp_path, source) as host:
        shadowed = host._server.router.shadowed()
        assert shadowed == [
            Shadowed("b_file", "files/{name}.{ext}", frozenset({"GET"}), ("a_any",)),
            Shadowed("d_literal", "n/5", frozenset({"GET"}), ("c_int",)),
            Shadowed("g_get", "m/{y}", frozenset({"GET"}), ("f_all",)),
        ]
        assert get(host, "/files/a.txt").text == "a_any"
        assert get(host, "/files/a.txt", "POST").text == "b_file"
    assert Router([]).shadowed() == []


def test_no_match_is_404_with_no_body_never_405_and_head_is_not_get(tmp_path: Path) -> None:
    """No route matching the method is no match at all (HttpMethodRouteConstraint in the RouteCollection), so
    the end of the pipeline answers 404 with an empty body; HEAD and OPTIONS are methods of their own."""
    source = HEADER + fn("only_get", "thing", ["GET"]) + fn("every", "every")
    with serve(tmp_path, source) as host:
        for method in ("POST", "DELETE", "HEAD", "OPTIONS", "PATCH"):
            response = get(host, "/thing", method)
            assert response.status_code == 404 and response.content == b"", method
            assert "Allow" not in response.headers
        assert get(host, "/every", "OPTIONS").text == "every"
        head = get(host, "/every", "HEAD")
        assert head.status_code == 200 and head.content == b""


def test_a_function_that_raises_gets_500_with_no_body(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """ExceptionMiddleware sets 500 and writes nothing; the error is in the log, with the host's
    "Executed 'Functions.<name>' (Failed, ...)" line (FunctionInstanceLogger, azure-webjobs-sdk)."""
    source = HEADER + (
        "\n@app.route(route='boom')\n"
        "def boom(req: func.HttpRequest) -> func.HttpResponse:\n"
        "    raise RuntimeError('kaboom')\n"
    )
    with serve(tmp_path, source) as host:
        response = get(host, "/boom")
        assert response.status_code == 500 and response.content == b""
    err = capfd.readouterr().err
    assert "RuntimeError: kaboom" in err
    assert "Executed 'Functions.boom' (Failed, Id=" in err


def test_function_keys_are_required_below_anonymous(tmp_path: Path) -> None:
    """FunctionInvocationMiddleware.RequiresAuthz and AuthenticationLevelHandler: a function-level function
    needs a key in x-functions-key (which wins) or ?code=, else 401 with no body. The local host has no
    function keys: its master key (which satisfies every level) is the key."""
    source = (
        "import azure.functions as func\n\napp = func.FunctionApp()\n"  # the default level is FUNCTION
        + fn("keyed", "keyed", ["GET"])
    )
    with serve(tmp_path, source) as host:
        assert get(host, "/keyed").status_code == 401
        assert get(host, "/keyed", headers={"x-functions-key": "wrong"}).status_code == 401
        assert get(host, f"/keyed?code={MASTER_KEY}", headers={"x-functions-key": "wrong"}).status_code == 401
        assert get(host, "/keyed", headers={"x-functions-key": MASTER_KEY}).text == "keyed"
        assert get(host, f"/keyed?code={MASTER_KEY}").text == "keyed"
