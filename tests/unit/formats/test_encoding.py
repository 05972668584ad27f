"""BOM detection, chunked decoding with byte offsets, and bounded line splitting."""

from __future__ import annotations

import codecs
import io

import pytest

from shared.errors import FormatError
from shared.formats.encoding import (
    UTF16_WITHOUT_BOM,
    DecodedChunks,
    LineSplitter,
    describe_nul_bytes,
    detect_bom,
    guess_wide_encoding,
    normalize_encoding,
)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (codecs.BOM_UTF8 + b"A", ("utf-8", 3)),
        (codecs.BOM_UTF16_LE + b"A\x00", ("utf-16-le", 2)),
        (codecs.BOM_UTF16_BE + b"\x00A", ("utf-16-be", 2)),
        (codecs.BOM_UTF32_LE + b"A\x00\x00\x00", ("utf-32-le", 4)),
        (codecs.BOM_UTF32_BE, ("utf-32-be", 4)),
        (b"ABC", (None, 0)),
        (b"", (None, 0)),
    ],
)
def test_detect_bom(head: bytes, expected: tuple[str | None, int]) -> None:
    assert detect_bom(head) == expected


def test_guess_wide_encoding_follows_rfc4627() -> None:
    assert guess_wide_encoding("[1]".encode("utf-16-le")) == "utf-16-le"
    assert guess_wide_encoding("[1]".encode("utf-16-be")) == "utf-16-be"
    assert guess_wide_encoding("[1]".encode("utf-32-le")) == "utf-32-le"
    assert guess_wide_encoding("[1]".encode("utf-32-be")) == "utf-32-be"
    assert guess_wide_encoding(b"[1]") is None


def test_normalize_encoding() -> None:
    assert normalize_encoding("UTF8") == "utf-8"
    assert normalize_encoding("utf-8-sig") == "utf-8"
    assert normalize_encoding("Windows-1252") == "cp1252"
    with pytest.raises(FormatError, match="'klingon' is not a known text encoding"):
        normalize_encoding("klingon")


def test_nul_description_tells_utf16_from_binary() -> None:
    assert describe_nul_bytes("A,B\n1,2\n".encode("utf-16-le")) == UTF16_WITHOUT_BOM
    assert "NUL byte at byte offset 3" in describe_nul_bytes(b"abc\x00defghijklmnopqrstuvwxyz" * 1)
    # A workbook or package sent with a text format is named, not reported by its NUL bytes (issue 12, class 7).
    assert describe_nul_bytes(b"PK\x03\x04\x14\x00\x06\x00").startswith(
        "the file is a zip file (an .xlsx workbook or a data package?), not text"
    )
    assert describe_nul_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00").startswith(
        "the file is a legacy Office file"
    )


def _decode(data: bytes, declared: str | None = None, chunk_size: int = 4) -> str:
    return "".join(DecodedChunks(io.BytesIO(data), declared, chunk_size=chunk_size))


def test_decoding_strips_the_bom_and_uses_its_encoding() -> None:
    text = "Zürich,Ørsted\n"
    assert _decode(codecs.BOM_UTF8 + text.encode()) == text
    assert _decode(codecs.BOM_UTF16_LE + text.encode("utf-16-le")) == text
    assert _decode(codecs.BOM_UTF16_BE + text.encode("utf-16-be")) == text
    # A BOM is unambiguous, so it wins over a declared encoding.
    assert _decode(codecs.BOM_UTF8 + text.encode(), declared="utf-16-le") == text


def test_declared_encoding_is_used_without_a_bom() -> None:
    assert _decode("Café".encode("cp1252"), declared="cp1252") == "Café"
    assert _decode("Café".encode("utf-16-le"), declared="utf-16-le") == "Café"


def test_multibyte_characters_split_across_chunks_decode() -> None:
    text = "€" * 50  # three bytes each, with a chunk size of 4 nearly every one straddles
    assert _decode(text.encode(), chunk_size=4) == text


def test_decode_error_names_the_byte_offset_across_chunks() -> None:
    data = b"a" * 10 + "é".encode() + b"b" * 5 + b"\xff" + b"c"
    with pytest.raises(FormatError) as info:
        _decode(data, chunk_size=4)
    assert "byte offset 17" in str(info.value)
    assert "0xFF" in str(info.value)


def test_decode_error_inside_a_buffered_sequence() -> None:
    # \xe2\x82 starts a 3-byte character; "x" breaks it. The bad sequence starts at offset 3.
    with pytest.raises(FormatError, match="byte offset 3 "):
        _decode(b"abc\xe2\x82xyz", chunk_size=4)


def test_decode_error_offset_counts_the_bom() -> None:
    with pytest.raises(FormatError, match="byte offset 5 "):
        _decode(codecs.BOM_UTF8 + b"ab\xff", chunk_size=2)


def test_truncated_character_at_end_of_file() -> None:
    with pytest.raises(FormatError, match=r"ends in the middle of a UTF-8 character \(byte offset 2\)"):
        _decode(b"ab\xe2\x82")
    with pytest.raises(FormatError, match="middle of a UTF-16LE character"):
        _decode(codecs.BOM_UTF16_LE + b"A\x00B")


def test_nul_byte_after_the_first_chunk_is_rejected_with_its_offset() -> None:
    with pytest.raises(FormatError, match="NUL byte at byte offset 9;"):
        _decode(b"abcdefghi\x00jk", chunk_size=4)


def _lines(chunks: list[str], limit: int = 100, record_limit: int = 1000) -> list[str]:
    return list(LineSplitter(chunks, max_line_chars=limit, max_record_chars=record_limit))


def test_line_splitting_keeps_line_ends_like_newline_empty() -> None:
    assert _lines(["a\nb\r\nc\rd"]) == ["a\n", "b\r\n", "c\r", "d"]


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    assert _lines(["a\r", "\nb\r", "c\n"]) == ["a\r\n", "b\r", "c\n"]


def test_a_line_spanning_chunks_is_joined() -> None:
    assert _lines(["ab", "cd", "e\nf", "g"]) == ["abcde\n", "fg"]


def test_a_too_long_line_fails_without_waiting_for_its_end() -> None:
    def endless():
        while True:
            yield "x" * 10

    with pytest.raises(FormatError, match="line 2 is longer than 100 characters"):
        list(LineSplitter(iter(["ok\n", *["x" * 10] * 20]), max_line_chars=100, max_record_chars=10**6))
    with pytest.raises(FormatError, match="line 1 is longer than 100 characters"):
        list(LineSplitter(endless(), max_line_chars=100, max_record_chars=10**6))


def test_record_limit_counts_until_reset() -> None:
    splitter = LineSplitter(["ab\n"] * 5, max_line_chars=100, max_record_chars=7)
    lines = iter(splitter)
    next(lines)
    next(lines)
    splitter.record_chars = 0  # what a reader does after each record
    next(lines)
    next(lines)
    with pytest.raises(FormatError, match="record ending at line 5 is longer than 7 characters"):
        next(lines)
