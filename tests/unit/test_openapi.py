"""docs/openapi.yaml documents exactly the app's HTTP endpoints: every route and method, and nothing more."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = REPO_ROOT / "docs" / "openapi.yaml"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
# The workspace UI's static files and its sign-in settings hold no data (shared/api/workspace.py).
ANONYMOUS_PATHS = {"/", "/api/health", "/workspace/config.json", "/workspace/{path}"}


@pytest.fixture(scope="module")
def spec() -> dict:
    with SPEC_PATH.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="module")
def app_operations() -> set[tuple[str, str]]:
    """(OpenAPI path, method) of every HTTP trigger, from get_functions() called once per app instance."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTH_MODE", "local")  # import-time check_auth_mode() must not depend on the shell
        mp.delenv("WEBSITE_INSTANCE_ID", raising=False)
        import function_app
        from tools.devhost.app_loader import get_functions_once

        functions = get_functions_once(function_app.app)
    operations = set()
    for function in functions:
        trigger = function.get_trigger()
        if trigger.get_binding_name() != "httpTrigger":
            continue
        # As the host serves it: an empty route at the function's name, trailing optional segments
        # (the root's "{root:maxlength(0)?}") matching their absence.
        route = (trigger.route or "").strip() or function.get_function_name()
        route = re.sub(r"(^|/)\{[^{}]*\?\}$", "", route)
        # A catch-all `{*path}` is an ordinary path parameter in OpenAPI (its value may hold slashes).
        route = re.sub(r"\{\*+([A-Za-z0-9_]+)\}", r"{\1}", route)
        # Constraints (`{collection:regex(...)}`, braces inside doubled) are not part of the OpenAPI path.
        route = re.sub(r"\{([A-Za-z0-9_]+):(?:[^{}]|\{\{|\}\})*\}", r"{\1}", route)
        assert trigger.methods, f"{function.get_function_name()} accepts every method; list them"
        for method in trigger.methods:
            operations.add(("/" + route.strip("/"), str(getattr(method, "value", method)).lower()))
    return operations


def spec_operations(spec: dict) -> set[tuple[str, str]]:
    return {(path, method) for path, item in spec["paths"].items() for method in item if method in METHODS}


def test_spec_is_openapi_3(spec):
    assert isinstance(spec, dict)
    assert str(spec["openapi"]).startswith("3."), spec.get("openapi")
    assert spec["info"]["title"] and spec["info"]["version"]
    assert spec["paths"]


def test_every_route_and_method_is_documented(spec, app_operations):
    missing = sorted(app_operations - spec_operations(spec))
    assert not missing, f"routes of the app missing from {SPEC_PATH.name}: {missing}"


def test_spec_documents_nothing_the_app_lacks(spec, app_operations):
    extra = sorted(spec_operations(spec) - app_operations)
    assert not extra, f"{SPEC_PATH.name} documents operations the app does not have: {extra}"


def test_bearer_auth_everywhere_but_the_probes(spec):
    scheme = spec["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert spec["security"] == [{"bearerAuth": []}]
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            if path in ANONYMOUS_PATHS:
                assert operation.get("security") == [], f"{method} {path} must be anonymous (security: [])"
            else:
                assert "security" not in operation, f"{method} {path} must keep the global bearerAuth"
                assert "401" in operation["responses"], f"{method} {path} should document 401"


def test_path_parameters_are_declared(spec):
    for path, item in spec["paths"].items():
        wanted = set(re.findall(r"{([^}]+)}", path))
        for method, operation in item.items():
            if method not in METHODS:
                continue
            declared = {
                p["name"]
                for p in [
                    *_resolve_all(spec, item.get("parameters", [])),
                    *_resolve_all(spec, operation.get("parameters", [])),
                ]
                if p["in"] == "path"
            }
            assert declared == wanted, f"{method} {path}: path parameters {declared} != {wanted}"


def test_every_operation_has_an_id_and_responses(spec):
    ids = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                assert operation.get("responses"), f"{method} {path} has no responses"
                ids.append(operation.get("operationId"))
    assert all(ids) and len(ids) == len(set(ids)), "operationIds must be present and unique"


def test_every_ref_resolves(spec):
    for ref in _refs(spec):
        assert ref.startswith("#/"), f"only local references: {ref}"
        _resolve(spec, ref)


def test_error_envelope_schema(spec):
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert set(error["properties"]["error"]["required"]) == {"code", "message"}


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolve(spec: dict, ref: str):
    node = spec
    for part in ref[2:].split("/"):
        assert isinstance(node, dict) and part in node, f"unresolved $ref {ref}"
        node = node[part]
    return node


def _resolve_all(spec: dict, items: list) -> list[dict]:
    return [_resolve(spec, p["$ref"]) if "$ref" in p else p for p in items]
