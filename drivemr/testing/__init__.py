"""Test doubles shipped with drivemr: the fake Drive (``fakedrive``), ``MemoryStore`` and a
``ManualClock`` that only the test moves (for ``Worker.step()``)."""

from drivemr.testing.clock import ManualClock
from drivemr.testing.memory import MemoryStore

__all__ = ["ManualClock", "MemoryStore"]
