"""Reads JSON sources (a top-level array of objects, or JSON Lines) one object at a time.

No third-party streaming parser: json.JSONDecoder.raw_decode runs over a sliding text buffer
that holds at most one record plus one read chunk, so memory does not grow with the file.
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


def _maybe_incomplete(exc: json.JSONDecodeError, length: int) -> bool:
    """Whether a decode error may just mean "the value continues in the next chunk".

    Only then is it worth reading more; a real syntax error is reported right away instead of
    after reading up to the record limit.
    """
    return exc.pos >= length - 8 or exc.msg.startswith("Unterminated string")


class _Buffer:
    """A sliding window over the decoded text, with line bookkeeping for messages."""

    def __init__(self, chunks: Iterator[str], max_record_chars: int) -> None:
        self._chunks = chunks
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
    declared = fmt.encoding if fmt is not None else None
    return _rows(stream, declared, limits)


def _rows(stream: BinaryIO, declared: str | None, limits: ReaderLimits) -> Iterator[SourceRow]:
    buf = _Buffer(iter(DecodedChunks(stream, declared, guess_wide=True)), limits.max_record_chars)
    max_columns = limits.max_columns
    buf.fill()
    if not buf.skip_whitespace():
        return  # an empty file has no rows
    if buf.text[buf.pos] == "[":
        yield from _array(buf, max_columns)
    else:
        yield from _lines(buf, max_columns)


def _array(buf: _Buffer, max_columns: int) -> Iterator[SourceRow]:
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
            yield number, _to_row(value, number, max_columns)
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


def _lines(buf: _Buffer, max_columns: int) -> Iterator[SourceRow]:
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
        yield line, _to_row(value, line, max_columns)


def _to_row(value: Any, number: int, max_columns: int) -> dict[str, str | None]:
    if not isinstance(value, dict):
        kind = "array" if isinstance(value, list) else "null" if value is None else "scalar value"
        return {ERROR_KEY: f"record {number} is a JSON {kind}, not an object"}
    if len(value) > max_columns:
        raise FormatError(f"record {number} has {len(value)} fields; the limit is {max_columns}")
    row: dict[str, str | None] = {}
    problems: list[str] = []
    for key, item in value.items():
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
