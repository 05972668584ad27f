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
    with pytest.raises(FormatError, match="unsafe path"):
        open_package(_package({"Manifest.xml": b"", "../a.csv": b"1"}))
    with pytest.raises(FormatError, match="unsafe path"):
        open_package(_package({"Manifest.xml": b"", "Resources/../../a.csv": b"1"}))
    with pytest.raises(FormatError, match="not a zip file"):
        open_package(io.BytesIO(b"CUSTGROUP,NAME\n10,Wholesale\n"))


def _valid(extra: dict[str, bytes], *entities: ManifestEntity) -> io.BytesIO:
    entities = entities or (ManifestEntity("Customers", input_file_path="Customers.csv"),)
    return _package(
        {
            "Manifest.xml": write_manifest(_manifest(*entities)),
            "PackageHeader.xml": write_package_header(PackageHeader()),
            "Customers.csv": b"A\n1\n",
            **extra,
        }
    )


def test_attachments_and_mac_metadata_are_accepted_and_kept_apart() -> None:
    """Issue 12, class 1: a D365 package with Resources/<entity label>/<file>, zipped on a Mac."""
    buf = _valid(
        {
            "Resources/": b"",
            "Resources/Customers/contract 1.pdf": b"%PDF-1.4 one",
            "Resources\\customers\\photo.png": b"\x89PNG",
            "Resources/Vendors/terms.docx": b"PK",
            "Resources/loose.txt": b"x",
            "__MACOSX/._Manifest.xml": b"\x00\x05\x16\x07",
            "__MACOSX/Resources/Customers/._contract 1.pdf": b"\x00",
            ".DS_Store": b"\x00\x00",
        }
    )
    with open_package(buf) as pkg:
        assert pkg.attachments() == {
            "Customers": ["Resources/Customers/contract 1.pdf"],
            "customers": ["Resources\\customers\\photo.png"],
            "Vendors": ["Resources/Vendors/terms.docx"],
            "": ["Resources/loose.txt"],
        }
        assert not any("MACOSX" in n or "DS_Store" in n or n.endswith("/") for n in pkg.names())
        assert pkg.find("__MACOSX/._Manifest.xml") is None  # metadata is ignored entirely
        with pkg.open_entity_file(pkg.entities()[0]) as f:
            assert f.read() == b"A\n1\n"
        assert pkg.read_resource("resources/customers/CONTRACT 1.pdf") == b"%PDF-1.4 one"


def test_data_files_must_sit_at_the_root() -> None:
    entity = ManifestEntity("Vendors", input_file_path="Data\\Vendors.csv")
    nested_only = "holds only in a folder .'Data/Vendors.csv'.: an entity's data file"
    with (
        open_package(_valid({"Data/Vendors.csv": b"V\n"}, entity)) as pkg,
        pytest.raises(FormatError, match=nested_only),
    ):
        pkg.open_entity_file(entity)
    # A folder in the InputFilePath is forgiven when the file is at the root (tools write Data\x.csv).
    with open_package(_valid({"Vendors.csv": b"V\n"}, entity)) as pkg, pkg.open_entity_file(entity) as f:
        assert f.read() == b"V\n"


@pytest.mark.parametrize(
    "data,expected",
    [
        (b"CUSTGROUP,NAME\r\n10,Wholesale\r\n", "not a zip file: it is CSV or other text"),
        ("\ufeffCODE;NAME\nä;ö\n".encode(), "not a zip file: it is CSV or other text"),
        ("CODE,NAME\n1,x\n".encode("utf-16"), "not a zip file: it is CSV or other text"),
        (b'<?xml version="1.0"?><Document/>', "not a zip file: it is XML"),
        (b'  {"value": []}', "not a zip file: it is JSON"),
        (b"[1, 2]", "not a zip file: it is JSON"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600, "older binary format .\\.xls"),
        (b"%PDF-1.7\n", "a PDF document, not a zip file"),
        (b"\x1f\x8b\x08\x00" + b"\0" * 20, "a gzip file"),
        (b"", "the file is empty, so it is not a zip file"),
        (b"PK\x03\x04" + b"\0" * 50, "starts like a zip but is not a zip file that can be read"),
        (bytes(range(256)) * 4, "not a zip file .its first bytes are binary"),
    ],
)
def test_a_file_that_is_not_a_zip_is_told_what_it_is_and_what_to_do(data: bytes, expected: str) -> None:
    """Issue 12, class 2: what was sent first, then what a package is."""
    with pytest.raises(FormatError, match=expected) as info:
        open_package(io.BytesIO(data))
    assert "A data package is a zip with Manifest.xml and PackageHeader.xml at its root" in str(info.value)
    if "CSV" in expected or "XML" in expected or "JSON" in expected:
        assert "send it to a File job instead: POST /api/connector/enqueue/{activityId}?entity=" in str(
            info.value
        )


def _xlsx() -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    wb.active.append(["CODE", "NAME"])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def test_an_excel_workbook_is_told_it_is_an_office_document_not_a_package() -> None:
    """Issue 12, class 2: an .xlsx sent to ImportFromPackage was told it has a folder docProps/."""
    with pytest.raises(FormatError) as info:
        open_package(io.BytesIO(_xlsx()))
    text = str(info.value)
    assert text.startswith("the file is an Excel workbook (.xlsx), not a data package.")
    assert "docProps" not in text and "folder" not in text
    assert "send it to a File job whose entity uses the EXCEL format" in text


@pytest.mark.parametrize(
    "names,what",
    [
        (["[Content_Types].xml", "word/document.xml", "docProps/app.xml"], "a Word document"),
        (["[Content_Types].xml", "ppt/presentation.xml"], "a PowerPoint presentation"),
        (["[Content_Types].xml", "custom/x.xml"], "an Office Open XML document"),
        (["mimetype", "content.xml", "META-INF/manifest.xml"], "an OpenDocument file"),
    ],
)
def test_other_office_documents_are_named(names: list[str], what: str) -> None:
    with pytest.raises(FormatError, match=f"the file is {what}"):
        open_package(_package(dict.fromkeys(names, b"<x/>")))


def test_an_office_document_is_named_before_any_safety_rule_but_never_decompressed() -> None:
    # A workbook whose part would trip the bomb ratio is still named as a workbook: nothing is read.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", b"<Types/>")
        with zf.open("xl/sharedStrings.xml", "w") as e:
            for _ in range(210):
                e.write(b"\0" * 1024 * 1024)
    buf.seek(0)
    with pytest.raises(FormatError, match="an Excel workbook"):
        open_package(buf)
    # A package's own safety rules still apply before its root is judged.
    with pytest.raises(FormatError, match="unsafe path"):
        open_package(_package({"a.csv": b"1", "../evil.csv": b"1"}))


def test_a_zipped_folder_is_told_to_zip_the_files_not_the_folder() -> None:
    """A Mac "Compress" of the package folder: everything one level down, plus __MACOSX/."""
    inner = _valid({})
    with zipfile.ZipFile(inner) as zf:
        entries = {f"MyPackage/{n}": zf.read(n) for n in zf.namelist()}
    entries["__MACOSX/MyPackage/._Manifest.xml"] = b"\0"
    with pytest.raises(FormatError) as info:
        open_package(_package(entries))
    text = str(info.value)
    assert text.startswith("the package has no Manifest.xml and no PackageHeader.xml at its root")
    assert "inside the folder 'MyPackage/'" in text and "Zip the package's files themselves" in text


def test_a_zip_of_data_files_only_is_told_what_a_package_is() -> None:
    with pytest.raises(FormatError) as info:
        open_package(_package({f"file{i}.csv": b"1" for i in range(7)}))
    text = str(info.value)
    assert "the package has no Manifest.xml and no PackageHeader.xml at its root" in text
    assert "it holds file0.csv, file1.csv, file2.csv, file3.csv, file4.csv and 2 more" in text
    assert "send it to a File job instead" in text


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


def test_data_files_no_entity_reads_are_listed() -> None:
    """Issue 12, class 4: a data file the manifest does not name is reported, not silently skipped."""
    xslt = EntityTransform(sequence_number=1, xslt_file_name="shape.xslt")
    buf = _valid(
        {
            "Vendors.csv": b"V\n1\n",  # no entity reads it
            "extra.JSON": b"[]",
            "Sales lines.xlsx": b"PK",
            "readme.md": b"# notes",  # not a data file
            "shape.xslt": b"<xsl:stylesheet/>",
            "Resources/Customers/data.csv": b"x",  # an attachment, in a folder
            "Docs/old.csv": b"x",  # only root files are data files
        },
        ManifestEntity("Customers", input_file_path="customers.CSV"),  # matched case-insensitively
    )
    with open_package(buf) as pkg:
        assert pkg.unreferenced_data_files() == ["Vendors.csv", "extra.JSON", "Sales lines.xlsx"]
    # Root .xml files are left alone when a package XSLT might read them with document().
    transformed = ManifestEntity("Customers", input_file_path="Customers.csv", transforms=[xslt])
    with open_package(
        _valid({"lookup.xml": b"<a/>", "shape.xslt": b"<x/>", "x.csv": b"1"}, transformed)
    ) as pkg:
        assert pkg.unreferenced_data_files() == ["x.csv"]
    with open_package(_valid({"lookup.xml": b"<a/>"})) as pkg:
        assert pkg.unreferenced_data_files() == ["lookup.xml"]
