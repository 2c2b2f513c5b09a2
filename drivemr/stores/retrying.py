"""Bounded retries of transient failures, for a store without a retry layer of its own.

The folder store reports what the file system says; on an NFS or SMB share that includes
transient failures (EIO, ESTALE, ETIMEDOUT, EBUSY: :class:`TransientStoreError`). This
wrapper retries them, like the Drive store's own (tenacity) layer does for 429/5xx: at most
``max_attempts`` attempts per operation, with full-jitter exponential backoff, and nothing
else retried. A create that failed without a clear answer may have happened: when its retry
meets "already exists", the existing file is compared with what we sent (name, parent, kind
and content) and, if equal, the earlier create was ours and succeeded.
"""

from __future__ import annotations

import builtins
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from drivemr.errors import AlreadyExists, NotFound, TransientStoreError
from drivemr.stores.base import Changes, FileInfo, Store, content_digest, is_what_we_sent
from drivemr.stores.folder import FolderStore

T = TypeVar("T")


class RetryMixin(Store):
    """Put before a store class: ``class RetryingFolderStore(RetryMixin, FolderStore)``.
    Every primitive of the store behind it is retried as the module docstring says."""

    max_attempts = 6
    backoff_base = 0.05
    backoff_max = 2.0

    def _retry_state(self) -> tuple[threading.Lock, dict[str, int]]:
        state = self.__dict__.get("_retry")
        if state is None:
            state = self.__dict__.setdefault(
                "_retry",
                (
                    threading.Lock(),
                    {"calls": 0, "attempts": 0, "retries": 0, "gave_up": 0, "recovered_creates": 0},
                ),
            )
        return state

    @property
    def retry_stats(self) -> dict[str, int]:
        lock, stats = self._retry_state()
        with lock:
            return dict(stats)

    def _count(self, *keys: str) -> None:
        lock, stats = self._retry_state()
        with lock:
            for key in keys:
                stats[key] += 1

    def _next(self) -> Any:
        """The store class after this mixin (its primitives do the work)."""
        return super()

    def _retry_sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def _call(self, what: str, fn: Callable[[], T], attempts: list[int] | None = None) -> T:
        """Run ``fn`` (one attempt of the operation ``what``) until it does not fail transiently."""
        n = 0
        while True:
            n += 1
            if attempts is not None:
                attempts[0] = n
            if n == 1:
                self._count("calls", "attempts")
            else:
                self._count("attempts")
            try:
                return fn()
            except TransientStoreError:
                if n >= self.max_attempts:
                    self._count("gave_up")
                    raise
            self._count("retries")
            self._retry_sleep(
                random.random() * min(self.backoff_max, self.backoff_base * 2 ** (n - 1))
            )

    # -- the interface --

    def mint_ids(self, count: int) -> list[str]:
        return self._call("mint ids", lambda: self._next().mint_ids(count))

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
        attempts = [0]
        inner = self._next()
        try:
            return self._call(
                "create",
                lambda: inner.create(parent, name, file_id, data, source=source, folder=folder),
                attempts,
            )
        except AlreadyExists:
            if attempts[0] > 1:
                mine = self._own_earlier_create(parent, name, file_id, data, source, folder)
                if mine is not None:
                    self._count("recovered_creates")
                    return mine
            raise

    def _own_earlier_create(
        self,
        parent: str,
        name: str,
        file_id: str,
        data: bytes | None,
        source: Path | None,
        folder: bool,
    ) -> FileInfo | None:
        try:
            info = self.get(file_id)  # the folder store's get reports the md5
        except NotFound:
            return None
        md5, size = (None, None) if folder else content_digest(data, source)
        return info if is_what_we_sent(info, name, parent, folder, md5, size) else None

    def list(self, parent: str) -> builtins.list[FileInfo]:
        return self._call("list", lambda: self._next().list(parent))

    def get(self, file_id: str) -> FileInfo:
        return self._call("get", lambda: self._next().get(file_id))

    def read(self, file_id: str, *, max_bytes: int | None = None) -> bytes:
        return self._call("read", lambda: self._next().read(file_id, max_bytes=max_bytes))

    def download(self, file_id: str, dest: Path) -> None:
        self._call("download", lambda: self._next().download(file_id, dest))

    def update(self, file_id: str, data: bytes) -> FileInfo:
        return self._call("update", lambda: self._next().update(file_id, data))

    def delete(self, file_id: str) -> None:
        self._call("delete", lambda: self._next().delete(file_id))

    def changes_cursor(self) -> str:
        return self._call("changes cursor", lambda: self._next().changes_cursor())

    def poll_changes(self, cursor: str) -> Changes:
        return self._call("poll changes", lambda: self._next().poll_changes(cursor))


class RetryingFolderStore(RetryMixin, FolderStore):
    """The folder store as ``open_store`` gives it: transient file-system failures retried."""
