"""One retry policy for every store, and the one way to recognise our own lost create.

Why one layer: a store's answers can fail for a moment (Drive's 429/5xx and broken
connections, a network share's EIO/ESTALE). Retrying them is the same problem everywhere,
so it is solved once, on tenacity: at most ``max_attempts`` attempts (and at most
``max_delay`` seconds) per operation, full-jitter exponential backoff (a random wait in
``[0, min(backoff_max, backoff_base * 2**(n-1))]``, so clients that failed together do not
retry together), never shorter than the server's ``Retry-After`` hint, and nothing but
:class:`~drivemr.errors.TransientStoreError` retried: a permanent error (not found, already
exists, denied) surfaces at once.

Two refinements, both here so callers need no special cases:

* **Retries are shown as they happen**, once they make someone wait: a retry after which
  the operation will have waited at least ``notice_after`` seconds logs one WARNING line
  (what failed, the attempt, the next wait); quicker retries log at DEBUG.
* **An endpoint that never answered gives up sooner.** Until an operation under a policy
  first succeeds, a failure to connect at all (connection refused, no route, a name that
  does not resolve: :func:`is_unreachable`) stops retrying after ``startup_max_delay``
  seconds, not after the whole budget meant for a 503 in the middle of a run: a wrong or
  unreachable endpoint is reported in seconds. Once the store has answered, a lost
  connection is an outage like any other and gets the full budget.

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
import errno
import hashlib
import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    stop_any,
    stop_never,
)
from tenacity.stop import stop_base

from drivemr.errors import AlreadyExists, NotFound, TransientStoreError
from drivemr.stores.base import Changes, FileInfo, Store

__all__ = [
    "RetryPolicy",
    "RetryingStore",
    "content_digest",
    "is_unreachable",
    "is_what_we_sent",
    "own_earlier_create",
    "parse_retry_after",
]

T = TypeVar("T")

log = logging.getLogger("drivemr.stores.retry")

_UNREACHABLE_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "EHOSTDOWN", "ENETDOWN")
    if hasattr(errno, name)
)


def is_unreachable(exc: BaseException) -> bool:
    """Whether a failure (or what caused it) is a connection that never opened: refused,
    no route to the host or network, a host name that does not resolve. Not a timeout,
    a reset or a server's answer (those come from a reachable, busy endpoint)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, (ConnectionRefusedError, socket.gaierror)):
            return True
        if isinstance(cur, OSError) and cur.errno in _UNREACHABLE_ERRNOS:
            return True
        cur = cur.__cause__ or cur.__context__
    return False


class _StopWhen(stop_base):
    """A tenacity stop condition from a predicate (tenacity's own take stop_base)."""

    def __init__(self, predicate: Callable[[RetryCallState], bool]) -> None:
        self.predicate = predicate

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.predicate(retry_state)


class Reached:
    """Whether an operation under a policy has succeeded yet (thread-safe, set once)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def __bool__(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()

    def __repr__(self) -> str:
        return f"Reached({bool(self)})"


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
    startup_max_delay: float | None = 8.0
    """Until an operation first succeeded: give up on an unreachable endpoint (see
    :func:`is_unreachable`) after this many seconds (None: the full budget)."""
    notice_after: float = 3.0
    """A retry that makes the operation's total wait reach this many seconds is logged at
    WARNING (the default verbosity shows it); quicker ones at DEBUG."""
    sleep: Callable[[float], None] = time.sleep
    rand: Callable[[], float] = random.random
    clock: Callable[[], float] = time.monotonic
    """How long an operation has been retried is measured on this clock."""
    reached: Reached = field(default_factory=Reached, compare=False, repr=False)
    """Set by the first success: from then on an unreachable endpoint is an outage."""

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

        started = self.clock()

        def before_sleep(state: RetryCallState) -> None:
            if state.outcome is None:
                return
            exc = state.outcome.exception()
            assert exc is not None
            if on_retry is not None:
                on_retry(state.attempt_number, exc)
            upcoming = state.next_action.sleep if state.next_action is not None else 0.0
            waited = self.clock() - started + upcoming
            log.log(
                logging.WARNING if waited >= self.notice_after else logging.DEBUG,
                "%s; retrying in %.0f s (attempt %d of %d, %.0f s so far)",
                exc, upcoming, state.attempt_number + 1, self.max_attempts,
                self.clock() - started,
            )  # fmt: skip

        def unreachable_at_startup(state: RetryCallState) -> bool:
            if self.startup_max_delay is None or self.reached or state.outcome is None:
                return False
            exc = state.outcome.exception()
            return (
                exc is not None
                and is_unreachable(exc)
                and self.clock() - started >= self.startup_max_delay
            )

        def tracked() -> T:
            result = attempt()
            self.reached.set()
            return result

        def wait(state: RetryCallState) -> float:
            seconds = self._wait(state)
            if self.startup_max_delay is not None and not self.reached:
                exc = state.outcome.exception() if state.outcome is not None else None
                if exc is not None and is_unreachable(exc):  # no wait past the start-up budget
                    left = started + self.startup_max_delay - self.clock()
                    seconds = min(seconds, max(0.0, left))
            return seconds

        retrying = Retrying(
            stop=stop_any(
                stop_after_attempt(max(1, self.max_attempts)),
                stop_after_delay(self.max_delay) if self.max_delay else stop_never,
                _StopWhen(unreachable_at_startup),
            ),
            wait=wait,
            retry=retry_if_exception_type(TransientStoreError),
            sleep=self.sleep,
            reraise=True,
            before_sleep=before_sleep,
        )
        try:
            return retrying(tracked)
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
            mine = own_earlier_create(
                lambda fid: self.get(fid, parent=parent), file_id, name, parent, folder, md5, size
            )
            if mine is None:
                raise
            self._count("recovered_creates")
            return self._finish_own_create(mine)

    def _finish_own_create(self, info: FileInfo) -> FileInfo:
        """A create was recognised as our own earlier try: finish what that try may have
        left undone (nothing here; a store whose create takes two writes overrides this)."""
        return info

    def list(self, parent: str) -> builtins.list[FileInfo]:
        return self._call("list", lambda: self.inner.list(parent))

    @property
    def create_once_any_name(self) -> bool:  # type: ignore[override]
        return self.inner.create_once_any_name

    def get(self, file_id: str, *, parent: str | None = None) -> FileInfo:
        return self._call("get", lambda: self.inner.get(file_id, parent=parent))

    def read(
        self, file_id: str, *, max_bytes: int | None = None, parent: str | None = None
    ) -> bytes:
        return self._call(
            "read", lambda: self.inner.read(file_id, max_bytes=max_bytes, parent=parent)
        )

    @property
    def identity(self) -> str:
        if self._identity is None:
            self._identity = self._call("identity", lambda: self.inner.identity)
        return self._identity

    def download(
        self,
        file_id: str,
        dest: Path,
        *,
        max_bytes: int | None = None,
        parent: str | None = None,
    ) -> None:
        self._call(
            "download",
            lambda: self.inner.download(file_id, dest, max_bytes=max_bytes, parent=parent),
        )

    def update(self, file_id: str, data: bytes, *, parent: str | None = None) -> FileInfo:
        return self._call("update", lambda: self.inner.update(file_id, data, parent=parent))

    def delete(self, file_id: str, *, parent: str | None = None) -> None:
        self._call("delete", lambda: self.inner.delete(file_id, parent=parent))

    def changes_cursor(self) -> str:
        return self._call("changes cursor", lambda: self.inner.changes_cursor())

    def poll_changes(self, cursor: str) -> Changes:
        return self._call("poll changes", lambda: self.inner.poll_changes(cursor))

    def close(self) -> None:
        self.inner.close()
