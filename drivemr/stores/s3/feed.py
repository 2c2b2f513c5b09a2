"""The S3 store's change feed: one listing per poll, whatever the store holds.

S3 has no change log that every S3-compatible service offers, and a log of our own would
cost a write per change. So the feed compares listings: each poll lists *one* folder (one
request while it holds fewer than a thousand entries) and compares a digest of its keys,
ETags and times with the last one seen. The folders polled are the root and the folders
this client created or listed in the last few minutes (a worker lists every folder it
waits on: its jobs' claims and results); polls alternate between the root and the others
in turn. A folder's baseline is also taken whenever the client lists it, so what a listing
showed is never reported again, and nothing that changed after it is missed.

Cost: an idle worker pays one listing request per poll interval, busy or not; a change is
seen within two polls in the root, within 2 x (number of watched folders) elsewhere.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from drivemr.stores.base import ROOT, Changes

WATCH_SECONDS = 300.0
"""How long a folder listed or created by this client stays in the feed."""


def listing_digest(objects: Iterable[dict[str, Any]]) -> str:
    digest = hashlib.sha256()
    for obj in objects:
        digest.update(f"{obj.get('Key')}\0{obj.get('ETag')}\0{obj.get('LastModified')}\n".encode())
    return digest.hexdigest()


EMPTY = listing_digest([])


class ListingFeed:
    """Change feed state of one store client. ``list_raw(folder)`` lists a folder's keys."""

    def __init__(self, list_raw: Callable[[str], Iterable[dict[str, Any]]]) -> None:
        self._list_raw = list_raw
        self._lock = threading.Lock()
        self._watched: dict[str, float] = {}
        self._digests: dict[str, str] = {}
        self._cursor = ""
        self._turn = 0
        self._next_other = 0

    def listed(self, folder: str, digest: str) -> None:
        """The client listed ``folder`` (its keys hash to ``digest``): watch it from there."""
        with self._lock:
            self._digests[folder] = digest
            if folder != ROOT:
                self._watched[folder] = time.monotonic()

    def created_folder(self, folder: str) -> None:
        self.listed(folder, EMPTY)

    def forget(self, folder: str) -> None:
        with self._lock:
            self._watched.pop(folder, None)
            self._digests.pop(folder, None)

    def _next_folder(self) -> str:
        """Root on every other poll; the watched folders in turn on the others."""
        now = time.monotonic()
        with self._lock:
            for fid, seen in list(self._watched.items()):
                if now - seen > WATCH_SECONDS:
                    del self._watched[fid]
                    self._digests.pop(fid, None)
            others = sorted(self._watched)
            self._turn += 1
            if not others or self._turn % 2:
                return ROOT
            self._next_other += 1
            return others[self._next_other % len(others)]

    def _check(self, folder: str) -> bool:
        digest = listing_digest(self._list_raw(folder))
        with self._lock:
            changed = self._digests.get(folder) != digest
            self._digests[folder] = digest
        return changed

    def cursor(self) -> str:
        self._check(ROOT)
        with self._lock:
            self._cursor = secrets.token_hex(8)
            self._turn = 0
            return self._cursor

    def poll(self, cursor: str) -> Changes:
        with self._lock:
            known = bool(cursor) and cursor == self._cursor
        if not known:
            return Changes(self.cursor(), None)
        folder = self._next_folder()
        changed = self._check(folder)
        with self._lock:
            self._cursor = secrets.token_hex(8)
            return Changes(self._cursor, frozenset({folder}) if changed else frozenset())
