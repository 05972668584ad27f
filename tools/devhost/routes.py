"""Match request paths against Functions route templates with ASP.NET Core's rules, so routes behave as deployed.

Supported: literal segments (case-insensitive), ``{name}``, optional ``{name?}``, defaults
``{name=value}``, catch-alls ``{*name}``/``{**name}``, constraints ``{id:guid}``, ``{n:int:min(1)}``,
``{s:regex(...)}`` (braces inside doubled, as in ASP.NET), and complex segments such as
``{name}.{ext}``.

There is no precedence between templates: the host maps one ``Route`` per function, in function-name order
(FunctionMetadataManager sorts by name, ``StringComparer.OrdinalIgnoreCase``), into a ``RouteCollection``
(WebJobsRouteBuilder in azure-webjobs-sdk-extensions), which tries them in that order; the first match wins.
``covers`` tells when an earlier template matches every path a later one matches, i.e. shadows it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote


class RouteError(ValueError):
    """A route template cannot be parsed or uses an unknown constraint."""


Validator = Callable[[str], bool]

_GUID = re.compile(
    r"^(?:[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"|\{[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}"
    r"|\([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\))$",
    re.IGNORECASE,
)
_INT = re.compile(r"^[+-]?\d+$")


def _int_in(low: int, high: int) -> Validator:
    return lambda v: bool(_INT.match(v)) and low <= int(v) <= high


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return value.strip().lower() not in ("nan", "inf", "-inf", "+inf", "infinity")


def _is_datetime(value: str) -> bool:
    try:
        dt.datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _args(raw: str | None, count: int, name: str) -> list[str]:
    parts = [] if raw is None else [p.strip() for p in raw.split(",")]
    if len(parts) != count:
        raise RouteError(f"constraint {name} takes {count} argument(s)")
    return parts


def _constraint(name: str, raw_args: str | None) -> Validator:
    key = name.lower()
    simple: dict[str, Validator] = {
        "int": _int_in(-(2**31), 2**31 - 1),
        "long": _int_in(-(2**63), 2**63 - 1),
        "guid": lambda v: bool(_GUID.match(v)),
        "bool": lambda v: v.lower() in ("true", "false"),
        "alpha": lambda v: bool(re.fullmatch(r"[A-Za-z]+", v)),
        "decimal": _is_float,
        "double": _is_float,
        "float": _is_float,
        "datetime": _is_datetime,
        "required": lambda v: v != "",
        "nonfile": lambda v: "." not in v.rsplit("/", 1)[-1],
        "file": lambda v: "." in v.rsplit("/", 1)[-1],
    }
    if key in simple:
        if raw_args is not None:
            raise RouteError(f"constraint {name} takes no arguments")
        return simple[key]
    if key == "regex":
        if raw_args is None:
            raise RouteError("constraint regex needs a pattern: regex(...)")
        # ASP.NET evaluates route regexes case-insensitively and unanchored.
        pattern = re.compile(raw_args, re.IGNORECASE)
        return lambda v: pattern.search(v) is not None
    if key in ("min", "max"):
        (n,) = _args(raw_args, 1, name)
        bound = int(n)
        return (
            (lambda v: _INT.match(v) is not None and int(v) >= bound)
            if key == "min"
            else (lambda v: _INT.match(v) is not None and int(v) <= bound)
        )
    if key == "range":
        low, high = (int(x) for x in _args(raw_args, 2, name))
        return _int_in(low, high)
    if key in ("minlength", "maxlength"):
        (n,) = _args(raw_args, 1, name)
        size = int(n)
        return (lambda v: len(v) >= size) if key == "minlength" else (lambda v: len(v) <= size)
    if key == "length":
        parts = [] if raw_args is None else [int(p) for p in raw_args.split(",")]
        if len(parts) == 1:
            return lambda v: len(v) == parts[0]
        if len(parts) == 2:
            return lambda v: parts[0] <= len(v) <= parts[1]
        raise RouteError("constraint length takes 1 or 2 arguments")
    raise RouteError(f"unknown route constraint {name!r}")


@dataclass
class Param:
    name: str
    optional: bool = False
    catch_all: bool = False
    default: str | None = None
    validators: list[Validator] = field(default_factory=list)
    # The constraints as written (":int:min(1)"), lower-cased: equal text means equal constraints.
    constraints: str = ""

    def accepts(self, value: str) -> bool:
        return all(check(value) for check in self.validators)


@dataclass
class Segment:
    parts: list[str | Param]
    regex: re.Pattern[str] | None = None  # only for complex segments (several parts)
    text: str = ""  # the segment as written, lower-cased, for comparing complex segments

    @property
    def param(self) -> Param | None:
        """The parameter when the segment is exactly one parameter."""
        return self.parts[0] if len(self.parts) == 1 and isinstance(self.parts[0], Param) else None

    @property
    def literal(self) -> str | None:
        return self.parts[0] if len(self.parts) == 1 and isinstance(self.parts[0], str) else None

    def matches(self, value: str) -> dict[str, str] | None:
        """Route values when this segment matches one non-empty path segment, else None."""
        if self.literal is not None:
            return {} if value.lower() == self.literal.lower() else None
        param = self.param
        if param is not None:
            return {param.name: value} if value != "" and param.accepts(value) else None
        assert self.regex is not None
        found = self.regex.fullmatch(value)
        if not found:
            return None
        values: dict[str, str] = {}
        for n, p in enumerate(p for p in self.parts if isinstance(p, Param)):
            part_value = found.group(f"p{n}")
            if not p.accepts(part_value):
                return None
            values[p.name] = part_value
        return values


def _parse_param(body: str, template: str) -> Param:
    catch_all = False
    if body.startswith("**"):
        catch_all, body = True, body[2:]
    elif body.startswith("*"):
        catch_all, body = True, body[1:]
    optional = body.endswith("?")
    if optional:
        body = body[:-1]

    i = 0
    while i < len(body) and body[i] not in ":=":
        i += 1
    name = body[:i].strip()
    if not name:
        raise RouteError(f"route {template!r}: a parameter has no name")
    validators: list[Validator] = []
    default: str | None = None
    constraints_start = i
    while i < len(body):
        if body[i] == "=":
            default = body[i + 1 :]
            break
        # body[i] == ":" starts a constraint: a name, then optional (args) with nested parentheses.
        i += 1
        start = i
        while i < len(body) and body[i] not in "(:=":
            i += 1
        cname = body[start:i]
        cargs: str | None = None
        if i < len(body) and body[i] == "(":
            depth, j = 0, i
            while j < len(body):
                if body[j] == "\\":
                    j += 2
                    continue
                if body[j] == "(":
                    depth += 1
                elif body[j] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            if j >= len(body):
                raise RouteError(f"route {template!r}: unbalanced parentheses in constraint {cname}")
            cargs = body[i + 1 : j]
            i = j + 1
        validators.append(_constraint(cname, cargs))
    constraints = body[constraints_start:i].lower()
    return Param(
        name=name,
        optional=optional,
        catch_all=catch_all,
        default=default,
        validators=validators,
        constraints=constraints,
    )


def _parse_segment(text: str, template: str) -> Segment:
    parts: list[str | Param] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in "{}" and text[i : i + 2] == ch * 2:
            literal.append(ch)
            i += 2
            continue
        if ch == "}":
            raise RouteError(f"route {template!r}: unmatched '}}'")
        if ch != "{":
            literal.append(ch)
            i += 1
            continue
        if literal:
            parts.append("".join(literal))
            literal = []
        body: list[str] = []
        i += 1
        while True:
            if i >= len(text):
                raise RouteError(f"route {template!r}: unmatched '{{'")
            pair = text[i : i + 2]
            if pair in ("{{", "}}"):
                body.append(pair[0])
                i += 2
            elif text[i] == "}":
                i += 1
                break
            else:
                body.append(text[i])
                i += 1
        if parts and isinstance(parts[-1], Param):
            raise RouteError(f"route {template!r}: two parameters need a literal between them")
        parts.append(_parse_param("".join(body), template))
    if literal:
        parts.append("".join(literal))
    segment = Segment(parts, text=text.lower())
    if len(parts) > 1:
        pattern = []
        params = [p for p in parts if isinstance(p, Param)]
        for part in parts:
            if isinstance(part, str):
                pattern.append(re.escape(part))
            else:
                if part.catch_all:
                    raise RouteError(f"route {template!r}: a catch-all must be a whole segment")
                # Greedy: ASP.NET matches complex segments right to left, so later parameters
                # take the shortest tail ("{name}.{ext}" on "a.b.csv" gives ext "csv").
                group = f"(?P<p{params.index(part)}>.+{'?' if part is params[-1] else ''})"
                pattern.append(group)
        segment.regex = re.compile("".join(pattern), re.IGNORECASE | re.DOTALL)
    return segment


class RouteTemplate:
    """One compiled route template."""

    def __init__(self, template: str) -> None:
        self.template = template
        text = template.strip("/")
        self.segments = [_parse_segment(s, template) for s in text.split("/")] if text else []
        for index, segment in enumerate(self.segments):
            param = segment.param
            if param is not None and param.catch_all and index != len(self.segments) - 1:
                raise RouteError(f"route {template!r}: a catch-all must be the last segment")

    def __repr__(self) -> str:
        return f"RouteTemplate({self.template!r})"

    def match(self, path_segments: list[str]) -> dict[str, str] | None:
        """Route values for the decoded path segments, or None when the template does not match."""
        values: dict[str, str] = {}
        for index, segment in enumerate(self.segments):
            param = segment.param
            if param is not None and param.catch_all:
                rest = "/".join(path_segments[index:])
                if rest:
                    if not param.accepts(rest):
                        return None
                    values[param.name] = rest
                elif param.default is not None:
                    values[param.name] = param.default
                return values
            if index >= len(path_segments):
                # Missing trailing segments are fine only if they are optional or have defaults.
                if param is None or not (param.optional or param.default is not None):
                    return None
                if param.default is not None:
                    values[param.name] = param.default
                continue
            found = segment.matches(path_segments[index])
            if found is None:
                return None
            values.update(found)
        if len(path_segments) > len(self.segments):
            return None
        return values

    # --- shape, for shadow analysis -----------------------------------------------------------------
    def _catch_all_at(self) -> int | None:
        last = self.segments[-1].param if self.segments else None
        return len(self.segments) - 1 if last is not None and last.catch_all else None

    def accepts_length(self, count: int) -> bool:
        """Whether some path of ``count`` segments can match, judging by the shape alone."""
        for index, segment in enumerate(self.segments):
            param = segment.param
            if param is not None and param.catch_all:
                return count >= index
            if index >= count and (param is None or not (param.optional or param.default is not None)):
                return False
        return count <= len(self.segments)

    def segment_at(self, index: int) -> Segment:
        """The segment that matches path segment ``index`` (a catch-all takes every one from its place)."""
        catch_all = self._catch_all_at()
        return self.segments[catch_all if catch_all is not None and index >= catch_all else index]


def _segment_covers(earlier: Segment, later: Segment) -> bool:
    """True when ``earlier`` surely matches every non-empty path segment ``later`` matches.

    Only sure answers count: two different constraints are taken not to cover each other.
    """
    param, later_param = earlier.param, later.param
    if param is not None and not param.validators:
        return True  # a bare parameter or catch-all takes any non-empty segment
    if param is not None and param.catch_all:
        return False  # its constraints judge the whole rest of the path, not one segment
    if later_param is not None and later_param.catch_all:
        return False  # any value at all, which only a bare parameter or catch-all takes
    if later.literal is not None:
        return earlier.matches(later.literal) is not None
    if param is not None or later_param is not None:
        return param is not None and later_param is not None and param.constraints == later_param.constraints
    # Two complex segments (a literal never covers a parameter).
    return earlier.literal is None and later.literal is None and earlier.text == later.text


def covers(earlier: RouteTemplate, later: RouteTemplate) -> bool:
    """True when ``earlier`` matches every path that ``later`` matches (so ``later`` is never reached first).

    Conservative: False unless sure, e.g. ``{n:int}`` is not taken to cover ``{m:range(1,3)}``.
    """
    # Past the longer template plus one, every length behaves like the last one (only catch-alls go on).
    longest = max(len(earlier.segments), len(later.segments)) + 1
    for count in range(longest + 1):
        if not later.accepts_length(count):
            continue
        if not earlier.accepts_length(count):
            return False
        for index in range(count):
            if not _segment_covers(earlier.segment_at(index), later.segment_at(index)):
                return False
    return True


def name_order_key(function_name: str) -> str:
    """Sort key for ``StringComparer.OrdinalIgnoreCase``: each character upper-cased, then compared ordinally.

    Upper, not lower: "_" (0x5F) sorts after the letters, so "getentity" comes before "get_entity".
    """
    return "".join(c.upper() if len(c.upper()) == 1 else c for c in function_name)


def join_prefix(prefix: str, route: str) -> str:
    """The full template the host serves: the host.json routePrefix, then the function's route."""
    prefix, route = prefix.strip("/"), route.strip("/")
    return f"{prefix}/{route}" if prefix and route else prefix or route


_ENCODED_SLASH = re.compile(r"(%2[fF])")


def _decode_segment(raw: str) -> str:
    # Kestrel decodes every escape in the path except %2F, which would change the segments.
    return "".join(
        part if _ENCODED_SLASH.fullmatch(part) else unquote(part) for part in _ENCODED_SLASH.split(raw)
    )


def split_path(raw_path: str) -> list[str]:
    """Decoded path segments, as Kestrel and ASP.NET routing see them.

    Every escape is decoded except ``%2F`` (kept as written, inside one segment); ``.`` and ``..`` segments
    are removed (Kestrel's PathNormalizer); one trailing slash is ignored, as ASP.NET routing does.
    """
    path = raw_path.split("?", 1)[0]
    path = path.strip("/") if path.endswith("/") else path.lstrip("/")
    segments: list[str] = []
    for raw in path.split("/") if path else []:
        segment = _decode_segment(raw)
        if segment == ".":
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return segments
