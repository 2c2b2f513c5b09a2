"""The embedded default store: a plain folder on a local disk or a network share.

Layout on disk: every file or folder the protocol creates is stored as
``<parent>/<name>~<id>``, so names may repeat (as on Drive) and a listing yields ids
without reading anything. The id index, ``.drivemr-ids/<id[0]>/<id>``, is a second hard
link to each file's data (a folder's entry, ``<id>.dir``, holds its relative path).

Create-once needs a single atomic, exclusive filesystem operation: the exclusive create
(``O_CREAT | O_EXCL``) of the index name, which fails with EEXIST if the id is taken, on
local filesystems, NFS (v3 and later) and SMB alike, across processes and PCs. The data is
written into that entry, then linked to its visible name; readers by id accept only a file
with both names (two links), so a reader sees a complete file or no file. A file uploaded
from a path (``source``) is copied to a temporary file first and hard-linked onto the index
name, which is exclusive too.
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
import threading
from pathlib import Path

from drivemr.errors import (
    AlreadyExists,
    NotFound,
    PermanentStoreError,
    StoreError,
    TransientStoreError,
)
from drivemr.stores.base import ROOT, Changes, FileInfo, Store

INDEX_DIR = ".drivemr-ids"
SEPARATOR = "~"
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
_ID_CHARS = frozenset(_ID_ALPHABET)
_TRANSIENT_ERRNOS = {errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ETIMEDOUT, errno.EIO}
if hasattr(errno, "ESTALE"):
    _TRANSIENT_ERRNOS.add(errno.ESTALE)


def _translate(exc: OSError, what: str) -> StoreError:
    if isinstance(exc, FileNotFoundError):
        return NotFound(f"{what}: not found")
    if exc.errno in _TRANSIENT_ERRNOS:
        return TransientStoreError(f"{what}: {exc}")
    if exc.errno == errno.ENOSPC:
        return PermanentStoreError(f"{what}: the store's disk is full ({exc})")
    return PermanentStoreError(f"{what}: {exc}")


_TMP_PREFIX = f".tmp-{secrets.token_hex(4)}-{os.getpid()}-"
_tmp_counter = itertools.count()


_O_TMP = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def _write_all(fd: int, data: bytes | None) -> os.stat_result:
    """Write all of ``data`` (os.write may write less than asked) and stat the result."""
    view = memoryview(data or b"")
    while view:
        view = view[os.write(fd, view) :]
    return os.fstat(fd)


def _write_temp(directory: Path, data: bytes | None, source: Path | None) -> Path:
    tmp, _ = _write_temp_stat(directory, data, source)
    return tmp


def _write_temp_stat(
    directory: Path, data: bytes | None, source: Path | None
) -> tuple[Path, os.stat_result]:
    """Write a hidden temporary file; raw os calls, as few syscalls as possible (the hot path)."""
    tmp = directory / f"{_TMP_PREFIX}{next(_tmp_counter)}"
    try:
        if source is not None:
            shutil.copyfile(source, tmp)
            return tmp, os.stat(tmp)
        fd = os.open(tmp, _O_TMP, 0o644)
        try:
            return tmp, _write_all(fd, data)
        finally:
            os.close(fd)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _publish_exclusive(tmp: Path, final: Path) -> None:
    """Make ``tmp`` appear as ``final`` in one atomic step, failing if ``final`` exists."""
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise
    except OSError as exc:
        if os.name != "nt" or exc.errno == errno.ENOENT:
            raise
        os.rename(tmp, final)  # exclusive on Windows: raises FileExistsError
        return
    finally:
        if tmp.exists():
            tmp.unlink()


def _create_indexed(
    index: str, final: str, data: bytes | None, source: Path | None
) -> os.stat_result:
    """Create a file's data under its index name, exclusively (the commit point: the id is
    ours), then give it its visible name with a second link. Until that link the inode has
    one name, and readers by id treat it as absent (see ``FolderStore.read``), so nobody
    sees half a file. Five system calls for a small file: the folder store's hot path."""
    if source is not None:
        tmp, st = _write_temp_stat(Path(final).parent, None, source)
        try:
            _link_exclusive(tmp, Path(index))
            os.link(tmp, final)
        finally:
            os.unlink(tmp)
        return st
    try:
        fd = os.open(index, _O_TMP, 0o644)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(index), exist_ok=True)  # first id in this shard
        fd = os.open(index, _O_TMP, 0o644)
    try:
        try:
            st = _write_all(fd, data)
        finally:
            os.close(fd)
        os.link(index, final)
    except BaseException:
        try:
            os.unlink(index)  # e.g. a full disk: the id stays usable
        except OSError:
            pass
        raise
    return st


def _check_published(fd: int, file_id: str) -> None:
    """A file is readable by id once it also has its visible name (two links)."""
    if os.fstat(fd).st_nlink < 2:
        raise FileNotFoundError(errno.ENOENT, f"id {file_id} is not published")


def _parent_id(rel: str) -> str:
    parent_rel = rel.rsplit("/", 1)[0] if "/" in rel else ""
    return parent_rel.rsplit(SEPARATOR, 1)[-1] if parent_rel else ROOT


def _link_exclusive(src: Path, dst: Path) -> None:
    """A second name for ``src``'s inode, failing if ``dst`` exists (atomic)."""
    try:
        os.link(src, dst)
    except FileNotFoundError:
        if not src.exists():
            raise
        dst.parent.mkdir(parents=True, exist_ok=True)  # first id in this shard (maybe racing)
        os.link(src, dst)


class FolderStore(Store):
    """Create-once files in a directory tree; see the module docstring for the layout.

    A file's index entry is a hard link to its data, so reading by id costs one open, and
    creating a file costs one file write plus two links. A folder's index entry holds its
    relative path. Name and parent of a file by id come from a cache filled by ``list`` and
    ``create``, or from a search of the tree (rare: the protocol lists before it reads).
    """

    def __init__(self, path: Path, *, create: bool = False) -> None:
        self.path = Path(path).expanduser().absolute()
        self.url = self.path.as_uri()
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
        if not self.path.is_dir():
            raise NotFound(
                f"store folder {self.path} does not exist "
                f"(create it, or run `drivemr init --store {self.path}`)"
            )
        self._index_root = f"{self.path / INDEX_DIR}{os.sep}"
        self._root_str = f"{self.path}{os.sep}"
        self._paths: dict[str, str] = {ROOT: ""}
        self._lock = threading.Lock()
        self._snapshots: dict[str, dict[str, int]] = {}

    # -- ids and paths --

    def mint_ids(self, count: int) -> list[str]:
        if not 1 <= count <= 1000:
            raise PermanentStoreError(f"mint_ids: count must be 1..1000, not {count}")
        return [secrets.token_urlsafe(21) for _ in range(count)]  # 28 characters of _ID_ALPHABET

    def _index_path(self, file_id: str, *, folder: bool = False) -> Path:
        return Path(self._index_str(file_id, folder=folder))

    def _index_str(self, file_id: str, *, folder: bool = False) -> str:
        """The index entry's path as a string: pathlib costs microseconds per join, and
        every create and read by id goes through here."""
        if not file_id or not _ID_CHARS.issuperset(file_id):
            raise PermanentStoreError(f"invalid id {file_id!r}")
        return f"{self._index_root}{file_id[0]}{os.sep}{file_id}{'.dir' if folder else ''}"

    def _remember(self, file_id: str, rel: str) -> None:
        with self._lock:
            self._paths[file_id] = rel

    def _rel(self, file_id: str) -> str:
        """Relative path of an id; ids never move, so the answer is cached."""
        cached = self._paths.get(file_id)
        if cached is not None:
            return cached
        try:
            rel = self._index_path(file_id, folder=True).read_text(encoding="utf-8")
        except FileNotFoundError:
            rel = self._find(file_id)
        except OSError as exc:
            raise _translate(exc, f"id {file_id}") from exc
        self._remember(file_id, rel)
        return rel

    def _find(self, file_id: str) -> str:
        """Search the tree for a file's entry (and cache every entry seen on the way)."""
        suffix = SEPARATOR + file_id
        if not self._index_path(file_id).exists():
            raise NotFound(f"id {file_id}: not found")
        found = None
        for directory, dirs, files in os.walk(self.path):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            rel_dir = Path(directory).relative_to(self.path).as_posix()
            rel_dir = "" if rel_dir == "." else rel_dir
            for name in files:
                if SEPARATOR in name and not name.startswith("."):
                    rel = f"{rel_dir}/{name}".lstrip("/")
                    self._paths.setdefault(name.rsplit(SEPARATOR, 1)[1], rel)
                    if name.endswith(suffix):
                        found = rel
        if found is None:
            raise NotFound(f"id {file_id}: not found")
        return found

    def _abs(self, rel: str) -> Path:
        return self.path / rel if rel else self.path

    def _info(self, file_id: str, rel: str, parent: str, *, md5: bool = False) -> FileInfo:
        full = self._abs(rel)
        try:
            st = full.stat()
        except OSError as exc:
            raise _translate(exc, f"id {file_id}") from exc
        is_dir = full.is_dir()
        digest = None
        if md5 and not is_dir:
            digest = hashlib.md5(full.read_bytes()).hexdigest()
        name = full.name.rsplit(SEPARATOR, 1)[0]
        return FileInfo(
            id=file_id,
            name=name,
            parent=parent,
            is_folder=is_dir,
            size=None if is_dir else st.st_size,
            md5=digest,
            modified=st.st_mtime,
            created=st.st_mtime,
        )

    # -- primitives --

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
        if not name or "/" in name or "\\" in name or "\0" in name or name.startswith("."):
            raise PermanentStoreError(f"create: invalid name {name!r}")
        parent_rel = self._rel(parent)
        rel = (
            f"{parent_rel}/{name}{SEPARATOR}{file_id}"
            if parent_rel
            else f"{name}{SEPARATOR}{file_id}"
        )
        taken = AlreadyExists(f"a file already exists with the id {file_id}")
        try:
            if folder:
                if self._index_path(file_id).exists():
                    raise taken
                dir_index = self._index_path(file_id, folder=True)
                dir_index.parent.mkdir(parents=True, exist_ok=True)
                _publish_exclusive(_write_temp(dir_index.parent, rel.encode(), None), dir_index)
                self._abs(rel).mkdir()
            else:
                st = _create_indexed(self._index_str(file_id), self._root_str + rel, data, source)
                self._remember(file_id, rel)
                return FileInfo(
                    file_id, name, parent, False, st.st_size, None, st.st_mtime, st.st_mtime
                )
        except FileExistsError:
            raise taken from None
        except OSError as exc:
            if not self._abs(parent_rel).is_dir():
                raise NotFound(f"create {name}: parent {parent} not found") from exc
            if isinstance(exc, PermissionError) or exc.errno in (errno.EPERM, errno.EOPNOTSUPP):
                raise PermanentStoreError(
                    f"create {name}: the folder store needs hard links, which {self.path} "
                    f"does not allow ({exc})"
                ) from exc
            raise _translate(exc, f"create {name}") from exc
        self._remember(file_id, rel)
        return self._info(file_id, rel, parent)

    def list(self, parent: str) -> list[FileInfo]:
        parent_rel = self._rel(parent)
        directory = self._abs(parent_rel)
        found: list[FileInfo] = []
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.name.startswith(".") or SEPARATOR not in entry.name:
                        continue
                    name, file_id = entry.name.rsplit(SEPARATOR, 1)
                    try:
                        st = entry.stat()
                        is_dir = entry.is_dir()
                    except FileNotFoundError:
                        continue  # deleted while we listed
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

    def read(self, file_id: str, *, max_bytes: int | None = None) -> bytes:
        try:
            with open(self._index_str(file_id), "rb") as fh:
                _check_published(fh.fileno(), file_id)
                if max_bytes is None:
                    return fh.read()
                data = fh.read(max_bytes + 1)
        except OSError as exc:
            raise _translate(exc, f"read {file_id}") from exc
        if len(data) > max_bytes:
            raise PermanentStoreError(f"read {file_id}: larger than the limit of {max_bytes} bytes")
        return data

    def download(self, file_id: str, dest: Path) -> None:
        dest = Path(dest)
        tmp = dest.with_name(f".{dest.name}.part-{secrets.token_hex(4)}")
        try:
            with open(self._index_path(file_id), "rb") as src:
                _check_published(src.fileno(), file_id)
                with open(tmp, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            os.replace(tmp, dest)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno == errno.ENOSPC:  # only writing fails so: the local disk, not the store's
                raise PermanentStoreError(
                    f"download {file_id}: no space left on the local disk for {dest}"
                ) from exc
            raise _translate(exc, f"download {file_id}") from exc

    def update(self, file_id: str, data: bytes) -> FileInfo:
        index = self._index_path(file_id)
        if not index.is_file():
            raise NotFound(f"update {file_id}: not found")
        rel = self._rel(file_id)
        full = self._abs(rel)
        try:
            tmp = _write_temp(full.parent, data, None)
            index_tmp = index.with_name(f"{_TMP_PREFIX}{next(_tmp_counter)}")
            try:
                os.link(tmp, index_tmp)
                os.replace(tmp, full)  # readers by name: old or new content, never half
                os.replace(index_tmp, index)  # readers by id: likewise
            except PermissionError as exc:  # Windows: a reader holds the file open
                raise TransientStoreError(f"update {file_id}: {exc}") from exc
            finally:
                tmp.unlink(missing_ok=True)
                index_tmp.unlink(missing_ok=True)
        except OSError as exc:
            raise _translate(exc, f"update {file_id}") from exc
        return self._info(file_id, rel, _parent_id(rel))

    def delete(self, file_id: str) -> None:
        try:
            full = self._abs(self._rel(file_id))
        except NotFound:
            return
        try:
            if full.is_dir():
                for _dirpath, _dirs, files in os.walk(full):
                    for name in files:
                        if SEPARATOR in name:
                            self._index_path(name.rsplit(SEPARATOR, 1)[1]).unlink(missing_ok=True)
                shutil.rmtree(full)
            else:
                full.unlink()
                self._index_path(file_id).unlink(missing_ok=True)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _translate(exc, f"delete {file_id}") from exc

    # -- change feed: directory modification times, two levels deep --

    def _snapshot(self) -> dict[str, int]:
        """mtime of the root, of its folders and of their folders, keyed by folder id.

        Creating, replacing or deleting an entry changes its directory's mtime, which is
        all the protocol needs (content updates are replacements)."""
        snap: dict[str, int] = {}
        try:
            snap[ROOT] = self.path.stat().st_mtime_ns
            with os.scandir(self.path) as level1:
                for entry in level1:
                    if entry.name.startswith(".") or not entry.is_dir():
                        continue
                    fid = entry.name.rsplit(SEPARATOR, 1)[-1]
                    snap[fid] = entry.stat().st_mtime_ns
                    with os.scandir(entry.path) as level2:
                        for sub in level2:
                            if sub.name.startswith(".") or not sub.is_dir():
                                continue
                            snap[sub.name.rsplit(SEPARATOR, 1)[-1]] = sub.stat().st_mtime_ns
        except OSError as exc:
            raise _translate(exc, "poll changes") from exc
        return snap

    def changes_cursor(self) -> str:
        cursor = secrets.token_hex(8)
        snap = self._snapshot()
        with self._lock:
            self._snapshots = {cursor: snap}
        return cursor

    def poll_changes(self, cursor: str) -> Changes:
        snap = self._snapshot()
        with self._lock:
            before = self._snapshots.pop(cursor, None)
            new_cursor = secrets.token_hex(8)
            self._snapshots[new_cursor] = snap
        if before is None:
            return Changes(new_cursor, None)
        changed = {fid for fid, mtime in snap.items() if before.get(fid) != mtime}
        changed.update(fid for fid in before if fid not in snap)
        return Changes(new_cursor, frozenset(changed))
