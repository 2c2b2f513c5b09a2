"""The folder store as ``open_store`` gives it: wrapped in the one retry policy.

The folder store reports what the file system says; on an NFS or SMB share that includes
transient failures (EIO, ESTALE, ETIMEDOUT, EBUSY: :class:`TransientStoreError`). They are
retried by :class:`~drivemr.stores.retry.RetryingStore`, like the Drive store's 429/5xx,
with short waits (a share hiccups for milliseconds, not the seconds Drive's quota wants).
"""

from __future__ import annotations

from pathlib import Path

from drivemr.stores.folder import FolderStore
from drivemr.stores.retry import RetryingStore, RetryPolicy

FOLDER_POLICY = RetryPolicy(max_attempts=6, backoff_base=0.05, backoff_max=2.0)
"""At most 6 attempts per operation, waits of up to 50 ms, 100 ms, ... 2 s."""


class RetryingFolderStore(RetryingStore):
    """A :class:`FolderStore` at ``path``, its transient failures retried."""

    inner: FolderStore

    def __init__(
        self,
        path: Path | str,
        *,
        create: bool = False,
        allow_synced: bool | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        inner = FolderStore(Path(path), create=create, allow_synced=allow_synced)
        super().__init__(inner, policy or FOLDER_POLICY)

    @property
    def path(self) -> Path:
        """The shared folder (as :attr:`FolderStore.path`)."""
        return self.inner.path
