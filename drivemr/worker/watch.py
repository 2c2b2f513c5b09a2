"""Watching for work: learn what changed in the store cheaply, relist only what we need.

Idle workers ask the change feed which folders changed and relist only those, with one
full relisting every reconcile interval to be safe. A busy worker does not relist claims
and results: while it has never-claimed tasks it simply tries them (a collision tells it
to look). This is also where jobs come and go: new ones are read, verified and adopted
(or rejected, once, with a note in their folder), replays of a job id are refused, and
cancel and finish markers end them.
"""

from __future__ import annotations

import collections
import json
import logging
from pathlib import Path

from drivemr.errors import AuthError, DrivemrError, NotFound, SecurityError
from drivemr.jobtrust import public_reason
from drivemr.protocol import (
    JobFormatError,
    heartbeats,
    job_complete,
    list_jobs,
    load_view,
    mark,
    read_job,
)
from drivemr.stores.base import FileInfo
from drivemr.worker.config import JobVerifier
from drivemr.worker.history import JobHistory
from drivemr.worker.liveness import Lease, OtherWorkers
from drivemr.worker.plan import plan_tasks
from drivemr.worker.state import ActiveJob, Assignment, Shared

log = logging.getLogger("drivemr.worker")


class SeenJobs:
    """The replay guard: each job id's first folder, kept in seen-jobs.tsv; loop thread only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._first: dict[str, str] = {}

    def load(self) -> None:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return
        for line in lines:
            job_id, _, folder_id = line.partition("\t")
            if job_id and folder_id:
                self._first.setdefault(job_id, folder_id)

    def is_replay(self, job_id: str, folder_id: str) -> bool:
        first = self._first.get(job_id)
        return first is not None and first != folder_id

    def remember(self, job_id: str, folder_id: str) -> None:
        if self._first.get(job_id) == folder_id:
            return
        self._first[job_id] = folder_id
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(f"{job_id}\t{folder_id}\n")
        except OSError as exc:
            log.debug("could not record seen job: %s", exc)


class Watcher:
    """Keeps our picture of the store current; loop thread only, views under shared.lock."""

    def __init__(
        self, shared: Shared, lease: Lease, others: OtherWorkers, verify: JobVerifier | None
    ) -> None:
        self.shared = shared
        self.lease = lease
        self.others = others
        self.verify = verify
        self.seen = SeenJobs(shared.workdir / "seen-jobs.tsv")
        self.history = JobHistory(shared.workdir)
        """Jobs this worker saw end (never run again) and refused (not re-read), on disk."""
        self.rejected: dict[str, str] = {}
        """Job id -> why this worker refused it."""
        self._rejected_folders: set[str] = set()
        self._cursor: str | None = None
        self._next_reconcile = 0.0
        self._next_poll = 0.0

    def look(self) -> None:
        """One round of maintenance: the change feed (or a full reconcile), the root,
        markers, others' deaths, relistings, and our own claims after a silence."""
        shared, dirty = self.shared, self.shared.dirty
        try:
            now = shared.clock.monotonic()
            if self._cursor is None or now >= self._next_reconcile:
                self._cursor = shared.store.changes_cursor()
                dirty.root = True
                dirty.reload.update(shared.jobs)
                self._next_reconcile = now + shared.config.reconcile_interval
                self._next_poll = now + shared.config.poll_interval
            elif now >= self._next_poll:
                self._next_poll = now + shared.config.poll_interval
                changes = shared.store.poll_changes(self._cursor)
                self._cursor = changes.cursor
                self._note_changes(changes.folders)
            if dirty.root:
                dirty.root = False
                self._refresh_root()
            for job_id in list(dirty.markers):
                dirty.markers.discard(job_id)
                self._check_markers(job_id)
            if self.others.notice_dead():
                dirty.reload.update(shared.jobs)
            with shared.lock:
                for job_id in list(dirty.stale):
                    active = shared.jobs.get(job_id)
                    if active is None or (
                        not active.pending and now - active.listed_at >= shared.config.poll_interval
                    ):
                        dirty.stale.discard(job_id)
                        dirty.reload.add(job_id)
            for job_id in list(dirty.reload):
                dirty.reload.discard(job_id)
                self._reload_job(job_id)
            if self.lease.at_risk:
                self.lease.check_lost_claims()
        except AuthError as exc:
            shared.fatal = exc
            log.error("%s", exc)
        except DrivemrError as exc:
            shared.stats["maintenance_errors"] += 1
            log.warning("store call failed during maintenance (will retry): %s", exc)
            dirty.root = True
            self._next_poll = shared.clock.monotonic() + shared.config.poll_interval

    def _note_changes(self, folders: frozenset[str] | None) -> None:
        shared, dirty = self.shared, self.shared.dirty
        if folders is None:
            dirty.root = True
            dirty.stale.update(shared.jobs)
            dirty.markers.update(shared.jobs)
            return
        if shared.store.root_id in folders:
            dirty.root = True
        with shared.lock:
            for job_id, active in shared.jobs.items():
                f = active.job.folders
                if f["job"] in folders:
                    dirty.markers.add(job_id)
                if f["claims"] in folders or f["results"] in folders:
                    dirty.stale.add(job_id)

    # -- jobs coming --

    def _refresh_root(self) -> None:
        shared = self.shared
        entries = shared.store.list(shared.store.root_id)
        self.others.beats = heartbeats(entries)
        for folder in list_jobs(shared.store, entries):  # oldest first
            job_id = folder.name[len("job-") :]
            if (
                job_id in shared.jobs
                or job_id in shared.done_jobs
                or folder.id in self._rejected_folders
            ):
                if job_id in shared.jobs and shared.jobs[job_id].job.folder != folder.id:
                    self._reject_replay(job_id, folder)
                continue
            if shared.config.jobs is not None and job_id not in shared.config.jobs:
                continue
            if self.seen.is_replay(job_id, folder.id):
                self._reject_replay(job_id, folder)
                continue
            if self.history.is_finished(job_id):
                shared.done_jobs.add(job_id)  # it ended here once: never run again (a wipe)
                continue
            if self.history.refused(folder.id, self._trust()) is not None:
                self._rejected_folders.add(folder.id)  # refused before a restart
                continue
            self._adopt_job(job_id, folder)

    def _trust(self) -> str:
        fingerprint = getattr(self.verify, "fingerprint", None)
        return fingerprint() if callable(fingerprint) else "-"

    def _reject_replay(self, job_id: str, folder: FileInfo) -> None:
        """A job id is used once: the same signed job posted again is a replay, never run."""
        if folder.id in self._rejected_folders:
            return
        reason = f"job {job_id} was already posted in another folder: a replayed copy is never run"
        self._rejected_folders.add(folder.id)
        log.error("job %s (folder %s) rejected: %s", job_id, folder.id, reason)
        self._record_rejection(folder, reason)

    def _adopt_job(self, job_id: str, folder: FileInfo) -> None:
        shared = self.shared
        try:
            job = read_job(shared.store, folder, precheck=getattr(self.verify, "precheck", None))
            if self.verify is not None:
                self.verify(job)
            if self.history.too_old(job.id, job.created):
                raise SecurityError(
                    f"job {job.id} is older than every job this worker remembers finishing;"
                    " it may be one it ran before, so it is not run again"
                )
        except NotFound:
            return  # job.json not published yet: the submitter is still uploading
        except (SecurityError, JobFormatError) as exc:
            self.rejected[job_id] = str(exc)
            self._rejected_folders.add(folder.id)
            log.error("job %s rejected: %s", job_id, exc)
            self.history.remember_refused(folder.id, self._trust(), str(exc))
            self._record_rejection(folder, str(exc))
            return
        self.seen.remember(job_id, folder.id)
        view = load_view(shared.store, job)
        if view.finished or view.cancelled:
            shared.done_jobs.add(job_id)
            self.history.remember_finished(job_id, job.created)
            return
        active = ActiveJob(job, view, collections.deque(), set())
        self.replan(active)
        with shared.lock:
            shared.jobs[job_id] = active
        log.info("job %s: %d task(s), %d done", job_id, len(job.tasks), view.map_results)

    def _record_rejection(self, folder: FileInfo, reason: str) -> None:
        """Leave one note in the job's folder so `drivemr status` can show the rejection."""
        shared = self.shared
        try:
            (fid,) = shared.store.mint_ids(1)
            reason = public_reason(reason)  # what happened, never a command to run
            note = json.dumps({"worker": shared.id, "reason": reason, "time": shared.clock.time()})
            shared.store.create(folder.id, f"rejected.{shared.id}", fid, note.encode())
        except DrivemrError as exc:
            log.debug("could not record rejection: %s", exc)

    # -- what the store says of a job --

    def _reload_job(self, job_id: str) -> None:
        shared = self.shared
        with shared.lock:
            active = shared.jobs.get(job_id)
        if active is None:
            return
        listed_at = shared.clock.monotonic()
        view = load_view(shared.store, active.job)
        with shared.lock:
            # Claims and results are never removed: keep what we learnt while listing.
            for gens in active.view.claims.values():
                for ref in gens.values():
                    view.claims.setdefault(ref.task, {}).setdefault(ref.gen, ref)
            for tid, result in active.view.results.items():
                view.results.setdefault(tid, result)
            active.view = view
            active.listed_at = listed_at
            self.replan(active)
            complete = job_complete(active.job, view)
        if view.cancelled:
            self._cancel(active)
        self._abandon_superseded(active)
        if complete:
            self._finish(active)

    def replan(self, active: ActiveJob) -> None:
        """Plan the job afresh from its view (see plan.plan_tasks)."""
        shared = self.shared
        job_id = active.job.id
        busy = {tid for jid, tid in list(shared.running) if jid == job_id}
        busy.update(active.retries)
        plan = plan_tasks(
            active.job,
            active.view,
            me=shared.id,
            busy=busy,
            given_up=active.given_up,
            frontier=active.frontier,
            dead_workers=self.others.dead,
            run_reduce=shared.config.run_reduce,
        )
        active.pending = collections.deque(plan.pending)
        active.elsewhere = set(plan.elsewhere)
        active.urgent = set(plan.urgent)
        active.replanned = True

    def _check_markers(self, job_id: str) -> None:
        with self.shared.lock:
            active = self.shared.jobs.get(job_id)
        if active is None:
            return
        names = {info.id for info in self.shared.store.list(active.job.folder)}
        if active.job.markers.get("cancel") in names:
            active.view.cancelled = True
            self._cancel(active)

    def _abandon_superseded(self, active: ActiveJob) -> None:
        """Our attempts of the job that another worker took over, or whose task has a result."""
        job_id, view = active.job.id, active.view

        def superseded(a: Assignment) -> bool:
            top = view.top_claim(a.task.id)
            newer = top is not None and top.gen > a.attempt
            return a.job.id == job_id and (newer or a.task.id in view.results)

        self.shared.abandon("another worker took over this task", superseded)

    # -- jobs going --

    def _cancel(self, active: ActiveJob) -> None:
        log.info("job %s cancelled: stopping its attempts", active.job.id)
        shared = self.shared
        shared.abandon("job cancelled", lambda a: a.job.id == active.job.id)
        with shared.lock:
            shared.jobs.pop(active.job.id, None)
            shared.done_jobs.add(active.job.id)
        self.history.remember_finished(active.job.id, active.job.created)

    def _finish(self, active: ActiveJob) -> None:
        shared = self.shared
        with shared.lock:
            if any(jid == active.job.id for jid, _ in shared.running):
                return
            shared.jobs.pop(active.job.id, None)
            shared.done_jobs.add(active.job.id)
        self.history.remember_finished(active.job.id, active.job.created)
        if active.view.finished:
            return  # another worker marked it (a second create would cost a write for a 409)
        try:
            if mark(shared.store, active.job, "finished"):
                log.info("job %s finished", active.job.id)
        except DrivemrError as exc:
            log.warning("could not mark job %s finished: %s", active.job.id, exc)
