"""An in-memory store: the Store interface with nothing behind it but dicts and a lock.

Worker tests need a store that answers in microseconds, never flakes and keeps time by a
clock the test owns, so a lease can lapse in one line instead of minutes (dramatiq's
StubBroker, huey's MemoryStorage). It honours every guarantee of
:mod:`drivemr.stores.base` (minted ids, create-once across every client, consistent
listings, atomic content, a change feed, store-side timestamps) and passes the store
contract suite, so what a test proves on it holds for the real stores.

Several workers in one process share one ``MemoryStore`` object: it is their common
folder. Timestamps come from ``clock`` (any object with ``time()``), the store's clock,
which a test may set apart from a worker's own.
"""

from __future__ import annotations

import builtins
import hashlib
import itertools
import secrets
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from drivemr.errors import AlreadyExists, NotFound, PermanentStoreError, StoreError, TooLarge
from drivemr.fileio import replacing
from drivemr.stores.base import ROOT, Changes, FileInfo, Store


class StoreClock(Protocol):
    def time(self) -> float: ...


@dataclass
class _Entry:
    info: FileInfo
    data: bytes = b""
    version: int = 0
    """A store-wide counter at this entry's last change: what the change feed compares."""


class MemoryStore(Store):
    """A whole store in one process; thread-safe, every call holds ``_lock`` (its only lock)."""

    def __init__(self, clock: StoreClock | None = None, *, url: str = "memory://") -> None:
        self.url = url
        self.root_id = ROOT
        self._identity = f"memory:{secrets.token_hex(16)}"  # each instance is its own store
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._children: dict[str, dict[str, None]] = {ROOT: {}}  # insertion-ordered sets
        self._versions = itertools.count(1)
        self._cursors: dict[str, int] = {}
        self._changed: dict[str, int] = {}  # folder id -> version of its last change
        self.calls: dict[str, int] = {}
        """How many times each primitive was called (tests count writes with it)."""

    @property
    def identity(self) -> str:
        return self._identity

    # -- time and bookkeeping (callers hold the lock) --

    def _now(self) -> float:
        return self._clock.time() if self._clock is not None else time.time()

    def _count(self, op: str) -> None:
        self.calls[op] = self.calls.get(op, 0) + 1

    def _touch(self, folder: str) -> int:
        version = next(self._versions)
        self._changed[folder] = version
        return version

    def _entry(self, file_id: str) -> _Entry:
        entry = self._entries.get(file_id)
        if entry is None:
            raise NotFound(f"no file with id {file_id}")
        return entry

    # -- the primitives --

    def mint_ids(self, count: int) -> list[str]:
        if not 1 <= count <= 1000:
            raise PermanentStoreError(f"mint_ids: count must be 1..1000, not {count}")
        ids = [secrets.token_urlsafe(21) for _ in range(count)]
        with self._lock:
            self._count("mint_ids")
        return ids

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
        content = b"" if folder else (Path(source).read_bytes() if source is not None else data)
        content = content or b""
        with self._lock:
            self._count("create")
            if file_id in self._entries or file_id == ROOT:
                raise AlreadyExists(f"id {file_id} is already taken")
            if parent not in self._children:
                raise NotFound(f"no folder with id {parent}")
            now = self._now()
            info = FileInfo(
                id=file_id,
                name=name,
                parent=parent,
                is_folder=folder,
                size=None if folder else len(content),
                md5=None if folder else hashlib.md5(content).hexdigest(),
                modified=now,
                created=now,
            )
            self._entries[file_id] = _Entry(info, content, self._touch(parent))
            self._children[parent][file_id] = None
            if folder:
                self._children[file_id] = {}
            return info

    def list(self, parent: str) -> builtins.list[FileInfo]:
        with self._lock:
            self._count("list")
            children = self._children.get(parent)
            if children is None:
                raise NotFound(f"no folder with id {parent}")
            return [self._entries[fid].info for fid in children]

    def get(self, file_id: str, *, parent: str | None = None) -> FileInfo:
        with self._lock:
            self._count("get")
            return self._entry(file_id).info

    def read(
        self, file_id: str, *, max_bytes: int | None = None, parent: str | None = None
    ) -> bytes:
        with self._lock:
            self._count("read")
            entry = self._entry(file_id)
            if entry.info.is_folder:
                raise PermanentStoreError(f"{file_id} is a folder, not a file")
            if max_bytes is not None and len(entry.data) > max_bytes:
                raise StoreError(f"{file_id} is larger than {max_bytes} bytes")
            return entry.data

    def download(
        self,
        file_id: str,
        dest: Path,
        *,
        max_bytes: int | None = None,
        parent: str | None = None,
    ) -> None:
        data = self.read(file_id)
        if max_bytes is not None and len(data) > max_bytes:
            raise TooLarge(f"download {file_id}: larger than the limit of {max_bytes} bytes")
        dest = Path(dest)
        try:
            with replacing(dest) as out:
                out.write(data)
        except OSError as exc:
            raise PermanentStoreError(f"download {file_id} to {dest}: {exc}") from exc

    def update(self, file_id: str, data: bytes, *, parent: str | None = None) -> FileInfo:
        with self._lock:
            self._count("update")
            entry = self._entry(file_id)
            if entry.info.is_folder:
                raise PermanentStoreError(f"{file_id} is a folder, not a file")
            entry.info = replace(
                entry.info,
                size=len(data),
                md5=hashlib.md5(data).hexdigest(),
                modified=max(self._now(), entry.info.modified),
            )
            entry.data = bytes(data)
            entry.version = self._touch(entry.info.parent)
            return entry.info

    def delete(self, file_id: str, *, parent: str | None = None) -> None:
        with self._lock:
            self._count("delete")
            entry = self._entries.get(file_id)
            if entry is None:
                return
            self._children.get(entry.info.parent, {}).pop(file_id, None)
            self._touch(entry.info.parent)
            doomed = [file_id]
            while doomed:
                fid = doomed.pop()
                self._entries.pop(fid, None)
                doomed.extend(self._children.pop(fid, {}))

    def changes_cursor(self) -> str:
        with self._lock:
            self._count("changes_cursor")
            return self._new_cursor()

    def _new_cursor(self) -> str:
        cursor = secrets.token_hex(8)
        self._cursors[cursor] = next(self._versions)
        return cursor

    def poll_changes(self, cursor: str) -> Changes:
        with self._lock:
            self._count("poll_changes")
            since = self._cursors.pop(cursor, None)
            new_cursor = self._new_cursor()
            if since is None:
                return Changes(new_cursor, None)
            changed = frozenset(f for f, version in self._changed.items() if version > since)
            return Changes(new_cursor, changed)


__all__ = ["MemoryStore", "StoreClock"]
