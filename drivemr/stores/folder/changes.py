"""The folder store's change feed: snapshots of folder modification times, compared.

A plain folder has no change log, but creating, replacing or deleting an entry changes
its directory's mtime, which is all the protocol needs (content updates are replacements),
and the protocol's folders are two levels deep at most. A full re-listing every few
minutes (the worker's) covers filesystems whose directory times are coarse or cached (NFS
attribute caching). Kept apart from the store's file operations: it shares nothing with
them but the root path.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from pathlib import Path

from drivemr.stores.base import ROOT, Changes
from drivemr.stores.folder.dirs import _translate
from drivemr.stores.folder.index import SEPARATOR

COARSE_MTIME_SLACK_NS = 5_000_000_000
"""A whole-second folder mtime this recent (on our clock, so with some slack for a share's
clock) may still hide a change made later in that second."""

Snapshot = tuple[dict[str, int], frozenset[str]]


class ChangeFeed:
    """Cursors over one store folder's modification times.

    Thread-safe: its lock guards the snapshot kept for the latest cursor.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._snapshots: dict[str, Snapshot] = {}

    def snapshot(self) -> Snapshot:
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

    def cursor(self) -> str:
        cursor = secrets.token_hex(8)
        snap = self.snapshot()
        with self._lock:
            self._snapshots = {cursor: snap}
        return cursor

    def poll(self, cursor: str) -> Changes:
        snap, unsettled = self.snapshot()
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
