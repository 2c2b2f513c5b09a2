"""Where an S3 store's files are: the key of each id, remembered and found.

A file's key holds its folder and name (:mod:`drivemr.stores.s3`), so reaching a file by
id needs its folder. A client remembers where each file it created or listed is; callers
pass the folder they know (the ``parent`` hint); a folder is found by its id index; and,
without any of these, the folders this client knows are looked in. Kept apart from the
store's primitives (:mod:`.store`) because finding is its own concern, with its own memory.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from drivemr.errors import NotFound, PermanentStoreError
from drivemr.stores.base import ROOT, FileInfo
from drivemr.stores.s3.wire import ID_RE, KeyLayout, check_id, pick

MAX_KNOWN = 500_000
"""Ids whose key this client remembers (the oldest are forgotten, then found again)."""
MAX_SCAN = 64
"""A lookup by id without a hint lists the id's keys in at most this many known folders."""


@dataclass(frozen=True)
class Where:
    """Where one file's key is."""

    key: str
    parent: str
    name: str
    folder: bool


def _valid_parent(parent: str) -> bool:
    return parent == ROOT or ID_RE.fullmatch(parent) is not None


class Locations:
    """The keys one client knows, and the lookups that find the others.

    ``list_raw(prefix, what)`` lists keys under a prefix, ``head(key, what)`` heads one
    (the store's requests, errors already translated)."""

    def __init__(
        self,
        keys: KeyLayout,
        list_raw: Callable[[str, str], Iterable[dict[str, Any]]],
        head: Callable[[str, str], dict[str, Any]],
    ) -> None:
        self._keys = keys
        self._list_raw = list_raw
        self._head = head
        self._lock = threading.Lock()
        self._known: OrderedDict[str, Where] = OrderedDict()
        """id -> where its key is, as last seen by this client (bounded, oldest dropped)."""
        self._folders: set[str] = {ROOT}

    def known(self, file_id: str) -> Where | None:
        with self._lock:
            return self._known.get(file_id)

    def is_folder(self, file_id: str) -> bool:
        with self._lock:
            return file_id in self._folders

    def folder_gone(self, file_id: str) -> None:
        """A folder was deleted (where it was stays known: a get of it says NotFound)."""
        with self._lock:
            self._folders.discard(file_id)

    def remember(self, file_id: str, where: Where) -> None:
        with self._lock:
            self._known[file_id] = where
            self._known.move_to_end(file_id)
            if len(self._known) > MAX_KNOWN:
                self._known.popitem(last=False)
            if where.folder:
                self._folders.add(file_id)

    def forget(self, file_id: str) -> None:
        with self._lock:
            self._known.pop(file_id, None)
            self._folders.discard(file_id)

    def in_folder(self, parent: str, file_id: str, what: str) -> FileInfo | None:
        """The file ``file_id`` in ``parent`` (one listing of its id's keys), or None."""
        check_id(parent)
        found = []
        for obj in self._list_raw(self._keys.id_prefix(parent, file_id), what):
            info = self._keys.parse(parent, obj)
            if info is not None and info.id == file_id:
                found.append((info, str(obj["Key"])))
        chosen = pick(found)
        if chosen is None:
            return None
        info, key = chosen
        self.remember(file_id, Where(key, parent, info.name, info.is_folder))
        return info

    def folder_index(self, file_id: str, what: str) -> FileInfo | None:
        """A folder by its id index (None: no folder has that id)."""
        try:
            head = self._head(self._keys.index(file_id), what)
        except NotFound:
            return None
        meta = head.get("Metadata") or {}
        parent = meta.get("drivemr-parent", "")
        name = unquote(meta.get("drivemr-name", ""))
        if meta.get("drivemr-kind") != "d" or not name or not _valid_parent(parent):
            raise PermanentStoreError(f"{what}: not a drivemr folder (metadata missing)")
        key = self._keys.key(parent, file_id, name, True)
        self.remember(file_id, Where(key, parent, name, True))
        modified = head["LastModified"].timestamp()
        return FileInfo(file_id, name, parent, True, None, None, modified, modified)

    def find(self, file_id: str, parent: str | None, what: str) -> FileInfo:
        """Where ``file_id`` is, by a listing: in ``parent`` (the caller's hint) or the
        folder this client last saw it in; else a folder by its index; else in the
        folders this client knows. Never NotFound unless the file is truly not there:
        without a hint, what is in no folder this client knows is an error, not absence."""
        check_id(file_id)
        if file_id == ROOT:
            raise PermanentStoreError(f"{what}: the root is not a file")
        with self._lock:
            known = self._known.get(file_id)
        if parent is None and known is not None:
            parent = known.parent
        if parent is not None:
            info = self.in_folder(parent, file_id, what)
            if info is None:  # (what we knew of it stays: the id belongs there if anywhere)
                raise NotFound(f"{what}: not found")
            return info
        folder = self.folder_index(file_id, what)
        if folder is not None:
            return folder
        with self._lock:
            folders = sorted(self._folders)
        if len(folders) <= MAX_SCAN:
            for candidate in folders:
                info = self.in_folder(candidate, file_id, what)
                if info is not None:
                    return info
        raise PermanentStoreError(
            f"{what}: the S3 store finds a file by id in its folder, and no folder this client "
            f"knows holds it (it needs the file's folder: a listing of it, or a hint)"
        )

    def key_of(self, file_id: str, parent: str | None, what: str) -> Where:
        check_id(file_id)
        with self._lock:
            known = self._known.get(file_id)
        if known is not None and (parent is None or parent == known.parent):
            return known
        self.find(file_id, parent, what)
        with self._lock:
            return self._known[file_id]
