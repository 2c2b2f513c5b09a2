"""Waiting in tests: poll a condition with short sleeps, never a fixed wait.

The one ``wait_for`` of the project: tests, the chaos campaign and its script use it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

__all__ = ["wait_for"]


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float = 60.0,
    what: str = "the condition",
    interval: float = 0.05,
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns something true, and
    return that. Raises :class:`TimeoutError` naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
