"""What a job looks like from the store: counts, each task's state, the reduce.

Built from four by-parent listings (root, claims, results, job folder); nothing is
downloaded, because claim and result names carry the facts status needs.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass
from typing import Any

from drivemr.errors import DrivemrError
from drivemr.protocol import (
    REDUCE,
    Job,
    JobView,
    claim_is_dead,
    find_job,
    heartbeats,
    job_complete,
    job_succeeded,
    list_jobs,
    load_view,
    read_job,
)
from drivemr.stores.base import FileInfo, Store

STATES = ("pending", "running", "done", "failed")


@dataclass(frozen=True)
class TaskState:
    task: str
    state: str
    attempts: int
    worker: str | None
    exit_code: int | None
    duration: float | None
    round: int = 0
    """The round whose attempts these are (its latest)."""


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
    round: int = 0
    """The job's latest round (0: never retried; see drivemr.rounds)."""
    rounds: tuple[dict[str, Any], ...] = ()

    def to_json(self, *, with_tasks: bool = True) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "job": self.job,
            "name": self.name,
            "created": self.created,
            "state": self.state,
            "counts": self.counts,
            "reduce": asdict(self.reduce) if self.reduce else None,
            "rejected_by": self.rejected_by,
            "round": self.round,
            "rounds": list(self.rounds),
        }
        if with_tasks:
            doc["tasks"] = [asdict(t) for t in self.tasks]
        return doc

    @property
    def failed_tasks(self) -> list[str]:
        return [t.task for t in self.tasks if t.state == "failed"]


def _task_state(job: Job, view: JobView, task_id: str, alive: Any) -> TaskState:
    return dataclasses.replace(_state_of(job, view, task_id, alive), round=job.task(task_id).round)


def _state_of(job: Job, view: JobView, task_id: str, alive: Any) -> TaskState:
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
) -> JobStatus:
    root_entries = store.list(store.root_id) if root is None else root
    beats = heartbeats(root_entries)
    now = max([time.time(), *(b.file.modified for b in beats.values())])
    view = load_view(store, job)

    def alive(claim: Any) -> bool:
        return not claim_is_dead(claim, beats, now, lease)

    tasks = [_task_state(job, view, t.id, alive) for t in job.tasks]
    counts = {s: 0 for s in STATES}
    for t in tasks:
        counts[t.state] += 1
    reduce_state = _task_state(job, view, REDUCE, alive) if job.reduce_task else None
    if view.cancelled:
        state = "cancelled"
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
        if entry.name.startswith("rejected."):
            rejected[entry.name[len("rejected.") :]] = _read_reason(store, entry)
    rounds = tuple(r.summary() for r in job.rounds)
    return JobStatus(
        job.id,
        job.name,
        job.created,
        state,
        counts,
        tasks,
        reduce_state,
        rejected,
        job.round,
        rounds,
    )


def _read_reason(store: Store, entry: FileInfo) -> str:
    import json

    try:
        doc = json.loads(store.read(entry.id, max_bytes=64 * 1024))
        return str(doc.get("reason", "?"))
    except (DrivemrError, ValueError, AttributeError):
        return "?"


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
