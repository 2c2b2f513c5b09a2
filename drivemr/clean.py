"""Removing finished jobs: the store keeps every job forever unless asked.

A shared drive holds at most about 400,000 items and every listing of the root grows with
it, so finished jobs (done, failed or cancelled) older than an age, or named ones, can be
removed. A job is removed only when nothing can still happen in it: its state is final
and no attempt in it (map or reduce) is running on a live worker. One delete request per
job (Drive and the folder store delete a folder with everything under it).

Workers that still hold a removed job in memory drop it when its folder is gone (see
:mod:`drivemr.worker.watch`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from drivemr.errors import DrivemrError, NotFound, StoreError
from drivemr.protocol import JOB_PREFIX, list_jobs, read_job
from drivemr.status import job_status
from drivemr.stores.base import FileInfo, Store

__all__ = ["FINAL_STATES", "Candidate", "Outcome", "find_candidates", "remove"]

FINAL_STATES = frozenset({"done", "failed", "cancelled"})


@dataclass(frozen=True)
class Candidate:
    """One job and whether it may go."""

    job: str
    folder: FileInfo
    state: str
    age: float
    """Seconds since the last file in the job changed (store times)."""
    files: int
    """Files and folders under the job folder (what a folder store removes)."""
    removable: bool
    why: str
    """Why it stays (empty when removable)."""


@dataclass(frozen=True)
class Outcome:
    job: str
    removed: bool
    message: str


def _last_change(store: Store, folder: FileInfo, subfolders: Iterable[str]) -> tuple[float, int]:
    """The latest modification time under a job folder (one level of sub-folders) and how
    many entries there are."""
    latest = max(folder.modified, folder.created)
    count = 0
    pending = [folder.id, *subfolders]
    seen: set[str] = set()
    while pending:
        fid = pending.pop()
        if fid in seen:
            continue
        seen.add(fid)
        for entry in store.list(fid):
            count += 1
            latest = max(latest, entry.modified, entry.created)
    return latest, count


def find_candidates(
    store: Store,
    *,
    older_than: float | None,
    named: Iterable[str] = (),
    lease: float = 300.0,
    now: Callable[[], float] = time.time,
) -> list[Candidate]:
    """The jobs that match (named ones, or every job when ``older_than`` is given), each
    with whether it may be removed. Raises :class:`DrivemrError` for a named job that does
    not exist."""
    root = store.list(store.root_id)
    folders = list_jobs(store, root)
    wanted = list(named)
    chosen: list[FileInfo] = []
    for name in wanted:
        exact = [f for f in folders if f.name == JOB_PREFIX + name]
        matches = exact or [f for f in folders if f.name.startswith(JOB_PREFIX + name)]
        if not matches:
            raise DrivemrError(f"no job {name!r} in {store.url}")
        if len(matches) > 1:
            raise DrivemrError(f"job id {name!r} is ambiguous")
        chosen.append(matches[0])
    if not wanted:
        chosen = folders
    out: list[Candidate] = []
    for folder in chosen:
        job_id = folder.name[len(JOB_PREFIX) :]
        try:
            job = read_job(store, folder)
            status = job_status(store, folder, job, root=root, lease=lease)
            latest, files = _last_change(store, folder, job.folders.values())
        except NotFound:
            continue  # removed by someone else meanwhile
        except DrivemrError as exc:
            out.append(Candidate(job_id, folder, "unreadable", 0.0, 0, False, f"{exc}"))
            continue
        age = max(0.0, now() - latest)
        running = [t.task for t in status.tasks if t.state == "running"]
        if status.reduce is not None and status.reduce.state == "running":
            running.append("reduce")
        why = ""
        if status.state not in FINAL_STATES:
            why = f"it is {status.state}"
        elif running:
            why = f"attempts are still running ({', '.join(running[:3])})"
        elif not wanted and older_than is not None and age < older_than:
            why = "newer than --older-than"
        out.append(Candidate(job_id, folder, status.state, age, files, not why, why))
    return out


def remove(store: Store, candidates: Iterable[Candidate]) -> list[Outcome]:
    """Delete every removable candidate's folder; one failure does not stop the others."""
    outcomes: list[Outcome] = []
    for c in candidates:
        if not c.removable:
            continue
        try:
            store.delete(c.folder.id)
        except StoreError as exc:
            outcomes.append(Outcome(c.job, False, str(exc)))
            continue
        outcomes.append(Outcome(c.job, True, f"removed ({c.state})"))
    return outcomes
