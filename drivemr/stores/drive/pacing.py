"""Write pacing for the Drive store: stay under the account's write quota.

Drive allows about 3 sustained writes per second per account, shared by every PC signed in
to it. Writes (create/update/delete) pass one :class:`WritePacer` per process and endpoint
(``write_rate`` per second after a short burst); when the quota refuses a write anyway
(other PCs use it too), the pacer halves its rate and wins it back write by write. Reads
are not paced.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = [
    "AIMD_STEP",
    "DEFAULT_BURST",
    "DEFAULT_WRITE_RATE",
    "WritePacer",
    "burst_for",
    "shared_pacer",
]

DEFAULT_WRITE_RATE = 3.0
"""Drive's sustained write limit per account, writes per second."""
DEFAULT_BURST = 2.0
"""Writes a pacer at the account's whole rate lets through at once after a pause."""
AIMD_STEP = 0.02
"""After the quota refused a write, each accepted write wins back this share of the rate."""


def burst_for(rate: float) -> float:
    """The burst of a pacer at ``rate``: DEFAULT_BURST at the account's rate or above, the
    same share of it below (never under one write). PCs that share an account's rate
    (``--write-rate 1`` each on three PCs) then share its burst too: three bursts of two
    writes at once, as when every slot of every PC ends a task at the same moment, would
    be refused by the account's quota, and each refusal halves that PC's rate."""
    return max(1.0, min(DEFAULT_BURST, DEFAULT_BURST * rate / DEFAULT_WRITE_RATE))


class WritePacer:
    """Paces Drive writes to the account's quota (a token bucket that adapts, AIMD).

    Thread-safe token bucket: at most ``rate`` acquisitions per second after a burst
    of ``burst``. Callers reserve a token and sleep outside the lock, so waiting threads
    are served in order and no thread spins. ``clock``/``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        rate: float,
        burst: float = 2.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.capacity = max(1.0, float(burst))
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.capacity
        self._last = clock()
        self.acquired = 0
        self.waited = 0.0
        self.ceiling = self.rate
        self._slowed_at: float | None = None

    def slow_down(self) -> None:
        """The account's quota refused a write: other clients (PCs) share it, so take less.
        Halve the rate (once per second however many slots were refused together; never
        below a tenth of the configured rate); :meth:`speed_up` wins it back write by write."""
        with self._lock:
            now = self._clock()
            if self._slowed_at is not None and now - self._slowed_at < 1.0:
                return
            self._slowed_at = now
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens = min(self._tokens, 0.0)  # no burst right after a refusal
            self.rate = max(self.ceiling / 10, self.rate / 2)

    def speed_up(self) -> None:
        """An accepted write: raise the rate a little, up to the configured one."""
        if self.rate >= self.ceiling:
            return
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self.rate = min(self.ceiling, self.rate + self.ceiling * AIMD_STEP)

    def acquire(self, tokens: float = 1.0) -> float:
        """Take ``tokens``; sleeps as long as needed and returns the time slept."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= tokens
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
            self.acquired += 1
            self.waited += wait
        if wait > 0:
            self._sleep(wait)
        return wait


_SHARED: dict[tuple[str, float, float], WritePacer] = {}
_SHARED_LOCK = threading.Lock()


def shared_pacer(key: str, rate: float, burst: float) -> WritePacer:
    """One pacer per (endpoint, rate) for the whole process: every slot, every store."""
    with _SHARED_LOCK:
        pacer = _SHARED.get((key, rate, burst))
        if pacer is None:
            pacer = _SHARED[(key, rate, burst)] = WritePacer(rate, burst)
        return pacer
