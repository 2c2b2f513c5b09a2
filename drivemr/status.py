"""What a job looks like from the store: counts, each task's state, the reduce.

Built from four by-parent listings (root, claims, results, job folder); claim and result
names carry most facts status needs. What a writer without a trusted key could fake is
opened first (see drivemr.trust): heartbeats (who is alive, by the lease each declared,
with store times never later than our own clock), cancel and finished markers, rejection
notes (rendered from a reason code, never from their text) and, for a task whose every
claim id is taken, its claims: a task held only by untrusted claims is *blocked*.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from drivemr.errors import DrivemrError
from drivemr.protocol import (
    REDUCE,
    Heartbeat,
    Job,
    JobView,
    claim_is_dead,
    find_job,
    heartbeat_files,
    job_complete,
    job_succeeded,
    list_jobs,
    load_view,
    read_job,
)
from drivemr.safetext import safe
from drivemr.stores.base import FileInfo, Store
from drivemr.trust import Trust, declared_lease, open_claim, open_heartbeat, open_note, render_note

STATES = ("pending", "running", "done", "failed", "blocked")


@dataclass(frozen=True)
class TaskState:
    task: str
    state: str
    attempts: int
    worker: str | None
    exit_code: int | None
    duration: float | None


@dataclass(frozen=True)
class JobStatus:
    job: str
    name: str
    created: float
    state: str
    """pending, running, done, failed, cancelled or blocked (every unfinished task is
    blocked by untrusted files)."""
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


def _task_state(job: Job, view: JobView, task_id: str, alive: Any) -> TaskState:
    claims = view.claims.get(task_id, {})
    top = claims[max(claims)] if claims else None
    result = view.results.get(task_id)
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
        )
    if top is not None and alive(top):
        return TaskState(task_id, "running", len(claims), top.worker, None, None)
    return TaskState(task_id, "pending", len(claims), top.worker if top else None, None, None)


def job_status(
    store: Store,
    folder: FileInfo,
    job: Job,
    *,
    root: list[FileInfo] | None = None,
    lease: float = 300.0,
    trust: Trust | None = None,
) -> JobStatus:
    trust = trust or Trust.reader()
    root_entries = store.list(store.root_id) if root is None else root
    now = time.time()
    beats, leases, stopped = trusted_beats(store, trust, root_entries, now, lease)
    view = load_view(store, job, trust)

    def alive(claim: Any) -> bool:
        worker_lease = leases.get(claim.worker, lease)
        clamped = replace(claim, file=replace(claim.file, modified=min(claim.file.modified, now)))
        if claim_is_dead(clamped, beats, now, worker_lease, lambda hb: hb.worker in stopped):
            return False
        # Shown as running only when the claim opens (a forged claim runs nothing).
        opened = open_claim(trust, store, job.id, claim.task, claim.gen, claim.worker, claim.file)
        return opened is not None

    tasks = [
        _blocked(store, trust, job, view, t.id) or _task_state(job, view, t.id, alive)
        for t in job.tasks
    ]
    counts = {s: 0 for s in STATES}
    for t in tasks:
        counts[t.state] += 1
    reduce_state = _task_state(job, view, REDUCE, alive) if job.reduce_task else None
    if view.cancelled:
        state = "cancelled"
    elif counts["blocked"] and not counts["running"] and counts["pending"] == 0:
        state = "blocked"
    elif job_complete(job, view):
        state = "done" if job_succeeded(job, view) else "failed"
    elif (
        counts["running"]
        or counts["done"]
        or counts["failed"]
        or (reduce_state and reduce_state.state == "running")
    ):
        state = "running"
    else:
        state = "pending"
    rejected = {}
    for entry in store.list(job.folder):
        if entry.name.startswith("rejected.") and not entry.is_folder:
            note = open_note(trust, store, job.id, entry)
            if note is not None:  # an untrusted note is reported once and not shown
                worker = note.body.get("worker")
                rejected[safe(worker if isinstance(worker, str) else "?", max_len=64)] = (
                    render_note(note)
                )
    return JobStatus(job.id, job.name, job.created, state, counts, tasks, reduce_state, rejected)


def trusted_beats(
    store: Store, trust: Trust, root: list[FileInfo], now: float, lease: float
) -> tuple[dict[str, Heartbeat], dict[str, float], set[str]]:
    """The heartbeats that open, with their times clamped to ``now`` (a heartbeat dated in
    the future is as fresh as now, never fresher), each worker's declared lease, and the
    workers that said they stopped."""
    beats: dict[str, Heartbeat] = {}
    leases: dict[str, float] = {}
    stopped: set[str] = set()
    for beat in heartbeat_files(root):
        sealed = open_heartbeat(trust, store, beat.worker, beat.file)
        if sealed is None:
            continue
        clamped = replace(beat.file, modified=min(beat.file.modified, now))
        old = beats.get(beat.worker)
        if old is not None and old.file.modified >= clamped.modified:
            continue
        beats[beat.worker] = Heartbeat(beat.worker, clamped)
        leases[beat.worker] = declared_lease(sealed.body.get("lease"), lease)
        if sealed.body.get("state") == "stopped":
            stopped.add(beat.worker)
        else:
            stopped.discard(beat.worker)
    return beats, leases, stopped


def _blocked(store: Store, trust: Trust, job: Job, view: JobView, task_id: str) -> TaskState | None:
    """A task without a result whose every claim id is taken, some by a file no trusted key
    sealed: blocked by untrusted files (workers never fail it)."""
    claims = view.claims.get(task_id, {})
    task = job.task(task_id)
    if task_id in view.results or len(claims) < len(task.claim_ids):
        return None
    untrusted = [
        ref
        for gen, ref in claims.items()
        if open_claim(trust, store, job.id, task_id, gen, ref.worker, ref.file) is None
    ]
    if not untrusted:
        return None
    return TaskState(task_id, "blocked", len(claims), None, None, None)


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
