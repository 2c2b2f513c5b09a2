"""Durations for people, written one way everywhere: the report, ``workers``, the progress
line's ETA.

Short times keep their fractions (``0.25s``, ``12.3s``); longer ones are split into their
two largest units (``4m05s``, ``2h03m``, ``3d04h``). Every form of a positive duration is
also a valid job-file duration (:func:`drivemr.spec.parse_duration`), so a figure seen in a
report can be pasted into ``timeout``.
"""

from __future__ import annotations

import math

__all__ = ["format_duration"]


def format_duration(seconds: float | None) -> str:
    """``0.25s``, ``12.3s``, ``4m05s``, ``2h03m``, ``3d04h``; ``-`` for an unknown one."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"
