"""Bytes to text for the text readers: BOM detection, chunked decoding that knows byte offsets.

The readers never read a whole file. They decode fixed-size chunks with an incremental decoder,
so that a bad byte can be reported with its offset in the file, and split the text into lines
with a length limit, so that one enormous line fails fast instead of filling memory.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from shared.errors import FormatError

CHUNK_SIZE = 64 * 1024

# Longest BOM first: the UTF-32-LE BOM starts with the UTF-16-LE one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

_LABELS = {
    "utf-8": "UTF-8",
    "utf-16-le": "UTF-16LE",
    "utf-16-be": "UTF-16BE",
    "utf-16": "UTF-16",
    "utf-32-le": "UTF-32LE",
    "utf-32-be": "UTF-32BE",
    "utf-32": "UTF-32",
}

UTF16_WITHOUT_BOM = (
    "the file looks like UTF-16 without a byte-order mark; use the CSV-Unicode format or add a BOM"
)


def detect_bom(head: bytes) -> tuple[str | None, int]:
    """The encoding named by a byte-order mark at the start of `head`, and the BOM's length."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name, len(bom)
    return None, 0


def normalize_encoding(name: str) -> str:
    """Python's canonical codec name for `name`; FormatError for an unknown encoding."""
    try:
        canonical = codecs.lookup(name).name
    except LookupError:
        raise FormatError(f"the format's encoding {name!r} is not a known text encoding") from None
    # The BOM is handled (and stripped) by us, so the -sig variant would only hide a second one.
    return "utf-8" if canonical == "utf-8-sig" else canonical


def is_wide(encoding: str) -> bool:
    """True for the UTF-16/32 families, whose text legitimately contains NUL bytes."""
    return encoding.startswith(("utf-16", "utf-32"))


def label(encoding: str) -> str:
    """A human spelling of a codec name, for messages."""
    return _LABELS.get(encoding, encoding)


def guess_wide_encoding(head: bytes) -> str | None:
    """RFC 4627 sniffing: JSON starts with two ASCII characters, so NULs reveal UTF-16/32."""
    if len(head) >= 4:
        b = head[:4]
        if b[0] == 0 and b[1] == 0 and b[2] == 0 and b[3] != 0:
            return "utf-32-be"
        if b[0] != 0 and b[1] == 0 and b[2] == 0 and b[3] == 0:
            return "utf-32-le"
    if len(head) >= 2:
        if head[0] == 0 and head[1] != 0:
            return "utf-16-be"
        if head[0] != 0 and head[1] == 0:
            return "utf-16-le"
    return None


# Binary files sent with a text format: their NUL bytes are the consequence, what they are is the cause.
_BINARY_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (
        b"PK\x03\x04",
        "a zip file (an .xlsx workbook or a data package?), not text: use the EXCEL format for a workbook, "
        "or a Data package job for a package",
    ),
    (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        "a legacy Office file (.xls), not text: save it as .xlsx and use the EXCEL format",
    ),
)


def describe_nul_bytes(head: bytes, base_offset: int = 0) -> str:
    """The reason to give for NUL bytes in text that should not have any."""
    for signature, what in _BINARY_SIGNATURES:
        if head.startswith(signature):
            return f"the file is {what}"
    sample = head[:4096]
    nuls = sample.count(0)
    if nuls >= len(sample) // 4:
        even = sum(1 for i in range(0, len(sample), 2) if sample[i] == 0)
        odd = nuls - even
        # UTF-16 of mostly-ASCII text puts its NULs on one side of every pair.
        if max(even, odd) >= 0.9 * nuls:
            return UTF16_WITHOUT_BOM
    offset = base_offset + head.index(0)
    return f"the file contains a NUL byte at byte offset {offset}; it looks binary, not like text"


class DecodedChunks:
    """Iterates a binary stream as decoded text chunks, tracking how many bytes were consumed.

    The encoding is the BOM's when there is one (a BOM is unambiguous), else `declared`, else
    UTF-8 (or, with `guess_wide`, what the NUL pattern of the first bytes says). A decoding
    error becomes a FormatError that names the byte offset of the bad byte.
    """

    def __init__(
        self,
        stream: BinaryIO,
        declared: str | None = None,
        *,
        chunk_size: int = CHUNK_SIZE,
        guess_wide: bool = False,
    ) -> None:
        self._stream = stream
        self._chunk_size = chunk_size
        head = self._read_head()
        bom_encoding, bom_len = detect_bom(head)
        if bom_encoding is not None:
            encoding = bom_encoding
        elif declared:
            encoding = normalize_encoding(declared)
        elif guess_wide and (wide := guess_wide_encoding(head)) is not None:
            encoding = wide
        else:
            encoding = "utf-8"
        self.encoding = encoding
        self.bom_length = bom_len
        self._head = head[bom_len:]
        self._offset = bom_len  # bytes handed to the decoder so far
        self._check_nul = not is_wide(encoding)
        # Text in UTF-16/32 always has NULs (delimiters, digits and line ends are ASCII); without
        # any, the file is really 8-bit text read with a wide format by mistake.
        if (
            bom_encoding is None
            and not self._check_nul
            and len(self._head) >= 16
            and b"\x00" not in self._head[:4096]
        ):
            raise FormatError(
                f"the format expects {label(encoding)} text, but the file looks like UTF-8 or "
                "ANSI text (it has no NUL bytes); use the CSV format or add a BOM"
            )
        if self._check_nul and b"\x00" in self._head:
            raise FormatError(describe_nul_bytes(self._head, bom_len))
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="strict")

    def _read_head(self) -> bytes:
        # A short read must not hide a BOM: keep reading until 4 bytes or end of stream.
        head = self._stream.read(self._chunk_size) or b""
        while 0 < len(head) < 4:
            more = self._stream.read(self._chunk_size)
            if not more:
                break
            head += more
        return head

    def __iter__(self) -> Iterator[str]:
        decoder = self._decoder
        chunk = self._head
        self._head = b""
        while True:
            final = not chunk
            if not final and self._check_nul and b"\x00" in chunk:
                offset = self._offset + chunk.index(0)
                raise FormatError(
                    f"the file contains a NUL byte at byte offset {offset}; it looks binary, not like text"
                )
            buffered = len(decoder.getstate()[0])
            try:
                text = decoder.decode(chunk, final)
            except UnicodeDecodeError as exc:
                raise FormatError(self._describe(exc, buffered)) from None
            self._offset += len(chunk)
            if text:
                yield text
            if final:
                return
            chunk = self._stream.read(self._chunk_size) or b""

    def _describe(self, exc: UnicodeDecodeError, buffered: int) -> str:
        # The decoder re-decodes its buffered tail together with the new chunk, so positions in
        # the exception are relative to (buffered bytes + chunk).
        offset = self._offset - buffered + exc.start
        name = label(self.encoding)
        bad = exc.object[exc.start : exc.end]
        if exc.reason in ("unexpected end of data", "truncated data"):
            return f"the file ends in the middle of a {name} character (byte offset {offset})"
        shown = " ".join(f"0x{b:02X}" for b in bad[:4])
        return (
            f"the file is not valid {name} text: the byte(s) {shown} at byte offset {offset} "
            f"cannot be decoded; set the format's encoding if the file uses another one"
        )


_NEWLINE = re.compile(r"\r\n?|\n")


class LineSplitter:
    """Splits text chunks into lines (keeping the line ends, as csv wants), with a length limit.

    Lines end at \\n, \\r\\n or \\r, exactly like io.TextIOWrapper(newline=""). `record_chars`
    counts the characters handed out since the caller last reset it, so a reader can bound a
    record that spans several lines.
    """

    def __init__(self, chunks: Iterable[str], *, max_line_chars: int, max_record_chars: int) -> None:
        self._chunks = chunks
        self.max_line_chars = max_line_chars
        self.max_record_chars = max_record_chars
        self.line_no = 0  # lines handed out so far
        self.record_chars = 0

    def _too_long(self) -> FormatError:
        return FormatError(
            f"line {self.line_no + 1} is longer than {self.max_line_chars:,} characters (max_record_chars); "
            "the file is not a line-oriented text file or a value is far too large"
        )

    def _emit(self, line: str) -> str:
        self.line_no += 1
        self.record_chars += len(line)
        if self.record_chars > self.max_record_chars:
            raise FormatError(
                f"the record ending at line {self.line_no} is longer than {self.max_record_chars:,} characters "
                "(max_record_chars)"
            )
        return line

    def __iter__(self) -> Iterator[str]:
        parts: list[str] = []  # pieces of the current, unfinished line
        pending = 0
        limit = self.max_line_chars
        for text in self._chunks:
            start = 0
            if parts and parts[-1].endswith("\r"):
                # A \r at the end of the previous chunk: a line end, maybe the first half of \r\n.
                if text.startswith("\n"):
                    parts.append("\n")
                    start = 1
                yield self._emit("".join(parts))
                parts.clear()
                pending = 0
            if "\r" not in text:
                # Fast path for the usual \n-only text.
                pieces = text[start:].split("\n")
                last = pieces.pop()
                for piece in pieces:
                    if parts:
                        parts.append(piece)
                        piece = "".join(parts)
                        parts.clear()
                        pending = 0
                    if len(piece) > limit:
                        raise self._too_long()
                    yield self._emit(piece + "\n")
                rest_start = len(text) - len(last)
            else:
                rest_start = start
                for m in _NEWLINE.finditer(text, start):
                    if m.group() == "\r" and m.end() == len(text):
                        break  # decided with the next chunk
                    piece = text[rest_start : m.end()]
                    if parts:
                        parts.append(piece)
                        piece = "".join(parts)
                        parts.clear()
                        pending = 0
                    if len(piece) > limit + 2:
                        raise self._too_long()
                    yield self._emit(piece)
                    rest_start = m.end()
            rest = text[rest_start:]
            if rest:
                parts.append(rest)
                pending += len(rest)
                if pending > limit:
                    raise self._too_long()
        if parts:
            yield self._emit("".join(parts))
