"""Packing items into tasks: how many items each task (the unit of claim and commit) holds.

A task costs two store writes (its claim and its result) however long it runs, and Google
Drive allows about three writes per second per account: one item per task caps a job at
~1.5 items/s whatever the number of PCs. Few big tasks cost few writes but leave slots idle
at the end of the job while the last big task runs. Nothing is known of item durations at
submit, so the sizes follow guided self-scheduling: each task takes
``ceil(remaining / slots)`` of the items not yet handed out, so the first tasks are big and
the sizes shrink towards the end, where the slots must finish together. They shrink no
further than 1/6 of one slot's share of the job: a job of many tiny items then costs about
3 x slots tasks, not hundreds, which matters twice on Drive (each task boundary also costs a
slot a claim at the quota; its result trails, see drivemr/worker/trail.py). ``slots`` is the
number of slots the live workers' heartbeats advertise when the job is submitted.

The functions here are pure (sizes, write estimates); :func:`live_slots` reads heartbeats.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from drivemr.errors import DrivemrError
from drivemr.protocol import MAX_HEARTBEAT_BYTES, heartbeats, parse_json
from drivemr.stores.base import Store

FACTOR = 1
"""Each task takes 1/(FACTOR * slots) of the items not yet handed out (2 would be
"factoring": more, smaller tasks, safer when item durations vary widely, but twice the
writes and task boundaries)."""
TAIL_SHARES = 6
"""The smallest task holds 1/TAIL_SHARES of one slot's share of the job (at least one item):
with items of even durations the end of the job waits at most about that long for its last
task, and the number of tasks stays near slots x (ln(TAIL_SHARES) + 1), about 3 x slots,
whatever the item count, so the write quota cannot bind before the work does."""
MAX_PACK = 1000
"""Items per task at most: bounds a result manifest (one entry per item) and the work a
killed worker loses."""
DEFAULT_SLOTS = 8
"""Slots assumed when no live worker advertises any (jobs are often submitted first)."""
MAX_SLOTS = 10_000
DEFAULT_LEASE = 60.0
DRIVE_WRITES_PER_SECOND = 3.0
"""Google Drive's sustained write quota per account (about 3 creates or updates a second)."""
WARN_SECONDS = 60.0
"""``submit`` tells the write cost up front when the quota makes it longer than this."""


def pack_sizes(count: int, slots: int, items_per_task: int | None = None) -> list[int]:
    """Items per task, in task order, for ``count`` items.

    ``items_per_task`` (the job file's setting) fixes the size (the last task takes the
    rest); without it the sizes are guided self-scheduling's for ``slots`` slots."""
    if count <= 0:
        return []
    if items_per_task is not None:
        size = max(1, items_per_task)
        full, rest = divmod(count, size)
        return [size] * full + ([rest] if rest else [])
    divisor = FACTOR * max(1, slots)
    smallest = max(1, math.ceil(count / (TAIL_SHARES * max(1, slots))))
    sizes = []
    remaining = count
    while remaining:
        size = min(MAX_PACK, remaining, max(smallest, math.ceil(remaining / divisor)))
        sizes.append(size)
        remaining -= size
    return sizes


def split(items: Sequence[object], sizes: Sequence[int]) -> list[list[int]]:
    """Item indexes of each task, for the given sizes (which sum to ``len(items)``)."""
    out, start = [], 0
    for size in sizes:
        out.append(list(range(start, start + size)))
        start += size
    if start != len(items):
        raise ValueError(f"sizes sum to {start}, not {len(items)}")
    return out


def pack_ids(n: int) -> list[str]:
    """``p0000``, ``p0001``, ...: zero padded like item ids, so names sort."""
    width = max(4, len(str(n - 1)))
    return [f"p{i:0{width}d}" for i in range(n)]


@dataclass(frozen=True)
class WriteEstimate:
    """The store writes a job costs, and how long Drive's quota makes them take."""

    submit: int
    """Folders, shipped files and archives, markers' ids aside, and job.json."""
    run: int
    """A claim and a result per task, and the reduce's."""

    @property
    def total(self) -> int:
        return self.submit + self.run

    @property
    def drive_seconds(self) -> float:
        return self.total / DRIVE_WRITES_PER_SECOND


def estimate_writes(*, tasks: int, uploads: int, reduce: bool) -> WriteEstimate:
    """Writes of a job with no failure: 6 folders, the uploads and job.json at submit; two
    per task (claim, result) and the reduce's two when it runs, plus the finish marker."""
    return WriteEstimate(submit=6 + uploads + 1, run=2 * tasks + (2 if reduce else 0) + 1)


def live_slots(store: Store, *, now: float | None = None) -> int | None:
    """Slots the live workers' heartbeats advertise, or None when no live worker is seen.

    A heartbeat is untrusted input: an unreadable or odd one counts as no worker; a
    worker counts when its last heartbeat is younger than its lease and it did not stop."""
    try:
        beats = heartbeats(store.list(store.root_id))
    except DrivemrError:
        return None
    if not beats:
        return None
    clock = max(
        [now if now is not None else time.time(), *(b.file.modified for b in beats.values())]
    )
    total = 0
    for beat in beats.values():
        try:
            doc = parse_json(
                store.read(beat.file.id, max_bytes=MAX_HEARTBEAT_BYTES, parent=beat.file.parent),
                "heartbeat",
                max_bytes=MAX_HEARTBEAT_BYTES,
            )
        except DrivemrError:
            continue
        if not isinstance(doc, dict):
            continue
        inner = doc.get("body")
        body: dict[str, Any] = inner if isinstance(inner, dict) else doc
        slots, lease = body.get("slots"), body.get("lease", DEFAULT_LEASE)
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            continue
        if isinstance(lease, bool) or not isinstance(lease, (int, float)):
            lease = DEFAULT_LEASE
        if clock - beat.file.modified > float(lease) or body.get("state") == "stopped":
            continue
        total += min(slots, MAX_SLOTS)
    return min(total, MAX_SLOTS) or None
