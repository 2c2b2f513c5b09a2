"""The S3 store as ``open_store`` gives it: the shared retry policy around :class:`S3Store`.

Apart from the store proper because retrying is a layer (one policy for every store, in
:mod:`drivemr.stores.retry`); what is S3's own here is the policy's figures and the repair
of a folder's listing key after a create whose answer was lost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drivemr.stores.base import FileInfo
from drivemr.stores.retry import RetryingStore, RetryPolicy
from drivemr.stores.s3.store import S3Store
from drivemr.stores.s3.wire import parse_s3_url

S3_POLICY = RetryPolicy(max_attempts=6, backoff_base=0.05, backoff_max=2.0)
"""At most 6 attempts per request, waits of up to 50 ms, 100 ms, ... 2 s (a ``Retry-After``
hint is honoured up to 2 s)."""


class RetryingS3Store(RetryingStore):
    """The S3 store as ``open_store`` gives it: transient failures retried (the one policy).

    A create whose first try landed but whose answer was lost meets 412 on its retry; the
    shared layer recognises the file as ours (:func:`~drivemr.stores.retry.own_earlier_create`).
    A file is then complete (its one key is the file); a folder's listing key is (re)written
    here, retried, in case the first try stopped between the folder's index and its key."""

    inner: S3Store

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any = None,
        policy: RetryPolicy | None = None,
        observe: Callable[[str, int], None] | None = None,
        **options: Any,
    ) -> None:
        inner = S3Store(bucket, prefix, client=client, **options)
        super().__init__(inner, policy or S3_POLICY, observe=observe)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RetryingS3Store:
        bucket, prefix = parse_s3_url(url)
        return cls(bucket, prefix, **options)

    @property
    def bucket(self) -> str:
        return self.inner.bucket

    @property
    def prefix(self) -> str:
        return self.inner.prefix

    def _finish_own_create(self, info: FileInfo) -> FileInfo:
        if info.is_folder:
            self._call("write folder entry", lambda: self.inner.finish_own_create(info))
        return info
