"""Reaching files inside the folder store without ever following a link out of it.

Everything in the store folder is untrusted, so every path is walked one component at a
time from the root with ``O_NOFOLLOW``: with directory file descriptors where the platform
has them (POSIX), with an ``lstat`` of each component elsewhere (Windows). Files are
opened with ``O_NONBLOCK`` and checked to be regular before anything reads them, so a
FIFO or a device planted in the store never blocks a worker. This module is the only one
in the folder store that opens paths; :class:`Walker` owns the descriptors kept open.
"""

from __future__ import annotations

import errno
import itertools
import os
import secrets
import shutil
import stat
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from drivemr.errors import NotFound, PermanentStoreError, StoreError, TransientStoreError

_TRANSIENT_ERRNOS = {errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ETIMEDOUT, errno.EIO}
if hasattr(errno, "ESTALE"):
    _TRANSIENT_ERRNOS.add(errno.ESTALE)

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)
_O_READ = os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC | _O_BINARY
_O_CREATE_EXCL = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY
_O_DIR = os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC
_DIR_FDS = (
    os.name != "nt"
    and bool(_O_DIRECTORY and _O_NOFOLLOW)
    and {os.open, os.stat, os.mkdir, os.rename, os.unlink} <= os.supports_dir_fd
    and os.scandir in os.supports_fd
)
"""Walk paths with directory file descriptors (POSIX); elsewhere, lstat each component."""

_TMP_PREFIX = f".tmp-{secrets.token_hex(4)}-{os.getpid()}-"
_tmp_counter = itertools.count()
MAX_DIR_FDS = 512
"""Folder descriptors a store keeps open (each saves a walk per operation in it)."""


def _translate(exc: OSError, what: str) -> StoreError:
    if isinstance(exc, FileNotFoundError):
        return NotFound(f"{what}: not found")
    if exc.errno in _TRANSIENT_ERRNOS:
        return TransientStoreError(f"{what}: {exc}")
    if exc.errno == errno.ENOSPC:
        return PermanentStoreError(f"{what}: the store's disk is full ({exc})")
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return PermanentStoreError(
            f"{what}: a symbolic link or a file where a folder belongs "
            f"(the folder store never follows links): {exc}"
        )
    return PermanentStoreError(f"{what}: {exc}")


def _write_all(fd: int, data: bytes | None) -> os.stat_result:
    """Write all of ``data`` (os.write may write less than asked) and stat the result."""
    view = memoryview(data or b"")
    while view:
        view = view[os.write(fd, view) :]
    return os.fstat(fd)


def _read_bounded(fd: int, limit: int | None) -> bytes:
    """Read a file to its end, or ``limit + 1`` bytes at most."""
    chunks: list[bytes] = []
    left = -1 if limit is None else limit + 1
    while left:
        block = os.read(fd, 1 << 20 if left < 0 else min(left, 1 << 20))
        if not block:
            break
        chunks.append(block)
        if left > 0:
            left -= len(block)
    return b"".join(chunks)


def _is_link_or_reparse(st: os.stat_result) -> bool:
    attrs = getattr(st, "st_file_attributes", 0)
    return stat.S_ISLNK(st.st_mode) or bool(
        attrs & getattr(stat, "FILE_ATTRIBUTE_REPARSE_POINT", 0)
    )


class _Dir:
    """A folder inside the store, reached without following links: a directory file
    descriptor on POSIX, or a path whose every component was checked with lstat."""

    def __init__(self, path: str, fd: int | None) -> None:
        self.path = path
        self.fd = fd

    def _p(self, name: str) -> str:
        return name if self.fd is not None else os.path.join(self.path, name)

    def open(self, name: str, flags: int, mode: int = 0o644) -> int:
        if self.fd is not None:
            return os.open(name, flags, mode, dir_fd=self.fd)
        full = self._p(name)
        if not flags & os.O_CREAT or flags & os.O_EXCL:
            try:
                if _is_link_or_reparse(os.lstat(full)):
                    raise OSError(errno.ELOOP, "a symbolic link", full)
            except FileNotFoundError:
                if not flags & os.O_CREAT:
                    raise
        return os.open(full, flags, mode)

    def lstat(self, name: str) -> os.stat_result:
        if self.fd is not None:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        return os.lstat(self._p(name))

    def mkdir(self, name: str) -> None:
        if self.fd is not None:
            os.mkdir(name, 0o755, dir_fd=self.fd)
        else:
            os.mkdir(self._p(name), 0o755)

    def rename(self, src: str, dst: str, *, replace: bool = False) -> None:
        """Atomic rename within this folder (``replace``: over an existing file)."""
        if self.fd is not None:
            os.rename(src, dst, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        elif replace:
            os.replace(self._p(src), self._p(dst))
        else:
            os.rename(self._p(src), self._p(dst))  # Windows: never replaces

    def unlink(self, name: str) -> None:
        if self.fd is not None:
            os.unlink(name, dir_fd=self.fd)
        else:
            os.unlink(self._p(name))

    def scandir(self) -> AbstractContextManager[Iterator[os.DirEntry[str]]]:
        return os.scandir(self.fd if self.fd is not None else self.path)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _create_excl(folder: _Dir, name: str) -> int:
    """Exclusive create; FileExistsError when the name is taken. SFTP has no "exists"
    status: over sshfs, losing a race to another mount shows as EPERM, so a refused create
    whose name exists afterwards lost to that file."""
    try:
        return folder.open(name, _O_CREATE_EXCL)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EACCES):
            raise
        try:
            folder.lstat(name)
        except OSError:
            raise exc from None
        raise FileExistsError(errno.EEXIST, "exists", name) from exc


def _open_file(folder: _Dir, name: str, what: str) -> int:
    """Open a regular file for reading: never a link, never blocking on a FIFO or device."""
    fd = folder.open(name, _O_READ)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PermanentStoreError(f"{what}: not a regular file; the folder store skips it")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_temp(
    folder: _Dir, data: bytes | None, source: Path | None
) -> tuple[str, os.stat_result]:
    """A hidden temporary file in ``folder`` with the content; (its name, its stat)."""
    tmp = f"{_TMP_PREFIX}{next(_tmp_counter)}"
    fd = folder.open(tmp, _O_CREATE_EXCL)
    try:
        if source is not None:
            with open(source, "rb") as src, os.fdopen(os.dup(fd), "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            st = os.fstat(fd)
        else:
            st = _write_all(fd, data)
    except BaseException:
        os.close(fd)
        try:
            folder.unlink(tmp)
        except OSError:
            pass
        raise
    os.close(fd)
    return tmp, st


class Walker:
    """Walks folders below one store root without following links.

    Owns the root's descriptor and the cache of folder descriptors (up to MAX_DIR_FDS);
    thread-safe: its own lock guards both, and is held only to read or change them.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._root_fd_cache: int | None = None
        self._dir_fds: dict[str, int] = {}
        self._retired_fds: list[int] = []

    @contextmanager
    def root(self) -> Iterator[_Dir]:
        with self.walk("") as d:
            yield d

    @contextmanager
    def walk(self, rel: str, *, make: bool = False, fresh: bool = False) -> Iterator[_Dir]:
        """The folder ``rel`` (``/``-separated, below the root), every component checked
        not to be a link; ``make`` creates missing components (the index's shards).

        With directory descriptors, the descriptor of a folder once reached is kept (up to
        MAX_DIR_FDS): folders never move, so it stays the folder the walk found, and a
        deleted folder answers ENOENT to every create or open in it, as its path would.
        Listings walk ``fresh``: a deleted folder must read as missing, not as empty."""
        parts = [p for p in rel.split("/") if p]
        if not _DIR_FDS:
            path = str(self.path)
            for part in parts:
                path = os.path.join(path, part)
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    if not make:
                        raise
                    try:
                        os.mkdir(path, 0o755)
                    except FileExistsError:
                        pass
                    st = os.lstat(path)
                if _is_link_or_reparse(st) or not stat.S_ISDIR(st.st_mode):
                    raise OSError(errno.ELOOP, "not a folder (or a link)", path)
            d = _Dir(path, None)
            yield d
            return
        cached = None if fresh or not parts else self._dir_fds.get(rel)
        if cached is not None:
            try:
                yield _Dir(os.path.join(str(self.path), *parts), cached)
            except OSError as exc:
                if not isinstance(exc, (FileNotFoundError, FileExistsError)):
                    with self._lock:  # e.g. ESTALE: walk afresh next time
                        if self._dir_fds.get(rel) == cached:
                            del self._dir_fds[rel]
                            self._retired_fds.append(cached)
                raise
            return
        fd, owned = self._root_fd(), False
        try:
            if fresh and not parts:
                # A listing of the root through a new open file: a descriptor kept open reads
                # its old entries again on FUSE mounts (sshfs caches a folder's listing per
                # open file), so a folder just created in the root would be missing.
                fd, owned = os.open(".", _O_DIR, dir_fd=fd), True
            for part in parts:
                try:
                    nfd = os.open(part, _O_DIR, dir_fd=fd)
                except FileNotFoundError:
                    if not make:
                        raise
                    try:
                        os.mkdir(part, 0o755, dir_fd=fd)
                    except FileExistsError:
                        pass
                    nfd = os.open(part, _O_DIR, dir_fd=fd)
                if owned:
                    os.close(fd)
                fd, owned = nfd, True
            if owned and not fresh:
                with self._lock:
                    if (
                        rel not in self._dir_fds
                        and len(self._dir_fds) < MAX_DIR_FDS
                        and self._root_fd_cache is not None
                    ):
                        self._dir_fds[rel] = fd
                        owned = False
            yield _Dir(os.path.join(str(self.path), *parts), fd)
        finally:
            if owned:
                os.close(fd)

    def _root_fd(self) -> int:
        """The store folder's descriptor, opened once (every walk starts from it)."""
        fd = self._root_fd_cache
        if fd is None:
            with self._lock:
                if self._root_fd_cache is None:
                    self._root_fd_cache = os.open(
                        self.path, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC
                    )
                fd = self._root_fd_cache
        return fd

    def close(self) -> None:
        with self._lock:
            fds = [*self._dir_fds.values(), *self._retired_fds]
            if self._root_fd_cache is not None:
                fds.append(self._root_fd_cache)
            self._dir_fds.clear()
            self._retired_fds.clear()
            self._root_fd_cache = None
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
