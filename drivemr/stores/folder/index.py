"""The folder store's id index: where create-once happens and how an id finds its path.

``.drivemr-ids/<id[0]>/<id>`` holds one small record per id: ``drivemr-id 2`` and a line
``f <relative path>`` or ``d <relative path>``. The exclusive create of that entry is the
commit point of every create (one winner per id, on local disks and shares alike), and the
record is how a reader by id finds the visible name, so the index is kept apart from the
store's file operations. Stores made by the first layout (the entry a hard link to the
data, folders' entries ``<id>.dir``) are read as they are. Records are untrusted: a path
read from one is checked to hold ``name~id`` components only, ending in that id.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

from drivemr.errors import NotFound, PermanentStoreError
from drivemr.stores.base import ROOT
from drivemr.stores.folder.dirs import (
    Walker,
    _create_excl,
    _open_file,
    _read_bounded,
    _translate,
    _write_all,
)

INDEX_DIR = ".drivemr-ids"
SEPARATOR = "~"
RECORD_HEADER = b"drivemr-id 2\n"
MAX_RECORD = 8192
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
_ID_CHARS = frozenset(_ID_ALPHABET)


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


def _check_id(file_id: str) -> str:
    if not file_id or len(file_id) > 200 or not _ID_CHARS.issuperset(file_id):
        raise PermanentStoreError(f"invalid id {file_id!r}")
    return file_id


class IdIndex:
    """The id index of one store and the cache of id -> relative path (ids never move).

    Thread-safe: its lock guards the cache only; the index entries themselves are made
    once, by an exclusive create, so concurrent writers need no lock.
    """

    def __init__(self, path: Path, walker: Walker) -> None:
        self.path = path
        self._walker = walker
        self._paths: dict[str, str] = {ROOT: ""}
        self._lock = threading.Lock()
        self.first_layout = True
        """Entries of the first layout may exist (``<id>.dir`` checked at each create)."""

    @staticmethod
    def shard(file_id: str) -> str:
        return f"{INDEX_DIR}/{_check_id(file_id)[0]}"

    def remember(self, file_id: str, rel: str) -> None:
        with self._lock:
            self._paths[file_id] = rel

    def remember_listed(self, entries: list[tuple[str, str]]) -> None:
        """Cache the paths of listed entries (id, relative path) not cached yet."""
        with self._lock:
            for file_id, rel in entries:
                self._paths.setdefault(file_id, rel)

    def rel(self, file_id: str) -> str:
        """Relative path of an id; ids never move, so the answer is cached."""
        cached = self._paths.get(file_id)
        if cached is not None:
            return cached
        try:
            rel = self.read_record(file_id)
        except OSError as exc:
            raise _translate(exc, f"id {file_id}") from exc
        self.remember(file_id, rel)
        return rel

    def read_record(self, file_id: str) -> str:
        """The path an index entry names; entries of the first layout are read too."""
        with self._walker.walk(self.shard(file_id)) as shard:
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
                    return self.find(file_id)
                if not data.endswith(b"\n") or len(data) > MAX_RECORD:
                    raise NotFound(f"id {file_id}: not published yet")
                body = data[len(RECORD_HEADER) : -1].decode("utf-8", "replace")
                if body[:2] not in ("f ", "d "):
                    raise PermanentStoreError(f"id {file_id}: malformed index entry")
                return _check_rel(body[2:], file_id)
        raise NotFound(f"id {file_id}: not found")

    def find(self, file_id: str) -> str:
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

    def lock_id(self, file_id: str, kind: str, rel: str) -> None:
        """The commit point: the exclusive create of the id's index entry, which then names
        the path the content will be published at."""
        record = RECORD_HEADER + f"{kind} {rel}\n".encode()
        with self._walker.walk(self.shard(file_id), make=True) as shard:
            fd = _create_excl(shard, file_id)
            try:
                _write_all(fd, record)
            finally:
                os.close(fd)
            if not self.first_layout:
                return
            try:
                shard.lstat(f"{file_id}.dir")  # a folder of the first layout has this id
            except FileNotFoundError:
                return
            raise FileExistsError(errno.EEXIST, "taken by a folder of the first layout")

    def unlock_id(self, file_id: str) -> None:
        """Free an id whose create failed before publishing (e.g. a full disk)."""
        try:
            with self._walker.walk(self.shard(file_id)) as shard:
                shard.unlink(file_id)
        except OSError:
            pass

    def drop(self, file_id: str) -> None:
        """Remove an id's entries (both layouts); ids that are not ours are ignored."""
        if not file_id or not _ID_CHARS.issuperset(file_id):
            return
        try:
            with self._walker.walk(self.shard(file_id)) as shard:
                for name in (file_id, f"{file_id}.dir"):
                    try:
                        shard.unlink(name)
                    except FileNotFoundError:
                        pass
        except FileNotFoundError:
            pass
