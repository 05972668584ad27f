"""Data packages: the real D365 zip, packages we write, and broken packages."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from shared.errors import FormatError
from shared.formats.package_manifest import (
    EntityTransform,
    Manifest,
    ManifestEntity,
    PackageHeader,
    write_manifest,
    write_package_header,
)
from shared.formats.package_reader import open_package
from shared.formats.package_writer import PackageWriter

ZIP = Path("ms-sample-asset-major-types") / "usmf_asset-major-types-01.zip"


def _manifest(*entities: ManifestEntity) -> Manifest:
    return Manifest(definition_group_name="G", description="test", entities=list(entities))


def _package(entries: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    buf.seek(0)
    return buf


def test_real_d365_package(d365: Path) -> None:
    with (d365 / ZIP).open("rb") as f, open_package(f) as pkg:
        assert pkg.header.package_version == 1
        assert pkg.manifest.definition_group_name == "Asset-Major-Types"
        (entity,) = pkg.entities()
        assert entity.entity_name == "Fixed asset major type"
        assert entity.source_format == "EXCEL"
        with pkg.open_entity_file(entity) as data:
            content = data.read()
        assert len(content) == 8863
        assert content[:2] == b"PK"  # an .xlsx is itself a zip
        # The manifest inside the zip is the fixture file, byte for byte.
        expected = (d365 / "ms-sample-asset-major-types" / "Manifest.xml").read_bytes()
        assert hashlib.sha256(pkg.read_resource("manifest.XML")).digest() == hashlib.sha256(expected).digest()


def test_entities_come_in_execution_order_and_files_case_insensitively() -> None:
    entities = [
        ManifestEntity("Second", input_file_path="second.csv", execution_unit=1, level_in_execution_unit=2),
        ManifestEntity("First", input_file_path="FIRST.CSV", execution_unit=1, level_in_execution_unit=1),
    ]
    buf = _package(
        {
            "Manifest.xml": write_manifest(_manifest(*entities)),
            "packageheader.XML": write_package_header(PackageHeader()),
            "first.csv": b"A\n1\n",
            "second.csv": b"B\n2\n",
        }
    )
    with open_package(buf) as pkg:
        assert [e.entity_name for e in pkg.entities()] == ["First", "Second"]
        with pkg.open_entity_file(pkg.entities()[0]) as f:
            assert f.read() == b"A\n1\n"


def test_no_manifest() -> None:
    buf = _package({"PackageHeader.xml": write_package_header(PackageHeader()), "a.csv": b"1"})
    with pytest.raises(FormatError, match="the package has no Manifest.xml"):
        open_package(buf)


def test_no_header() -> None:
    buf = _package({"Manifest.xml": write_manifest(_manifest())})
    with pytest.raises(FormatError, match="the package has no PackageHeader.xml"):
        open_package(buf)


def test_manifest_naming_a_missing_file() -> None:
    entity = ManifestEntity("Customer groups", input_file_path="Customer groups.csv")
    buf = _package(
        {
            "Manifest.xml": write_manifest(_manifest(entity)),
            "PackageHeader.xml": write_package_header(PackageHeader()),
        }
    )
    with (
        open_package(buf) as pkg,
        pytest.raises(
            FormatError, match="Manifest.xml names 'Customer groups.csv' but the package has no such file"
        ),
    ):
        pkg.open_entity_file(pkg.entities()[0])


def test_hostile_zips_are_rejected_by_open_package() -> None:
    with pytest.raises(FormatError, match="folder 'Data/'"):
        open_package(_package({"Manifest.xml": b"", "Data/a.csv": b"1"}))
    with pytest.raises(FormatError, match="unsafe path"):
        open_package(_package({"Manifest.xml": b"", "../a.csv": b"1"}))
    with pytest.raises(FormatError, match="not a zip file"):
        open_package(io.BytesIO(b"CUSTGROUP,NAME\n10,Wholesale\n"))


def test_broken_manifest_is_a_format_error() -> None:
    buf = _package({"Manifest.xml": b"<oops", "PackageHeader.xml": write_package_header(PackageHeader())})
    with pytest.raises(FormatError, match="Manifest.xml is not well-formed XML"):
        open_package(buf)


def test_writer_round_trips_through_the_reader() -> None:
    out = io.BytesIO()
    entities = [
        ManifestEntity("Customer groups", input_file_path="Customer groups.csv", source_format="CSV"),
        ManifestEntity(
            "Customers V3",
            input_file_path="Customers V3.xml",
            source_format="XML-Element",
            sequence_in_level=2,
            transforms=[EntityTransform(1, "shape.xslt", "shape.xslt")],
        ),
    ]
    rows = (f"{i},Group {i}\r\n".encode() for i in range(10_000))
    with PackageWriter(out) as writer:
        writer.add_entity_file("Customer groups.csv", rows)
        with writer.open_entity_file("Customers V3.xml") as entry:
            entry.write(b"<Document>")
            entry.write(b"<CUSTCUSTOMERV3ENTITY CUSTOMERACCOUNT='US-001'/>")
            entry.write(b"</Document>")
        writer.add_entity_file("shape.xslt", io.BytesIO(b"<xsl:stylesheet/>"))
        writer.close(_manifest(*entities), PackageHeader(description="export"))

    out.seek(0)
    with zipfile.ZipFile(out) as zf:
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist())
        assert all("/" not in i.filename for i in zf.infolist())
        assert zf.namelist()[-2:] == ["Manifest.xml", "PackageHeader.xml"]
        assert zf.read("Manifest.xml")[:2] == b"\xff\xfe"
    out.seek(0)
    with open_package(out) as pkg:
        assert pkg.manifest == _manifest(*entities)
        assert pkg.header == PackageHeader(description="export", package_version=2)
        first, second = pkg.entities()
        with pkg.open_entity_file(first) as f:
            lines = f.read().split(b"\r\n")
        assert lines[0] == b"0,Group 0" and lines[9999] == b"9999,Group 9999"
        with pkg.open_entity_file(second) as f:
            assert f.read().startswith(b"<Document><CUSTCUSTOMERV3ENTITY")
        assert pkg.read_resource(second.transforms[0].xslt_file_name or "") == b"<xsl:stylesheet/>"


class _WriteOnly(io.RawIOBase):
    """A non-seekable sink, like a blob upload stream."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, b) -> int:  # type: ignore[override]
        self.data += b
        return len(b)


def test_writer_streams_into_a_non_seekable_sink() -> None:
    sink = _WriteOnly()
    writer = PackageWriter(sink)  # type: ignore[arg-type]
    writer.add_entity_file("a.csv", [b"A\n", b"1\n"])
    writer.close(_manifest(ManifestEntity("A", input_file_path="a.csv")), PackageHeader())
    with open_package(io.BytesIO(bytes(sink.data))) as pkg, pkg.open_entity_file(pkg.entities()[0]) as f:
        assert f.read() == b"A\n1\n"


@pytest.mark.parametrize("name", ["dir/a.csv", "dir\\a.csv", "Manifest.xml", "packageheader.xml", ""])
def test_writer_refuses_names_that_break_the_package(name: str) -> None:
    writer = PackageWriter(io.BytesIO())
    with pytest.raises(ValueError):
        writer.add_entity_file(name, b"1")


def test_writer_refuses_duplicates_and_a_manifest_naming_unwritten_files() -> None:
    writer = PackageWriter(io.BytesIO())
    writer.add_entity_file("a.csv", b"1")
    with pytest.raises(ValueError, match="already"):
        writer.add_entity_file("A.CSV", b"2")
    with pytest.raises(ValueError, match="b.csv"):
        writer.close(_manifest(ManifestEntity("B", input_file_path="b.csv")), PackageHeader())
