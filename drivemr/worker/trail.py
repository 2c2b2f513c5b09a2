"""Trailing results: a slot's finished attempt commits while the slot runs its next one.

On Google Drive every write waits for the account's quota (about 3 a second, shared by
every PC), so a task boundary costs a slot two paced writes, its result and its next claim:
a second or two each, and with items of even durations every slot reaches its boundary at
the same moment. So a slot that finishes an attempt *claims its next task first* (the
claim is what unblocks work) and hands the finished attempt's result to this trail, which
commits it in the background while the slot already runs its next attempt.

What stays as before (docs/guarantees.md):

* the commit is the same one (:meth:`Committer.commit`'s checks, lease re-check included,
  are made when the trail makes it), so only one attempt commits a task;
* until its result is committed the attempt stays in ``Shared.running`` (our heartbeat
  names it and our claim stays alive: no one takes the task over), marked in
  ``Shared.trailing`` so it holds no slot;
* a cancelled or killed attempt (``abandon``) commits nothing; a graceful stop drains the
  trail before the last heartbeat (the loop waits for ``running`` to empty);
* bounded: a slot waits for its previous result to land before it claims again, so it
  never has more than one result uncommitted, and a crash loses at most that result and
  the attempt that was running (a second or two after a boundary, the same work a crash
  during a commit loses without a trail).
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable

from drivemr.errors import AuthError
from drivemr.worker.commit import Committer
from drivemr.worker.state import ActiveJob, Assignment, Shared

log = logging.getLogger("drivemr.worker")


class Trail:
    """Commits handed over by slots, on up to one thread per slot."""

    def __init__(self, shared: Shared, committer: Committer, slots: int) -> None:
        """``committer``: a plain (non-holding) one, for a commit that raised."""
        self.shared = shared
        self.committer = committer
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, slots), thread_name_prefix="drivemr-commit"
        )

    def hand(
        self, a: Assignment, active: ActiveJob, held: Callable[[], None]
    ) -> concurrent.futures.Future[None]:
        """Commit ``held`` (``a``'s result) in the background; ``a`` is in ``running``
        and ``trailing`` until then."""
        return self._pool.submit(self.commit, a, active, held)

    def commit(self, a: Assignment, active: ActiveJob, held: Callable[[], None]) -> None:
        """Make one held commit, then let ``a`` go. Never raises: as a slot does for an
        attempt, a commit that fails inside the worker is handled as the attempt's failure."""
        shared = self.shared
        try:
            held()
        except AuthError as exc:
            shared.fail(exc)
            log.error("%s", exc)
        except Exception as exc:
            log.exception("%s/%s: commit failed inside the worker: %s", a.job.id, a.task.id, exc)
            self.committer.after_failure(a, active, None, f"worker error: {exc}")
        finally:
            release(shared, a)
            shared.wake.set()  # the loop may be waiting for this (a drain, exit when idle)

    def close(self) -> None:
        """After the drain: nothing is left to commit."""
        self._pool.shutdown(wait=True)


def release(shared: Shared, a: Assignment) -> None:
    """``a`` ended and its result (if any) is committed: it runs here no more."""
    key = (a.job.id, a.task.id)
    with shared.lock:
        shared.running.pop(key, None)
        shared.trailing.discard(key)
    if a.abandon and not shared.stopping.is_set():
        shared.dirty.reload.add(a.job.id)  # replan: a lapsed claim of ours goes at once
