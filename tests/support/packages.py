"""Builders of D365 data packages and entity schemas shared by the package, XSLT and hostile-file tests."""

from __future__ import annotations

import io
import zipfile

from shared.formats.package_manifest import (
    Manifest,
    ManifestEntity,
    PackageHeader,
    write_manifest,
    write_package_header,
)

ZIP_HEADERS = {"Content-Type": "application/zip"}


def build_zip(entries: list[tuple[str, bytes]], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def build_package(entities: list[ManifestEntity], files: dict[str, bytes], *, version: int = 2) -> bytes:
    """A data package as D365 writes it: UTF-16 manifest and header at the root, one file per entity."""
    manifest = write_manifest(Manifest("TestGroup", entities=entities), package_version=version)
    header = write_package_header(PackageHeader(description="test", package_version=version))
    return build_zip([("Manifest.xml", manifest), ("PackageHeader.xml", header), *files.items()])


def csv_entity(name: str, path: str, **kw) -> ManifestEntity:
    return ManifestEntity(
        entity_name=name, input_file_path=path, source_format=kw.pop("source_format", "CSV"), **kw
    )


def simple_entity(label: str | None = None) -> dict:
    body = {
        "keys": ["CODE"],
        "fields": [
            {"name": "CODE", "type": "string", "maxLength": 20},
            {"name": "NAME", "type": "string"},
            {"name": "AMOUNT", "type": "decimal"},
        ],
    }
    if label:
        body["label"] = label
    return body
