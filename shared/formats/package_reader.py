"""Open a D365 data package (zip) safely and hand out its entities in execution order.

The import worker gets a package from a partner (enqueue of a Data package job, or
ImportFromPackage). This module first says what the file is when it is not a package (package_diagnosis:
not a zip, an Office document, a zip without the manifest and header at its root), then checks the zip
(zip_safety: every entry), reads Manifest.xml and PackageHeader.xml, and streams each entity's data file
and any XSLT resource, with limits, so that nothing is ever extracted to disk or read whole into memory.

Layout (issue 12): Manifest.xml, PackageHeader.xml and the entities' data files sit at the root; other
entries may sit in folders. `Resources/<entity label>/<file>` holds an entity's attachments (D365 writes
them so); they stay in the package, which is kept as the message's file, and are listed per entity on the
message (package_import). macOS metadata (`__MACOSX/`, `.DS_Store`) is checked like every entry and
otherwise ignored.
"""

from __future__ import annotations

import zipfile
from typing import BinaryIO

from shared.errors import FormatError
from shared.formats import package_diagnosis
from shared.formats.package_manifest import (
    MAX_MANIFEST_BYTES,
    Manifest,
    ManifestEntity,
    PackageHeader,
    ordered_entities,
    parse_manifest,
    parse_package_header,
)
from shared.formats.zip_safety import (
    DEFAULT_LIMITS,
    NotAZipError,
    ZipLimits,
    check_zip,
    is_folder_entry,
    is_mac_metadata,
    normalized_name,
    open_zip,
    read_entry_bytes,
    read_entry_stream,
)

MANIFEST_NAME = "Manifest.xml"
HEADER_NAME = "PackageHeader.xml"
# The folder of attachments: Resources/<entity label>/<file> (D365 packages of document attachments).
RESOURCES_FOLDER = "Resources"

# Extensions of the files that hold an entity's records (the formats' usual extensions).
DATA_EXTENSIONS = (".csv", ".txt", ".xml", ".xlsx", ".json", ".jsonl")

# An XSLT (or a document it includes) larger than this is not a transform anyone wrote by hand.
MAX_RESOURCE_BYTES = 16 * 1024 * 1024


class DataPackage:
    """An opened, validated data package. Use as a context manager, or call close()."""

    def __init__(
        self, zf: zipfile.ZipFile, manifest: Manifest, header: PackageHeader, limits: ZipLimits
    ) -> None:
        self.zip = zf
        self.manifest = manifest
        self.header = header
        self.limits = limits
        # Lookups are case-insensitive (D365 runs on Windows) and see `\\` as `/`; check_zip has already
        # rejected names that differ only in that way, so this map is unambiguous.
        self._files = [i for i in zf.infolist() if not is_folder_entry(i) and not is_mac_metadata(i.filename)]
        self._by_folded_name = {normalized_name(i.filename).casefold(): i for i in self._files}

    def __enter__(self) -> DataPackage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.zip.close()

    def files(self) -> list[zipfile.ZipInfo]:
        """Every file entry in zip order: no folder entries, no macOS metadata."""
        return list(self._files)

    def names(self) -> list[str]:
        """Every file name, in zip order (folders and macOS metadata left out)."""
        return [info.filename for info in self._files]

    def entities(self) -> list[ManifestEntity]:
        """The manifest's entities in execution order (ExecutionUnit, Level, Sequence)."""
        return ordered_entities(self.manifest)

    def find(self, name: str) -> zipfile.ZipInfo | None:
        """The entry for a path: exact (case-insensitive, `\\` as `/`), else the root file of its last part.

        The fallback accepts a name written with a folder (`Data\\x.csv`) by tools that should not have.
        """
        path = normalized_name(name).casefold()
        info = self._by_folded_name.get(path)
        if info is None and "/" in path:
            info = self._by_folded_name.get(path.rsplit("/", 1)[-1])
        return info

    def find_data_file(self, input_file_path: str) -> zipfile.ZipInfo | None:
        """An entity's data file: at the root only, by the last segment of its InputFilePath.

        FormatError when the file is only found in a folder: data files sit at the root, next to the
        manifest (D365 reads them there).
        """
        base = normalized_name(input_file_path).rsplit("/", 1)[-1].casefold()
        info = self._by_folded_name.get(base)
        if info is not None:
            return info
        nested = [
            i.filename for i in self._files if normalized_name(i.filename).casefold().endswith("/" + base)
        ]
        if nested:
            raise FormatError(
                f"Manifest.xml names '{input_file_path}', which the package holds only in a folder "
                f"('{nested[0]}'): an entity's data file must sit at the root of the zip, "
                "next to Manifest.xml"
            )
        return None

    def attachments(self) -> dict[str, list[str]]:
        """The attachments under `Resources/`, by their folder (the entity label) as written, in zip order.

        Files directly in `Resources/` (no entity folder) are under the key "".
        """
        out: dict[str, list[str]] = {}
        for info in self._files:
            parts = normalized_name(info.filename).split("/")
            if len(parts) >= 2 and parts[0].casefold() == RESOURCES_FOLDER.casefold():
                folder = parts[1] if len(parts) >= 3 else ""
                out.setdefault(folder, []).append(info.filename)
        return out

    def unreferenced_data_files(self) -> list[str]:
        """Data files at the root that no manifest entity reads, in zip order (issue 12: nothing dropped).

        A data file is a root entry with a data extension (DATA_EXTENSIONS) other than Manifest.xml and
        PackageHeader.xml. Files named by any entity (disabled ones too) as InputFilePath or as an XSLT are
        read. When an entity has package transforms, root .xml files are left out too: an XSLT may read
        any of them with document(), which cannot be known before it runs.
        """
        entities = self.manifest.entities
        used = {MANIFEST_NAME.casefold(), HEADER_NAME.casefold()}
        for me in entities:
            if me.input_file_path:
                try:
                    info = self.find_data_file(me.input_file_path)
                except FormatError:
                    info = None  # reported as that entity's error
                if info is not None:
                    used.add(normalized_name(info.filename).casefold())
            for transform in me.transforms:
                for name in (transform.xslt_file_name, transform.xslt_resource_file_name):
                    info = self.find(name) if name else None
                    if info is not None:
                        used.add(normalized_name(info.filename).casefold())
        xslt_reads_xml = any(me.transforms for me in entities)
        out: list[str] = []
        for info in self._files:
            name = normalized_name(info.filename)
            folded = name.casefold()
            if "/" in name or folded in used or not folded.endswith(DATA_EXTENSIONS):
                continue
            if xslt_reads_xml and folded.endswith(".xml"):
                continue
            out.append(info.filename)
        return out

    def open_entity_file(self, entity: ManifestEntity) -> BinaryIO:
        """Stream the entity's data file (InputFilePath), with the zip limits enforced while reading."""
        if not entity.input_file_path:
            raise FormatError(f"Manifest.xml gives entity '{entity.entity_name}' no InputFilePath")
        info = self.find_data_file(entity.input_file_path)
        if info is None:
            raise FormatError(
                f"Manifest.xml names '{entity.input_file_path}' but the package has no such file"
            )
        return read_entry_stream(self.zip, info, limits=self.limits)

    def open_resource(self, name: str) -> BinaryIO:
        """Stream a resource carried in the package (an XSLT or a file it includes)."""
        info = self.find(name)
        if info is None:
            raise FormatError(f"the package has no file '{name}'")
        return read_entry_stream(self.zip, info, max_bytes=MAX_RESOURCE_BYTES, limits=self.limits)

    def read_resource(self, name: str) -> bytes:
        """A resource read whole (XSLT compilation needs the bytes), limited to MAX_RESOURCE_BYTES."""
        with self.open_resource(name) as stream:
            return stream.read()


def _head(fileobj: BinaryIO) -> bytes:
    """The first bytes of the file, for the diagnosis of what it is; the stream is left at 0."""
    try:
        fileobj.seek(0)
        head = fileobj.read(package_diagnosis.HEAD_BYTES)
        fileobj.seek(0)
    except (OSError, ValueError):
        return b""
    return head or b""


def open_package(fileobj: BinaryIO, *, limits: ZipLimits = DEFAULT_LIMITS) -> DataPackage:
    """Say what the file is if it is not a package, check the zip, parse Manifest.xml and PackageHeader.xml.

    `fileobj` must be seekable (spool blob downloads to a temporary file). Raises FormatError with a
    message fit for the message's PreProcessingError reason, in the order of package_diagnosis: not a
    zip, an Office document, an unsafe zip (zip_safety), no manifest or header at the root, a bad manifest.
    """
    try:
        zf = open_zip(fileobj, limits=limits)
    except NotAZipError as exc:
        raise FormatError(package_diagnosis.not_a_zip(_head(fileobj), exc.detail)) from None
    try:
        names = zf.namelist()
        root = {normalized_name(n).casefold() for n in names}
        has_manifest = MANIFEST_NAME.casefold() in root
        has_header = HEADER_NAME.casefold() in root
        if not (has_manifest and has_header):
            office = package_diagnosis.office_document(names)
            if office:
                raise FormatError(office)
        check_zip(zf, limits)
        if not (has_manifest and has_header):
            raise FormatError(
                package_diagnosis.missing_root_files(names, has_manifest=has_manifest, has_header=has_header)
            )
        by_name = {normalized_name(i.filename).casefold(): i for i in zf.infolist()}
        manifest = parse_manifest(
            read_entry_bytes(
                zf, by_name[MANIFEST_NAME.casefold()], max_bytes=MAX_MANIFEST_BYTES, limits=limits
            )
        )
        header = parse_package_header(
            read_entry_bytes(zf, by_name[HEADER_NAME.casefold()], max_bytes=MAX_MANIFEST_BYTES, limits=limits)
        )
        return DataPackage(zf, manifest, header, limits)
    except BaseException:
        zf.close()
        raise
