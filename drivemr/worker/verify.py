"""Which worker opens a job's results, and when: one worker per job, not every worker.

A worker plans from hints: a file listed at a task's minted result slot keeps the task out
of its claim plan and its liveness takeovers without being opened (:class:`JobView.hints`),
since opening every result another worker commits costs each worker a read per task. A
hint never counts as done: the reduce barrier and the job's completion are decided on
opened results only. They are opened when the job's end depends on them, i.e. once every
map task is settled (or given up) and some only by hints, and then by one worker: the one that created
the newest file at a result slot (every worker lists the same files, so all agree on who
that is, and a worker that sees no other live worker is its own verifier; with a reduce, that is the reduce's committer, which opened every map result
before the reduce was due for it). It opens every hint (a planted file that does not open
makes its task claimable again) and, on valid results only, ends the job with the sealed
``finished`` marker; the others end it on that trusted marker. If the job has not ended a
lease after a worker saw it settled (its verifier died, or the newest file is a planted
one nobody created), that worker opens the hints itself. A worker also opens the hints of
the tasks it runs itself before abandoning its attempt for another worker's result.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from drivemr.protocol import Job, JobView, verify_hints
from drivemr.worker.state import ActiveJob, Shared


def awaiting_verification(job: Job, view: JobView, given_up: Collection[str] = ()) -> bool:
    """Every map task is settled (or given up here: blocked by planted claims) and some
    result (the reduce's included) is only a hint."""
    return bool(view.hints) and all(view.settled(t.id) or t.id in given_up for t in job.tasks)


def elected(view: JobView, committed: Collection[str]) -> bool:
    """Whether this worker (which created the result files ``committed``) created the
    newest of the files that decide a task (each task's first listed result slot) by
    (modified time, id). Not while
    the view holds a result the listing did not show (committed here since): every
    worker must judge the same files, so the next listing decides."""
    listed = {info.id for entries in view.found.values() for _slot, info in entries}
    if not listed or any(r.file.id not in listed for r in view.results.values()):
        return False
    # Only the file that decides each task (its first listed slot) takes part: a planted
    # file with a far-future time at a later slot must not keep everyone unelected.
    files = [min(entries, key=lambda e: e[0])[1] for entries in view.found.values() if entries]
    return max(files, key=lambda f: (f.modified, f.id)).id in committed


def verify_due(shared: Shared, now: float) -> list[str]:
    """The jobs whose verifier's lease ran out (monotonic ``now``): to relist and verify."""
    with shared.lock:
        return [
            job_id
            for job_id, active in shared.jobs.items()
            if active.verify_at is not None and now >= active.verify_at
        ]


def open_hints(
    shared: Shared, active: ActiveJob, view: JobView, *, alone: Callable[[], bool]
) -> None:
    """Open the hints of ``view`` (a fresh view of ``active``'s job) that matter now: all
    of them when the job's end depends on them and this worker is its verifier, sees no
    other live worker (``alone``) or saw the job settled a lease ago; else those of tasks
    this worker runs (only a valid result stops an attempt: see _abandon_superseded).
    Store reads: the loop thread, before the shared lock is taken."""
    job = active.job
    if view.finished or view.cancelled:
        return  # it ends on the trusted marker: nothing to open
    with shared.lock:
        committed = set(active.committed)
        running = {tid for jid, tid in shared.running if jid == job.id}
        given_up = set(active.given_up)
    mine = {tid: view.hints[tid] for tid in running if tid in view.hints}
    if awaiting_verification(job, view, given_up):
        now = shared.clock.monotonic()
        if active.verify_at is None:
            active.verify_at = now + shared.config.lease
        if elected(view, committed) or alone() or now >= active.verify_at:
            verify_hints(shared.store, job, view, shared.results)
            active.verify_at = None
            return
    else:
        active.verify_at = None
    if mine:
        verify_hints(shared.store, job, view, shared.results, mine)
