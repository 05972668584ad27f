"""Generated input streams for the format tests: huge inputs that never exist in memory."""

from __future__ import annotations

import io
from collections.abc import Iterator


class GeneratedStream(io.RawIOBase):
    """A read-only binary stream fed by a generator of byte chunks, so huge inputs never exist
    in memory at once. `bytes_read` tells how far a reader got before it stopped."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        self.bytes_read += size
        return size


def repeated(prefix: bytes, unit: bytes, total: int, suffix: bytes = b"") -> GeneratedStream:
    """A stream of `prefix`, then `unit` repeated up to `total` bytes, then `suffix`."""

    def chunks() -> Iterator[bytes]:
        yield prefix
        block = unit * max(1, (1024 * 1024) // len(unit))
        sent = 0
        while sent < total:
            piece = block[: total - sent]
            sent += len(piece)
            yield piece
        yield suffix

    return GeneratedStream(chunks())
