"""A clock that only the test moves: time as a parameter, as huey's ``loop(now=None)``.

The worker reads time through the :class:`drivemr.worker.Clock` protocol (``monotonic`` and
``time``). Tests that step workers with ``Worker.step()`` over a :class:`MemoryStore` give
them one ``ManualClock`` (and the store the same one, for its timestamps), then move time
forward by setting ``now``: leases lapse, backoffs end and heartbeats fall due exactly when
the test says, with no sleeps.
"""

from __future__ import annotations

__all__ = ["ManualClock"]


class ManualClock:
    """Monotonic and wall time, both ``now``, moved only by the test."""

    __test__ = False  # not a test class, whatever module imports it

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
