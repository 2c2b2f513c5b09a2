"""The embedded default store: a plain folder on a local disk or a network share.

Layout on disk: every file or folder the protocol creates is stored as
``<parent>/<name>~<id>``, so names may repeat (as on Drive) and a listing yields ids
without reading anything. The id index (:mod:`.index`) holds one small record per id.

Create-once is one exclusive create (``O_CREAT | O_EXCL``) of the id's index entry: it
fails with EEXIST when the id is taken, on local file systems, NFS (v3 and later), SMB and
SFTP (sshfs) alike, across processes and PCs. The winner writes the record, then writes the
content into a temporary file beside its final name and publishes it with one rename. The
visible name is the "published" state: a reader by id reads the record (or its cache of
it) and opens the visible name, so it sees a complete file or no file. Nothing depends on
link counts (sshfs and several FUSE and SMB set-ups report ``st_nlink = 1``) or on hard
links.

This module is the store's operations only; it holds its parts rather than inheriting
them: a :class:`~.dirs.Walker` (paths walked without following links), an
:class:`~.index.IdIndex`, a :class:`~.changes.ChangeFeed`, and the checks made at open
(:mod:`.probe`: the marker, the identity, the file-system probe; :mod:`.synced`: not
inside a sync client's folder).
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import shutil
import stat
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from drivemr.errors import (
    AlreadyExists,
    ConfigError,
    NotFound,
    PermanentStoreError,
    TooLarge,
    TransientStoreError,
)
from drivemr.stores.base import Changes, FileInfo, Store
from drivemr.stores.folder import probe
from drivemr.stores.folder.changes import ChangeFeed
from drivemr.stores.folder.dirs import (
    Walker,
    _Dir,
    _is_link_or_reparse,
    _open_file,
    _read_bounded,
    _translate,
    _write_temp,
)
from drivemr.stores.folder.index import _ID_CHARS, SEPARATOR, IdIndex, _check_id, _parent_id
from drivemr.stores.synced import allow_synced_from_env, synced_folder_reason


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
        self._walker = Walker(self.path)
        self._index = IdIndex(self.path, self._walker)
        self._feed = ChangeFeed(self.path)
        if create:
            probe.write_marker(self._walker)
            _ = self.identity  # `drivemr init` gives the store its identity
        elif not probe.is_store(self.path):
            raise ConfigError(
                f"{self.path} is not a drivemr store (no {probe.MARKER} file): "
                f"run `drivemr init --store {self.path}` to make it one"
            )
        self._index.first_layout = probe.may_hold_first_layout(self._walker)
        probe.probe(self._walker)

    @property
    def identity(self) -> str:
        """``folder:<random id>`` from STORE_ID, created (exclusively) if missing."""
        if self._identity is None:
            self._identity = f"folder:{probe.store_id(self._walker)}"
        return self._identity

    def _probe_features(self) -> str | None:
        """The file-system probe run afresh, not the per-process cache (``drivemr doctor``):
        None, or why the file system cannot hold a store."""
        return probe.probe_features(self._walker)

    def close(self) -> None:
        self._walker.close()

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

    def _walk(
        self, rel: str, *, make: bool = False, fresh: bool = False
    ) -> AbstractContextManager[_Dir]:
        return self._walker.walk(rel, make=make, fresh=fresh)

    def _rel(self, file_id: str) -> str:
        """Relative path of an id; ids never move, so the answer is cached."""
        return self._index.rel(file_id)

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
        _check_id(file_id)
        parent_rel = self._rel(parent)
        visible = f"{name}{SEPARATOR}{file_id}"
        rel = f"{parent_rel}/{visible}" if parent_rel else visible
        try:
            with self._walk(parent_rel) as directory:
                if folder:
                    self._index.lock_id(file_id, "d", rel)
                    directory.mkdir(visible)
                    self._index.remember(file_id, rel)
                    return self._info(file_id, rel, parent)
                tmp, st = _write_temp(directory, data, source)
                try:
                    self._index.lock_id(file_id, "f", rel)
                    try:
                        directory.rename(tmp, visible)  # the publish: complete or absent
                    except BaseException:
                        self._index.unlock_id(file_id)
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
        self._index.remember(file_id, rel)
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
        self._index.remember_listed(
            [(info.id, f"{prefix}{info.name}{SEPARATOR}{info.id}") for info in found]
        )
        return found

    def get(self, file_id: str, *, parent: str | None = None) -> FileInfo:
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

    def read(
        self, file_id: str, *, max_bytes: int | None = None, parent: str | None = None
    ) -> bytes:
        with self._open_by_id(file_id, "read") as fd:
            try:
                data = _read_bounded(fd, max_bytes)
            except OSError as exc:
                raise _translate(exc, f"read {file_id}") from exc
        if max_bytes is not None and len(data) > max_bytes:
            raise PermanentStoreError(f"read {file_id}: larger than the limit of {max_bytes} bytes")
        return data

    def download(
        self,
        file_id: str,
        dest: Path,
        *,
        max_bytes: int | None = None,
        parent: str | None = None,
    ) -> None:
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

    def update(self, file_id: str, data: bytes, *, parent: str | None = None) -> FileInfo:
        rel = self._rel(file_id)
        parent_rel, name = self._split(rel)
        try:
            with self._walk(parent_rel) as folder:
                if not stat.S_ISREG(folder.lstat(name).st_mode):
                    raise NotFound(f"update {file_id}: not a file")
                tmp, _ = _write_temp(folder, data, None)
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

    def delete(self, file_id: str, *, parent: str | None = None) -> None:
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
                            self._index.drop(name.rsplit(SEPARATOR, 1)[1])
            parent_rel, name = self._split(rel)
            with self._walk(parent_rel) as folder:
                if not stat.S_ISDIR(st.st_mode):
                    folder.unlink(name)
                elif folder.fd is not None and sys.version_info >= (3, 11):
                    shutil.rmtree(name, dir_fd=folder.fd)  # below a folder reached without links
                else:
                    shutil.rmtree(full)
            self._index.drop(file_id)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _translate(exc, f"delete {file_id}") from exc

    # -- change feed: directory modification times, two levels deep (see changes.py) --

    def changes_cursor(self) -> str:
        return self._feed.cursor()

    def poll_changes(self, cursor: str) -> Changes:
        return self._feed.poll(cursor)
