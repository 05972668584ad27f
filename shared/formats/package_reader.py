"""Open a D365 data package (zip) safely and hand out its entities in execution order.

The import worker gets a package from a partner (enqueue of a Data package job, or
ImportFromPackage). This module checks the zip (see zip_safety), reads Manifest.xml and
PackageHeader.xml, and streams each entity's data file and any XSLT resource, with limits, so that
nothing is ever extracted to disk or read whole into memory.
"""

from __future__ import annotations

import zipfile
from typing import BinaryIO

from shared.errors import FormatError
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
    ZipLimits,
    open_package_zip,
    read_entry_bytes,
    read_entry_stream,
)

MANIFEST_NAME = "Manifest.xml"
HEADER_NAME = "PackageHeader.xml"

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
        # Lookups are case-insensitive (D365 runs on Windows); open_package_zip has already
        # rejected names that differ only in case, so this map is unambiguous.
        self._by_folded_name = {info.filename.casefold(): info for info in zf.infolist()}

    def __enter__(self) -> DataPackage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.zip.close()

    def names(self) -> list[str]:
        """Every entry name, in zip order."""
        return [info.filename for info in self.zip.infolist()]

    def entities(self) -> list[ManifestEntity]:
        """The manifest's entities in execution order (ExecutionUnit, Level, Sequence)."""
        return ordered_entities(self.manifest)

    def find(self, name: str) -> zipfile.ZipInfo | None:
        """The entry for a file name: exact, then case-insensitive, then by its last path segment.

        The last fallback accepts an InputFilePath written with a folder (`Data\\x.csv`) by
        tools that should not have: the file can only be at the root anyway.
        """
        info = self._by_folded_name.get(name.casefold())
        if info is None:
            base = name.replace("\\", "/").rsplit("/", 1)[-1]
            info = self._by_folded_name.get(base.casefold())
        return info

    def open_entity_file(self, entity: ManifestEntity) -> BinaryIO:
        """Stream the entity's data file (InputFilePath), with the zip limits enforced while reading."""
        if not entity.input_file_path:
            raise FormatError(f"Manifest.xml gives entity '{entity.entity_name}' no InputFilePath")
        info = self.find(entity.input_file_path)
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


def open_package(fileobj: BinaryIO, *, limits: ZipLimits = DEFAULT_LIMITS) -> DataPackage:
    """Validate the zip, parse Manifest.xml and PackageHeader.xml, and return the package.

    `fileobj` must be seekable (spool blob downloads to a temporary file). Raises FormatError with
    a message fit for the message's PreProcessingError reason.
    """
    zf = open_package_zip(fileobj, limits=limits)
    try:
        by_name = {info.filename.casefold(): info for info in zf.infolist()}
        manifest_info = by_name.get(MANIFEST_NAME.casefold())
        if manifest_info is None:
            raise FormatError(f"the package has no {MANIFEST_NAME}")
        header_info = by_name.get(HEADER_NAME.casefold())
        if header_info is None:
            raise FormatError(f"the package has no {HEADER_NAME}")
        manifest = parse_manifest(
            read_entry_bytes(zf, manifest_info, max_bytes=MAX_MANIFEST_BYTES, limits=limits)
        )
        header = parse_package_header(
            read_entry_bytes(zf, header_info, max_bytes=MAX_MANIFEST_BYTES, limits=limits)
        )
        return DataPackage(zf, manifest, header, limits)
    except BaseException:
        zf.close()
        raise
