"""Local file handling that survives crashes on Linux, macOS and Windows.

- Atomic writes: write a temporary file in the same folder, flush and fsync it, then os.replace() it over the
  final name (atomic on POSIX and on NTFS), so a reader never sees half a file.
- Private files (token cache, config): created with mode 0600 where the OS has POSIX permissions; on Windows
  the per-user profile folder's ACL is what protects them.
- One process per state file: an exclusive lock (fcntl on POSIX, msvcrt on Windows).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


def safe_name(name: str, default: str = "file") -> str:
    """A file name with no folder part, no path tricks and no characters Windows refuses."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).strip(" .")
    return base[:200] or default


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX). Windows cannot open a folder this way and needs no such step."""
    if sys.platform == "win32":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: Path, *, private: bool = False) -> Iterator:
    """Yields a binary file; on a clean exit it becomes `path` in one step, on an error it disappears."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        if private:
            with contextlib.suppress(OSError):
                os.chmod(tmp, 0o600)
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_private_text(path: Path, text: str) -> None:
    with atomic_writer(path, private=True) as out:
        out.write(text.encode("utf-8"))


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_writer(path) as out:
        out.write(text.encode("utf-8"))


def sha256_file(path: Path, chunk: int = 1024 * 1024) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                return digest.hexdigest()
            digest.update(block)


def free_name(folder: Path, name: str, tag: str) -> Path:
    """`folder/name`, or `folder/<stem>-<tag><suffix>` (then -2, -3...) when that is taken."""
    target = folder / name
    if not target.exists():
        return target
    stem, suffix = os.path.splitext(name)
    n = 1
    while True:
        candidate = folder / (f"{stem}-{tag}{suffix}" if n == 1 else f"{stem}-{tag}-{n}{suffix}")
        if not candidate.exists():
            return candidate
        n += 1


def move_file(source: Path, target: Path) -> None:
    """Rename, or copy-then-delete across file systems (os.replace cannot cross devices)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, target)
    except OSError:
        shutil.move(str(source), str(target))
    _fsync_dir(target.parent)


class LockBusy(Exception):
    pass


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created) for the block; LockBusy when another process holds it.

    The OS releases the lock when the process dies, so a crash never leaves a stale lock behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+b")
    try:
        if sys.platform == "win32":
            import msvcrt

            f.seek(0)
            try:
                msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
            except OSError:
                raise LockBusy(str(path)) from None
        else:
            import fcntl

            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise LockBusy(str(path)) from None
        yield
    finally:
        f.close()
