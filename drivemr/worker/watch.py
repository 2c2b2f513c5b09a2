"""Watching for work: learn what changed in the store cheaply, relist only what we need.

Idle workers ask the change feed which folders changed and relist only those, with one
full relisting every reconcile interval to be safe. A busy worker does not relist claims
and results: while it has never-claimed tasks it simply tries them (a collision tells it
to look). This is also where jobs come and go: new ones are read, verified and adopted
(or rejected, once, with a note in their folder), replays of a job id are refused, and
cancel and finish markers end them (the ending itself: :mod:`drivemr.worker.ends`).
"""

from __future__ import annotations

import collections
import logging
from dataclasses import replace
from pathlib import Path

from drivemr.errors import AuthError, DrivemrError, NotFound, SecurityError
from drivemr.protocol import (
    ROUND_PREFIX,
    JobFormatError,
    JobView,
    heartbeat_files,
    job_complete,
    list_jobs,
    load_view,
    open_marker,
    read_job,
)
from drivemr.rounds import round_names
from drivemr.stores.base import FileInfo
from drivemr.trust import claim_worker, note_body, open_claim
from drivemr.worker.config import JobVerifier
from drivemr.worker.ends import JobEnds, signed_time
from drivemr.worker.history import JobHistory
from drivemr.worker.liveness import Lease, OtherWorkers
from drivemr.worker.plan import plan_tasks
from drivemr.worker.state import ActiveJob, Assignment, Shared
from drivemr.worker.unreadable import UnreadableJobs
from drivemr.worker.verify import open_hints, verify_due

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
        self._round_files: dict[str, set[str]] = {}
        """Job id -> ids of the round files already looked at while it was active."""
        self.ends = JobEnds(shared, self.history)
        """Cancels, finishes and forgets jobs; remembers finished ones' folders."""
        self.unreadable = UnreadableJobs(
            shared.clock,
            base=shared.config.poll_interval,
            report_after=min(30.0, shared.config.lease),
        )
        """Jobs whose job.json could not be read: retried, never taken as finished."""
        self._cursor: str | None = None
        self._next_reconcile = 0.0
        self._next_poll = 0.0
        self._trust_generation = shared.trust.generation

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
            shared.trust.keys()  # re-read the trusted list if it changed (a stat per second)
            if shared.trust.generation != self._trust_generation:
                # `drivemr keys trust` (or revoke) on this PC: what did not open may now.
                self._trust_generation = shared.trust.generation
                dirty.root = True
                dirty.reload.update(shared.jobs)
            due = self.unreadable.next_due()
            if due is not None and now >= due:
                dirty.root = True  # time to try the unreadable jobs again
            if dirty.root:
                dirty.root = False
                self._refresh_root()
            for job_id in list(dirty.markers):
                dirty.markers.discard(job_id)
                self._check_markers(job_id)
            if self.others.notice_dead():
                dirty.reload.update(shared.jobs)
            dirty.reload.update(verify_due(shared, now))
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
            shared.fail(exc)
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
        for folder_id in folders & self.ends.done_folders.keys():
            self.ends.reopen(self.ends.done_folders[folder_id][0])
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
        self.others.listed(heartbeat_files(entries))
        self.others.forget_gone()
        folders = list_jobs(shared.store, entries)
        self._forget_gone(folders)
        present = {f.id for f in folders}
        with shared.lock:
            missing = [a for a in shared.jobs.values() if a.job.folder not in present]
        for active in missing:
            self.ends.forget_if_gone(active)
        for folder in folders:  # oldest first
            job_id = folder.name[len("job-") :]
            done = self.ends.done_folders.get(folder.id)
            if done is not None and done[0] == job_id and folder.modified > done[1]:
                self.ends.reopen(job_id)  # its folder changed since: maybe a new round
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
            if not self.unreadable.due(job_id):
                continue
            if self.seen.is_replay(job_id, folder.id):
                self._reject_replay(job_id, folder)
                continue
            if self.history.refused(folder.id, self._trust()) is not None:
                self._rejected_folders.add(folder.id)  # refused before a restart
                continue
            self._adopt_job(job_id, folder)

    def _forget_gone(self, folders: list[FileInfo]) -> None:
        """Forget finished and rejected jobs whose folder left the store: what a worker
        remembers is bounded by what the store holds, not by how many jobs it served."""
        shared = self.shared
        ids = {f.name[len("job-") :] for f in folders}
        with shared.lock:
            shared.done_jobs &= ids
        self._rejected_folders &= {f.id for f in folders}
        for job_id in [j for j in self.rejected if j not in ids]:
            del self.rejected[job_id]
        self.unreadable.forget_gone(ids)

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
        self._record_rejection(job_id, folder, SecurityError(reason))

    def _adopt_job(self, job_id: str, folder: FileInfo) -> None:
        shared = self.shared
        doc: object = None
        try:
            job = read_job(
                shared.store,
                folder,
                trusted=shared.trust,
                precheck=getattr(self.verify, "precheck", None),
            )
            doc = job.doc
            if self.verify is not None:
                self.verify(job)
            if self.history.too_old(job.id, signed_time(job), job.round):
                raise SecurityError(
                    f"job {job.id} is older than every job this worker remembers finishing;"
                    " it may be one it ran before, so it is not run again"
                )
        except (SecurityError, JobFormatError) as exc:
            self.unreadable.succeeded(job_id)
            self.rejected[job_id] = str(exc)
            self._rejected_folders.add(folder.id)
            log.error("job %s rejected: %s", job_id, exc)
            self.history.remember_refused(folder.id, self._trust(), str(exc))
            self._record_rejection(job_id, folder, exc, doc)
            return
        except AuthError:
            raise
        except DrivemrError as exc:  # not published yet, or unreadable: never "finished"
            self.unreadable.failed(job_id, folder, exc)
            return
        self.unreadable.succeeded(job_id)
        self.seen.remember(job_id, folder.id)
        if self.history.is_finished(job_id, job.round):
            # It ended here once at this round: never run again, whatever the store says
            # (a wipe of its claims, results and marker). A newer signed round re-opens it.
            shared.done_jobs.add(job_id)
            self.ends.seen_done(job_id, folder.id, folder.modified)
            return
        view = load_view(shared.store, job, shared.trust, reader=shared.results, verify=False)
        if view.finished or view.cancelled:
            shared.done_jobs.add(job_id)
            if not view.cancelled:
                self.ends.seen_done(job_id, folder.id, folder.modified)
            self.history.remember_finished(job_id, signed_time(job), job.round)
            return
        active = ActiveJob(job, view, collections.deque(), set())
        open_hints(shared, active, view, alone=self.others.alone)
        self._learn_claimers(active, view)
        self.replan(active)
        with shared.lock:
            shared.jobs[job_id] = active
        rnd = f" (round {job.round})" if job.round else ""
        log.info("job %s%s: %d task(s), %d done", job_id, rnd, len(job.tasks), view.map_results)

    def _record_rejection(
        self, job_id: str, folder: FileInfo, exc: BaseException, job_doc: object = None
    ) -> None:
        """Leave one sealed note in the job's folder so `drivemr status` can show the
        rejection: a reason code, not text (status renders the code; see trust.NOTE_CODES)."""
        shared = self.shared
        try:
            (fid,) = shared.store.mint_ids(1)
            note = shared.trust.seal("note", note_body(job_id, shared.id, exc, job_doc))
            shared.store.create(folder.id, f"rejected.{shared.id}", fid, note)
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
        try:
            view = load_view(
                shared.store, active.job, shared.trust, reader=shared.results, verify=False
            )
        except NotFound:
            if self.ends.forget_if_gone(active):
                return
            raise
        with shared.lock:
            view.learn(active.view)  # our own results: no hints, no reads
        open_hints(shared, active, view, alone=self.others.alone)
        self._learn_claimers(active, view)
        with shared.lock:
            view.learn(active.view)  # and what we learnt while listing
            active.view = view
            active.listed_at = listed_at
            self.replan(active)
            complete = job_complete(active.job, view)
        if view.cancelled:
            self.ends.cancel(active)
        self._abandon_superseded(active)
        if complete or view.finished:
            self.ends.finish(active)  # on valid results, or a trusted finished marker

    def replan(self, active: ActiveJob) -> None:
        """Plan the job afresh from its view (see plan.plan_tasks)."""
        shared = self.shared
        job_id = active.job.id
        if active.trust_generation != shared.trust.generation:
            # The trusted list changed: files we did not believe may open now.
            active.trust_generation = shared.trust.generation
            active.burned.clear()
            active.given_up -= active.blocked
            active.blocked.clear()
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

    def _learn_claimers(self, active: ActiveJob, view: JobView) -> None:
        """Claims whose names say no worker (jobs of format 3) are opened where the plan
        needs their worker to put them first: at the job's first planning, every unfinished
        task's latest claim (our own past life's go first of all), and later those made
        before a dead worker's last heartbeat (plus a lease): its claims, which go first.
        Claims of live workers made since are not read (their worker is read when judged).
        Store reads: called before the shared lock is taken."""
        shared = self.shared
        if active.job.named:
            return
        cutoff = float("inf")
        if active.claimers_learned:
            dead = [b.file.modified for b in self.others.files if b.worker in self.others.dead]
            if not dead:
                return
            cutoff = max(dead) + shared.config.lease
        active.claimers_learned = True
        for tid, gens in view.claims.items():
            top = gens[max(gens)]
            if top.worker or view.settled(tid) or top.file.modified > cutoff:
                continue
            sealed = open_claim(
                shared.trust, shared.store, active.job.id, tid, top.gen, "", top.file
            )
            if sealed is not None:
                gens[top.gen] = replace(top, worker=claim_worker(sealed))

    def _check_markers(self, job_id: str) -> None:
        with self.shared.lock:
            active = self.shared.jobs.get(job_id)
        if active is None:
            return
        shared = self.shared
        cancel = active.job.markers.get("cancel")
        finished = active.job.markers.get("finished")
        try:
            entries = shared.store.list(active.job.folder)
        except NotFound:
            if self.ends.forget_if_gone(active):
                return
            raise
        for info in entries:
            if info.id == cancel and open_marker(shared.trust, shared.store, active.job, info):
                active.view.cancelled = True
                self.ends.cancel(active)
                return
            if info.id == finished and open_marker(shared.trust, shared.store, active.job, info):
                active.view.finished = True  # its writer opened every result
                self.ends.finish(active)
                return
        if round_names(entries) > active.job.round:
            self._new_round(active, entries)

    def _abandon_superseded(self, active: ActiveJob) -> None:
        """Our attempts of the job that another worker took over (a trusted later claim: a
        forged one takes nothing over), or whose task has a result."""
        shared, job_id, view = self.shared, active.job.id, active.view
        with shared.lock:
            mine = [(a.task.id, a.attempt) for a in shared.running.values() if a.job.id == job_id]
        doomed: set[tuple[str, int]] = set()
        for tid, attempt in mine:
            if tid in view.results:
                doomed.add((tid, attempt))
                continue
            for gen, ref in sorted(view.claims.get(tid, {}).items()):
                if gen > attempt and open_claim(
                    shared.trust, shared.store, job_id, tid, gen, ref.worker, ref.file
                ):
                    doomed.add((tid, attempt))
                    break

        def superseded(a: Assignment) -> bool:
            return a.job.id == job_id and (a.task.id, a.attempt) in doomed

        if doomed:
            shared.abandon("another worker took over this task", superseded)

    def _new_round(self, active: ActiveJob, entries: list[FileInfo]) -> None:
        """Round files appeared in an active job's folder: if one verifies, the attempts of
        the round we run are not committed and the job is taken up afresh. Each file is
        looked at once, so junk named like a round costs one read, never our attempts."""
        shared, job_id = self.shared, active.job.id
        seen = self._round_files.setdefault(job_id, set())
        fresh = {e.id for e in entries if e.name.startswith(ROUND_PREFIX)} - seen
        if not fresh:
            return
        seen.update(fresh)
        folder = shared.store.get(active.job.folder)
        job = read_job(
            shared.store,
            folder,
            trusted=shared.trust,
            precheck=getattr(self.verify, "precheck", None),
        )
        if job.round <= active.job.round:
            return
        log.info("job %s: round %d posted; taking the job up again", job_id, job.round)
        shared.abandon("a new round of the job", lambda a: a.job.id == job_id)
        with shared.lock:
            shared.jobs.pop(job_id, None)
        shared.dirty.root = True
