"""Bounded JSON for request bodies: the one parser every JSON body (and JSON inside a request) goes through.

Each limit is checked before a value is built, each failure an AppError that names it:

- size: more than `max_bytes` bytes -> 413 `PayloadTooLarge` (checked on len() before anything else);
- encoding: not UTF-8 (a BOM is allowed), or a `\\uD800`-style escape that decodes to a lone UTF-16
  surrogate -> 400 `InvalidUnicode`. Python's json accepts lone surrogates, and they fail later, when
  Table storage or a blob name encodes the text (UnicodeEncodeError, a 500);
- nesting: more than `max_depth` open arrays/objects -> 400 `JsonTooDeep`. json.loads recurses per level
  and raises RecursionError near 1,000 levels (a 500), so depth is counted by a flat scan first;
- numbers: a literal longer than `max_number_chars` characters, or one that overflows a float (`1e999`) ->
  400 `JsonNumberTooLong`. int() refuses literals over 4,300 digits with ValueError
  (sys.int_max_str_digits), and below that a long literal costs quadratic time;
- grammar: anything else that is not JSON (NaN and Infinity included) -> 400 `InvalidJson`.

PSI sends `{'messageId':'<guid>'}` (PROTOCOL §4), so `lenient_quotes` also accepts a single-quoted string
wherever JSON has a string, and PowerShell's `True`/`False` (what `"$true"` interpolates to) for JSON's
`true`/`false`: the scan rewrites those tokens and the same json.loads parses the result, under the same
limits. Nothing else beyond JSON is accepted, and no Python evaluator ever sees request data (issue 17: `ast.literal_eval` on a 4 MB body took the host from 768 MB to 2.2 GB).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from shared.errors import TooLargeError, ValidationError

KIB = 1024
# Per-endpoint caps: the OData/connector action bodies are a few IDs; configuration documents are larger.
ACTION_BODY_BYTES = 64 * KIB
CONFIG_BODY_BYTES = 1024 * KIB
MAX_DEPTH = 64
MAX_NUMBER_CHARS = 40
# Strings of an action body are IDs, names and URLs (a SAS URL is about 500 characters, the dequeue reply
# that ack accepts as one JSON string about 700).
ACTION_STRING_CHARS = 2048

_BOM = b"\xef\xbb\xbf"

# The scan sees exactly what json.loads sees up to the first point json.loads would reject: strings are
# skipped whole (so brackets and digits inside them do not count), brackets counted, number literals
# measured. Every position matches one alternative, and quantifiers are possessive, so the scan is linear
# whatever the input: an unterminated string is an error at once instead of a retry at every later quote.
_SCAN = re.compile(
    r"""
    (?P<string>"[^"\\]*+(?:\\.[^"\\]*+)*+")      # a JSON string, escapes validated later by json.loads
    |(?P<single>'[^'\\]*+(?:\\.[^'\\]*+)*+')     # a single-quoted string (PSI)
    |(?P<open>[\[{])
    |(?P<close>[\]}])
    |(?P<number>-?[0-9][0-9.eE+-]*+)
    |(?P<word>[A-Za-z]++)                      # true, false, null; PowerShell's True and False (lenient)
    |[^"'\[\]{}0-9A-Za-z-]++                  # anything else: json.loads judges it
    |(?P<quote>["'])                           # a quote that opens a string never closed
    |-
    """,
    re.VERBOSE | re.DOTALL,
)
# A PowerShell client that builds single-quoted JSON by interpolating "$true" writes True (PROTOCOL §6 bodies).
_POWERSHELL_BOOLEANS = {"True": "true", "False": "false"}
_SINGLE_ESCAPES = re.compile(r"""\\(.)|(")""", re.DOTALL)
# json.loads turns these escapes into surrogates; only when one occurs can a lone surrogate result.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class JsonLimits:
    """`max_bytes`: the body's size in bytes; `max_depth`: open arrays/objects; `max_number_chars`: the
    length of one number literal, sign, fraction and exponent included; `max_string_chars`: the length of
    one string as written, quotes and escapes included (None: only `max_bytes` bounds it)."""

    max_bytes: int = ACTION_BODY_BYTES
    max_depth: int = MAX_DEPTH
    max_number_chars: int = MAX_NUMBER_CHARS
    max_string_chars: int | None = None


def check_size(size: int, max_bytes: int, what: str = "the request body") -> None:
    if size > max_bytes:
        raise TooLargeError(
            f"{what} has {size} bytes; this endpoint accepts at most {max_bytes} bytes",
            code="PayloadTooLarge",
        )


def decode_body(raw: bytes, limits: JsonLimits, what: str = "the request body") -> str:
    """The body as text: size checked first, then strict UTF-8 (a leading BOM is dropped)."""
    check_size(len(raw), limits.max_bytes, what)
    if raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(
            f"{what} is not valid UTF-8 (byte {exc.start}: {raw[exc.start : exc.start + 4]!r}); send JSON "
            "encoded as UTF-8",
            code="InvalidUnicode",
        ) from None


def parse_bytes(
    raw: bytes,
    limits: JsonLimits = JsonLimits(),
    *,
    lenient_quotes: bool = False,
    what: str = "the request body",
) -> Any:
    """The JSON value of `raw` (bytes), under `limits`. An empty or blank body is an InvalidJson error."""
    return parse_text(decode_body(raw, limits, what), limits, lenient_quotes=lenient_quotes, what=what)


def parse_text(
    text: str,
    limits: JsonLimits = JsonLimits(),
    *,
    lenient_quotes: bool = False,
    what: str = "the request body",
) -> Any:
    """The JSON value of `text`, under `limits` (`max_bytes` applies to its UTF-8 length).

    Raises TooLargeError (413) or ValidationError (400) with code PayloadTooLarge, InvalidUnicode,
    JsonTooDeep, JsonNumberTooLong, JsonStringTooLong or InvalidJson.
    """
    if len(text) > limits.max_bytes:  # a character is at least one byte: no need to encode to know
        check_size(len(text), limits.max_bytes, what)
    if _SURROGATE.search(text):
        raise ValidationError(f"{what} holds a lone UTF-16 surrogate character", code="InvalidUnicode")
    source = _scan(text, limits, lenient_quotes, what)
    try:
        value = json.loads(source, parse_float=_finite_float, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        near = "" if source is not text else f" at position {exc.pos}"
        raise ValidationError(f"{what} is not valid JSON: {exc.msg}{near}", code="InvalidJson") from None
    except _NotJson as exc:
        raise ValidationError(f"{what} is not valid JSON: {exc}", code="InvalidJson") from None
    except _NumberOutOfRange as exc:
        raise ValidationError(
            f"{what} holds the number {exc} that is out of range", code="JsonNumberTooLong"
        ) from None
    except (RecursionError, ValueError, TypeError) as exc:  # not expected after the scan: still the caller's
        raise ValidationError(
            f"{what} is not valid JSON ({type(exc).__name__})", code="InvalidJson"
        ) from None
    if _SURROGATE_ESCAPE.search(source):
        _reject_lone_surrogates(value, what)
    return value


def _scan(text: str, limits: JsonLimits, lenient_quotes: bool, what: str) -> str:
    """Counts depth and measures numbers in one pass; returns `text`, with single-quoted strings rewritten
    as JSON strings when `lenient_quotes` (else they are refused)."""
    depth = 0
    pieces: list[str] | None = None
    last = 0
    for match in _SCAN.finditer(text):
        kind = match.lastgroup
        if kind is None:
            continue
        length = match.end() - match.start()
        if kind in ("string", "single") and length - 2 > (limits.max_string_chars or length):
            raise ValidationError(
                f"{what} holds a string of {length - 2} characters at position {match.start()}; strings "
                f"here may have at most {limits.max_string_chars}",
                code="JsonStringTooLong",
            )
        if kind == "string":
            continue
        if kind == "quote" or (kind == "single" and not lenient_quotes):
            what_quote = "a string that is never closed" if kind == "quote" else "a single-quoted string"
            raise ValidationError(
                f"{what} is not valid JSON: {what_quote} at position {match.start()}", code="InvalidJson"
            )
        if kind == "open":
            depth += 1
            if depth > limits.max_depth:
                raise ValidationError(
                    f"{what} is nested more than {limits.max_depth} levels deep (at position "
                    f"{match.start()})",
                    code="JsonTooDeep",
                )
        elif kind == "close":
            depth -= 1
        elif kind == "number":
            if length > limits.max_number_chars:
                raise ValidationError(
                    f"{what} holds a number of {length} characters at position "
                    f"{match.start()}; numbers may have at most {limits.max_number_chars}",
                    code="JsonNumberTooLong",
                )
        elif kind == "word":
            if lenient_quotes and match.group() in _POWERSHELL_BOOLEANS:
                pieces = _replace(pieces, text, last, match, _POWERSHELL_BOOLEANS[match.group()])
                last = match.end()
        else:  # a single-quoted string, PSI's
            pieces = _replace(pieces, text, last, match, _single_to_json(match.group()))
            last = match.end()
    if pieces is None:
        return text
    pieces.append(text[last:])
    return "".join(pieces)


def _replace(pieces: list[str] | None, text: str, last: int, match: re.Match, replacement: str) -> list[str]:
    """Appends the text since the previous replacement, then `replacement` for the matched token."""
    pieces = [] if pieces is None else pieces
    pieces.append(text[last : match.start()])
    pieces.append(replacement)
    return pieces


def _single_to_json(token: str) -> str:
    """`'it\\'s "x"'` -> `"it's \\"x\\""`: a single-quoted string as the JSON string with the same text.
    Other escapes stay as they are, for json.loads to decode or refuse exactly as in a JSON string."""

    def replace(m: re.Match) -> str:
        if m.group(2):
            return '\\"'
        return "'" if m.group(1) == "'" else m.group()

    return '"' + _SINGLE_ESCAPES.sub(replace, token[1:-1]) + '"'


class _NotJson(ValueError):
    pass


class _NumberOutOfRange(ValueError):
    pass


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NumberOutOfRange(text)
    return value


def _no_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON value")


def _reject_lone_surrogates(value: Any, what: str) -> None:
    """Walks the (depth-bounded) value without recursion; raises InvalidUnicode at the first lone surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            texts = [item]
        elif isinstance(item, dict):
            texts = list(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
            continue
        else:
            continue
        for text in texts:
            if _SURROGATE.search(text):
                raise ValidationError(
                    f"{what} holds a lone UTF-16 surrogate (a \\uD800-\\uDFFF escape without its pair); "
                    "such text cannot be stored",
                    code="InvalidUnicode",
                )
