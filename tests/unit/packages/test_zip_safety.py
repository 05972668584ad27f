"""Hostile zips, generated here: bombs, lying headers, traversal, links, duplicates, junk; folders are fine."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import pytest

from shared.errors import FormatError
from shared.formats.zip_safety import (
    MIB,
    LimitedReader,
    ZipLimits,
    is_mac_metadata,
    open_package_zip,
    read_entry_bytes,
    read_entry_stream,
)


def _zip(entries: dict[str, bytes], *, method: int = zipfile.ZIP_DEFLATED) -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=method)
    buf.seek(0)
    return buf


def test_a_normal_zip_opens_and_streams() -> None:
    zf = open_package_zip(_zip({"a.csv": b"x,y\n1,2\n", "Manifest.xml": b"<m/>"}))
    with read_entry_stream(zf, "a.csv") as s:
        assert s.read() == b"x,y\n1,2\n"
    assert read_entry_bytes(zf, "Manifest.xml", max_bytes=100) == b"<m/>"


def test_not_a_zip() -> None:
    with pytest.raises(FormatError, match="not a zip file"):
        open_package_zip(io.BytesIO(b"this is a CSV, not a zip\n" * 10))
    with pytest.raises(FormatError, match="not a zip file"):
        open_package_zip(io.BytesIO(b""))


def test_truncated_zip() -> None:
    data = _zip({"a.csv": b"hello" * 1000}).getvalue()
    with pytest.raises(FormatError, match="not a zip file"):
        open_package_zip(io.BytesIO(data[: len(data) // 2]))


@pytest.mark.parametrize(
    "name",
    [
        "data/x.csv",
        "data\\x.csv",
        "data/",
        "Resources/Customer document attachments/invoice 001.pdf",
        "__MACOSX/._Manifest.xml",
        "__MACOSX/",
        ".DS_Store",
    ],
)
def test_nested_relative_entries_are_allowed(name: str) -> None:
    """Issue 12, class 1: D365 attachments (Resources/<label>/<file>) and Mac zips (__MACOSX/) are real."""
    zf = open_package_zip(_zip({name: b"" if name.endswith("/") else b"1"}))
    assert zf.namelist() == [name]


@pytest.mark.parametrize(
    "name,mac",
    [
        ("__MACOSX/._Manifest.xml", True),
        ("__macosx/Resources/._a.pdf", True),
        ("Resources/.DS_Store", True),
        (".DS_Store", True),
        ("Resources/a.pdf", False),
        ("Manifest.xml", False),
        ("MACOSX/a", False),
    ],
)
def test_mac_metadata_is_recognised(name: str, mac: bool) -> None:
    assert is_mac_metadata(name) is mac


@pytest.mark.parametrize(
    "name", ["Resources/../../x.csv", "Resources/./x", "__MACOSX/../x", "Resources\\..\\x", "/Resources/x"]
)
def test_traversal_inside_folders_is_still_rejected(name: str) -> None:
    with pytest.raises(FormatError, match="unsafe path"):
        open_package_zip(_zip({name: b"1"}))


@pytest.mark.parametrize("name", ["Resources//x.pdf", "Resources/ /x.pdf", "a\x01b.csv", "x" * 1025])
def test_blank_folders_control_characters_and_huge_names_are_rejected(name: str) -> None:
    with pytest.raises(FormatError, match="invalid|characters; the limit"):
        open_package_zip(_zip({name: b"1"}))


def _unix_zip(name: str, mode: int, data: bytes = b"target") -> io.BytesIO:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix
    info.external_attr = mode << 16
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(info, data)
    buf.seek(0)
    return buf


@pytest.mark.parametrize("name", ["link.csv", "Resources/Customers/link.pdf", "__MACOSX/link"])
def test_symbolic_links_are_rejected_wherever_they_are(name: str) -> None:
    with pytest.raises(FormatError, match=f"symbolic link '{name}'"):
        open_package_zip(_unix_zip(name, 0o120777, b"/etc/passwd"))


def test_special_files_are_rejected_and_plain_unix_files_pass() -> None:
    with pytest.raises(FormatError, match="special file 'fifo'"):
        open_package_zip(_unix_zip("fifo", 0o010644))
    assert open_package_zip(_unix_zip("Resources/a/b.csv", 0o100644)).namelist() == ["Resources/a/b.csv"]


def test_a_folder_entry_with_data_is_rejected() -> None:
    with pytest.raises(FormatError, match="folder entry 'Resources/' in the package holds data"):
        open_package_zip(_zip({"Resources/": b"hidden"}))


@pytest.mark.parametrize("names", [["Resources/a.pdf", "resources\\A.PDF"], ["__MACOSX/x", "__MACOSX/X"]])
def test_duplicates_in_folders_are_rejected(names: list[str]) -> None:
    with pytest.raises(FormatError, match="more than once"):
        open_package_zip(_zip(dict.fromkeys(names, b"1")))


def test_encrypted_and_bomb_entries_are_rejected_in_folders_and_mac_metadata_too() -> None:
    data = bytearray(_zip({"__MACOSX/._a.csv": b"secret"}).getvalue())
    data[data.rfind(b"PK\x01\x02") + 8] |= 0x01
    with pytest.raises(FormatError, match="'__MACOSX/._a.csv' in the package is encrypted"):
        open_package_zip(io.BytesIO(bytes(data)))
    buf = io.BytesIO()
    with (
        zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf,
        zf.open("Resources/x/z.bin", "w") as e,
    ):
        for _ in range(200):
            e.write(b"\0" * MIB)
    buf.seek(0)
    with pytest.raises(FormatError, match="'Resources/x/z.bin' has a compression ratio above 200:1"):
        open_package_zip(buf)


@pytest.mark.parametrize(
    "name", ["../x.csv", "..\\x.csv", "/etc/passwd", "\\x.csv", "C:x.csv", "C:\\x.csv", "a/../../x", "./x"]
)
def test_path_traversal_is_rejected(name: str) -> None:
    with pytest.raises(FormatError, match="unsafe path"):
        open_package_zip(_zip({name: b"1"}))


@pytest.mark.parametrize("names", [["a.csv", "a.csv"], ["Manifest.xml", "MANIFEST.XML"]])
def test_duplicate_names_are_rejected(names: list[str]) -> None:
    buf = io.BytesIO()
    with (
        zipfile.ZipFile(buf, "w") as zf,
        pytest.warns(UserWarning, match="Duplicate") if names[0] == names[1] else _null(),
    ):
        for n in names:
            zf.writestr(n, b"1")
    buf.seek(0)
    with pytest.raises(FormatError, match="more than once"):
        open_package_zip(buf)


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: object) -> None:
        return None


def test_entry_count_limit() -> None:
    zf_bytes = _zip({f"f{i}.csv": b"1" for i in range(11)})
    with pytest.raises(FormatError, match="11 entries; the limit is 10"):
        open_package_zip(zf_bytes, limits=ZipLimits(max_entries=10))
    zf_bytes.seek(0)
    assert len(open_package_zip(zf_bytes, limits=ZipLimits(max_entries=11)).infolist()) == 11


def test_total_size_limit_uses_declared_sizes() -> None:
    data = _zip({"a.csv": b"a" * 600, "b.csv": b"b" * 600})
    with pytest.raises(FormatError, match="more than 1000 bytes uncompressed"):
        open_package_zip(data, limits=ZipLimits(max_total_uncompressed=1000, ratio_floor=10**9))


def test_entry_size_limit() -> None:
    with pytest.raises(FormatError, match="'a.csv' is 600 bytes uncompressed; the limit is 500"):
        open_package_zip(_zip({"a.csv": b"a" * 600}), limits=ZipLimits(max_entry_uncompressed=500))


def test_encrypted_entries_are_rejected() -> None:
    data = bytearray(_zip({"a.csv": b"secret"}).getvalue())
    # Set the "encrypted" flag bit in the central directory header (offset 8 in the record).
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 8] |= 0x01
    with pytest.raises(FormatError, match="encrypted"):
        open_package_zip(io.BytesIO(bytes(data)))


def _bomb(size: int) -> io.BytesIO:
    """size bytes of zeros, deflated, written in chunks so the test never holds them in memory."""
    buf = io.BytesIO()
    chunk = b"\0" * MIB
    with (
        zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf,
        zf.open("zeros.csv", "w") as entry,
    ):
        for _ in range(size // MIB):
            entry.write(chunk)
    buf.seek(0)
    return buf


def test_high_ratio_bomb_is_rejected_before_decompressing() -> None:
    bomb = _bomb(200 * MIB)
    assert len(bomb.getvalue()) < 1 * MIB  # it really is a bomb: >200:1
    with pytest.raises(FormatError, match="compression ratio above 200:1"):
        open_package_zip(bomb)


def test_small_repetitive_files_are_below_the_ratio_floor() -> None:
    zf = open_package_zip(_zip({"empty-ish.csv": b"," * 100_000}))
    assert read_entry_bytes(zf, "empty-ish.csv", max_bytes=200_000) == b"," * 100_000


def _patch_declared_size(data: bytes, name: bytes, new_size: int) -> bytes:
    """Make the central directory and the local header claim a smaller uncompressed size."""
    out = bytearray(data)
    cd = out.find(b"PK\x01\x02")
    assert out[cd + 46 : cd + 46 + len(name)] == name
    struct.pack_into("<I", out, cd + 24, new_size)  # central directory: uncompressed size
    struct.pack_into("<I", out, 22, new_size)  # local header of the first entry: uncompressed size
    return bytes(out)


def test_lying_header_is_caught_while_streaming() -> None:
    payload = b"0123456789" * 100_000  # 1 MB
    data = _patch_declared_size(_zip({"a.csv": payload}).getvalue(), b"a.csv", 1000)
    zf = open_package_zip(io.BytesIO(data))  # the directory looks harmless
    assert zf.getinfo("a.csv").file_size == 1000
    with pytest.raises(FormatError, match="'a.csv'"), read_entry_stream(zf, "a.csv") as s:
        while s.read(64 * 1024):
            pass


def test_lying_header_with_matching_crc_still_stops_at_declared_size() -> None:
    # Even if an attacker makes the CRC fit the truncated data, no more than the declared size
    # ever comes out of the stream.
    payload = b"A" * 5000 + b"B" * 5000
    data = bytearray(_zip({"a.csv": payload}).getvalue())
    data = bytearray(_patch_declared_size(bytes(data), b"a.csv", 5000))
    crc = zlib.crc32(payload[:5000])
    cd = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, cd + 16, crc)
    struct.pack_into("<I", data, 14, crc)
    zf = open_package_zip(io.BytesIO(bytes(data)))
    with read_entry_stream(zf, "a.csv") as s:
        assert s.read() == b"A" * 5000


class _Endless(io.RawIOBase):
    """A decompressor that never stops: what a stream with a lying size would look like."""

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return b"x" * (n if n and n > 0 else 1024)


def test_limited_reader_stops_an_endless_stream_at_the_limit() -> None:
    reader = LimitedReader(_Endless(), name="bomb.csv", limit=10_000)  # type: ignore[arg-type]
    buffered = io.BufferedReader(reader, 4096)
    with pytest.raises(FormatError, match="'bomb.csv' in the package decompresses to more than 10000 bytes"):
        while buffered.read(4096):
            pass
    assert reader.bytes_read <= 10_001  # it stopped right after the limit, not after gigabytes


def test_limited_reader_enforces_the_ratio_while_streaming() -> None:
    limits = ZipLimits(max_ratio=10, ratio_floor=1000)
    reader = LimitedReader(_Endless(), name="z.csv", limit=10**9, compressed_size=100, limits=limits)  # type: ignore[arg-type]
    with pytest.raises(FormatError, match="compression ratio above 10:1"):
        while reader.read(500):
            pass
    assert reader.bytes_read <= 1500


def test_max_bytes_on_a_single_read() -> None:
    zf = open_package_zip(_zip({"big.xml": b"x" * 5000}))
    with pytest.raises(FormatError, match="'big.xml' is 5000 bytes; the limit is 100"):
        read_entry_bytes(zf, "big.xml", max_bytes=100)


def test_corrupt_data_becomes_format_error() -> None:
    data = bytearray(_zip({"a.csv": b"hello world " * 1000}).getvalue())
    # Flip bytes in the middle of the compressed data (the local header is 30 + 5 bytes long).
    for i in range(40, 60):
        data[i] ^= 0xFF
    zf = open_package_zip(io.BytesIO(bytes(data)))
    with pytest.raises(FormatError, match="'a.csv'"), read_entry_stream(zf, "a.csv") as s:
        s.read()


def test_declared_entry_count_is_checked_before_reading_the_directory() -> None:
    data = bytearray(_zip({"a.csv": b"1"}).getvalue())
    eocd = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, eocd + 8, 60000, 60000)  # claims 60000 entries
    with pytest.raises(FormatError, match="60000 entries"):
        open_package_zip(io.BytesIO(bytes(data)))
