"""One retry policy for every store, and the one way to recognise our own lost create.

Why one layer: a store's answers can fail for a moment (Drive's 429/5xx and broken
connections, a network share's EIO/ESTALE). Retrying them is the same problem everywhere,
so it is solved once, on tenacity: at most ``max_attempts`` attempts (and at most
``max_delay`` seconds) per operation, full-jitter exponential backoff (a random wait in
``[0, min(backoff_max, backoff_base * 2**(n-1))]``, so clients that failed together do not
retry together), never shorter than the server's ``Retry-After`` hint, and nothing but
:class:`~drivemr.errors.TransientStoreError` retried: a permanent error (not found, already
exists, denied) surfaces at once.

A retried create is the one subtle case. The first try may have landed with its answer
lost; the retry then meets "already exists" on the id we minted. Ids are minted per use, so
only our own earlier try can have made that file: :func:`own_earlier_create` fetches it and
compares name, parent, kind and content with what we sent. Equal means the create
succeeded. A conflict on the *first* try is always a real :class:`AlreadyExists`.

:class:`RetryingStore` wraps any store in this policy (composition: ``RetryingStore(inner,
policy)``); the Drive store runs the same :class:`RetryPolicy` around each HTTP attempt, so
it can pace and count attempts, not operations.
"""

from __future__ import annotations

import builtins
import email.utils
import hashlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    stop_never,
)

from drivemr.errors import AlreadyExists, NotFound, TransientStoreError
from drivemr.stores.base import Changes, FileInfo, Store

__all__ = [
    "RetryPolicy",
    "RetryingStore",
    "content_digest",
    "is_what_we_sent",
    "own_earlier_create",
    "parse_retry_after",
]

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a transient failure. ``sleep`` and ``rand`` are
    injectable so tests step through the waits without waiting."""

    max_attempts: int = 6
    """Attempts per operation, the first one included."""
    max_delay: float | None = None
    """Stop retrying once this many seconds passed since the first attempt (None: no limit)."""
    backoff_base: float = 0.05
    """Ceiling of the first wait; it doubles with every further attempt..."""
    backoff_max: float = 2.0
    """...up to this. A ``Retry-After`` hint is honoured up to this too."""
    sleep: Callable[[float], None] = time.sleep
    rand: Callable[[], float] = random.random

    def wait_seconds(self, attempt: int, retry_after: float | None = None) -> float:
        """The wait after failed attempt number ``attempt`` (1-based): full jitter, and at
        least the server's hint (capped at ``backoff_max``)."""
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        wait = self.rand() * ceiling
        if retry_after:
            wait = max(wait, min(float(retry_after), self.backoff_max))
        return wait

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        return self.wait_seconds(state.attempt_number, getattr(exc, "retry_after", None))

    def run(
        self,
        attempt: Callable[[], T],
        *,
        on_retry: Callable[[int, BaseException], None] | None = None,
        on_give_up: Callable[[BaseException], None] | None = None,
    ) -> T:
        """Call ``attempt`` until it does not raise :class:`TransientStoreError`, within
        the bounds. ``on_retry(n, exc)`` runs before the wait after failed attempt ``n``;
        ``on_give_up(exc)`` when the last transient failure is re-raised."""

        def before_sleep(state: RetryCallState) -> None:
            if on_retry is not None and state.outcome is not None:
                exc = state.outcome.exception()
                assert exc is not None
                on_retry(state.attempt_number, exc)

        stop = stop_after_attempt(max(1, self.max_attempts))
        retrying = Retrying(
            stop=stop | (stop_after_delay(self.max_delay) if self.max_delay else stop_never),
            wait=self._wait,
            retry=retry_if_exception_type(TransientStoreError),
            sleep=self.sleep,
            reraise=True,
            before_sleep=before_sleep,
        )
        try:
            return retrying(attempt)
        except TransientStoreError as exc:
            if on_give_up is not None:
                on_give_up(exc)
            raise


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from an HTTP ``Retry-After`` value (delta-seconds or an HTTP date);
    None when absent or unreadable. Never negative."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now())


# --------------------------------------------------------------------------- lost answers


def content_digest(data: bytes | None, source: Path | None) -> tuple[str, int]:
    """md5 and size of what a create sends (``source`` read in blocks)."""
    digest = hashlib.md5()
    size = 0
    if source is not None:
        with open(source, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
    else:
        digest.update(data or b"")
        size = len(data or b"")
    return digest.hexdigest(), size


def is_what_we_sent(
    info: FileInfo, name: str, parent: str, folder: bool, md5: str | None, size: int | None
) -> bool:
    """After a retried create met "already exists": is the existing file the one we sent
    (the first try landed, its answer was lost)? Name, parent and kind must match; for a
    file, content too: the size when known, and the md5, without which we do not claim it.
    Ids are minted per use, so only our own earlier try can have made that file."""
    if info.name != name or info.parent != parent or info.is_folder != folder:
        return False
    if folder:
        return True
    if info.size is not None and size is not None and info.size != size:
        return False
    return info.md5 is not None and md5 is not None and info.md5 == md5


def own_earlier_create(
    get: Callable[[str], FileInfo],
    file_id: str,
    name: str,
    parent: str,
    folder: bool,
    md5: str | None,
    size: int | None,
) -> FileInfo | None:
    """The file ``file_id`` if it is what our create sent (see :func:`is_what_we_sent`),
    else None. ``get`` is the store's own (retried) metadata call."""
    try:
        info = get(file_id)
    except NotFound:
        return None
    return info if is_what_we_sent(info, name, parent, folder, md5, size) else None


# --------------------------------------------------------------------------- the wrapper


class RetryingStore(Store):
    """Any store, its primitives retried under one :class:`RetryPolicy`.

    Thread-safe if ``inner`` is (the counters have their own lock). ``retry_stats`` counts
    calls, attempts, retries, gave_up and recovered_creates; ``observe(what, attempts)``,
    when given, hears how many attempts each operation took."""

    def __init__(
        self,
        inner: Store,
        policy: RetryPolicy | None = None,
        *,
        observe: Callable[[str, int], None] | None = None,
    ) -> None:
        self.inner = inner
        self.policy = policy or RetryPolicy()
        self.url = inner.url
        self.root_id = inner.root_id
        self.observe = observe
        self._identity: str | None = None
        self._lock = threading.Lock()
        self._stats = {
            "calls": 0,
            "attempts": 0,
            "retries": 0,
            "gave_up": 0,
            "recovered_creates": 0,
        }

    @property
    def max_attempts(self) -> int:
        return self.policy.max_attempts

    @property
    def retry_stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._stats)

    def _count(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._stats[key] += 1

    def _call(self, what: str, fn: Callable[[], T], attempts: list[int] | None = None) -> T:
        """Run ``fn`` (one attempt of the operation ``what``) under the policy;
        ``attempts[0]`` ends as the number of attempts made."""
        n = [0]

        def attempt() -> T:
            n[0] += 1
            if n[0] == 1:
                self._count("calls")
            self._count("attempts")
            return fn()

        try:
            return self.policy.run(
                attempt,
                on_retry=lambda _n, _exc: self._count("retries"),
                on_give_up=lambda _exc: self._count("gave_up"),
            )
        finally:
            if attempts is not None:
                attempts[0] = n[0]
            if self.observe is not None:
                self.observe(what, n[0])

    # -- the interface --

    def mint_ids(self, count: int) -> builtins.list[str]:
        return self._call("mint ids", lambda: self.inner.mint_ids(count))

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
        try:
            return self._call(
                "create",
                lambda: self.inner.create(
                    parent, name, file_id, data, source=source, folder=folder
                ),
                attempts,
            )
        except AlreadyExists:
            if attempts[0] <= 1:
                raise
            md5, size = (None, None) if folder else content_digest(data, source)
            mine = own_earlier_create(self.get, file_id, name, parent, folder, md5, size)
            if mine is None:
                raise
            self._count("recovered_creates")
            return mine

    def list(self, parent: str) -> builtins.list[FileInfo]:
        return self._call("list", lambda: self.inner.list(parent))

    def get(self, file_id: str) -> FileInfo:
        return self._call("get", lambda: self.inner.get(file_id))

    def read(self, file_id: str, *, max_bytes: int | None = None) -> bytes:
        return self._call("read", lambda: self.inner.read(file_id, max_bytes=max_bytes))

    @property
    def identity(self) -> str:
        if self._identity is None:
            self._identity = self._call("identity", lambda: self.inner.identity)
        return self._identity

    def download(self, file_id: str, dest: Path, *, max_bytes: int | None = None) -> None:
        self._call("download", lambda: self.inner.download(file_id, dest, max_bytes=max_bytes))

    def update(self, file_id: str, data: bytes) -> FileInfo:
        return self._call("update", lambda: self.inner.update(file_id, data))

    def delete(self, file_id: str) -> None:
        self._call("delete", lambda: self.inner.delete(file_id))

    def changes_cursor(self) -> str:
        return self._call("changes cursor", lambda: self.inner.changes_cursor())

    def poll_changes(self, cursor: str) -> Changes:
        return self._call("poll changes", lambda: self.inner.poll_changes(cursor))

    def close(self) -> None:
        self.inner.close()
