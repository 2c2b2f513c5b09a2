"""Fault-injecting stores: transient failures and lost acknowledgements, injected under
the store's retry layer (where a share's EIO/ESTALE or a lost HTTP answer would come from),
and stores that count how many attempts each operation made.
"""

from __future__ import annotations

import collections
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drivemr.errors import TransientStoreError
from drivemr.stores.base import Changes, FileInfo, Store
from drivemr.stores.retry import RetryingStore, RetryPolicy


class FaultyStore(Store):
    """Wraps a store (in-process workers): transient failures and lost acknowledgements.

    ``fault_rate``: a call fails with TransientStoreError before reaching the store.
    ``lost_ack_rate``: a create reaches the store, then the caller hears an error, as
    when an answer is lost on an NFS/SMB share. ``after_create(parent, info)`` is called
    after every successful create (to crash a worker in a precise window).
    ``calls`` counts calls per operation kind, ``faults`` the injected failures."""

    def __init__(
        self,
        inner: Store,
        *,
        fault_rate: float = 0.0,
        lost_ack_rate: float = 0.0,
        seed: int | None = None,
        after_create: Callable[[str, FileInfo], None] | None = None,
    ) -> None:
        self.inner = inner
        self.url = inner.url
        self.root_id = inner.root_id
        self.fault_rate = fault_rate
        self.lost_ack_rate = lost_ack_rate
        self.after_create = after_create
        self.auth_error = False
        """When set, every call fails as a store does once the sign-in expired or was revoked."""
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.calls: collections.Counter[str] = collections.Counter()
        self.faults: collections.Counter[str] = collections.Counter()

    def _dice(self, op: str, rate: float) -> bool:
        with self._lock:
            self.calls[op] += 1
            hit = rate > 0 and self._rng.random() < rate
            if hit:
                self.faults[op] += 1
            return hit

    def _maybe_fail(self, op: str) -> None:
        if self.auth_error:
            from drivemr.errors import AuthError

            raise AuthError(f"{op}: sign-in expired or revoked; run `drivemr auth login` again")
        if self._dice(op, self.fault_rate):
            raise TransientStoreError(f"{op}: injected transient failure (EIO)")

    def mint_ids(self, count: int) -> list[str]:
        self._maybe_fail("mint_ids")
        return self.inner.mint_ids(count)

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
        self._maybe_fail("create")
        info = self.inner.create(parent, name, file_id, data, source=source, folder=folder)
        if self.after_create is not None:
            self.after_create(parent, info)
        if self.lost_ack_rate and self._dice("create-ack", self.lost_ack_rate):
            raise TransientStoreError(f"create {name}: the answer was lost (injected)")
        return info

    def list(self, parent: str) -> list[FileInfo]:
        self._maybe_fail("list")
        return self.inner.list(parent)

    def get(self, file_id: str, *, parent: str | None = None) -> FileInfo:
        self._maybe_fail("get")
        return self.inner.get(file_id, parent=parent)

    def read(
        self, file_id: str, *, max_bytes: int | None = None, parent: str | None = None
    ) -> bytes:
        self._maybe_fail("read")
        return self.inner.read(file_id, max_bytes=max_bytes, parent=parent)

    @property
    def identity(self) -> str:
        # A store request like any other (a folder reads STORE_ID, Drive asks about.get):
        # counted, and it can fail, so the retry layer's attempts and ``calls`` agree.
        self._maybe_fail("identity")
        return self.inner.identity

    def download(
        self,
        file_id: str,
        dest: Path,
        *,
        max_bytes: int | None = None,
        parent: str | None = None,
    ) -> None:
        self._maybe_fail("download")
        self.inner.download(file_id, dest, max_bytes=max_bytes, parent=parent)

    def update(self, file_id: str, data: bytes, *, parent: str | None = None) -> FileInfo:
        self._maybe_fail("update")
        return self.inner.update(file_id, data, parent=parent)

    def delete(self, file_id: str, *, parent: str | None = None) -> None:
        self._maybe_fail("delete")
        self.inner.delete(file_id, parent=parent)

    def changes_cursor(self) -> str:
        self._maybe_fail("changes_cursor")
        return self.inner.changes_cursor()

    def poll_changes(self, cursor: str) -> Changes:
        self._maybe_fail("poll_changes")
        return self.inner.poll_changes(cursor)

    def close(self) -> None:
        self.inner.close()


class CountingRetryingStore(RetryingStore):
    """A :class:`RetryingStore` that records how many attempts each operation made, and
    exposes the faults of the :class:`FaultyStore` under it."""

    def __init__(self, inner: FaultyStore, policy: RetryPolicy) -> None:
        super().__init__(inner, policy, observe=self._record)
        self.faulty = inner
        self.op_attempts: list[tuple[str, int]] = []

    def _record(self, what: str, attempts: int) -> None:
        with self._lock:
            self.op_attempts.append((what, attempts))

    @property
    def faults(self) -> collections.Counter[str]:
        return self.faulty.faults

    @property
    def calls(self) -> collections.Counter[str]:
        return self.faulty.calls


def retrying_faulty_folder(
    path: Path, policy: RetryPolicy | None = None, **faults: Any
) -> CountingRetryingStore:
    """What ``open_store`` gives for a folder (its retry layer), with faults injected below
    the retries, where a share's EIO/ESTALE would come from. ``op_attempts`` records how
    many attempts each operation made."""
    from drivemr.stores.folder import FolderStore
    from drivemr.stores.retrying import FOLDER_POLICY

    return CountingRetryingStore(FaultyStore(FolderStore(path), **faults), policy or FOLDER_POLICY)


def counting_drive_store_class() -> Any:
    """A DriveStore that records how many HTTP attempts each operation made."""
    from drivemr.stores.drive import DriveStore

    class CountingDriveStore(DriveStore):
        op_attempts: list[tuple[str, int]]
        _counting_lock = threading.Lock()

        def _call(
            self, what: str, kind: str, fn: Callable[[Any], Any], attempts: list[int] | None = None
        ) -> Any:
            n = [0]

            def counted(svc: Any) -> Any:
                n[0] += 1
                return fn(svc)

            try:
                return super()._call(what, kind, counted, attempts)
            finally:
                with self._counting_lock:
                    self.__dict__.setdefault("op_attempts", []).append((what, n[0]))

    return CountingDriveStore
