"""What to claim next: pure functions over a job, what the store showed of it, and what
this worker is doing. No store, no threads, no clock; tested directly.

Workers claim runs of consecutive tasks, so two of them only meet where a run ends: each
starts at an offset of its own, goes on right after its last claim, and when that task
is taken jumps into the middle of the longest run of free tasks (after a listing, which
costs reads, rather than blind tries, each of which costs a write).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

from drivemr.protocol import REDUCE, ClaimRef, Job, JobView, reduce_due


@dataclass(frozen=True)
class Plan:
    """Where each unfinished task of a job stands for this worker."""

    pending: tuple[str, ...]
    """Never-claimed tasks (the reduce first when due), in the order to claim them."""
    elsewhere: frozenset[str]
    """Tasks claimed by someone (maybe a past life of ours): taken over only once dead."""
    urgent: frozenset[str]
    """Of ``elsewhere``: claimed by a worker known to be dead, or by our own past life."""


def plan_tasks(
    job: Job,
    view: JobView,
    *,
    me: str,
    busy: Collection[str] = (),
    given_up: Collection[str] = (),
    frontier: int | None = None,
    dead_workers: Collection[str] = (),
    run_reduce: bool = True,
) -> Plan:
    """Sort the job's unfinished tasks into never-claimed and claimed elsewhere.

    ``busy``: tasks this worker runs or will retry itself; ``frontier``: the index of
    the last map task it claimed first (the end of its run)."""
    pending: list[str] = []
    elsewhere: set[str] = set()
    for task in job.tasks:
        if view.settled(task.id) or task.id in busy or task.id in given_up:
            continue
        if task.id in view.claims:
            elsewhere.add(task.id)
        else:
            pending.append(task.id)
    if pending:
        offset = run_start(job, pending, me=me, frontier=frontier)
        pending = pending[offset:] + pending[:offset]
    if run_reduce and REDUCE not in busy and reduce_due(job, view, given_up):
        if REDUCE in view.claims:
            elsewhere.add(REDUCE)
        else:
            pending.insert(0, REDUCE)
    urgent = set()
    for tid in elsewhere:
        top = view.top_claim(tid)
        if top is not None and (top.worker == me or top.worker in dead_workers):
            urgent.add(tid)
    return Plan(tuple(pending), frozenset(elsewhere), frozenset(urgent))


GUIDED_WINDOW = 3
"""A guided packed job's worker claims one of this many first free tasks after a listing."""


def guided(job: Job) -> bool:
    """A packed job whose task sizes shrink (guided self-scheduling), claimed in order."""
    return job.packed and job.packed_for > 0


def guided_window(job: Job, pending: list[str]) -> int:
    """How many of the first free tasks a guided job's worker chooses among: at most
    GUIDED_WINDOW, each at least 3/4 as big as the first (the biggest left)."""
    first = len(job.task(pending[0]).pack)
    window = 1
    while (
        window < min(len(pending), GUIDED_WINDOW)
        and 4 * len(job.task(pending[window]).pack) >= 3 * first
    ):
        window += 1
    return window


def run_start(job: Job, pending: list[str], *, me: str, frontier: int | None) -> int:
    """Where in ``pending`` (never-claimed map tasks, in task order) to start claiming.

    Nothing claimed yet: at an offset of our own. Later: right after our last claim
    while that task is free, else in the middle of the longest run of free tasks (whose
    lower end another worker is probably working up: we take the upper half). Between
    listings a worker only goes on to the task right after its last claim, so two
    workers collide (a 409, which costs a write) about once per such jump, not per task.

    A packed job's tasks shrink towards its end (docs/packing.md), so its big tasks must
    go first and its small ones last, as guided self-scheduling needs: a worker takes one
    of the first GUIDED_WINDOW free tasks of about the first one's size after each listing (at the very start, an offset
    of its own among the first ones, all of about the same size, so that workers starting
    together do not all race for the first). It never goes on blindly along a run (see :func:`next_pending`):
    its tasks are few and long, so a listing (reads) before each claim costs little."""
    seed = int(hashlib.sha256(me.encode()).hexdigest(), 16)
    n = len(job.tasks)
    positions = [job.task(tid).index for tid in pending]
    if guided(job):
        if len(positions) == n:
            return seed % min(n, job.packed_for)
        # Among the first few free tasks, by a hash that changes with every listing: a
        # worker whose writes are paced slower than the others' would otherwise lose the
        # race for the first free task after every listing.
        # Only among tasks about as big as the first free one: one of 4, 1, 1 must not
        # leave the 4 to the last slot that comes by (the job would wait for it).
        mixed = hashlib.sha256(f"{me}/{len(positions)}".encode()).digest()
        return int.from_bytes(mixed[:8], "big") % guided_window(job, pending)
    if len(positions) == n:
        return seed % n
    if frontier is not None:
        after = (frontier + 1) % n
        for k, index in enumerate(positions):
            if index == after:
                return k
    runs: list[tuple[int, int]] = []  # (position in pending, length)
    for k, index in enumerate(positions):
        if runs and positions[k - 1] == index - 1:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((k, 1))
    if len(runs) > 1 and positions[0] == 0 and positions[-1] == n - 1:  # across the end
        first = runs.pop(0)
        runs[-1] = (runs[-1][0], runs[-1][1] + first[1])
    start, length = max(runs, key=lambda r: r[1])
    offset = length // 2
    if length >= 6:  # two workers jumping at once should not pick the same task
        offset += seed % (length // 3 + 1) - length // 6
    return (start + offset) % len(pending)


@dataclass(frozen=True)
class NextPending:
    """What the front of ``pending`` says: drop ``skip`` settled tasks, then claim
    ``task``; or, with ``run_ended``, stop: the next task is past the end of our run."""

    skip: int
    task: str | None = None
    run_ended: bool = False


def next_pending(
    job: Job,
    pending: Iterable[str],
    *,
    settled: Callable[[str], bool],
    frontier: int | None,
    replanned: bool,
) -> NextPending:
    """The next never-claimed task to claim blindly (no listing first), if any.

    ``settled(task)``: the task has a result or runs here. Right after a listing any task may
    go; later only the one right after our last claim (or the reduce): anything else is
    where another worker's run may be, and a listing (reads) says so cheaper than a
    collision (a write). A guided packed job has no runs: only right after a listing."""
    n = len(job.tasks)
    skip = 0
    for tid in pending:
        if settled(tid):
            skip += 1
            continue
        if (
            replanned
            or tid == REDUCE
            or (not guided(job) and (frontier is None or job.task(tid).index == (frontier + 1) % n))
        ):
            return NextPending(skip, tid)
        return NextPending(skip, run_ended=True)
    return NextPending(skip)


def due_retry(retries: Mapping[str, tuple[int, float]], now: float) -> tuple[str, int] | None:
    """The first retry whose time has come: (task, attempt)."""
    for tid, (attempt, due) in retries.items():
        if due <= now:
            return tid, attempt
    return None


def takeover_order(urgent: Iterable[str], view: JobView, me: str) -> list[str]:
    """Urgent tasks in the order to reclaim them: our own past life's claims first (only
    we can take those: our heartbeat under that id is alive again), then by task id."""

    def key(tid: str) -> tuple[bool, str]:
        top = view.top_claim(tid)
        return (top is None or top.worker != me, tid)

    return sorted(urgent, key=key)


def next_attempt(top: ClaimRef, claim_ids: Collection[str]) -> int | None:
    """The attempt that follows a dead claim, or None when the task has none left."""
    return top.gen + 1 if top.gen + 1 < len(claim_ids) else None
