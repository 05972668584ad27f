"""Say what a file sent as a data package really is, before any package rule is applied (issue 12, class 2).

A partner who sends an `.xlsx`, a bare CSV or a zip of the wrong folder to ImportFromPackage or to a
Data package job must first learn *what was sent* and *what to do*, not that the workbook "contains a
folder docProps/". Three diagnoses, in this order:

1. **Not a zip** (`not_a_zip`): from the first bytes only (signatures, then text that looks like XML,
   JSON or CSV).
2. **A zip that is an Office or OpenDocument file** (`office_document`): from the entry names only
   (`[Content_Types].xml` with `xl/`, `word/` or `ppt/`; `META-INF/manifest.xml` with `content.xml`),
   so nothing is decompressed before the zip's safety checks ran.
3. **A zip without Manifest.xml/PackageHeader.xml at its root** (`missing_root_files`): says whether
   they sit in a folder (the folder was zipped instead of its files) or are absent, and lists a few of
   the entries.

Every message keeps the words earlier versions used ("not a zip file", "the package has no
Manifest.xml"), which clients and runbooks may match.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable

from shared.formats.zip_safety import is_mac_metadata, normalized_name

MANIFEST_NAME = "Manifest.xml"
HEADER_NAME = "PackageHeader.xml"

WHAT_A_PACKAGE_IS = (
    "A data package is a zip with Manifest.xml and PackageHeader.xml at its root, next to one data file "
    "per entity (export one from a D365 data project to get the layout)"
)
SINGLE_FILE_HINT = (
    "to import one {kind} file on its own, send it to a File job instead: "
    "POST /api/connector/enqueue/{{activityId}}?entity=<entity>"
)
# Bytes read from the start of a file to recognise it; enough for any signature and a CSV header line.
HEAD_BYTES = 4096
_LISTED_ENTRIES = 5

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        "an Office file in the older binary format (.xls, .doc) or a password-protected Office file",
    ),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip file (.gz, .tgz)"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"BZh", "a bzip2 file"),
)
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def _text_of(head: bytes) -> str | None:
    """The head decoded as text when it is text (UTF-8/UTF-16 with a BOM, or UTF-8/Latin-1), else None."""
    if head.startswith(_UTF16_BOMS):
        try:
            return head.decode("utf-16", errors="ignore")
        except UnicodeDecodeError:  # pragma: no cover - errors="ignore"
            return None
    if b"\x00" in head:
        return None
    text = head.decode("utf-8-sig", errors="replace")
    # Mostly printable: text. A few replacement characters (Latin-1 bytes, a cut multi-byte char) are fine.
    printable = sum(1 for ch in text if ch.isprintable() or ch in "\r\n\t")
    return text if text and printable >= 0.95 * len(text) else None


def not_a_zip(head: bytes, detail: str | None = None) -> str:
    """The reason for a file that is not a zip, from its first bytes (`head`, up to HEAD_BYTES)."""
    if not head:
        return f"the file is empty, so it is not a zip file. {WHAT_A_PACKAGE_IS}."
    for signature, what in _SIGNATURES:
        if head.startswith(signature):
            return f"the file is {what}, not a zip file. {WHAT_A_PACKAGE_IS}."
    if head.startswith(b"PK"):
        why = f" ({detail})" if detail else ""
        return (
            f"the file starts like a zip but is not a zip file that can be read{why}: it is damaged or "
            f"truncated; send it again. {WHAT_A_PACKAGE_IS}."
        )
    text = _text_of(head)
    if text is None:
        return (
            "the file is not a zip file (its first bytes are binary data of no known kind). "
            f"{WHAT_A_PACKAGE_IS}."
        )
    stripped = text.lstrip()
    if stripped.startswith("<"):
        kind = "XML"
    elif stripped.startswith(("{", "[")):
        kind = "JSON"
    else:
        kind = "CSV"
    looks = "CSV or other text" if kind == "CSV" else kind
    return (
        f"the file is not a zip file: it is {looks}. {WHAT_A_PACKAGE_IS}; "
        + SINGLE_FILE_HINT.format(kind=kind)
        + "."
    )


def office_document(names: Iterable[str]) -> str | None:
    """The reason for a zip that is an Office Open XML or OpenDocument file, or None for any other zip."""
    folded = {normalized_name(n).casefold() for n in names}
    if "[content_types].xml" in folded:
        tops = {n.split("/", 1)[0] for n in folded if "/" in n}
        if "xl" in tops:
            what, kind = "an Excel workbook (.xlsx)", "EXCEL"
        elif "word" in tops:
            what, kind = "a Word document (.docx)", None
        elif "ppt" in tops:
            what, kind = "a PowerPoint presentation (.pptx)", None
        else:
            what, kind = "an Office Open XML document", None
    elif "meta-inf/manifest.xml" in folded and "content.xml" in folded:
        what, kind = "an OpenDocument file (.ods, .odt)", None
    else:
        return None
    todo = (
        "to import the workbook itself, send it to a File job whose entity uses the EXCEL format "
        "(POST /api/connector/enqueue/{activityId}?entity=<entity>), or put it in a data package as an "
        "entity's data file"
        if kind == "EXCEL"
        else "save the data as CSV, XML, JSON or an Excel workbook and put it in a data package"
    )
    return f"the file is {what}, not a data package. {WHAT_A_PACKAGE_IS}; {todo}."


def missing_root_files(names: Iterable[str], *, has_manifest: bool, has_header: bool) -> str:
    """The reason for a zip that lacks Manifest.xml or PackageHeader.xml at its root."""
    files = [normalized_name(n) for n in names if not n.endswith("/") and not is_mac_metadata(n)]
    missing = [n for n, present in ((MANIFEST_NAME, has_manifest), (HEADER_NAME, has_header)) if not present]
    nested: dict[str, str] = {}
    for wanted in missing:
        for name in files:
            if "/" in name and name.rsplit("/", 1)[-1].casefold() == wanted.casefold():
                nested.setdefault(wanted, name.rsplit("/", 1)[0] + "/")
                break
    if nested:
        folder = next(iter(nested.values()))
        return (
            f"the package has no {' and no '.join(missing)} at its root: "
            f"{' and '.join(nested)} {'is' if len(nested) == 1 else 'are'} inside the folder '{folder}'. "
            "Zip the package's files themselves, not the folder that holds them. "
            f"{WHAT_A_PACKAGE_IS}."
        )
    if not has_manifest and not has_header:
        shown = ", ".join(files[:_LISTED_ENTRIES]) or "nothing"
        more = f" and {len(files) - _LISTED_ENTRIES} more" if len(files) > _LISTED_ENTRIES else ""
        return (
            f"the package has no Manifest.xml and no PackageHeader.xml at its root, so this zip is not a "
            f"data package (it holds {shown}{more}). {WHAT_A_PACKAGE_IS}; "
            + SINGLE_FILE_HINT.format(kind="data")
            + "."
        )
    present = HEADER_NAME if has_header else MANIFEST_NAME
    return (
        f"the package has no {missing[0]} at its root (it has {present}). {WHAT_A_PACKAGE_IS}: "
        f"add the missing {missing[0]} (D365 writes both files in every package)."
    )
