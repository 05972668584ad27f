"""OData v4 key predicates, as D365 clients write them in URLs (OData 4.01 URL conventions §4.3.1, ABNF
`keyPredicate`): `('usmf')`, `(Name='Group A',OperationType=Microsoft.Dynamics.DataEntities.DMFOperationType'Export')`,
`(dataAreaId='usmf',CustomerGroupId='10')`.

Values are typed as written: `'text'` (a doubled `''` is one quote), an enum `Namespace.Type'Member'` (its member
name), `true`/`false`, `null`, integers and decimals, GUIDs. The caller gets Python values: str for strings,
enum members and GUIDs; bool; None; int; Decimal.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from urllib.parse import unquote

from shared.errors import ValidationError

MAX_KEY_CHARS = 4096  # a whole predicate; D365's keys are far shorter
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENUM = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*)'")
_GUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d+)?([eE][+-]?\d+)?)")

# The name under which a single unnamed value (`('usmf')`) is returned.
SINGLE = ""


def _bad(text: str, why: str) -> ValidationError:
    shown = text if len(text) <= 200 else text[:200] + "…"
    return ValidationError(f"the key {shown!r} is not an OData key predicate: {why}", code="InvalidKey")


def _string(text: str, i: int) -> tuple[str, int]:
    """The string literal opening at text[i] == "'"; returns (value, index after its closing quote)."""
    out = []
    i += 1
    while True:
        j = text.find("'", i)
        if j < 0:
            raise _bad(text, "a quoted value is never closed")
        out.append(text[i:j])
        if text.startswith("'", j + 1):  # '' is one quote
            out.append("'")
            i = j + 2
            continue
        return "".join(out), j + 1


def _value(text: str, i: int) -> tuple[object, int]:
    if text.startswith("'", i):
        return _string(text, i)
    enum = _ENUM.match(text, i)
    if enum:
        member, end = _string(text, enum.end() - 1)
        return member, end
    guid = _GUID.match(text, i)
    if guid:
        return guid.group(0).lower(), guid.end()
    for word, value in (("true", True), ("false", False), ("null", None)):
        if text.startswith(word, i) and not _NAME.match(text, i + len(word)):
            return value, i + len(word)
    number = _NUMBER.match(text, i)
    if number:
        raw = number.group(0)
        try:
            return (
                int(raw) if number.group(2) is None and number.group(3) is None else Decimal(raw)
            ), number.end()
        except (ValueError, InvalidOperation):
            pass
    raise _bad(text, f"no value can start at {text[i : i + 20]!r}")


def parse_key(predicate: str) -> dict[str, object]:
    """The values of a key predicate, `(…)` included, by property name; a single unnamed value is under
    SINGLE (""). The predicate may still be percent-encoded (`%27` for `'`), as some clients send it.

    Raises ValidationError (400 `InvalidKey`) for anything else: no parentheses, an unclosed quote, a name
    given twice, a mix of named and unnamed values, trailing text.
    """
    text = predicate.strip()
    if "%" in text:
        text = unquote(text)
    if len(text) > MAX_KEY_CHARS:
        raise _bad(text, f"longer than {MAX_KEY_CHARS} characters")
    if not (text.startswith("(") and text.endswith(")")):
        raise _bad(text, "it must be in parentheses")
    body, i, out = text, 1, {}
    end = len(body) - 1
    if i == end:
        raise _bad(text, "it is empty")
    while True:
        name = _NAME.match(body, i)
        if name and body.startswith("=", name.end()):
            key, i = name.group(0), name.end() + 1
        elif not out and i == 1:
            key = SINGLE
        else:
            raise _bad(text, "every value of a compound key needs its property name (Name='…')")
        if key in out:
            raise _bad(text, f"{key} is given twice")
        value, i = _value(body, i)
        out[key] = value
        if i == end:
            break
        if body[i] != "," or key == SINGLE:
            raise _bad(text, f"unexpected {body[i : i + 20]!r}")
        i += 1
    return out


def format_key(values: dict[str, object]) -> str:
    """The key predicate of `values` (the inverse of parse_key for strings, enum members given as
    (type, member) tuples, bools, None and numbers): `(Name='A',OperationType=Ns.Type'Export')`."""

    def literal(value: object) -> str:
        if isinstance(value, tuple):
            enum_type, member = value
            return f"{enum_type}'{str(member).replace(chr(39), chr(39) * 2)}'"
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | Decimal):
            return str(value)
        return "'" + str(value).replace("'", "''") + "'"

    if list(values) == [SINGLE]:
        return f"({literal(values[SINGLE])})"
    return "(" + ",".join(f"{k}={literal(v)}" for k, v in values.items()) + ")"
