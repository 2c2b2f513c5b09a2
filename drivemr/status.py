"""What a job looks like from the store: counts, each task's state, the reduce.

Built from four by-parent listings (root, claims, results, job folder); claim and result
names carry most facts status needs. What a writer without a trusted key could fake is
opened first (see drivemr.trust): heartbeats (who is alive, by the lease each declared,
with store times never later than our own clock), cancel and finished markers, rejection
notes (rendered from a reason code, never from their text) and, for a task whose every
claim id is taken, its claims: a task held only by untrusted claims is *blocked*. An
attempt whose worker said it stopped, or went silent past its lease, shows as ``lost`` at
once (its time stops at the worker's last sign of life), not ``running`` until a reclaim.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from drivemr.errors import DrivemrError
from drivemr.protocol import (
    REDUCE,
    ClaimRef,
    Heartbeat,
    Job,
    JobView,
    ResultRef,
    Task,
    claim_is_dead,
    find_job,
    heartbeat_files,
    job_complete,
    job_succeeded,
    list_jobs,
    load_view,
    read_job,
)
from drivemr.results import ItemEntry, ResultReader, reader_for
from drivemr.safetext import safe
from drivemr.stores.base import FileInfo, Store
from drivemr.trust import (
    Trust,
    claim_worker,
    declared_lease,
    open_claim,
    open_heartbeat,
    open_note,
    render_note,
)

STATES = ("pending", "running", "done", "failed", "lost", "cancelled", "blocked")
"""A task's state: ``lost`` is an attempt whose worker stopped or went silent past the lease
(a new attempt will be claimed), ``cancelled`` an unfinished task of a cancelled job,
``blocked`` a task whose every claim id holds a file no trusted key sealed."""


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
    round: int = 0
    """The round of the job whose attempts these are (its latest; see drivemr.rounds)."""
    pack: str | None = None
    """For an item of a packed job: the task (pack) that holds it (docs/packing.md)."""


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
    """One per item: the map tasks of an unpacked job, each item of a packed one."""
    reduce: TaskState | None
    rejected_by: dict[str, str]
    round: int = 0
    """The job's latest round (0: never retried; see drivemr.rounds)."""
    rounds: tuple[dict[str, Any], ...] = ()
    """What each round re-ran (``Round.summary()``), oldest first."""
    packs: int = 0
    """How many tasks (packs) hold the items of a packed job; 0 when unpacked."""

    @property
    def unit(self) -> str:
        """What ``tasks`` and ``counts`` count, for messages: items when packed."""
        return "item" if self.packs else "task"

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
            "unit": self.unit,
            "packs": self.packs,
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
        _task, item = job.item(task_id)
    except KeyError:
        return None
    return item.input.name if item.input is not None else item.item


class _Liveness:
    """Judges unfinished claims: a claim that does not open runs nothing; an open one is
    alive, or lost (its worker stopped, or went silent past the lease it declared), with
    every store time clamped to our own clock."""

    def __init__(
        self, store: Store, trust: Trust, job: Job, root: list[FileInfo], lease: float
    ) -> None:
        self.store, self.trust, self.job, self.lease = store, trust, job, lease
        self.now = time.time()
        self.beats, self.leases, self.stopped = trusted_beats(store, trust, root, self.now, lease)

    def _clamped(self, claim: ClaimRef) -> ClaimRef:
        return replace(claim, file=replace(claim.file, modified=min(claim.file.modified, self.now)))

    def opened(self, claim: ClaimRef) -> ClaimRef | None:
        """The claim with its worker as its seal says, or None when it does not open."""
        sealed = open_claim(
            self.trust, self.store, self.job.id, claim.task, claim.gen, claim.worker, claim.file
        )
        return None if sealed is None else replace(claim, worker=claim_worker(sealed))

    def alive(self, claim: ClaimRef) -> bool:
        lease = self.leases.get(claim.worker, self.lease)
        return not claim_is_dead(
            self._clamped(claim), self.beats, self.now, lease, lambda hb: hb.worker in self.stopped
        )

    def last_sign(self, claim: ClaimRef) -> float:
        return last_sign_of_life(self._clamped(claim), self.beats, self.now)


def last_sign_of_life(claim: ClaimRef, beats: Mapping[str, Heartbeat], now: float) -> float:
    """When the worker of ``claim`` last showed it was alive (store clock): its heartbeat or
    the claim, whichever is newer. A lost attempt's time stops here, not at the reader's now."""
    beat = beats.get(claim.worker)
    seen = claim.file.modified if beat is None else max(beat.file.modified, claim.file.modified)
    return min(seen, now)


def _task_state(job: Job, view: JobView, task_id: str, live: _Liveness) -> TaskState:
    state = _state_of(job, view, task_id, live)
    return dataclasses.replace(state, round=job.task(task_id).round)


def _state_of(job: Job, view: JobView, task_id: str, live: _Liveness) -> TaskState:
    claims = view.claims.get(task_id, {})
    top = claims[max(claims)] if claims else None
    result = view.results.get(task_id)
    label = task_label(job, task_id)
    if result is not None:
        worker = result.worker or (
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
    opened = live.opened(top)
    if opened is None:  # a forged claim: nothing runs there
        state = "cancelled" if view.cancelled else "pending"
        return TaskState(task_id, state, len(claims), None, None, None, label)
    top = opened
    started = min(top.file.modified, live.now)
    if view.cancelled:
        # Workers kill a cancelled job's attempts at their next poll: never "running".
        return TaskState(task_id, "cancelled", len(claims), top.worker, None, None, label)
    if live.alive(top):
        secs = max(0.0, live.now - started)
        return TaskState(task_id, "running", len(claims), top.worker, None, secs, label)
    secs = max(0.0, live.last_sign(top) - started)
    return TaskState(task_id, "lost", len(claims), top.worker, None, secs, label)


def _pack_entries(
    store: Store, reader: ResultReader, job: Job, task: Task, result: ResultRef
) -> dict[str, ItemEntry]:
    """A pack's item entries from its sealed result (the reader caches what it opened)."""
    try:
        return {e.id: e for e in reader.manifest(store, job, task, result).items}
    except DrivemrError:
        return {}  # no longer opens: its items show as the pack's state


def _pack_states(
    store: Store, reader: ResultReader, job: Job, view: JobView, task: Task, whole: TaskState
) -> list[TaskState]:
    """Each item of a packed task. A done pack's items are done; a failed pack's sealed
    result says which items failed; otherwise every item shares the pack's state."""
    result = view.results.get(task.id)
    entries = (
        _pack_entries(store, reader, job, task, result)
        if result is not None and result.state != "done"
        else {}
    )
    out = []
    for item in task.items:
        label = item.input.name if item.input is not None else item.item
        e = entries.get(item.id)
        if e is not None:
            out.append(
                TaskState(
                    item.id,
                    e.state,
                    max(1, e.attempts),
                    whole.worker,
                    e.exit_code,
                    e.duration,
                    label,
                    round=whole.round,
                    pack=task.id,
                )
            )
            continue
        duration = whole.duration if whole.state in ("running", "lost") else None
        code = (
            whole.exit_code if whole.state == "failed" else (0 if whole.state == "done" else None)
        )
        out.append(
            TaskState(
                item.id,
                whole.state,
                whole.attempts,
                whole.worker,
                code,
                duration,
                label,
                round=whole.round,
                pack=task.id,
            )
        )
    return out


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
    live = _Liveness(store, trust, job, root_entries, lease)
    reader = reader_for(trust)
    view = load_view(store, job, trust, reader=reader)
    tasks: list[TaskState] = []
    for t in job.tasks:
        whole = _blocked(store, trust, job, view, t.id) or _task_state(job, view, t.id, live)
        if t.packed:
            tasks += _pack_states(store, reader, job, view, t, whole)
        else:
            tasks.append(whole)
    counts = {s: 0 for s in STATES}
    for ts in tasks:
        counts[ts.state] += 1
    reduce_state = _task_state(job, view, REDUCE, live) if job.reduce_task else None
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
        or counts["lost"]
        or (reduce_state and reduce_state.state in ("running", "lost"))
    ):
        state = "running"
    else:
        state = "pending"
    rejected: dict[str, str] = {}
    for entry in store.list(job.folder):
        if entry.name.startswith("rejected.") and not entry.is_folder:
            if len(rejected) >= MAX_REJECTION_NOTES:
                break  # bounded: a flood of notes costs a fixed number of reads
            note = open_note(trust, store, job.id, entry)
            if note is not None:  # an untrusted note is reported once and not shown
                worker = note.body.get("worker")
                rejected[safe(worker if isinstance(worker, str) else "?", max_len=64)] = (
                    render_note(note)
                )
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
        len(job.tasks) if job.packed else 0,
    )


MAX_REJECTION_NOTES = 50
"""Rejection notes opened per job by ``status``: one per worker is expected."""


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


LIVE_READ_AGE = 86400.0
"""Heartbeats older than this are not read when looking for live workers (they are dead
under any sane lease), so the cost stays bounded by the workers of the last day."""


def live_workers(store: Store, *, lease: float = 300.0, trust: Trust | None = None) -> list[str]:
    """Workers whose sealed heartbeat opens, is fresh within the lease it declares (else
    ``lease``), store times clamped to our own clock, and that did not say they stopped."""
    now = time.time()
    root = store.list(store.root_id)
    recent = [f for f in root if not f.is_folder and now - min(f.modified, now) <= LIVE_READ_AGE]
    beats, leases, stopped = trusted_beats(store, trust or Trust.reader(), recent, now, lease)
    return sorted(
        worker
        for worker, beat in beats.items()
        if worker not in stopped and now - beat.file.modified <= leases.get(worker, lease)
    )


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
