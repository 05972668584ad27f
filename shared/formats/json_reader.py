"""Reads JSON sources (a top-level array of objects, or JSON Lines) one object at a time.

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
_DECODER = json.JSONDecoder(parse_float=str, parse_int=str, parse_constant=str)


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

    def decode_value(self, record: int) -> Any:
        """Decode the JSON value starting at pos, reading more input as needed."""
        while True:
            start = self.pos
            try:
                value, end = _DECODER.raw_decode(self.text, start)
            except json.JSONDecodeError as exc:
                if _maybe_incomplete(exc, len(self.text)) and self._grow(record):
                    continue
                raise FormatError(f"the JSON is malformed at {self.where(exc.pos)}: {exc.msg}") from None
            except RecursionError:
                raise FormatError(
                    f"record {record} (at {self.where(start)}) nests arrays/objects too deeply"
                ) from None
            if end == len(self.text) and self._grow(record):
                continue  # the value may go on in the next chunk (a number, for instance)
            self.pos = end
            return value

    def _grow(self, record: int) -> bool:
        if len(self.text) - self.pos > self.max_record_chars:
            raise FormatError(
                f"record {record} (at {self.where(self.pos)}) is longer than "
                f"{self.max_record_chars:,} characters"
            )
        return self.fill()


def read_json_rows(
    stream: BinaryIO, fmt: SourceFormat | None = None, *, limits: ReaderLimits = DEFAULT_LIMITS
) -> Iterator[SourceRow]:
    """Yield (number, {key: text}) for each object of a JSON array or JSON Lines file.

    The number is the 1-based position in the array, or the line where the object starts in
    JSON Lines. Values become text: strings as they are, numbers as written, true/false as
    "true"/"false", null as None. An element that is not an object, or an object with a nested
    object/array value, is yielded with an ERROR_KEY reason.
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
    if buf.text[buf.pos] == "[":
        yield from _array(buf, limits)
    else:
        yield from _lines(buf, limits)


def _array(buf: _Buffer, limits: ReaderLimits) -> Iterator[SourceRow]:
    buf.pos += 1
    if not buf.skip_whitespace():
        raise FormatError("the JSON ends before its top-level array is closed")
    number = 0
    if buf.text[buf.pos] == "]":
        buf.pos += 1
    else:
        while True:
            number += 1
            value = buf.decode_value(number)
            yield number, _to_row(value, number, limits)
            if not buf.skip_whitespace():
                raise FormatError("the JSON ends before its top-level array is closed")
            char = buf.text[buf.pos]
            buf.pos += 1
            if char == "]":
                break
            if char != ",":
                raise FormatError(
                    f"the JSON is malformed at {buf.where(buf.pos - 1)}: expected ',' or ']' after "
                    f"record {number}"
                )
            if not buf.skip_whitespace():
                raise FormatError("the JSON ends before its top-level array is closed")
    if buf.skip_whitespace():
        raise FormatError(f"the JSON has unexpected data after its top-level array at {buf.where(buf.pos)}")


def _lines(buf: _Buffer, limits: ReaderLimits) -> Iterator[SourceRow]:
    # JSON Lines; any whitespace between objects is accepted, so pretty-printed objects work too.
    number = 0
    while buf.skip_whitespace():
        number += 1
        line = buf.line_at(buf.pos)
        if buf.text[buf.pos] != "{":
            raise FormatError(
                f"the JSON is neither an array nor JSON Lines: expected an object at {buf.where(buf.pos)}"
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
    for key, item in value.items():
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
