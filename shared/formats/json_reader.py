"""Reads JSON sources (a top-level array of objects, an OData `{"value": [...]}`, or JSON Lines) one object at a time.

No third-party streaming parser: json.JSONDecoder.raw_decode runs over a sliding text buffer
that holds at most one record plus one read chunk, so memory does not grow with the file.

Bounds, checked as the text streams in: a record's length (ReaderLimits.max_record_chars) bounds the
buffer, and the nesting of arrays/objects (max_json_depth) is tracked chunk by chunk before the decoder
sees the text, so a deeply nested value fails with the limit named instead of recursing in the decoder.
A string or key longer than max_field_chars fails the file, as an over-long field does in the other readers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, BinaryIO

from shared.domain.schema import SourceFormat
from shared.errors import FormatError
from shared.formats.encoding import DecodedChunks
from shared.formats.readers import DEFAULT_LIMITS, ERROR_KEY, ReaderLimits, SourceRow

_WHITESPACE = re.compile(r"[ \t\n\r]*")


# Numbers stay text, exactly as written: "1.10" must not become 1.1 on its way to a decimal,
# and big integers are not parsed at all (no int() digit-limit surprises). NaN/Infinity stay
# text too, and the decimal conversion rejects them.
class _RepeatedKeys(dict):
    """An object that gave some key more than once: json keeps the last value and would drop the others."""

    repeated: list[str]


def _object(pairs: list[tuple[str, Any]]) -> dict:
    out = dict(pairs)
    if len(out) == len(pairs):
        return out
    marked = _RepeatedKeys(out)
    seen: set[str] = set()
    marked.repeated = [k for k, _ in pairs if k in seen or seen.add(k)]  # type: ignore[func-returns-value]
    return marked


_DECODER = json.JSONDecoder(parse_float=str, parse_int=str, parse_constant=str, object_pairs_hook=_object)


def is_annotation(key: str) -> bool:
    """An OData annotation (`@odata.context`, `@odata.etag`, `NAME@odata.type`): metadata, not a field."""
    return key.startswith("@odata.") or "@odata." in key


# Everything up to the next bracket outside a string: plain text and whole strings, in one C-level match;
# _SKIP_FLAT also skips whole objects without nested brackets (records), which nest one level deeper.
# Possessive quantifiers (Python 3.11+) keep no backtracking state, so a long string costs no memory.
_PLAIN = r"[^\"\[\]{}]++"
_STRING = r'"(?:[^"\\]++|\\.)*+"'
_SKIP = re.compile(rf"(?:{_PLAIN}|{_STRING})*+", re.S)
_SKIP_FLAT = re.compile(rf"(?:{_PLAIN}|{_STRING}|\{{(?:{_PLAIN}|{_STRING})*+\}})*+", re.S)
_STRING_STOP = re.compile(r'["\\]')


class _DepthGuard:
    """Tracks the nesting of arrays/objects outside strings across text chunks.

    `feed` returns the index in the chunk where the nesting first went past `max_depth`, or None. The
    Python loop runs once per bracket that is not part of a flat object (and per string or object cut by a
    chunk boundary), so a file of flat records costs a few iterations per chunk.
    Brackets after a syntax error may be miscounted; the decoder reports that error first.
    """

    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        self.depth = 0
        self._in_string = False  # a string began in an earlier chunk and has not ended
        self._escaped = False  # ...and that chunk ended just after a backslash

    def feed(self, text: str) -> int | None:
        pos = 0
        end = len(text)
        while pos < end:
            if self._in_string:
                pos = self._string_end(text, pos)
                continue
            skip = _SKIP_FLAT if self.depth < self.max_depth else _SKIP
            pos = skip.match(text, pos).end()
            if pos >= end:
                break
            char = text[pos]
            pos += 1
            if char == '"':
                self._in_string = True  # a string the chunk cuts (a whole one was skipped above)
            elif char in "[{":
                self.depth += 1
                if self.depth > self.max_depth:
                    return pos - 1
            elif self.depth:
                self.depth -= 1
        return None

    def _string_end(self, text: str, pos: int) -> int:
        """Past the end of the open string, or the chunk's end if it goes on."""
        end = len(text)
        while pos < end:
            if self._escaped:
                self._escaped = False
                pos += 1
                continue
            stop = _STRING_STOP.search(text, pos)
            if stop is None:
                return end
            pos = stop.end()
            if stop.group() == '"':
                self._in_string = False
                return pos
            self._escaped = True
        return end


def _maybe_incomplete(exc: json.JSONDecodeError, length: int) -> bool:
    """Whether a decode error may just mean "the value continues in the next chunk".

    Only then is it worth reading more; a real syntax error is reported right away instead of
    after reading up to the record limit.
    """
    return exc.pos >= length - 8 or exc.msg.startswith("Unterminated string")


class _Buffer:
    """A sliding window over the decoded text, with line bookkeeping for messages."""

    def __init__(self, chunks: Iterator[str], max_record_chars: int, max_depth: int) -> None:
        self._chunks = chunks
        self._depth = _DepthGuard(max_depth)
        self.text = ""
        self.pos = 0
        self.eof = False
        self.max_record_chars = max_record_chars
        self._discarded_chars = 0
        self._discarded_lines = 0
        self._counted_pos = 0  # newlines in text[:_counted_pos] are counted in _counted_lines
        self._counted_lines = 0

    def fill(self) -> bool:
        """Read one more chunk, dropping the consumed prefix. False at end of input."""
        if self.eof:
            return False
        chunk = next(self._chunks, None)
        if chunk is None:
            self.eof = True
            return False
        consumed = self.pos
        self._discarded_lines += self.text.count("\n", 0, consumed)
        self._discarded_chars += consumed
        self.text = self.text[consumed:] + chunk
        self.pos = 0
        self._counted_pos = 0
        self._counted_lines = 0
        too_deep = self._depth.feed(chunk)
        if too_deep is not None:
            limit = self._depth.max_depth
            raise FormatError(
                f"the JSON nests arrays/objects more than {limit} levels deep at "
                f"{self.where(len(self.text) - len(chunk) + too_deep)}; the limit is {limit} (max_json_depth)"
            )
        return True

    def skip_whitespace(self) -> bool:
        """Advance past whitespace; False when only whitespace remains."""
        while True:
            self.pos = _WHITESPACE.match(self.text, self.pos).end()
            if self.pos < len(self.text):
                return True
            if not self.fill():
                return False

    def line_at(self, pos: int) -> int:
        """1-based line number of buffer position `pos` (which must not move backwards)."""
        if pos < self._counted_pos:
            return self._discarded_lines + self.text.count("\n", 0, pos) + 1
        self._counted_lines += self.text.count("\n", self._counted_pos, pos)
        self._counted_pos = pos
        return self._discarded_lines + self._counted_lines + 1

    def where(self, pos: int) -> str:
        line = self._discarded_lines + self.text.count("\n", 0, pos) + 1
        character = self._discarded_chars + pos + 1
        line_start = self.text.rfind("\n", 0, pos) + 1
        if line_start:
            column: int | None = pos - line_start + 1
        elif self._discarded_lines == 0:
            column = character  # still on the first line of the file
        else:
            column = None  # the line began in text already dropped from the window
        if column is None:
            return f"line {line} (character {character})"
        return f"line {line}, column {column} (character {character})"

    def decode_value(self, record: int, what: str | None = None) -> Any:
        """Decode the JSON value starting at pos, reading more input as needed.

        `what` names the value in messages ("record 3" unless given). A syntax error is reported by its
        cause where the decoder's words describe a consequence (_cause).
        """
        what = what or f"record {record}"
        while True:
            start = self.pos
            try:
                value, end = _DECODER.raw_decode(self.text, start)
            except json.JSONDecodeError as exc:
                if _maybe_incomplete(exc, len(self.text)) and self._grow(what, exc):
                    continue
                raise FormatError(self._cause(exc, what, start)) from None
            except RecursionError:
                raise FormatError(
                    f"{what} (at {self.where(start)}) nests arrays/objects too deeply"
                ) from None
            if end == len(self.text) and self._grow(what):
                continue  # the value may go on in the next chunk (a number, for instance)
            self.pos = end
            return value

    def _cause(self, exc: json.JSONDecodeError, what: str, start: int) -> str:
        where = f"the JSON is malformed at {self.where(exc.pos)}"
        if exc.msg.startswith("Invalid control character"):
            # A raw line break (or tab) inside a string almost always means its closing quote is missing.
            opened = _string_start(self.text, exc.pos)
            if opened is not None and self.text[exc.pos] in "\r\n":
                return (
                    f"{where}: the string that starts at {self.where(opened)} is not closed on its line "
                    "(its closing quote is missing; a line break inside a string must be written \\n)"
                )
            return f"{where}: a control character (code {ord(self.text[exc.pos])}) inside a string must be escaped"
        if exc.pos >= len(self.text) and self.eof:
            return f"the JSON ends before {what}, which starts at {self.where(start)}, is complete; the file looks truncated"
        char = self.text[exc.pos] if exc.pos < len(self.text) else ""
        if char in "]}" and exc.msg in (
            "Expecting value",
            "Expecting property name enclosed in double quotes",
        ):
            return f"{where}: a ',' before '{char}' (JSON allows no trailing comma) [{exc.msg}]"
        if (
            exc.msg.startswith("Expecting ")
            and exc.msg.endswith(" delimiter")
            and self._after_string(exc.pos)
        ):
            return (
                f"{where}: a string ends just before this point; if it was meant to go on, a quote inside it must "
                f'be written \\", or an earlier string lacks its closing quote [{exc.msg}]'
            )
        if char == "'":
            return f"{where}: a single quote; JSON strings and names take double quotes [{exc.msg}]"
        return f"{where}: {exc.msg}"

    def _after_string(self, pos: int) -> bool:
        """Whether the text before `pos` (blanks aside) is the closing quote of a string."""
        before = self.text[:pos].rstrip(" \t")
        return before.endswith('"')

    def _grow(self, what: str, exc: json.JSONDecodeError | None = None) -> bool:
        if len(self.text) - self.pos > self.max_record_chars:
            reason = f"{what} (at {self.where(self.pos)}) is longer than {self.max_record_chars:,} characters"
            if exc is not None and exc.msg.startswith("Unterminated string"):
                # Say where the string that runs on started: its closing quote is the likely cause.
                reason += f": the string that starts at {self.where(exc.pos)} runs past the limit (is its closing quote missing?)"
            raise FormatError(reason + " (max_record_chars)")
        return self.fill()


def _string_start(text: str, pos: int) -> int | None:
    """The opening quote of the string that `pos` is inside (on the same line), or None."""
    line_start = text.rfind("\n", 0, pos) + 1
    quote = text.rfind('"', line_start, pos)
    while quote > line_start:
        backslashes = len(text[line_start:quote]) - len(text[line_start:quote].rstrip("\\"))
        if backslashes % 2 == 0:
            break
        quote = text.rfind('"', line_start, quote)  # an escaped quote: the string goes on to the left
    return quote if quote >= line_start else None


def read_json_rows(
    stream: BinaryIO, fmt: SourceFormat | None = None, *, limits: ReaderLimits = DEFAULT_LIMITS
) -> Iterator[SourceRow]:
    """Yield (number, {key: text}) for each object of a JSON file.

    Shapes: a top-level array of objects `[{...}, ...]`; the OData shape `{"value": [{...}, ...]}` (what
    D365's OData endpoints return), whose other top-level keys may only be OData annotations
    (`@odata.context`, `@odata.count`, `@odata.nextLink`, ...); or JSON Lines (objects one after another).
    A top-level object is the OData shape when its first key that is not an annotation is "value" and holds
    an array; any other object starts JSON Lines.

    The number is the 1-based position in the array, or the line where the object starts in
    JSON Lines. Values become text: strings as they are, numbers as written, true/false as
    "true"/"false", null as None. Annotation keys in a record (`@odata.etag`, `NAME@odata.type`) are
    metadata and left out. An element that is not an object, an object with a nested object/array value,
    or one that repeats a key, is yielded with an ERROR_KEY reason.

    FormatError: malformed JSON (with the line and column, and the cause where the decoder reports a
    consequence: a string not closed on its line, a trailing comma, a truncated file), a top-level key
    next to "value" that is not an annotation (its data would not be imported), a bound of `limits`.
    """
    declared = fmt.codec if fmt is not None else None
    return _rows(stream, declared, limits)


def _rows(stream: BinaryIO, declared: str | None, limits: ReaderLimits) -> Iterator[SourceRow]:
    buf = _Buffer(
        iter(DecodedChunks(stream, declared, guess_wide=True)), limits.max_record_chars, limits.max_json_depth
    )
    buf.fill()
    if not buf.skip_whitespace():
        return  # an empty file has no rows
    first = buf.text[buf.pos]
    if first == "[":
        yield from _array(buf, limits)
    elif first == "{" and _is_odata(buf):
        yield from _odata(buf, limits)
        return
    else:
        yield from _lines(buf, limits)
        return
    if buf.skip_whitespace():
        raise FormatError(f"the JSON has unexpected data after its top-level array at {buf.where(buf.pos)}")


def _array(buf: _Buffer, limits: ReaderLimits) -> Iterator[SourceRow]:
    """The records of the array that starts at buf.pos; buf.pos ends just past its "]"."""
    opened = buf.where(buf.pos)
    buf.pos += 1

    def unclosed(number: int) -> FormatError:
        after = f"after record {number}" if number else "before any record"
        return FormatError(
            f"the JSON ends {after} before the array opened at {opened} is closed with ']'; "
            "the file looks truncated"
        )

    if not buf.skip_whitespace():
        raise unclosed(0)
    number = 0
    if buf.text[buf.pos] == "]":
        buf.pos += 1
        return
    while True:
        number += 1
        value = buf.decode_value(number)
        yield number, _to_row(value, number, limits)
        if not buf.skip_whitespace():
            raise unclosed(number)
        char = buf.text[buf.pos]
        buf.pos += 1
        if char == "]":
            return
        if char != ",":
            raise FormatError(
                f"the JSON is malformed at {buf.where(buf.pos - 1)}: expected ',' or ']' after "
                f"record {number}"
            )
        if not buf.skip_whitespace():
            raise unclosed(number)


def _is_odata(buf: _Buffer) -> bool:
    """Whether the object at buf.pos is the OData shape: annotations, then "value": [.

    Looks ahead without consuming anything (at most one record's worth of text is buffered), so that a
    JSON Lines file is read from its first object when it is not.
    """
    offset = 1  # past "{"
    while True:
        offset = _peek_past_whitespace(buf, offset)
        if offset is None or buf.text[buf.pos + offset] != '"':
            return False
        key, offset = _peek_value(buf, offset)
        if not isinstance(key, str):
            return False
        offset = _peek_past_whitespace(buf, offset)
        if offset is None or buf.text[buf.pos + offset] != ":":
            return False
        offset = _peek_past_whitespace(buf, offset + 1)
        if offset is None:
            return False
        if key == "value":
            return buf.text[buf.pos + offset] == "["
        if not is_annotation(key):
            return False
        _, offset = _peek_value(buf, offset)
        if offset is None:
            return False
        offset = _peek_past_whitespace(buf, offset)
        if offset is None or buf.text[buf.pos + offset] != ",":
            return False
        offset += 1


def _peek_past_whitespace(buf: _Buffer, offset: int) -> int | None:
    """The offset (from buf.pos) of the next non-blank character, reading more input; None at the end."""
    while True:
        end = _WHITESPACE.match(buf.text, buf.pos + offset).end()
        if end < len(buf.text):
            return end - buf.pos
        if len(buf.text) - buf.pos > buf.max_record_chars or not buf.fill():
            return None
        # fill() keeps everything from buf.pos on: offsets from buf.pos stay valid.


def _peek_value(buf: _Buffer, offset: int) -> tuple[Any, int | None]:
    """The JSON value at the offset and the offset past it, or (None, None) when it does not decode."""
    while True:
        start = buf.pos + offset
        try:
            value, end = _DECODER.raw_decode(buf.text, start)
        except (json.JSONDecodeError, RecursionError):
            value, end = None, -1
        if end == -1 or end == len(buf.text):
            if len(buf.text) - buf.pos <= buf.max_record_chars and buf.fill():
                continue
            if end == -1:
                return None, None
        return value, end - buf.pos


def _odata(buf: _Buffer, limits: ReaderLimits) -> Iterator[SourceRow]:
    """The records of an OData object `{"@odata.context": ..., "value": [...]}`; annotations are skipped."""
    opened = buf.where(buf.pos)
    buf.pos += 1
    arrays = 0
    while True:
        if not buf.skip_whitespace():
            raise FormatError(
                f"the JSON ends before the object opened at {opened} is closed with '}}'; the file looks truncated"
            )
        at = buf.where(buf.pos)
        key = buf.decode_value(0, f"the key at {at}")
        if not isinstance(key, str) or not buf.skip_whitespace() or buf.text[buf.pos] != ":":
            raise FormatError(f"the JSON is malformed at {at}: expected a key in double quotes and ':'")
        buf.pos += 1
        if not buf.skip_whitespace():
            raise FormatError(f"the JSON ends after the key {key!r} at {at}; the file looks truncated")
        if key == "value":
            arrays += 1
            if arrays > 1 or buf.text[buf.pos] != "[":
                raise FormatError(
                    f"the JSON's key 'value' at {at} must appear once and hold the array of records"
                )
            yield from _array(buf, limits)
        elif is_annotation(key):
            buf.decode_value(0, f"the annotation {key!r}")  # metadata about the response, not records
        else:
            shown = key if len(key) <= 100 else key[:100] + "..."
            raise FormatError(
                f"the JSON object that holds the records (opened at {opened}) has the key {shown!r} at {at}; "
                "next to 'value' only OData annotations (@odata.context, @odata.count, ...) are accepted, "
                "and this key's data would not be imported"
            )
        if not buf.skip_whitespace():
            raise FormatError(
                f"the JSON ends before the object opened at {opened} is closed with '}}'; the file looks truncated"
            )
        char = buf.text[buf.pos]
        buf.pos += 1
        if char == "}":
            break
        if char != ",":
            raise FormatError(f"the JSON is malformed at {buf.where(buf.pos - 1)}: expected ',' or '}}'")
    if buf.skip_whitespace():
        raise FormatError(f"the JSON has unexpected data after its top-level object at {buf.where(buf.pos)}")


def _lines(buf: _Buffer, limits: ReaderLimits) -> Iterator[SourceRow]:
    # JSON Lines; any whitespace between objects is accepted, so pretty-printed objects work too.
    number = 0
    while buf.skip_whitespace():
        number += 1
        line = buf.line_at(buf.pos)
        if buf.text[buf.pos] != "{":
            # What the text starts with tells a CSV or XML file sent with the JSON format at a glance.
            start = buf.text[buf.pos : buf.pos + 40].split("\n", 1)[0]
            raise FormatError(
                f"the JSON is neither an array nor JSON Lines: expected an object at {buf.where(buf.pos)}, "
                f"where the text starts with {start!r}"
            )
        value = buf.decode_value(number)
        yield line, _to_row(value, line, limits)


def _to_row(value: Any, number: int, limits: ReaderLimits) -> dict[str, str | None]:
    if not isinstance(value, dict):
        kind = "array" if isinstance(value, list) else "null" if value is None else "scalar value"
        return {ERROR_KEY: f"record {number} is a JSON {kind}, not an object"}
    max_columns = limits.max_columns
    max_field = limits.max_field_chars
    if len(value) > max_columns:
        raise FormatError(
            f"record {number} has {len(value)} fields; the limit is {max_columns} (max_columns)"
        )
    row: dict[str, str | None] = {}
    problems: list[str] = []
    if isinstance(value, _RepeatedKeys):
        # json keeps the last value of a repeated key; which one was meant is not ours to guess.
        problems.extend(f"field {key} appears more than once" for key in dict.fromkeys(value.repeated))
    for key, item in value.items():
        if "@" in key and is_annotation(key):  # the cheap test first: this runs for every value
            continue  # @odata.etag and the like describe the record; they are not fields
        for text in (key, item):
            if isinstance(text, str) and len(text) > max_field:
                shown = key if len(key) <= 100 else key[:100] + "..."
                raise FormatError(
                    f"record {number}: field {shown} is {len(text):,} characters long; "
                    f"the limit is {max_field:,} (max_field_chars)"
                )
        if item is None or isinstance(item, str):
            row[key] = item
        elif item is True:
            row[key] = "true"
        elif item is False:
            row[key] = "false"
        else:
            kind = "an object" if isinstance(item, dict) else "an array"
            problems.append(f"field {key} holds {kind}; only simple values are supported")
            row[key] = None
    if problems:
        row[ERROR_KEY] = "; ".join(problems)
    return row
