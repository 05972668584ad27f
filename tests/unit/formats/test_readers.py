"""The format dispatcher."""

from __future__ import annotations

import io

import pytest

from shared.domain.schema import BUILTIN_FORMATS, SourceFormat
from shared.errors import FormatError
from shared.formats.readers import ReaderLimits, read_rows


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("CSV", b"ID,NAME\n1,x\n"),
        ("CSV-UNICODE", "ID,NAME\n1,x\n".encode("utf-16-le")),
        ("XML-ELEMENT", b"<Document><E><ID>1</ID><NAME>x</NAME></E></Document>"),
        ("XML-ATTRIBUTE", b'<Document><E ID="1" NAME="x"/></Document>'),
        ("JSON", b'[{"ID": 1, "NAME": "x"}]'),
    ],
)
def test_every_text_format_reads_the_same_row(name: str, data: bytes) -> None:
    ((_, values),) = list(read_rows(io.BytesIO(data), BUILTIN_FORMATS[name]))
    assert values == {"ID": "1", "NAME": "x"}


def test_unknown_kind_fails_immediately() -> None:
    with pytest.raises(FormatError, match="the source format 'FIXED' has an unsupported kind 'fixed-width'"):
        read_rows(io.BytesIO(b""), SourceFormat(name="FIXED", kind="fixed-width"))


def test_limits_are_passed_to_the_reader() -> None:
    limits = ReaderLimits(max_columns=2)
    with pytest.raises(FormatError, match="row 1 has 3 columns; the limit is 2"):
        list(read_rows(io.BytesIO(b"A,B,C\n"), BUILTIN_FORMATS["CSV"], limits=limits))


@pytest.mark.parametrize("name", ["CSV", "XML-ELEMENT", "JSON", "EXCEL"])
def test_reading_is_lazy(name: str) -> None:
    class Exploding(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:  # type: ignore[override]
            raise AssertionError("read before iteration")

    rows = read_rows(Exploding(), BUILTIN_FORMATS[name])  # no read yet
    with pytest.raises(AssertionError):
        next(rows)
