"""The embedded default store: a plain folder on a local disk or a network share.

Layout on disk: every file or folder the protocol creates is stored as
``<parent>/<name>~<id>``, so names may repeat (as on Drive) and a listing yields ids
without reading anything. ``.drivemr-store`` marks the folder as a store (only
``drivemr init`` writes it), and the id index, ``.drivemr-ids/<id[0]>/<id>``, holds one
small record per id: ``drivemr-id 2`` and a line ``f <relative path>`` or ``d <relative path>``.

Create-once is one exclusive create (``O_CREAT | O_EXCL``) of the id's index entry: it
fails with EEXIST when the id is taken, on local file systems, NFS (v3 and later), SMB and
SFTP (sshfs) alike, across processes and PCs. The winner writes the record, then writes the
content into a temporary file beside its final name and publishes it with one rename. The
visible name is the "published" state: a reader by id reads the record (or its cache of
it) and opens the visible name, so it sees a complete file or no file. Nothing depends on
link counts (sshfs and several FUSE and SMB set-ups report ``st_nlink = 1``) or on hard
links. Stores made by the first layout (the index entry a hard link to the data, folders'
entries ``<id>.dir``) are read as they are: their files have their visible names too.

Everything in the folder is untrusted: the store opens only regular files and folders,
walks paths one component at a time from the root with ``O_NOFOLLOW`` (directory file
descriptors where the platform has them, ``lstat`` checks elsewhere), opens files with
``O_NONBLOCK`` and checks ``S_ISREG`` before reading, and skips links, FIFOs and devices in
listings. At open the store checks that the folder is a store, that it is not inside a
sync client's folder (``synced.py``), and that the file system offers what create-once
needs (a probe, once per process and folder).

The change feed compares directory modification times; a full re-listing every few minutes
covers filesystems whose directory times are coarse or cached (NFS attribute caching).
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import secrets
import shutil
import stat
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from drivemr.errors import (
    AlreadyExists,
    ConfigError,
    NotFound,
    PermanentStoreError,
    StoreError,
    TooLarge,
    TransientStoreError,
)
from drivemr.stores.base import ROOT, Changes, FileInfo, Store
from drivemr.stores.synced import allow_synced_from_env, synced_folder_reason

INDEX_DIR = ".drivemr-ids"
MARKER = ".drivemr-store"
MARKER_TEXT = b'{"drivemr": "folder store", "layout": 2}\n'
"""The marker of a store made in layout 2: no entry of the first layout can be in it."""
STORE_ID = ".drivemr-store-id"
"""The store's random identity (see Store.identity), created once: at ``drivemr init``, or
by the first open of a store made before it existed. A file of its own, because the
marker's exact text is how the layout is recognised. Copying the store's files copies it
too; that is a copy of the store's jobs, which the workers' memory of finished jobs covers."""
STORE_ID_BYTES = 16
MARKER_TEXT_MIXED = b'{"drivemr": "folder store", "layout": 1}\n'
"""The marker ``drivemr init`` writes into a store of the first layout."""
SEPARATOR = "~"
RECORD_HEADER = b"drivemr-id 2\n"
MAX_RECORD = 8192
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
_ID_CHARS = frozenset(_ID_ALPHABET)
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
_probed: dict[str, str | None] = {}
MAX_DIR_FDS = 512
"""Folder descriptors a store keeps open (each saves a walk per operation in it)."""
COARSE_MTIME_SLACK_NS = 5_000_000_000
"""A whole-second folder mtime this recent (on our clock, so with some slack for a share's
clock) may still hide a change made later in that second."""
_probed_lock = threading.Lock()


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


def _parent_id(rel: str) -> str:
    parent_rel = rel.rsplit("/", 1)[0] if "/" in rel else ""
    return parent_rel.rsplit(SEPARATOR, 1)[-1] if parent_rel else ROOT


def _valid_component(part: str) -> bool:
    return bool(part) and not part.startswith(".") and SEPARATOR in part and "\\" not in part


def _check_rel(rel: str, file_id: str) -> str:
    """A relative path read from an index entry (untrusted): ``name~id`` components only,
    the last one naming ``file_id``; nothing that could leave the root."""
    parts = rel.split("/")
    if (
        len(rel) > 4096
        or "\0" in rel
        or not all(_valid_component(p) for p in parts)
        or parts[-1].rsplit(SEPARATOR, 1)[1] != file_id
    ):
        raise PermanentStoreError(f"id {file_id}: its index entry holds an invalid path {rel!r}")
    return rel


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


class FolderStore(Store):
    """Create-once files in a directory tree; see the module docstring for the layout.

    Creating a file costs an exclusive create and a write of its index record, a write of
    a temporary file and a rename; reading by id costs one open of the visible name (the
    path of an id is cached: ids never move). Name and parent of a file by id come from
    that cache, filled by ``list`` and ``create``, or from the index record.
    """

    def __init__(
        self, path: Path, *, create: bool = False, allow_synced: bool | None = None
    ) -> None:
        self.path = Path(path).expanduser().absolute()
        self.url = self.path.as_uri()
        if not (allow_synced_from_env() if allow_synced is None else allow_synced):
            reason = synced_folder_reason(self.path)
            if reason is not None:
                raise ConfigError(reason)
        if create:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise _translate(exc, f"create the store folder {self.path}") from exc
        if not self.path.is_dir():
            raise NotFound(
                f"store folder {self.path} does not exist "
                f"(create it, or run `drivemr init --store {self.path}`)"
            )
        self._identity: str | None = None
        self._paths: dict[str, str] = {ROOT: ""}
        self._lock = threading.Lock()
        self._root_fd_cache: int | None = None
        self._dir_fds: dict[str, int] = {}
        self._retired_fds: list[int] = []
        self._snapshots: dict[str, tuple[dict[str, int], frozenset[str]]] = {}
        if create:
            self._write_marker()
            self._identity = None
            _ = self.identity  # `drivemr init` gives the store its identity
        elif not self._is_store():
            raise ConfigError(
                f"{self.path} is not a drivemr store (no {MARKER} file): "
                f"run `drivemr init --store {self.path}` to make it one"
            )
        self._first_layout = self._may_hold_first_layout()
        """Entries of the first layout may exist (``<id>.dir`` checked at each create)."""
        self._probe()

    # -- opening: marker and probe --

    def _is_store(self) -> bool:
        for name, want in ((MARKER, stat.S_ISREG), (INDEX_DIR, stat.S_ISDIR)):
            try:
                if want(os.lstat(self.path / name).st_mode):
                    return True  # the marker, or an index of the first layout
            except OSError:
                continue
        return False

    def _may_hold_first_layout(self) -> bool:
        try:
            with self._root() as root:
                fd = _open_file(root, MARKER, "the store's marker")
                try:
                    return _read_bounded(fd, 256) != MARKER_TEXT
                finally:
                    os.close(fd)
        except (OSError, StoreError):
            return True  # no marker: a store of the first layout

    @property
    def identity(self) -> str:
        """``folder:<random id>`` from STORE_ID, created (exclusively) if missing."""
        if self._identity is None:
            self._identity = f"folder:{self._store_id()}"
        return self._identity

    def _store_id(self) -> str:
        with self._root() as root:
            for attempt in range(40):
                if attempt:
                    time.sleep(0.05)  # once per store open, only while another PC writes it
                try:
                    fd = _open_file(root, STORE_ID, "the store's id")
                except FileNotFoundError:
                    try:
                        fd = _create_excl(root, STORE_ID)
                    except FileExistsError:
                        continue  # another PC created it first: read theirs
                    except OSError as exc:
                        raise _translate(exc, f"create {STORE_ID} in {self.path}") from exc
                    made = secrets.token_hex(STORE_ID_BYTES)
                    try:
                        _write_all(fd, made.encode() + b"\n")
                    finally:
                        os.close(fd)
                    return made
                except OSError as exc:
                    raise _translate(exc, f"read {STORE_ID} in {self.path}") from exc
                try:
                    text = _read_bounded(fd, 256).decode("ascii", "replace").strip()
                finally:
                    os.close(fd)
                if text and all(c in "0123456789abcdef" for c in text) and len(text) <= 64:
                    return text
                if not text:
                    continue  # being written by the PC that created it
                raise PermanentStoreError(
                    f"{self.path / STORE_ID} is damaged (not a store id); restore it from a"
                    " backup, or delete it to give the store a new identity (jobs posted"
                    " before then no longer run)"
                )
        raise PermanentStoreError(f"cannot read or create {self.path / STORE_ID}")

    def _write_marker(self) -> None:
        text = MARKER_TEXT
        try:
            if stat.S_ISDIR(os.lstat(self.path / INDEX_DIR).st_mode):
                text = MARKER_TEXT_MIXED  # made by an earlier version, without a marker
        except OSError:
            pass
        with self._root() as root:
            try:
                fd = _create_excl(root, MARKER)
            except FileExistsError:
                return
            except OSError as exc:
                raise _translate(exc, f"mark {self.path} as a store") from exc
            try:
                _write_all(fd, text)
            finally:
                os.close(fd)

    def _probe(self) -> None:
        """Refuse, with one line, a file system that lacks what create-once needs."""
        key = str(self.path)
        with _probed_lock:
            if key not in _probed:
                _probed[key] = self._probe_features()
            reason = _probed[key]
        if reason is not None:
            raise ConfigError(f"{self.path} cannot hold a drivemr store: {reason}")

    def _probe_features(self) -> str | None:
        name = f".drivemr-probe-{secrets.token_hex(6)}"
        try:
            with self._root() as root:
                root.mkdir(name)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                return None  # read-only for us: reading works; writes will say why
            return f"cannot make a folder in it ({exc})"
        try:
            with self._walk(name, fresh=True) as probe:
                fd = _create_excl(probe, "a")
                _write_all(fd, b"1")
                os.close(fd)
                try:
                    fd = _create_excl(probe, "a")
                except FileExistsError:
                    pass
                else:
                    os.close(fd)
                    return (
                        "it does not honour exclusive create (O_EXCL): two PCs could win one claim"
                    )
                fd = probe.open("b", _O_CREATE_EXCL)
                _write_all(fd, b"22")
                os.close(fd)
                probe.rename("b", "c")
                fd = probe.open("d", _O_CREATE_EXCL)
                _write_all(fd, b"333")
                os.close(fd)
                try:
                    probe.rename("d", "c", replace=True)
                except OSError as exc:
                    return f"it cannot replace a file by rename ({exc})"
                fd = _open_file(probe, "c", "probe")
                try:
                    if _read_bounded(fd, 16) != b"333":
                        return "a file replaced by rename reads back wrong"
                finally:
                    os.close(fd)
            return None
        except (OSError, StoreError) as exc:
            return f"a file-system check failed ({exc})"
        finally:
            shutil.rmtree(self.path / name, ignore_errors=True)

    # -- walking without links --

    @contextmanager
    def _root(self) -> Iterator[_Dir]:
        with self._walk("") as d:
            yield d

    @contextmanager
    def _walk(self, rel: str, *, make: bool = False, fresh: bool = False) -> Iterator[_Dir]:
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

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- ids and paths --

    def mint_ids(self, count: int) -> list[str]:
        if not 1 <= count <= 1000:
            raise PermanentStoreError(f"mint_ids: count must be 1..1000, not {count}")
        return [secrets.token_urlsafe(21) for _ in range(count)]  # 28 characters of _ID_ALPHABET

    @staticmethod
    def _check_id(file_id: str) -> str:
        if not file_id or len(file_id) > 200 or not _ID_CHARS.issuperset(file_id):
            raise PermanentStoreError(f"invalid id {file_id!r}")
        return file_id

    def _shard(self, file_id: str) -> str:
        return f"{INDEX_DIR}/{self._check_id(file_id)[0]}"

    def _remember(self, file_id: str, rel: str) -> None:
        with self._lock:
            self._paths[file_id] = rel

    def _rel(self, file_id: str) -> str:
        """Relative path of an id; ids never move, so the answer is cached."""
        cached = self._paths.get(file_id)
        if cached is not None:
            return cached
        try:
            rel = self._read_record(file_id)
        except OSError as exc:
            raise _translate(exc, f"id {file_id}") from exc
        self._remember(file_id, rel)
        return rel

    def _read_record(self, file_id: str) -> str:
        """The path an index entry names; entries of the first layout are read too."""
        with self._walk(self._shard(file_id)) as shard:
            for name in (file_id, f"{file_id}.dir"):
                try:
                    fd = _open_file(shard, name, f"id {file_id}")
                except FileNotFoundError:
                    continue
                try:
                    data = _read_bounded(fd, MAX_RECORD)
                finally:
                    os.close(fd)
                if name.endswith(".dir"):  # first layout: a folder's entry holds its path
                    return _check_rel(data.decode("utf-8", "replace"), file_id)
                if not data.startswith(RECORD_HEADER):  # first layout: the file's data itself
                    return self._find(file_id)
                if not data.endswith(b"\n") or len(data) > MAX_RECORD:
                    raise NotFound(f"id {file_id}: not published yet")
                body = data[len(RECORD_HEADER) : -1].decode("utf-8", "replace")
                if body[:2] not in ("f ", "d "):
                    raise PermanentStoreError(f"id {file_id}: malformed index entry")
                return _check_rel(body[2:], file_id)
        raise NotFound(f"id {file_id}: not found")

    def _find(self, file_id: str) -> str:
        """Search the tree for a file's entry of the first layout (and cache every entry
        seen on the way)."""
        suffix = SEPARATOR + file_id
        found = None
        for directory, dirs, files in os.walk(self.path):  # never follows links
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            rel_dir = Path(directory).relative_to(self.path).as_posix()
            rel_dir = "" if rel_dir == "." else rel_dir
            for name in files:
                if SEPARATOR in name and not name.startswith("."):
                    rel = f"{rel_dir}/{name}".lstrip("/")
                    with self._lock:
                        self._paths.setdefault(name.rsplit(SEPARATOR, 1)[1], rel)
                    if name.endswith(suffix):
                        found = rel
        if found is None:
            raise NotFound(f"id {file_id}: not found")
        return found

    @staticmethod
    def _split(rel: str) -> tuple[str, str]:
        parent, _, name = rel.rpartition("/")
        return parent, name

    def _lstat(self, file_id: str, rel: str) -> os.stat_result:
        parent_rel, name = self._split(rel)
        try:
            with self._walk(parent_rel) as folder:
                st = folder.lstat(name)
        except OSError as exc:
            raise _translate(exc, f"id {file_id}") from exc
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            raise PermanentStoreError(f"id {file_id}: not a regular file or folder")
        return st

    def _info(self, file_id: str, rel: str, parent: str, *, md5: bool = False) -> FileInfo:
        if not rel:
            raise PermanentStoreError("the root folder has no metadata of its own")
        st = self._lstat(file_id, rel)
        is_dir = stat.S_ISDIR(st.st_mode)
        digest = None
        if md5 and not is_dir:
            h = hashlib.md5()
            parent_rel, name = self._split(rel)
            try:
                with self._walk(parent_rel) as folder:
                    fd = _open_file(folder, name, f"id {file_id}")
                    try:
                        for block in iter(lambda: os.read(fd, 1 << 20), b""):
                            h.update(block)
                    finally:
                        os.close(fd)
            except OSError as exc:
                raise _translate(exc, f"id {file_id}") from exc
            digest = h.hexdigest()
        return FileInfo(
            id=file_id,
            name=rel.rsplit("/", 1)[-1].rsplit(SEPARATOR, 1)[0],
            parent=parent,
            is_folder=is_dir,
            size=None if is_dir else st.st_size,
            md5=digest,
            modified=st.st_mtime,
            created=st.st_mtime,
        )

    # -- primitives --

    def _lock_id(self, file_id: str, kind: str, rel: str) -> None:
        """The commit point: the exclusive create of the id's index entry, which then names
        the path the content will be published at."""
        record = RECORD_HEADER + f"{kind} {rel}\n".encode()
        with self._walk(self._shard(file_id), make=True) as shard:
            fd = _create_excl(shard, file_id)
            try:
                _write_all(fd, record)
            finally:
                os.close(fd)
            if not self._first_layout:
                return
            try:
                shard.lstat(f"{file_id}.dir")  # a folder of the first layout has this id
            except FileNotFoundError:
                return
            raise FileExistsError(errno.EEXIST, "taken by a folder of the first layout")

    def _unlock_id(self, file_id: str) -> None:
        """Free an id whose create failed before publishing (e.g. a full disk)."""
        try:
            with self._walk(self._shard(file_id)) as shard:
                shard.unlink(file_id)
        except OSError:
            pass

    def _write_temp(
        self, folder: _Dir, data: bytes | None, source: Path | None
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

    def create(
        self,
        parent: str,
        name: str,
        file_id: str,
        data: bytes | None = None,
        *,
        source: Path | None = None,
        folder: bool = False,
    ) -> FileInfo:
        if (
            not name
            or len(name) > 200
            or "/" in name
            or "\\" in name
            or "\0" in name
            or name.startswith(".")
        ):
            raise PermanentStoreError(f"create: invalid name {name!r}")
        self._check_id(file_id)
        parent_rel = self._rel(parent)
        visible = f"{name}{SEPARATOR}{file_id}"
        rel = f"{parent_rel}/{visible}" if parent_rel else visible
        try:
            with self._walk(parent_rel) as directory:
                if folder:
                    self._lock_id(file_id, "d", rel)
                    directory.mkdir(visible)
                    self._remember(file_id, rel)
                    return self._info(file_id, rel, parent)
                tmp, st = self._write_temp(directory, data, source)
                try:
                    self._lock_id(file_id, "f", rel)
                    try:
                        directory.rename(tmp, visible)  # the publish: complete or absent
                    except BaseException:
                        self._unlock_id(file_id)
                        raise
                except BaseException:
                    try:
                        directory.unlink(tmp)
                    except OSError:
                        pass
                    raise
        except FileExistsError:
            raise AlreadyExists(f"a file already exists with the id {file_id}") from None
        except FileNotFoundError as exc:
            raise NotFound(f"create {name}: parent {parent} not found ({exc})") from exc
        except OSError as exc:
            raise _translate(exc, f"create {name}") from exc
        self._remember(file_id, rel)
        return FileInfo(file_id, name, parent, False, st.st_size, None, st.st_mtime, st.st_mtime)

    def list(self, parent: str) -> list[FileInfo]:
        parent_rel = self._rel(parent)
        found: list[FileInfo] = []
        try:
            with self._walk(parent_rel, fresh=True) as directory, directory.scandir() as entries:
                for entry in entries:
                    if entry.name.startswith(".") or SEPARATOR not in entry.name:
                        continue
                    name, file_id = entry.name.rsplit(SEPARATOR, 1)
                    if not name or not file_id or not _ID_CHARS.issuperset(file_id):
                        continue
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # deleted while we listed
                    is_dir = stat.S_ISDIR(st.st_mode)
                    if not (is_dir or stat.S_ISREG(st.st_mode)) or _is_link_or_reparse(st):
                        continue  # links, FIFOs, devices: never ours
                    found.append(
                        FileInfo(
                            id=file_id,
                            name=name,
                            parent=parent,
                            is_folder=is_dir,
                            size=None if is_dir else st.st_size,
                            modified=st.st_mtime,
                            created=st.st_mtime,
                        )
                    )
        except OSError as exc:
            raise _translate(exc, f"list {parent}") from exc
        prefix = f"{parent_rel}/" if parent_rel else ""
        with self._lock:
            for info in found:
                self._paths.setdefault(info.id, f"{prefix}{info.name}{SEPARATOR}{info.id}")
        return found

    def get(self, file_id: str) -> FileInfo:
        rel = self._rel(file_id)
        return self._info(file_id, rel, _parent_id(rel), md5=True)

    @contextmanager
    def _open_by_id(self, file_id: str, what: str) -> Iterator[int]:
        rel = self._rel(file_id)
        parent_rel, name = self._split(rel)
        try:
            with self._walk(parent_rel) as folder:
                fd = _open_file(folder, name, f"{what} {file_id}")
        except FileNotFoundError as exc:
            raise NotFound(f"{what} {file_id}: not found (or not published yet)") from exc
        except OSError as exc:
            raise _translate(exc, f"{what} {file_id}") from exc
        try:
            yield fd
        finally:
            os.close(fd)

    def read(self, file_id: str, *, max_bytes: int | None = None) -> bytes:
        with self._open_by_id(file_id, "read") as fd:
            try:
                data = _read_bounded(fd, max_bytes)
            except OSError as exc:
                raise _translate(exc, f"read {file_id}") from exc
        if max_bytes is not None and len(data) > max_bytes:
            raise PermanentStoreError(f"read {file_id}: larger than the limit of {max_bytes} bytes")
        return data

    def download(self, file_id: str, dest: Path, *, max_bytes: int | None = None) -> None:
        dest = Path(dest)
        tmp = dest.with_name(f".{dest.name}.part-{secrets.token_hex(4)}")
        with self._open_by_id(file_id, "download") as fd:
            try:
                with open(tmp, "wb") as out:
                    written = 0
                    for block in iter(lambda: os.read(fd, 1 << 20), b""):
                        written += len(block)
                        if max_bytes is not None and written > max_bytes:
                            out.close()
                            tmp.unlink(missing_ok=True)
                            raise TooLarge(
                                f"download {file_id}: larger than the limit of {max_bytes} bytes"
                            )
                        out.write(block)
                os.replace(tmp, dest)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                if exc.errno == errno.ENOSPC:  # only writing fails so: the local disk
                    raise PermanentStoreError(
                        f"download {file_id}: no space left on the local disk for {dest}"
                    ) from exc
                raise _translate(exc, f"download {file_id}") from exc

    def update(self, file_id: str, data: bytes) -> FileInfo:
        rel = self._rel(file_id)
        parent_rel, name = self._split(rel)
        try:
            with self._walk(parent_rel) as folder:
                if not stat.S_ISREG(folder.lstat(name).st_mode):
                    raise NotFound(f"update {file_id}: not a file")
                tmp, _ = self._write_temp(folder, data, None)
                try:
                    folder.rename(tmp, name, replace=True)  # old or new content, never half
                except BaseException as exc:
                    try:
                        folder.unlink(tmp)
                    except OSError:
                        pass
                    if isinstance(exc, PermissionError):  # Windows: a reader holds it open
                        raise TransientStoreError(f"update {file_id}: {exc}") from exc
                    raise
        except OSError as exc:
            raise _translate(exc, f"update {file_id}") from exc
        return self._info(file_id, rel, _parent_id(rel))

    def delete(self, file_id: str) -> None:
        try:
            rel = self._rel(file_id)
            st = self._lstat(file_id, rel)
        except NotFound:
            return
        full = self.path / rel
        try:
            if stat.S_ISDIR(st.st_mode):
                for _dirpath, dirs, files in os.walk(full):  # never follows links
                    for name in [*files, *dirs]:
                        if SEPARATOR in name and not name.startswith("."):
                            self._drop_index(name.rsplit(SEPARATOR, 1)[1])
            parent_rel, name = self._split(rel)
            with self._walk(parent_rel) as folder:
                if not stat.S_ISDIR(st.st_mode):
                    folder.unlink(name)
                elif folder.fd is not None and sys.version_info >= (3, 11):
                    shutil.rmtree(name, dir_fd=folder.fd)  # below a folder reached without links
                else:
                    shutil.rmtree(full)
            self._drop_index(file_id)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _translate(exc, f"delete {file_id}") from exc

    def _drop_index(self, file_id: str) -> None:
        if not file_id or not _ID_CHARS.issuperset(file_id):
            return
        try:
            with self._walk(self._shard(file_id)) as shard:
                for name in (file_id, f"{file_id}.dir"):
                    try:
                        shard.unlink(name)
                    except FileNotFoundError:
                        pass
        except FileNotFoundError:
            pass

    # -- change feed: directory modification times, two levels deep --

    def _snapshot(self) -> tuple[dict[str, int], frozenset[str]]:
        """mtime of the root, of its folders and of their folders, keyed by folder id, and
        the folders whose mtime cannot tell yet (see below).

        Creating, replacing or deleting an entry changes its directory's mtime, which is
        all the protocol needs (content updates are replacements). Some shares keep whole
        seconds only (sshfs: SFTP times are seconds): an entry made later in the second of
        a folder's mtime leaves it unchanged, so a folder whose coarse mtime is recent is
        "unsettled" and reported changed at the next poll too."""
        snap: dict[str, int] = {}
        try:
            snap[ROOT] = self.path.stat().st_mtime_ns
            with os.scandir(self.path) as level1:
                for entry in level1:
                    if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                        continue
                    fid = entry.name.rsplit(SEPARATOR, 1)[-1]
                    snap[fid] = entry.stat(follow_symlinks=False).st_mtime_ns
                    with os.scandir(entry.path) as level2:
                        for sub in level2:
                            if sub.name.startswith(".") or not sub.is_dir(follow_symlinks=False):
                                continue
                            snap[sub.name.rsplit(SEPARATOR, 1)[-1]] = sub.stat(
                                follow_symlinks=False
                            ).st_mtime_ns
        except OSError as exc:
            raise _translate(exc, "poll changes") from exc
        recent = time.time_ns() - COARSE_MTIME_SLACK_NS
        unsettled = frozenset(
            fid for fid, ns in snap.items() if ns % 1_000_000_000 == 0 and ns >= recent
        )
        return snap, unsettled

    def changes_cursor(self) -> str:
        cursor = secrets.token_hex(8)
        snap = self._snapshot()
        with self._lock:
            self._snapshots = {cursor: snap}
        return cursor

    def poll_changes(self, cursor: str) -> Changes:
        snap, unsettled = self._snapshot()
        with self._lock:
            before = self._snapshots.pop(cursor, None)
            new_cursor = secrets.token_hex(8)
            self._snapshots[new_cursor] = (snap, unsettled)
        if before is None:
            return Changes(new_cursor, None)
        old, old_unsettled = before
        changed = {fid for fid, mtime in snap.items() if old.get(fid) != mtime}
        changed.update(fid for fid in old if fid not in snap)
        changed.update(fid for fid in old_unsettled if fid in snap)
        return Changes(new_cursor, frozenset(changed))
