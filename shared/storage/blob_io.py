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


UPLOAD_BLOCK_BYTES = 4 * 1024 * 1024


def upload_stream(
    container, name: str, stream, *, content_settings=None, block_bytes: int = UPLOAD_BLOCK_BYTES
):
    """Upload `stream` (read to its end) to the block blob `name`, replacing it, holding at most one block.

    `upload_blob` reads a stream of up to `max_single_put_size` (64 MiB by default) into memory for a single
    PUT; here every block is staged as it is read (Put Block), then the list is committed (Put Block List).
    A stream that is empty still creates an empty blob. Storage errors are raised (the SDK's retry policy
    retries each request; a staged block is idempotent by its ID).
    """
    import base64

    blob = container.get_blob_client(name)
    first = stream.read(block_bytes)
    rest = stream.read(block_bytes) if len(first) == block_bytes else b""
    if not rest:
        blob.upload_blob(first, overwrite=True, content_settings=content_settings)
        return
    from azure.storage.blob import BlobBlock

    ids: list[str] = []
    chunk = first
    while chunk:
        block_id = base64.b64encode(f"{len(ids):08d}".encode()).decode()
        blob.stage_block(block_id, chunk)
        ids.append(block_id)
        chunk, rest = rest, (stream.read(block_bytes) if rest else b"")
    blob.commit_block_list([BlobBlock(block_id=i) for i in ids], content_settings=content_settings)


def download_to_file(container, name: str, target) -> int:
    """Blob `name` into the writable file `target` in chunks (never whole in memory); returns its size.
    Raises azure.core.exceptions.ResourceNotFoundError when it does not exist."""
    return container.download_blob(name, max_concurrency=1).readinto(target)
