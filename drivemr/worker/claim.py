"""Claim: choose this worker's next attempt and create its claim, once.

To run task *t* for the *g*-th time a worker creates ``claims/<t>.g<g>.<worker>`` with
the minted id ``claim_ids[t][g]``; exactly one worker succeeds. The order is: retries
that are due, then the claims of dead workers (our own past life's first), then
never-claimed tasks along our run, then dead claims found elsewhere. A task whose every
attempt died is handed to the commit as failed. The loop fills free slots; a slot that
just finished claims its own next task when the plain case allows (see
:meth:`Claimer.claim_for_slot`), which saves two thread switches per short task.

Next: a claimed attempt runs in a slot (slot.py), then commits (commit.py).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import platform
import queue
import secrets
import threading
from dataclasses import dataclass
from typing import Any

from drivemr.errors import AlreadyExists, AuthError, DrivemrError, NotFound, UnusableId
from drivemr.protocol import (
    MAX_HEARTBEAT_BYTES,
    REDUCE,
    ClaimRef,
    Task,
    claim_name,
    parse_claim_name,
    parse_json,
)
from drivemr.worker.commit import Committer
from drivemr.worker.liveness import Lease, OtherWorkers
from drivemr.worker.plan import due_retry, next_attempt, next_pending, takeover_order
from drivemr.worker.state import ActiveJob, Assignment, Retry, Shared

log = logging.getLogger("drivemr.worker")

Claimed = tuple[Assignment, ActiveJob]


@dataclass(frozen=True)
class Candidate:
    """An attempt to claim; ``attempt`` None: the task has no attempt left (every
    worker that ran it died), so it is to be committed as failed instead."""

    active: ActiveJob
    task: Task
    attempt: int | None
    dead: ClaimRef | None = None
    """The dead claim this candidate takes over, if any."""


class Claimer:
    """Chooses and makes claims; owns ``claiming``, held by the loop or one slot meanwhile."""

    def __init__(
        self,
        shared: Shared,
        lease: Lease,
        others: OtherWorkers,
        committer: Committer,
        idle: Any = None,
    ) -> None:
        self.shared = shared
        self.lease = lease
        self.others = others
        self.committer = committer
        self.idle = idle
        """Has ``busy()``: True while the PC's owner uses it (see drivemr.idle)."""
        self.paused = False
        self.claiming = threading.Lock()
        self._host = platform.node()
        self._pid = os.getpid()
        # claim nonces: unique per worker life, then a counter
        self._nonce_prefix = f"{secrets.token_hex(8)}-"
        self._nonces = itertools.count()

    # -- who claims --

    def fill_slots(self, slots: queue.SimpleQueue[Claimed | None]) -> None:
        """The loop's turn (holding ``claiming``): claim until every slot is busy."""
        shared = self.shared
        if shared.stopping.is_set() or shared.fatal is not None:
            return
        free = len(shared.running) < shared.config.slots
        if self.idle is not None and free and self._owner_busy():
            return
        while len(shared.running) < shared.config.slots:
            candidate = self.next_candidate()
            if candidate is None:
                return
            if candidate.attempt is None:
                self._commit_lost(candidate)
                continue
            claimed = self.claim(candidate)
            if claimed is not None:
                slots.put(claimed)
            elif shared.fatal is not None or candidate.task.id in candidate.active.retries:
                return

    def claim_for_slot(self) -> Claimed | None:
        """A slot that just finished claims its next task itself, without waking the loop.

        Only the plain case: a job with never-claimed tasks planned and nothing for the
        loop to do first (a relisting, the root, a pause). Anything else is the loop's."""
        shared = self.shared
        if (
            shared.stopping.is_set()
            or shared.fatal is not None
            or self.idle is not None
            or shared.dirty.reload
            or shared.dirty.root
            or shared.dirty.markers
            or not self.claiming.acquire(blocking=False)  # the loop is at it: let it fill us
        ):
            return None
        try:
            if len(shared.running) >= shared.config.slots:
                return None
            candidate = self.next_candidate()
            while candidate is not None and candidate.attempt is None:
                self._commit_lost(candidate)
                candidate = self.next_candidate()
            claimed = None if candidate is None else self.claim(candidate)
            if claimed is not None:
                shared.stats["slot_claims"] += 1
            return claimed
        finally:
            self.claiming.release()

    def _owner_busy(self) -> bool:
        """--when-idle: pause claiming while the owner uses the PC (running tasks go on)."""
        busy = bool(self.idle.busy())
        if busy != self.paused:
            self.paused = busy
            what = "owner busy: not claiming" if busy else "PC idle again: claiming"
            log.info("%s (%s)", what, self.idle.describe())
            # Tell `drivemr workers` now, but never spend more than one write per 5 s on it.
            if self.lease.silent_for() >= 5.0:
                self.lease.beat()
        return busy

    # -- what to claim --

    def _commit_lost(self, candidate: Candidate) -> None:
        """Every attempt of the task died with its worker: its failure is its result."""
        assert candidate.dead is not None
        self.committer.commit_lost(candidate.active, candidate.task, candidate.dead)

    def next_candidate(self) -> Candidate | None:
        """The next attempt to claim (``attempt`` None: a task with none left). Reads and
        updates the jobs' plans only; the store is asked nothing but liveness."""
        shared = self.shared
        now = shared.clock.monotonic()
        with shared.lock:
            actives = list(shared.jobs.values())
        for active in actives:
            due = due_retry(active.retries, now) if active.retries else None
            if due is not None:
                del active.retries[due[0]]
                return Candidate(active, active.job.task(due[0]), due[1])
        for active in actives:
            if active.view.cancelled:
                continue
            # A dead worker's claims go first, our own past life's before all.
            for tid in takeover_order(active.urgent, active.view, shared.id):
                active.urgent.discard(tid)
                picked = self._take_over(active, tid) if tid in active.elsewhere else None
                if picked is not None:
                    return picked
            picked = self._next_never_claimed(active)
            if picked is not None:
                return picked
            for tid in list(active.elsewhere):
                picked = self._take_over(active, tid)
                if picked is not None:
                    return picked
        return None

    def _next_never_claimed(self, active: ActiveJob) -> Candidate | None:
        job_id = active.job.id
        results, running = active.view.results, self.shared.running
        step = next_pending(
            active.job,
            active.pending,
            settled=lambda tid: tid in results or (job_id, tid) in running,
            frontier=active.frontier,
            replanned=active.replanned,
        )
        for _ in range(step.skip):
            active.pending.popleft()
        if step.run_ended:
            # The end of our run: a listing (reads only) says where to go on.
            active.pending.clear()
            self.shared.dirty.reload.add(job_id)
            return None
        if step.task is None:
            return None
        active.pending.popleft()
        return Candidate(active, active.job.task(step.task), 0)

    def _take_over(self, active: ActiveJob, tid: str) -> Candidate | None:
        """The next attempt of a task claimed elsewhere, if that claim is dead."""
        if tid in active.view.results or self.shared.is_running(active.job.id, tid):
            active.elsewhere.discard(tid)
            return None
        top = active.view.top_claim(tid)
        if top is None or not self._dead(active, top):
            return None
        active.elsewhere.discard(tid)
        task = active.job.task(tid)
        attempt = next_attempt(top, task.claim_ids)
        if attempt is not None:
            log.info(
                "%s/%s: worker %s is gone; reclaiming (attempt %d)",
                active.job.id, tid, top.worker, attempt + 1,
            )  # fmt: skip
            self.shared.stats["reclaims"] += 1
        return Candidate(active, task, attempt, top)

    def _dead(self, active: ActiveJob, claim: ClaimRef) -> bool:
        if claim.worker == self.shared.id:  # ours, but not running or retrying: a past life's
            running = self.shared.is_running(active.job.id, claim.task)
            return not running and claim.task not in active.retries
        return self.others.claim_dead(claim)

    # -- the claim itself --

    def claim(self, candidate: Candidate) -> Claimed | None:
        """Claim one attempt; on success it counts as running (a slot must take it)."""
        active, task, attempt = candidate.active, candidate.task, candidate.attempt
        assert attempt is not None
        shared = self.shared
        try:
            return self._create_claim(active, task, attempt)
        except AuthError as exc:
            shared.fatal = exc
        except UnusableId as exc:
            # Another account minted the job's ids and the store refuses them to this one:
            # no claim of this job can ever succeed here. Say so once and leave the job.
            log.error("job %s cannot be served by this sign-in: %s", active.job.id, exc)
            with shared.lock:
                shared.jobs.pop(active.job.id, None)
                shared.done_jobs.add(active.job.id)
        except DrivemrError as exc:
            log.warning("claim of %s/%s failed (will retry): %s", active.job.id, task.id, exc)
            if isinstance(exc, NotFound):  # the job's folder may be gone: look at the root
                shared.dirty.root = True
            with shared.lock:
                due = shared.clock.monotonic() + shared.config.poll_interval
                active.retries[task.id] = Retry(attempt, due)
        return None

    def _create_claim(self, active: ActiveJob, task: Task, attempt: int) -> Claimed | None:
        shared = self.shared
        store = shared.store
        # A claim whose create failed without an answer is retried with the same nonce, so a
        # create that did land is recognised as ours (the Drive store also dedupes its own
        # retries; this covers a failure that surfaced to us).
        earlier = active.nonces.pop((task.id, attempt), None)
        nonce = earlier or f"{self._nonce_prefix}{next(self._nonces)}"
        active.nonces[(task.id, attempt)] = nonce
        body = json.dumps(
            {
                "worker": shared.id,
                "nonce": nonce,
                "host": self._host,
                "pid": self._pid,
                "time": shared.clock.time(),
            }
        ).encode()
        name = claim_name(task.id, attempt, shared.id)
        claim_id = task.claim_ids[attempt]
        try:
            info = store.create(active.job.folders["claims"], name, claim_id, body)
        except AlreadyExists:
            info = store.get(claim_id)
            theirs = None
            if earlier:
                theirs = parse_json(store.read(claim_id, max_bytes=MAX_HEARTBEAT_BYTES), "claim")
            if not (isinstance(theirs, dict) and theirs.get("nonce") == nonce):
                active.nonces.pop((task.id, attempt), None)
                parsed = parse_claim_name(info.name)
                worker = parsed[2] if parsed else "?"
                active.view.add_claim(ClaimRef(task.id, attempt, worker, info))
                active.elsewhere.add(task.id)
                shared.stats["claims_lost"] += 1
                # We are in another worker's run of tasks: one listing (reads only) tells us
                # all of it, where every further blind try would cost a write.
                active.pending.clear()
                shared.dirty.reload.add(active.job.id)
                return None
        active.nonces.pop((task.id, attempt), None)
        shared.stats["claims"] += 1
        if attempt == 0 and task.id != REDUCE:
            active.frontier, active.replanned = task.index, False
        a = Assignment(active.job, task, attempt, info)
        active.view.add_claim(ClaimRef(task.id, attempt, shared.id, info))
        with shared.lock:
            shared.running[(active.job.id, task.id)] = a
        return a, active
