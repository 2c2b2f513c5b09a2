"""How jobs leave a worker: cancelled, finished, or gone from the store.

Kept apart from watching (:mod:`drivemr.worker.watch`) because ending a job is its own
bookkeeping: its attempts are stopped, it joins the jobs this worker never runs again (on
disk, :mod:`drivemr.worker.history`), and a finished job's folder is remembered, since a
change there may be a new round (:mod:`drivemr.rounds`), which re-opens the job.
"""

from __future__ import annotations

import logging

from drivemr.errors import DrivemrError, NotFound
from drivemr.protocol import Job, mark
from drivemr.worker.history import JobHistory
from drivemr.worker.state import ActiveJob, Shared

log = logging.getLogger("drivemr.worker")


def signed_time(job: Job) -> float:
    """When the job's latest signed document was made: job.json, or its latest round."""
    return job.rounds[-1].created if job.rounds else job.created


class JobEnds:
    """Ends jobs and remembers finished jobs' folders; loop thread only, jobs under shared.lock."""

    def __init__(self, shared: Shared, history: JobHistory) -> None:
        self.shared = shared
        self.history = history
        self.done_folders: dict[str, tuple[str, float]] = {}
        """Folder id -> (job id, the folder's modified time when seen finished): a change
        there may be a new round (drivemr.rounds), which re-opens the job."""

    def seen_done(self, job_id: str, folder_id: str, modified: float) -> None:
        """The job in this folder was found finished (at the folder's ``modified`` time)."""
        self.done_folders[folder_id] = (job_id, modified)

    def reopen(self, job_id: str) -> None:
        """A finished job's folder changed: read it again (a new round makes it active)."""
        shared = self.shared
        self.done_folders = {f: d for f, d in self.done_folders.items() if d[0] != job_id}
        with shared.lock:
            shared.done_jobs.discard(job_id)
        shared.dirty.root = True

    def cancel(self, active: ActiveJob) -> None:
        log.info("job %s cancelled: stopping its attempts", active.job.id)
        shared = self.shared
        shared.abandon("job cancelled", lambda a: a.job.id == active.job.id)
        with shared.lock:
            shared.jobs.pop(active.job.id, None)
            shared.done_jobs.add(active.job.id)
        self.history.remember_finished(active.job.id, signed_time(active.job), active.job.round)

    def forget_if_gone(self, active: ActiveJob) -> bool:
        """A job whose folder was removed from the store (``drivemr clean``, or by hand):
        stop its attempts and forget it. True when it is gone (asked by id, so a listing
        that merely missed it changes nothing)."""
        shared = self.shared
        try:
            shared.store.get(active.job.folder)
            return False
        except NotFound:
            pass
        log.info("job %s: its folder is gone from the store; forgetting the job", active.job.id)
        shared.abandon("the job was removed from the store", lambda a: a.job.id == active.job.id)
        with shared.lock:
            shared.jobs.pop(active.job.id, None)
            shared.done_jobs.add(active.job.id)
        return True

    def finish(self, active: ActiveJob) -> None:
        shared = self.shared
        with shared.lock:
            if any(jid == active.job.id for jid, _ in shared.running):
                return
            shared.jobs.pop(active.job.id, None)
            shared.done_jobs.add(active.job.id)
        self.history.remember_finished(active.job.id, signed_time(active.job), active.job.round)
        # Looked at again at the next root listing (and whenever its folder changes): a
        # retry posts a new round there, which re-opens the job.
        self.seen_done(active.job.id, active.job.folder, float("-inf"))
        if active.view.finished:
            return  # another worker marked it (a second create would cost a write for a 409)
        try:
            if mark(shared.store, active.job, "finished", shared.trust, by=shared.id):
                log.info("job %s finished", active.job.id)
        except DrivemrError as exc:
            log.warning("could not mark job %s finished: %s", active.job.id, exc)
