"""Every Bicep file parses, main.bicep follows the azd conventions, and modules are local."""

from __future__ import annotations

import json
import re

import pytest

from .bicep_model import (
    BICEP_DIR,
    MAIN,
    bicep_files,
    function,
    get,
    module,
    parse,
    resource,
    resources,
)

EXPECTED_MODULES = {
    "identity",
    "monitoring",
    "storage",
    "rbac",
    "network",
    "storage-private-endpoints",
    "function-app",
}


def test_bicep_files_are_found():
    names = {p.relative_to(BICEP_DIR).as_posix() for p in bicep_files()}
    assert "main.bicep" in names
    assert {f"modules/{m}.bicep" for m in EXPECTED_MODULES} <= names


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(BICEP_DIR).as_posix())
def test_every_bicep_file_parses(path):
    parsed = parse(path)
    assert parsed.get("resources") or parsed.get("modules"), f"{path.name} declares nothing"


def test_main_targets_the_subscription_and_creates_the_resource_group():
    parsed = parse(MAIN)
    assert get(parsed, "globals", "scope", "value") == "subscription"
    groups = [r for r in resources(MAIN) if r.type == "Microsoft.Resources/resourceGroups"]
    assert len(groups) == 1
    assert groups[0].get("tags") == "tags"
    assert groups[0].get("location") == "location"


def test_naming_token_and_tags_follow_azd():
    variables = parse(MAIN)["variables"]
    to_lower = function(variables["resourceToken"]["value"])
    assert to_lower and to_lower[0] == "to_lower"
    unique = function(to_lower[1]["string_to_change"])
    assert unique and unique[0] == "unique_string"
    args = unique[1]
    assert function(get(args, "base_string", "operator", "operands", "operand_1"))[0] == "subscription"
    assert get(args, "base_string", "operator", "operands", "operand_2") == "id"
    assert (args["extra_string_1"], args["extra_string_2"]) == ("environmentName", "location")
    assert variables["tags"]["value"] == {"'azd-env-name'": "environmentName"}


def test_azd_parameters_are_declared():
    params = parse(MAIN)["parameters"]
    assert params["environmentName"]["type"] == "string"
    assert params["location"]["type"] == "string"
    metadata = [d for d in params["location"]["decorators"] if d["type"] == "metadata"]
    assert metadata and metadata[0]["argument"] == {"azd": {"type": "location"}}
    assert params["principalId"]["default"] == ""


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(BICEP_DIR).as_posix())
def test_modules_are_local_files(path):
    for symbol, declared in (parse(path).get("modules") or {}).items():
        assert declared["type"] == "local", f"{symbol} in {path.name} is not a local module"
        target = (path.parent / declared["detail"]["path"]).resolve()
        assert target.is_file(), f"{symbol} points to a missing {target}"
        assert BICEP_DIR in target.parents


def test_main_wires_every_module():
    modules = parse(MAIN)["modules"]
    used = {
        declared["detail"]["path"].removeprefix("modules/").removesuffix(".bicep")
        for declared in modules.values()
    }
    assert used == EXPECTED_MODULES
    for symbol in modules:
        _, body, _ = module(MAIN, symbol)
        assert body["scope"] == "rg", f"module {symbol} is not deployed into the resource group"
        assert body["params"].get("tags", "tags") == "tags"


def test_module_params_are_declared_by_the_module():
    for symbol, declared in parse(MAIN)["modules"].items():
        target = (MAIN.parent / declared["detail"]["path"]).resolve()
        declared_params = parse(target).get("parameters") or {}
        _, body, _ = module(MAIN, symbol)
        passed = set(body.get("params") or {})
        unknown = passed - set(declared_params)
        assert not unknown, f"module {symbol} gets undeclared params {unknown}"
        required = {name for name, p in declared_params.items() if p["default"] is None}
        assert required <= passed, f"module {symbol} misses required params {required - passed}"


def test_abbreviations_cover_every_use():
    abbreviations = json.loads((BICEP_DIR / "abbreviations.json").read_text(encoding="utf-8"))
    used = set(re.findall(r"\babbrs\.(\w+)", MAIN.read_text(encoding="utf-8")))
    assert used, "main.bicep should name resources with abbreviations.json"
    assert used <= set(abbreviations), f"missing abbreviations: {used - set(abbreviations)}"
    load = function(parse(MAIN)["variables"]["abbrs"]["value"])
    assert load and load[0] == "load_json_content"
    assert load[1]["file_path"].endswith("abbreviations.json")


def test_user_assigned_identity_is_created():
    identity = resource(BICEP_DIR / "modules" / "identity.bicep", "identity")
    assert identity.type == "Microsoft.ManagedIdentity/userAssignedIdentities"
    outputs = parse(BICEP_DIR / "modules" / "identity.bicep")["outputs"]
    assert {"id", "principalId", "clientId"} <= set(outputs)
