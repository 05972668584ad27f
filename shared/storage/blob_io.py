"""File-like access to blobs, so readers stream from storage instead of loading whole files."""

from __future__ import annotations

import io


class BlobReader(io.RawIOBase):
    """A read-only raw stream over a blob download (fetched in chunks as the reader asks)."""

    def __init__(self, downloader) -> None:
        self._downloader = downloader
        self.size = downloader.size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._downloader.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        return n


def open_blob(
    container, name: str, *, etag: str | None = None, chunk_size: int = 4 * 1024 * 1024
) -> io.BufferedReader:
    """A buffered stream over the blob. With `etag`, only that version: a blob changed since raises
    azure.core.exceptions.ResourceModifiedError (the SDK pins later chunks to the first one's ETag)."""
    if etag:
        from azure.core import MatchConditions

        downloader = container.download_blob(
            name, max_concurrency=2, etag=etag, match_condition=MatchConditions.IfNotModified
        )
    else:
        downloader = container.download_blob(name, max_concurrency=2)
    return io.BufferedReader(BlobReader(downloader), buffer_size=chunk_size)
