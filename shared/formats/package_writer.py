"""Stream a D365 data package (zip) for export without holding any entity file in memory.

The export worker writes each entity's file straight into a zip entry (deflated, at the zip
root, as D365 does) and finishes with Manifest.xml and PackageHeader.xml, so the package can be
uploaded to blob storage as it is produced. The output stream does not need to be seekable.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import BinaryIO

from shared.formats.package_manifest import Manifest, PackageHeader, write_manifest, write_package_header
from shared.formats.package_reader import HEADER_NAME, MANIFEST_NAME

_COPY_CHUNK = 1024 * 1024
_RESERVED = {MANIFEST_NAME.casefold(), HEADER_NAME.casefold()}


class PackageWriter:
    """Write entity files one at a time, then close(manifest, header).

    zipfile allows one open entry at a time; so does this writer. On error, call abort() (or leave
    the `with` block with an exception) so that the half-written package is not taken as complete.
    """

    def __init__(self, fileobj: BinaryIO, *, compresslevel: int | None = None) -> None:
        self._zip = zipfile.ZipFile(
            fileobj, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel
        )
        self._names: dict[str, str] = {}
        self._closed = False

    def __enter__(self) -> PackageWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if not self._closed:
            # Without a manifest the package is unusable, so an unclosed writer is an error path.
            self.abort()

    @property
    def names(self) -> list[str]:
        return list(self._names.values())

    def _check_name(self, name: str) -> None:
        if self._closed:
            raise ValueError("the package writer is closed")
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise ValueError(f"'{name}' is not a plain file name; D365 packages keep every file at the root")
        folded = name.casefold()
        if folded in _RESERVED:
            raise ValueError(f"'{name}' is written by close()")
        if folded in self._names:
            raise ValueError(f"'{name}' is already in the package")

    def _info(self, name: str) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, date_time=time.localtime(time.time())[:6])
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16  # a regular file, readable, on unzip tools that look
        return info

    @contextmanager
    def open_entity_file(self, name: str, *, force_zip64: bool = False) -> Iterator[BinaryIO]:
        """A writable stream for one entry; write to it (e.g. through a TextIOWrapper), then exit.

        Set force_zip64 when the entry may exceed 2 GiB: zipfile cannot know the size in advance.
        """
        self._check_name(name)
        with self._zip.open(self._info(name), "w", force_zip64=force_zip64) as entry:
            yield entry  # type: ignore[misc]
        self._names[name.casefold()] = name

    def add_entity_file(
        self,
        name: str,
        data: bytes | bytearray | memoryview | Iterable[bytes] | BinaryIO,
        *,
        force_zip64: bool = False,
    ) -> None:
        """Add one entry from bytes, an iterable of byte chunks, or a readable binary stream."""
        with self.open_entity_file(name, force_zip64=force_zip64) as entry:
            if isinstance(data, bytes | bytearray | memoryview):
                entry.write(data)
            elif hasattr(data, "read"):
                while chunk := data.read(_COPY_CHUNK):  # type: ignore[union-attr]
                    entry.write(chunk)
            else:
                for chunk in data:
                    entry.write(chunk)

    def close(self, manifest: Manifest, header: PackageHeader) -> None:
        """Write Manifest.xml and PackageHeader.xml and finish the zip.

        Every entity's InputFilePath must have been written: a package that names a missing file
        fails on import in D365 and here alike.
        """
        if self._closed:
            raise ValueError("the package writer is closed")
        missing = [
            e.input_file_path
            for e in manifest.entities
            if not e.input_file_path or e.input_file_path.casefold() not in self._names
        ]
        if missing:
            raise ValueError(f"Manifest.xml names files that were not written: {missing}")
        self._zip.writestr(
            self._info(MANIFEST_NAME), write_manifest(manifest, package_version=header.package_version)
        )
        self._zip.writestr(self._info(HEADER_NAME), write_package_header(header))
        self._zip.close()
        self._closed = True

    def abort(self) -> None:
        """Close the zip without a manifest (the output is then not a valid package)."""
        if not self._closed:
            self._closed = True
            self._zip.close()
