"""Helpers over pycep-parser's JSON model of the Bicep files in infra/bicep.

pycep turns a Bicep file into nested dicts: ``parameters``, ``variables``, ``resources``,
``modules`` and ``outputs``. References to symbols are bare strings (``"storage"``), string
interpolations stay as text (``"${abbrs.webSitesFunctions}api-${resourceToken}"``), function
calls are ``{"function": {"type": ..., "parameters": {...}}}`` and operators
``{"operator": {"type": ..., "operands": {...}}}``. A conditional or looped resource wraps its body
in ``{"condition": ..., "loop_type": ..., "config": body}``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
BICEP_DIR = ROOT / "infra" / "bicep"
MAIN = BICEP_DIR / "main.bicep"
PARAMETERS_FILE = BICEP_DIR / "main.parameters.json"


def bicep_files() -> list[Path]:
    return sorted(BICEP_DIR.rglob("*.bicep"))


@functools.cache
def parse(path: Path) -> dict[str, Any]:
    return BicepParser().parse(file_path=path)


def module_path(name: str) -> Path:
    return BICEP_DIR / "modules" / f"{name}.bicep"


@dataclass(frozen=True)
class Resource:
    file: Path
    symbol: str
    type: str
    existing: bool
    body: dict[str, Any]
    condition: Any
    loop: Any

    def get(self, *path: str) -> Any:
        return get(self.body, *path)


def unwrap(config: dict[str, Any]) -> tuple[dict[str, Any], Any, Any]:
    """(body, condition, loop) of a resource's or module's config."""
    if "config" in config and ("condition" in config or "loop_type" in config):
        return config["config"], config.get("condition"), config.get("loop_type")
    return config, None, None


def resources(path: Path) -> list[Resource]:
    found = []
    for symbol, res in (parse(path).get("resources") or {}).items():
        body, condition, loop = unwrap(res["config"])
        found.append(Resource(path, symbol, res["type"], res["existing"], body, condition, loop))
    return found


def all_resources() -> list[Resource]:
    return [r for path in bicep_files() for r in resources(path)]


def resources_of_type(type_: str, *, existing: bool = False) -> list[Resource]:
    return [r for r in all_resources() if r.type.lower() == type_.lower() and r.existing == existing]


def resource(path: Path, symbol: str) -> Resource:
    for r in resources(path):
        if r.symbol == symbol:
            return r
    raise KeyError(f"{symbol} not in {path.name}")


def module(path: Path, symbol: str) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """(module declaration, body, condition)."""
    declared = parse(path)["modules"][symbol]
    body, condition, _ = unwrap(declared["config"])
    return declared, body, condition


def get(node: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(node, dict) or key not in node:
            raise KeyError(f"{key!r} missing (path {path!r})")
        node = node[key]
    return node


def function(node: Any) -> tuple[str, dict[str, Any]] | None:
    """(function type, parameters) when node is a function call."""
    if isinstance(node, dict) and "function" in node:
        return node["function"]["type"], node["function"].get("parameters") or {}
    return None


def operator(node: Any) -> tuple[str, dict[str, Any]] | None:
    if isinstance(node, dict) and "operator" in node:
        return node["operator"]["type"], node["operator"].get("operands") or {}
    return None


def accessor_chain(node: Any) -> list[str]:
    """``storage.outputs.name`` → ["storage", "outputs", "name"] (empty when not an accessor)."""
    op = operator(node)
    if not op or op[0] != "property_accessor":
        return []
    first, rest = op[1]["operand_1"], op[1]["operand_2"]
    head = [first] if isinstance(first, str) else []
    tail = accessor_chain(rest) if isinstance(rest, dict) else [rest]
    return head + tail if head and tail else []


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def strings(node: Any) -> Iterator[str]:
    return (item for item in walk(node) if isinstance(item, str))


def function_types(node: Any) -> set[str]:
    return {f[0] for item in walk(node) if (f := function(item))}


def function_app_settings() -> dict[str, Any]:
    """The Function App's generated settings, name → value (as pycep models the value)."""
    (site,) = resources_of_type("Microsoft.Web/sites")
    call = function(site.get("properties", "siteConfig", "appSettings"))
    assert call and call[0] == "concat", "appSettings should be concat([generated...], extraAppSettings)"
    generated = call[1]["arg_1"]
    names = [item["name"] for item in generated]
    assert len(names) == len(set(names)), "duplicate app setting"
    return {item["name"]: item["value"] for item in generated}


def load_parameters_file() -> dict[str, Any]:
    return json.loads(PARAMETERS_FILE.read_text(encoding="utf-8"))["parameters"]
