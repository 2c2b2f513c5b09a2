"""Jobs whose job.json cannot be read, remembered so that none is ever taken as finished.

Why: a job this worker cannot read is invisible to the loop, and an invisible job looks
like no job at all; on a share that hides published files (issue 19) every worker logged
"every job is finished" and exited with the job pending. So an unreadable job is kept
here: reported once (which folder and file, what error), retried with a doubling backoff,
and counted by ``--exit-when-idle``, which waits for it for one lease (a submitter may
still be uploading) and then exits with :data:`EXIT_UNREADABLE`, naming it.

A folder without job.json yet is what a submit in progress looks like: it is reported
only once it stayed so for :attr:`UnreadableJobs.report_after` seconds. A job.json that is
listed but cannot be read is reported at the first failure.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from drivemr.errors import DrivemrError
from drivemr.protocol import JobNotPublished
from drivemr.stores.base import FileInfo
from drivemr.worker.config import Clock

log = logging.getLogger("drivemr.worker")

EXIT_UNREADABLE = 5
"""``drivemr worker --exit-when-idle``'s exit status when the only jobs left are unreadable."""

MAX_BACKOFF = 300.0


@dataclass(frozen=True)
class Unreadable:
    job_id: str
    folder: FileInfo
    error: str
    first: float
    """Monotonic time of the first failure."""
    tries: int
    due: float
    """Monotonic time of the next try."""
    reported: bool

    def line(self) -> str:
        return f"job {self.job_id} (folder {self.folder.name}, id {self.folder.id}): {self.error}"


class UnreadableJobs:
    """The unreadable jobs of one worker, by job id; loop thread only."""

    def __init__(self, clock: Clock, *, base: float, report_after: float) -> None:
        self.clock = clock
        self.base = max(0.05, base)
        self.report_after = report_after
        self.jobs: dict[str, Unreadable] = {}

    def __bool__(self) -> bool:
        return bool(self.jobs)

    def __len__(self) -> int:
        return len(self.jobs)

    def failed(self, job_id: str, folder: FileInfo, exc: DrivemrError) -> None:
        """Reading the job failed: remember it, schedule the next try, report it once."""
        now = self.clock.monotonic()
        old = self.jobs.get(job_id)
        error = str(exc) if isinstance(exc, JobNotPublished) else f"job.json: {exc}"
        if old is None:
            old = Unreadable(job_id, folder, error, now, 0, now, False)
        tries = old.tries + 1
        entry = replace(
            old,
            folder=folder,
            error=error,
            tries=tries,
            due=now + min(MAX_BACKOFF, self.base * 2 ** min(tries, 20)),
        )
        published = not isinstance(exc, JobNotPublished)
        if not entry.reported and (published or now - entry.first >= self.report_after):
            log.warning(
                "cannot read %s; retrying with backoff (this job is not finished until it "
                "can be read)",
                entry.line(),
            )
            entry = replace(entry, reported=True)
        self.jobs[job_id] = entry

    def succeeded(self, job_id: str) -> None:
        entry = self.jobs.pop(job_id, None)
        if entry is not None and entry.reported:
            log.info("job %s can be read again", job_id)

    def due(self, job_id: str) -> bool:
        entry = self.jobs.get(job_id)
        return entry is None or self.clock.monotonic() >= entry.due

    def next_due(self) -> float | None:
        return min((e.due for e in self.jobs.values()), default=None)

    def forget_gone(self, job_ids: set[str]) -> None:
        """Forget jobs whose folder left the store."""
        for job_id in [j for j in self.jobs if j not in job_ids]:
            del self.jobs[job_id]

    def stuck(self, patience: float) -> list[Unreadable]:
        """Every unreadable job, if each has been so for at least ``patience`` seconds;
        else an empty list (someone may still be uploading one)."""
        now = self.clock.monotonic()
        if self.jobs and all(now - e.first >= patience for e in self.jobs.values()):
            return sorted(self.jobs.values(), key=lambda e: e.job_id)
        return []
