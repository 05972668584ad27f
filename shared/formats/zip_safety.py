"""Open untrusted zip files (data packages) without letting them escape, explode or lie.

Partners upload zips; nothing in them is trusted. `open_package_zip` checks the central directory
(no path traversal, absolute paths, links or special files, no duplicates, entry count, declared total
size and compression ratio, no encryption) before any byte is decompressed. Declared sizes can lie, so
`read_entry_stream` also counts the bytes that really come out of the decompressor and stops at the limits.

Nested relative entries are allowed (issue 12): D365 packages that carry attachments hold
`Resources/<entity label>/<file>`, and zips made on a Mac hold `__MACOSX/` metadata. Which files must
sit at the root (the manifest, the header, the data files) is package_reader's rule, not this module's.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
from dataclasses import dataclass
from typing import BinaryIO

from shared.errors import FormatError

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


@dataclass(frozen=True)
class ZipLimits:
    """Limits for one zip. The defaults fit real D365 packages with a wide margin.

    - max_entries: a package holds a manifest, a header and one file per entity (plus XSLTs);
      D365 projects rarely exceed a few hundred entities.
    - max_total_uncompressed: across all entries, declared and actual.
    - max_entry_uncompressed: per entry; by default the same as the total.
    - max_ratio / ratio_floor: deflate tops out near 1032:1 and real CSV/XML data compresses
      5-50:1, so 200:1 flags bombs without rejecting real data. Entries whose uncompressed size is
      at most ratio_floor are not ratio-checked: tiny files of repeated characters are harmless.
    """

    max_entries: int = 1000
    max_total_uncompressed: int = 2 * GIB
    max_entry_uncompressed: int | None = None
    max_ratio: float = 200.0
    ratio_floor: int = 1 * MIB

    @property
    def entry_limit(self) -> int:
        return self.max_entry_uncompressed or self.max_total_uncompressed


DEFAULT_LIMITS = ZipLimits()


class NotAZipError(FormatError):
    """The file is not a zip that can be read; `detail` is zipfile's reason, when it gave one."""

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(f"not a zip file ({detail})" if detail else "not a zip file")
        self.detail = detail


# Compression methods the standard library can decompress. Anything else (Deflate64, PPMd, ...)
# would fail later with an obscure error, so it is rejected up front with a clear one.
_SUPPORTED_METHODS = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflate",
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "lzma",
}

_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_EOCD_SIGNATURE = b"PK\x05\x06"
# The longest entry name accepted: Windows paths stop at 260 characters; a name of kilobytes is not a file.
MAX_NAME_CHARS = 1024
# Unix file types in the high 16 bits of external_attr (set by zips made on Unix and macOS).
_S_IFMT = 0o170000
_S_IFREG = 0o100000
_S_IFDIR = 0o040000
_S_IFLNK = 0o120000
_UNIX = 3  # ZipInfo.create_system of zips made on Unix and macOS
MAC_METADATA_FOLDER = "__MACOSX/"
_MAC_METADATA_FILES = {".ds_store"}


def normalized_name(name: str) -> str:
    """An entry name with `/` as the separator: some Windows tools write `\\` (the zip format says `/`)."""
    return name.replace("\\", "/")


def is_mac_metadata(name: str) -> bool:
    """Whether an entry is macOS metadata (`__MACOSX/…` resource forks, `.DS_Store`): never content."""
    normalized = normalized_name(name)
    if normalized.casefold().startswith(MAC_METADATA_FOLDER.casefold()):
        return True
    return normalized.rstrip("/").rsplit("/", 1)[-1].casefold() in _MAC_METADATA_FILES


def is_folder_entry(info: zipfile.ZipInfo) -> bool:
    """A folder entry (`Resources/`): it holds no data and is skipped by every reader."""
    return normalized_name(info.filename).endswith("/")


def _check_name(name: str) -> None:
    if not name:
        raise FormatError("the package contains an entry with an empty name")
    if len(name) > MAX_NAME_CHARS:
        raise FormatError(
            f"the package contains an entry name of {len(name)} characters; the limit is {MAX_NAME_CHARS}"
        )
    normalized = normalized_name(name)
    parts = normalized.split("/")
    # Traversal first: "../x" must be reported as unsafe, whatever else is wrong with it.
    if normalized.startswith("/") or _DRIVE.match(normalized) or any(p in ("..", ".") for p in parts):
        raise FormatError(
            f"the package contains the unsafe path '{name}'; "
            "entries must be relative paths inside the package"
        )
    inner = parts[:-1] if normalized.endswith("/") else parts
    if any(p == "" for p in inner) or any(p != p.strip() for p in inner):
        raise FormatError(f"the package contains the invalid path '{name}' (an empty or blank folder name)")
    if ":" in name or _CONTROL.search(name):
        raise FormatError(f"the package contains the invalid file name '{name}'")


def _check_file_type(info: zipfile.ZipInfo) -> None:
    """Only plain files and folders: a symbolic link (or a device, a pipe) is refused, wherever it points."""
    if info.create_system != _UNIX:
        return  # other systems (FAT, NTFS) keep DOS attributes only: no links there
    kind = (info.external_attr >> 16) & _S_IFMT
    if kind == _S_IFLNK:
        raise FormatError(
            f"the package contains the symbolic link '{info.filename}'; packages hold plain files only"
        )
    if kind not in (0, _S_IFREG, _S_IFDIR):
        raise FormatError(
            f"the package contains the special file '{info.filename}'; packages hold plain files only"
        )


def _declared_entry_count(fileobj: BinaryIO) -> int | None:
    """The entry count from the end-of-central-directory record, read before zipfile builds its index.

    zipfile reads the whole central directory into memory; a crafted zip declaring millions of
    entries is refused here first. Returns None when the record cannot be found or uses zip64
    (then the count is checked after zipfile has parsed the directory).
    """
    try:
        fileobj.seek(0, io.SEEK_END)
        size = fileobj.tell()
        tail_len = min(size, 22 + 65535)  # the record plus the longest possible comment
        fileobj.seek(size - tail_len)
        tail = fileobj.read(tail_len)
        fileobj.seek(0)
    except (OSError, ValueError):
        return None
    pos = tail.rfind(_EOCD_SIGNATURE)
    if pos < 0 or len(tail) - pos < 22:
        return None
    (total_entries,) = struct.unpack("<H", tail[pos + 10 : pos + 12])
    return None if total_entries == 0xFFFF else total_entries


def _ratio_exceeded(uncompressed: int, compressed: int, limits: ZipLimits) -> bool:
    if uncompressed <= limits.ratio_floor:
        return False
    return uncompressed > limits.max_ratio * max(compressed, 1)


def check_zip(zf: zipfile.ZipFile, limits: ZipLimits = DEFAULT_LIMITS) -> None:
    """Validate an open ZipFile's directory against the rules and limits; raise FormatError.

    Every entry is checked, folders and macOS metadata included: an entry that readers skip must still
    not be a link, a traversal, encrypted or a bomb.
    """
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise FormatError(f"the package has {len(infos)} entries; the limit is {limits.max_entries}")
    seen: set[str] = set()
    total = 0
    for info in infos:
        _check_name(info.filename)
        _check_file_type(info)
        if is_folder_entry(info):
            if info.file_size:
                raise FormatError(f"the folder entry '{info.filename}' in the package holds data")
        else:
            key = normalized_name(info.filename).casefold()
            if key in seen:
                # Case-insensitive, because file lookups (Manifest.xml, InputFilePath) are.
                raise FormatError(f"the package contains '{info.filename}' more than once")
            seen.add(key)
        if info.flag_bits & 0x1:
            raise FormatError(f"'{info.filename}' in the package is encrypted")
        if info.compress_type not in _SUPPORTED_METHODS:
            raise FormatError(
                f"'{info.filename}' in the package uses compression method {info.compress_type}; "
                "use deflate (the zip default)"
            )
        if info.file_size > limits.entry_limit:
            raise FormatError(
                f"'{info.filename}' is {info.file_size} bytes uncompressed; the limit is {limits.entry_limit}"
            )
        total += info.file_size
        if total > limits.max_total_uncompressed:
            raise FormatError(
                f"the package is more than {limits.max_total_uncompressed} bytes uncompressed; "
                f"that is the limit"
            )
        if _ratio_exceeded(info.file_size, info.compress_size, limits):
            raise FormatError(
                f"'{info.filename}' has a compression ratio above {limits.max_ratio:g}:1; "
                "the package looks like a zip bomb"
            )


def open_zip(fileobj: BinaryIO, *, limits: ZipLimits = DEFAULT_LIMITS) -> zipfile.ZipFile:
    """Open a seekable binary stream as a zip, with the entry count bounded before the directory is read,
    but without the entry checks of `check_zip` (callers that first look at the names to say what the
    file is, such as an Office document, run check_zip next). NotAZipError when it is not a zip."""
    declared = _declared_entry_count(fileobj)
    if declared is not None and declared > limits.max_entries:
        raise FormatError(f"the package has {declared} entries; the limit is {limits.max_entries}")
    try:
        zf = zipfile.ZipFile(fileobj, "r")
    except zipfile.BadZipFile:
        raise NotAZipError() from None
    except (OSError, EOFError, ValueError, NotImplementedError, struct.error) as exc:
        # Truncated or mangled directories surface as assorted errors from zipfile.
        raise NotAZipError(str(exc)) from None
    if len(zf.infolist()) > limits.max_entries:  # a zip64 directory declares its count elsewhere
        zf.close()
        raise FormatError(f"the package has {len(zf.infolist())} entries; the limit is {limits.max_entries}")
    return zf


def open_package_zip(fileobj: BinaryIO, *, limits: ZipLimits = DEFAULT_LIMITS) -> zipfile.ZipFile:
    """Open a seekable binary stream as a zip and check it; raise FormatError if it is unsafe.

    The stream must be seekable (zip's directory is at the end): spool a blob download to a
    temporary file first. The caller owns the returned ZipFile and closes it.
    """
    zf = open_zip(fileobj, limits=limits)
    try:
        check_zip(zf, limits)
    except BaseException:
        zf.close()
        raise
    return zf


class LimitedReader(io.RawIOBase):
    """A read-only stream that counts the bytes it passes and fails past a limit.

    Wraps the decompressor's output so that a lying header (small declared size, big content)
    or a ratio bomb is caught while streaming, after at most `limit` bytes, never by trusting
    metadata. Errors from the underlying zip stream (bad CRC, corrupt data) become FormatError.
    """

    def __init__(
        self,
        raw: BinaryIO,
        *,
        name: str,
        limit: int,
        compressed_size: int | None = None,
        limits: ZipLimits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__()
        self._raw = raw
        self._name = name
        self._limit = limit
        self._compressed_size = compressed_size
        self._limits = limits
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        # Ask for at most one byte beyond the limit, so an overrun is detected without reading
        # (and decompressing) more than that.
        want = min(len(view), self._limit - self.bytes_read + 1)
        try:
            data = self._raw.read(want)
        except FormatError:
            raise
        except Exception as exc:
            # zipfile surfaces corrupt entries as BadZipFile (CRC), zlib.error, lzma.LZMAError,
            # OSError (bz2), EOFError (truncation), ...: all mean the same to the partner.
            raise FormatError(f"'{self._name}' in the package is corrupt: {exc}") from None
        n = len(data)
        self.bytes_read += n
        if self.bytes_read > self._limit:
            raise FormatError(
                f"'{self._name}' in the package decompresses to more than {self._limit} bytes "
                "(more than its header declares or than the limit)"
            )
        if self._compressed_size is not None and _ratio_exceeded(
            self.bytes_read, self._compressed_size, self._limits
        ):
            raise FormatError(
                f"'{self._name}' has a compression ratio above {self._limits.max_ratio:g}:1; "
                "the package looks like a zip bomb"
            )
        view[:n] = data
        return n

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


def read_entry_stream(
    zf: zipfile.ZipFile,
    name: str | zipfile.ZipInfo,
    *,
    max_bytes: int | None = None,
    limits: ZipLimits = DEFAULT_LIMITS,
    buffer_size: int = 64 * KIB,
) -> BinaryIO:
    """Open one entry for streaming, limited to min(declared size, limit, max_bytes) real bytes.

    zipfile itself stops at the declared size and then checks the CRC; the counter here is the
    second line of defence (and gives a clear message) if that ever changes or the directory lies.
    """
    info = name if isinstance(name, zipfile.ZipInfo) else zf.getinfo(name)
    limit = min(info.file_size, limits.entry_limit)
    if max_bytes is not None:
        if info.file_size > max_bytes:
            raise FormatError(f"'{info.filename}' is {info.file_size} bytes; the limit is {max_bytes}")
        limit = min(limit, max_bytes)
    try:
        raw = zf.open(info, "r")
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, ValueError) as exc:
        raise FormatError(f"'{info.filename}' in the package cannot be read: {exc}") from None
    reader = LimitedReader(
        raw, name=info.filename, limit=limit, compressed_size=info.compress_size, limits=limits
    )
    return io.BufferedReader(reader, buffer_size)  # type: ignore[return-value]


def read_entry_bytes(
    zf: zipfile.ZipFile, name: str | zipfile.ZipInfo, *, max_bytes: int, limits: ZipLimits = DEFAULT_LIMITS
) -> bytes:
    """A small entry (manifest, header, XSLT) read whole, with the same limits as streaming."""
    with read_entry_stream(zf, name, max_bytes=max_bytes, limits=limits) as stream:
        return stream.read()
