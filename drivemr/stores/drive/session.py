"""One Drive client's plumbing: a service object per thread, the retry policy around every
HTTP attempt, write pacing, and the counters benchmarks and tests read.

Every request of the store goes through :meth:`DriveSession.call`, so every retry is one
of :mod:`drivemr.stores.retry`'s and is counted; googleapiclient's own ``num_retries``
stays 0 and :mod:`.strict_http` stops httplib2's silent resends of writes.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from googleapiclient.discovery import build_from_document

from drivemr.errors import PermanentStoreError, TransientStoreError
from drivemr.stores.drive.pacing import WritePacer
from drivemr.stores.drive.strict_http import StrictHttp, discovery_document
from drivemr.stores.drive.translate import http_status, translate
from drivemr.stores.retry import RetryPolicy

__all__ = ["DriveSession"]

T = TypeVar("T")

_COUNTERS = (
    "requests",
    "reads",
    "writes",
    "retries",
    "transient",
    "gave_up",
    "recovered_creates",
    "paced_seconds",
)


class DriveSession:
    """Connections, retries, pacing and counters of one Drive client.

    Thread-safe: each thread builds its own ``Http`` and service object (httplib2 is not
    thread-safe); the counters and the connections are guarded by ``_lock``, which this
    class alone takes. A worker starts short-lived threads all the time, so the connections
    of threads that ended are closed when another thread builds its own: open sockets stay
    bounded by the live threads, not by every thread the process ever ran."""

    def __init__(
        self,
        *,
        endpoint: str | None,
        credentials: Any,
        policy: RetryPolicy,
        pacer: WritePacer | None,
        timeout: float,
        http_factory: Callable[[], Any] | None,
        service_account: bool,
    ) -> None:
        self.endpoint = endpoint
        self.policy = policy
        self.pacer = pacer
        self.timeout = timeout
        self._credentials = credentials
        self._http_factory = http_factory
        self._service_account = service_account
        self._local = threading.local()
        self._lock = threading.Lock()
        self.https: list[tuple[threading.Thread, Any]] = []
        """Each thread's ``Http`` (to close at :meth:`close`, or once its thread ended)."""
        self._closed = False
        self._stats: dict[str, float] = {}
        self.reset_stats()

    @property
    def stats(self) -> dict[str, float]:
        with self._lock:
            return dict(self._stats)

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = dict.fromkeys(_COUNTERS, 0)
            self._stats["paced_seconds"] = 0.0

    def count(self, key: str, amount: float = 1) -> None:
        with self._lock:
            self._stats[key] = self._stats.get(key, 0) + amount

    def service(self) -> Any:
        """This thread's service object."""
        service = getattr(self._local, "service", None)
        if service is None:
            if self._closed:
                raise PermanentStoreError("the Drive store was closed")
            base = self._http_factory() if self._http_factory else StrictHttp(self.timeout)
            if self._credentials is not None:
                import google_auth_httplib2

                http_obj = google_auth_httplib2.AuthorizedHttp(self._credentials, http=base)
            else:
                http_obj = base
            service = build_from_document(discovery_document(self.endpoint), http=http_obj)
            with self._lock:
                ended = [h for t, h in self.https if not t.is_alive()]
                self.https = [(t, h) for t, h in self.https if t.is_alive()]
                self.https.append((threading.current_thread(), http_obj))
            _close_all(ended)
            self._local.service = service
        return service

    def call(
        self,
        what: str,
        kind: str,
        fn: Callable[[Any], T],
        attempts: list[int] | None = None,
    ) -> T:
        """Run ``fn(service)`` under the retry policy.

        ``kind`` is "read" or "write" (writes are paced). ``attempts[0]`` counts the
        attempts made, so a create can tell a first-try 409 from a retried one."""
        pacer = self.pacer if kind == "write" else None

        def attempt() -> T:
            if attempts is not None:
                attempts[0] += 1
            if pacer is not None:
                waited = pacer.acquire()
                if waited:
                    self.count("paced_seconds", waited)
            with self._lock:
                self._stats["requests"] += 1
                self._stats["reads" if kind == "read" else "writes"] += 1
            try:
                result = fn(self.service())
            except Exception as exc:
                translated = translate(exc, what, service_account=self._service_account)
                if translated is None:
                    raise
                if isinstance(translated, TransientStoreError):
                    self.count("transient")
                    if pacer is not None and http_status(exc) in (403, 429):
                        pacer.slow_down()  # the quota refused, not an outage
                if translated is exc:
                    raise
                raise translated from exc
            if pacer is not None:
                pacer.speed_up()
            return result

        return self.policy.run(
            attempt,
            on_retry=lambda _n, _exc: self.count("retries"),
            on_give_up=lambda _exc: self.count("gave_up"),
        )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            https, self.https = self.https, []
        _close_all([h for _, h in https])


def _close_all(https: list[Any]) -> None:
    """Close ``Http`` objects no thread uses any more (their sockets)."""
    for http_obj in https:
        with contextlib.suppress(Exception):  # closing is best effort
            http_obj.close()
