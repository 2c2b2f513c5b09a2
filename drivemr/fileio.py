"""Local file helpers every module shares: an atomic write and a streamed SHA-256.

Why one module: tokens, signing keys, trusted-key lists and worker state are all written the
same way (a crash or a concurrent reader sees the old content or the new, never a torn
file), and shipped files are hashed the same way on submit and on the worker. Written once,
a fix (an fsync, a mode set before the first byte) reaches every caller.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "replacing", "sha256_file"]

_POSIX = os.name == "posix"
_CHUNK = 1 << 20


@contextmanager
def replacing(dest: Path | str) -> Iterator[BinaryIO]:
    """A file to stream a download into: it becomes ``dest`` (replacing it in one rename)
    only when the ``with`` block ends normally; on any error the partial file is removed and
    ``dest`` is left as it was. Readers of ``dest`` never see half a download. No fsync: a
    download lost to a crash is fetched again, and one per task must stay cheap."""
    dest = Path(dest)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, dest)
    finally:
        with suppress(OSError):
            os.unlink(tmp)


def atomic_write(
    path: Path | str, data: bytes | str, *, mode: int = 0o600, overwrite: bool = True
) -> None:
    """Write ``data`` (str is UTF-8) to ``path`` so that readers see the old content or the
    new, never a torn file, and the new content survives a crash once this returns.

    The bytes go to a temporary file in the same folder (so the final rename never crosses a
    file system), created with ``mode`` (default: owner-only) before a byte is written, then
    fsynced and renamed over ``path``; the folder is fsynced after the rename (POSIX,
    best-effort). On Windows ``mode`` is best-effort (the profile's ACLs protect it).

    ``overwrite=False`` publishes only if ``path`` does not exist yet, raising
    FileExistsError otherwise: two first runs racing to create the same file must not
    silently swap the content one of them already used. On POSIX this is a hard link (never
    overwrites); on a file system without hard links, an exclusive create.
    """
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    parent = path.parent
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)  # exact mode, whatever the umask
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        _chmod(tmp, mode)
        if overwrite:
            os.replace(tmp, path)
        elif _POSIX:
            _link_exclusive(tmp, path, raw, mode)
        else:
            os.rename(tmp, path)  # Windows: refuses to overwrite
    finally:
        with suppress(OSError):
            os.unlink(tmp)
    _fsync_dir(parent)


def sha256_file(path: Path | str) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks (shipped files may be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _chmod(path: Path | str, mode: int) -> None:
    """chmod that must work on POSIX and is best-effort on Windows (no such permissions)."""
    try:
        os.chmod(path, mode)
    except OSError:
        if _POSIX:
            raise


def _fsync_dir(path: Path) -> None:
    """Make a rename durable (POSIX); best-effort, some file systems refuse."""
    if not _POSIX:
        return
    with suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _link_exclusive(tmp: str, path: Path, raw: bytes, mode: int) -> None:
    """Publish ``tmp`` as ``path`` unless ``path`` exists (a hard link never overwrites)."""
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        raise
    except OSError:
        pass  # no hard links on this file system: create-exclusive instead (not atomic)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with suppress(OSError):
            os.unlink(path)  # never leave a torn file behind
        raise
