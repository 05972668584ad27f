"""File-like access to blobs, so readers stream from storage instead of loading whole files."""

from __future__ import annotations

import io

from shared.errors import FormatError


class BlobChangedError(FormatError):
    """The blob is no longer the version that was accepted; terminal, as retrying reads it no better."""


_CHANGED = (
    "the file was overwritten after it was accepted; nothing was imported. For a package API import, "
    "upload it again (GetAzureWriteUrl) and call ImportFromPackage with the new URL"
)


class BlobReader(io.RawIOBase):
    """A read-only raw stream over a blob download (fetched in chunks as the reader asks)."""

    def __init__(self, downloader) -> None:
        self._downloader = downloader
        self.size = downloader.size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        from azure.core.exceptions import ResourceModifiedError

        try:
            data = self._downloader.read(len(buffer))
        except ResourceModifiedError:  # a later chunk of a pinned download (If-Match)
            raise BlobChangedError(_CHANGED) from None
        n = len(data)
        buffer[:n] = data
        return n


def open_blob(
    container, name: str, *, etag: str | None = None, chunk_size: int = 4 * 1024 * 1024
) -> io.BufferedReader:
    """A buffered stream over the blob. With `etag`, only that version: when the blob has changed,
    opening or any later read raises BlobChangedError (the SDK pins every chunk to the ETag)."""
    if etag:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError

        try:
            downloader = container.download_blob(
                name, max_concurrency=2, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        except ResourceModifiedError:
            raise BlobChangedError(_CHANGED) from None
    else:
        downloader = container.download_blob(name, max_concurrency=2)
    return io.BufferedReader(BlobReader(downloader), buffer_size=chunk_size)
