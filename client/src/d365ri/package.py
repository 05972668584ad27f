"""Data packages for the package API: recognize one, or wrap a single data file into one.

A package is a zip with Manifest.xml, PackageHeader.xml and the data files at its root (PROTOCOL §5). Both
XML files are written as D365 writes them: UTF-16LE with a BOM, no XML declaration, WCF DataContract members
in alphabetical order. A wrapped file gets a one-entity manifest; its SourceFormat is left nil unless given,
so the data project's format for the entity applies. Against a real D365 environment, pass a package
exported from the data project as --template: its manifest (mappings included) is kept and only the data
file is replaced.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from d365ri.errors import UsageError
from d365ri.files import atomic_writer, safe_name

DM_NS = "http://schemas.microsoft.com/dynamics/2015/01/DataManagement"
I_NS = "http://www.w3.org/2001/XMLSchema-instance"
MANIFEST_TYPE = (
    "Microsoft.Dynamics.AX.Framework.Tools.DataManagement.Serialization.DataManagementPackageManifest"
)
# Servers refuse entries that compress more than about 200:1 (zip bombs); data that compresses better is
# stored instead, which costs upload bytes but never a refusal.
_MAX_RATIO = 100


def is_package(path: Path) -> bool:
    """A zip with Manifest.xml at its root."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.lower() == "manifest.xml" for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _xml(root: str, members: list[tuple[str, str | None]]) -> bytes:
    """A DataContract document: `members` (name, text or None for nil), sorted by name as D365 writes them."""
    parts = [f'<{root} xmlns:i="{I_NS}" xmlns="{DM_NS}">']
    for name, value in sorted(members):
        parts.append(f'<{name} i:nil="true" />' if value is None else f"<{name}>{value}</{name}>")
    parts.append(f"</{root}>")
    return b"\xff\xfe" + "".join(parts).encode("utf-16-le")


def manifest_xml(project: str, entity: str, file_name: str, source_format: str | None) -> bytes:
    entity_data = "".join(
        f'<{n} i:nil="true" />' if v is None else f"<{n}>{v}</{n}>"
        for n, v in sorted(
            [
                ("DefaultRefreshType", "FullPush"),
                ("Disable", "false"),
                ("EntityMapList", ""),
                ("EntityName", escape(entity)),
                ("EntityTransformList", ""),
                ("ExcelSheetName", ""),
                ("ExecutionUnit", "1"),
                ("FailExecutionUnitOnError", "false"),
                ("FailLevelOnError", "false"),
                ("InputFilePath", escape(file_name)),
                ("LevelInExecutionUnit", "1"),
                ("QueryData", None),
                ("QueryFilter", None),
                ("RunBusinessLogic", "true"),
                ("RunBusinessValidation", "true"),
                ("SampleFilePath", ""),
                ("SequenceInLevel", "1"),
                ("SourceFormat", escape(source_format) if source_format else None),
                ("TargetEntity", None),
                ("ValidationStatus", "Yes"),
            ]
        )
    )
    return _xml(
        "DataManagementPackageManifest",
        [
            ("DefinitionGroupName", escape(project)),
            ("Description", escape(f"{entity} from {file_name}")),
            (
                "PackageEntityList",
                f"<DataManagementPackageEntityData>{entity_data}</DataManagementPackageEntityData>",
            ),
            ("ProjectCategory", "0"),
            ("RulesData", None),
        ],
    )


def header_xml(description: str) -> bytes:
    return _xml(
        "DataManagementPackageHeader",
        [
            ("Description", escape(description)),
            ("ManifestType", MANIFEST_TYPE),
            ("PackageType", "DefinitionGroup"),
            ("PackageVersion", "2"),
        ],
    )


def _decode_xml(data: bytes) -> bytes:
    """UTF-16 (D365) or UTF-8 (tools such as RIS) manifest bytes as UTF-8 for ElementTree."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16").encode("utf-8")
    return data


def template_input_path(template: Path, entity: str | None) -> tuple[str, bytes, bytes]:
    """(InputFilePath of the entity, Manifest.xml bytes, PackageHeader.xml bytes) of a template package."""
    try:
        with zipfile.ZipFile(template) as zf:
            names = {n.lower(): n for n in zf.namelist()}
            if "manifest.xml" not in names or "packageheader.xml" not in names:
                raise UsageError(f"the template {template} has no Manifest.xml or PackageHeader.xml")
            manifest = zf.read(names["manifest.xml"])
            header = zf.read(names["packageheader.xml"])
    except zipfile.BadZipFile:
        raise UsageError(f"the template {template} is not a zip file") from None
    root = ElementTree.fromstring(_decode_xml(manifest))  # noqa: S314 (the partner's own file)
    entries = root.findall(f".//{{{DM_NS}}}DataManagementPackageEntityData")
    found = []
    for e in entries:
        name = (e.findtext(f"{{{DM_NS}}}EntityName") or "").strip()
        path = (e.findtext(f"{{{DM_NS}}}InputFilePath") or "").strip()
        if entity is None or name.casefold() == entity.casefold():
            found.append((name, path))
    if len(found) != 1 or not found[0][1]:
        names = ", ".join(n for n, _ in found) or "none"
        raise UsageError(
            f"the template {template} must have exactly one entity"
            + (f" named {entity!r}" if entity else "")
            + f" with an InputFilePath (found: {names})"
        )
    return found[0][1], manifest, header


def build_package(
    data_file: Path,
    target: Path,
    *,
    project: str,
    entity: str | None,
    source_format: str | None = None,
    template: Path | None = None,
) -> Path:
    """Write a package holding `data_file` to `target`; returns `target`."""
    if template is not None:
        entry, manifest, header = template_input_path(template, entity)
    else:
        if not entity:
            raise UsageError(
                f"{data_file.name} is not a data package, so the package API needs its entity: pass --entity "
                "(or set the job's 'entity' in the profile)"
            )
        entry = safe_name(data_file.name, "data")
        manifest = manifest_xml(project, entity, entry, source_format)
        header = header_xml(f"{project}: {data_file.name}")
    size = data_file.stat().st_size
    for compression in (zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED):
        with atomic_writer(target) as out, zipfile.ZipFile(out, "w", compression, allowZip64=True) as zf:
            zf.writestr("Manifest.xml", manifest, zipfile.ZIP_DEFLATED)
            zf.writestr("PackageHeader.xml", header, zipfile.ZIP_DEFLATED)
            zf.write(data_file, entry)
            info = zf.getinfo(entry)
        if compression == zipfile.ZIP_STORED or size <= _MAX_RATIO * max(info.compress_size, 1):
            break
    os.utime(target)
    return target
