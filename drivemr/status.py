"""What a job looks like from the store: counts, each task's state, the reduce.

Built from four by-parent listings (root, claims, results, job folder); claim and result
names carry most facts status needs. The one thing a name cannot tell is whether a worker
said it stopped: the heartbeat of a worker holding an unfinished claim is read (once per
worker) so an attempt killed with its worker shows as ``lost`` at once, not ``running``
until the lease runs out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from drivemr.errors import DrivemrError
from drivemr.protocol import (
    MAX_HEARTBEAT_BYTES,
    REDUCE,
    ClaimRef,
    Heartbeat,
    Job,
    JobView,
    claim_is_dead,
    find_job,
    heartbeats,
    job_complete,
    job_succeeded,
    list_jobs,
    load_view,
    parse_json,
    read_job,
)
from drivemr.safetext import safe
from drivemr.stores.base import FileInfo, Store

STATES = ("pending", "running", "done", "failed", "lost", "cancelled")
"""A task's state: ``lost`` is an attempt whose worker stopped or went silent past the lease
(a new attempt will be claimed), ``cancelled`` an unfinished task of a cancelled job."""


@dataclass(frozen=True)
class TaskState:
    task: str
    state: str
    attempts: int
    worker: str | None
    exit_code: int | None
    duration: float | None
    """Seconds: of the committed attempt, of a running one so far, or of a lost one up to
    its worker's last sign of life."""
    item: str | None = None
    """The task's input file or item (what it works on), if any."""


@dataclass(frozen=True)
class JobStatus:
    job: str
    name: str
    created: float
    state: str
    """pending, running, done, failed or cancelled."""
    counts: dict[str, int]
    tasks: list[TaskState]
    reduce: TaskState | None
    rejected_by: dict[str, str]

    def to_json(self, *, with_tasks: bool = True) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "job": self.job,
            "name": self.name,
            "created": self.created,
            "state": self.state,
            "counts": self.counts,
            "reduce": asdict(self.reduce) if self.reduce else None,
            "rejected_by": self.rejected_by,
        }
        if with_tasks:
            doc["tasks"] = [asdict(t) for t in self.tasks]
        return doc

    @property
    def failed_tasks(self) -> list[str]:
        return [t.task for t in self.tasks if t.state == "failed"]


def task_label(job: Job, task_id: str) -> str | None:
    """What a task works on: its input file's name or its item."""
    if task_id == REDUCE:
        return None
    try:
        task = job.task(task_id)
    except KeyError:
        return None
    return task.input.name if task.input is not None else task.item


_STOPPED: dict[tuple[str, str, float], bool] = {}
"""Whether a heartbeat version (store, file id, modified time) says its worker stopped:
heartbeats change every lease/3, so a watch that polls twice a second reads each once."""
_STOPPED_MAX = 4096


class _Liveness:
    """Judges unfinished claims on the store's clock: alive, or lost (worker stopped or
    silent past the lease), and when each worker last showed a sign of life."""

    def __init__(self, store: Store, root: list[FileInfo], lease: float) -> None:
        self.store = store
        self.beats = heartbeats(root)
        self.now = max([time.time(), *(b.file.modified for b in self.beats.values())])
        self.lease = lease

    def stopped(self, beat: Heartbeat) -> bool:
        key = (self.store.url, beat.file.id, beat.file.modified)
        if key not in _STOPPED:
            try:
                doc = parse_json(
                    self.store.read(beat.file.id, max_bytes=MAX_HEARTBEAT_BYTES), "heartbeat"
                )
            except DrivemrError:
                return False  # unreadable now: judged by its age alone, read again next time
            if len(_STOPPED) >= _STOPPED_MAX:
                _STOPPED.clear()
            _STOPPED[key] = isinstance(doc, dict) and doc.get("state") == "stopped"
        return _STOPPED[key]

    def alive(self, claim: ClaimRef) -> bool:
        return not claim_is_dead(claim, self.beats, self.now, self.lease, self.stopped)

    def last_sign(self, claim: ClaimRef) -> float:
        return last_sign_of_life(claim, self.beats, self.now)


def last_sign_of_life(claim: ClaimRef, beats: Mapping[str, Heartbeat], now: float) -> float:
    """When the worker of ``claim`` last showed it was alive (store clock): its heartbeat or
    the claim, whichever is newer. A lost attempt's time stops here, not at the reader's now."""
    beat = beats.get(claim.worker)
    seen = claim.file.modified if beat is None else max(beat.file.modified, claim.file.modified)
    return min(seen, now)


def _task_state(job: Job, view: JobView, task_id: str, live: _Liveness) -> TaskState:
    claims = view.claims.get(task_id, {})
    top = claims[max(claims)] if claims else None
    result = view.results.get(task_id)
    label = task_label(job, task_id)
    if result is not None:
        worker = (
            claims[result.gen].worker if result.gen in claims else (top.worker if top else None)
        )
        return TaskState(
            task_id,
            result.state,
            max(len(claims), result.gen + 1),
            worker,
            result.exit_code,
            result.duration,
            label,
        )
    if top is None:
        state = "cancelled" if view.cancelled else "pending"
        return TaskState(task_id, state, 0, None, None, None, label)
    started = top.file.modified
    if view.cancelled:
        # Workers kill a cancelled job's attempts at their next poll: never "running".
        return TaskState(task_id, "cancelled", len(claims), top.worker, None, None, label)
    if live.alive(top):
        secs = max(0.0, live.now - started)
        return TaskState(task_id, "running", len(claims), top.worker, None, secs, label)
    secs = max(0.0, live.last_sign(top) - started)
    return TaskState(task_id, "lost", len(claims), top.worker, None, secs, label)


def job_status(
    store: Store,
    folder: FileInfo,
    job: Job,
    *,
    root: list[FileInfo] | None = None,
    lease: float = 300.0,
) -> JobStatus:
    root_entries = store.list(store.root_id) if root is None else root
    live = _Liveness(store, root_entries, lease)
    view = load_view(store, job)
    tasks = [_task_state(job, view, t.id, live) for t in job.tasks]
    counts = {s: 0 for s in STATES}
    for t in tasks:
        counts[t.state] += 1
    reduce_state = _task_state(job, view, REDUCE, live) if job.reduce_task else None
    if view.cancelled:
        state = "cancelled"
    elif job_complete(job, view):
        state = "done" if job_succeeded(job, view) else "failed"
    elif (
        counts["running"]
        or counts["done"]
        or counts["failed"]
        or counts["lost"]
        or (reduce_state and reduce_state.state in ("running", "lost"))
    ):
        state = "running"
    else:
        state = "pending"
    rejected: dict[str, str] = {}
    for entry in store.list(job.folder):
        if entry.name.startswith("rejected."):
            if len(rejected) >= MAX_REJECTION_NOTES:
                break  # bounded: a flood of notes costs a fixed number of reads
            rejected[safe(entry.name[len("rejected.") :], max_len=80)] = _read_reason(store, entry)
    return JobStatus(job.id, job.name, job.created, state, counts, tasks, reduce_state, rejected)


MAX_REJECTION_NOTES = 50
"""Rejection notes read per job by ``status``: one per worker is expected."""


def _read_reason(store: Store, entry: FileInfo) -> str:
    """A rejection note's reason, parsed within limits (a deeply nested or huge note is
    "?", never a crash) and made safe to print."""
    try:
        doc = parse_json(
            store.read(entry.id, max_bytes=64 * 1024), "rejection note", max_bytes=64 * 1024
        )
    except DrivemrError:
        return "?"
    if not isinstance(doc, dict):
        return "?"
    from drivemr.jobtrust import public_reason

    return safe(public_reason(str(doc.get("reason", "?"))[:2000]), max_len=300)


def declared_lease(value: object, default: float) -> float:
    """A lease a heartbeat declares, if it is a plain finite number; else ``default``
    (a 400-digit integer would overflow float(), a bool is not a lease)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    try:
        number = float(value)
    except OverflowError:
        return default
    return number if math.isfinite(number) else default


LIVE_READ_AGE = 86400.0
"""Heartbeats older than this are not read when looking for live workers (they are dead
under any sane lease), so the cost stays bounded by the workers of the last day."""


def live_workers(store: Store, *, lease: float = 300.0) -> list[str]:
    """Workers whose heartbeat is fresh within the lease it declares (else ``lease``) and
    that did not say they stopped, judged on the store's clock."""
    beats = heartbeats(store.list(store.root_id))
    now = max([time.time(), *(b.file.modified for b in beats.values())])
    alive = []
    for worker, beat in sorted(beats.items()):
        age = now - beat.file.modified
        if age > LIVE_READ_AGE:
            continue
        try:
            doc = parse_json(store.read(beat.file.id, max_bytes=MAX_HEARTBEAT_BYTES), "heartbeat")
        except DrivemrError:
            continue
        if not isinstance(doc, dict) or doc.get("state") == "stopped":
            continue
        limit = declared_lease(doc.get("lease"), lease)
        if age <= limit:
            alive.append(worker)
    return alive


def status_of(store: Store, job_id: str, *, lease: float = 300.0) -> JobStatus:
    folder, job = find_job(store, job_id)
    return job_status(store, folder, job, lease=lease)


def all_statuses(store: Store, *, lease: float = 300.0) -> list[JobStatus | tuple[str, str]]:
    """Every job, newest first; a job that cannot be read appears as (job id, reason)."""
    root = store.list(store.root_id)
    out: list[JobStatus | tuple[str, str]] = []
    for folder in reversed(list_jobs(store, root)):
        job_id = folder.name[len("job-") :]
        try:
            job = read_job(store, folder)
            out.append(job_status(store, folder, job, root=root, lease=lease))
        except DrivemrError as exc:
            out.append((job_id, str(exc)))
    return out
