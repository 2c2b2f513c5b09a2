"""Claim: choose this worker's next attempt and create its claim, once.

To run task *t* for the *g*-th time a worker creates ``claims/<t>.g<g>.<worker>`` with
the minted id ``claim_ids[t][g]``; exactly one worker succeeds. The order is: retries
that are due, then the claims of dead workers (our own past life's first), then
never-claimed tasks along our run, then dead claims found elsewhere. A task whose every
attempt died is handed to the commit as failed.

Claims are sealed with this PC's key (see drivemr.trust). A file at a minted claim id that
does not open (forged, junk, from an untrusted PC) *burns* that attempt id: it is no sign
of life and no failure, and the next free attempt id is claimed at once. A task whose every
remaining id is burned is *blocked by untrusted files*, never failed. The loop fills free
slots; a slot that
just finished claims its own next task when the plain case allows (see
:meth:`Claimer.claim_for_slot`), which saves two thread switches per short task.

Next: a claimed attempt runs in a slot (slot.py), then commits (commit.py).
"""

from __future__ import annotations

import itertools
import logging
import os
import platform
import queue
import secrets
import threading
from dataclasses import dataclass, replace
from typing import Any

from drivemr.errors import AlreadyExists, AuthError, DrivemrError, NotFound, UnusableId
from drivemr.protocol import REDUCE, ClaimRef, Task, parse_claim_name, remember_claimer
from drivemr.sealed import Sealed
from drivemr.trust import claim_body, claim_worker, open_claim
from drivemr.worker.commit import Committer
from drivemr.worker.liveness import Lease, OtherWorkers
from drivemr.worker.plan import due_retry, next_pending, takeover_order
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
        free = shared.busy_slots() < shared.config.slots
        if self.idle is not None and free and self._owner_busy():
            return
        while shared.busy_slots() < shared.config.slots:
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
            if shared.busy_slots() >= shared.config.slots:
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
        view, running = active.view, self.shared.running
        step = next_pending(
            active.job,
            active.pending,
            settled=lambda tid: view.settled(tid) or (job_id, tid) in running,
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
        """The next attempt of a task claimed elsewhere, if its top trusted claim is dead
        (or it has none: every claim of it is burned)."""
        if active.view.settled(tid) or self.shared.is_running(active.job.id, tid):
            active.elsewhere.discard(tid)
            return None
        if tid in active.blocked:
            return None
        found = self._top_trusted(active, tid)
        if found is not None and not self._dead(active, *found):
            return None
        top = None if found is None else found[0]
        active.elsewhere.discard(tid)
        task = active.job.task(tid)
        attempt = self._free_attempt(active, task, 0 if top is None else top.gen + 1)
        if attempt is None:
            if top is not None and not active.burned.get(tid):
                return Candidate(active, task, None, top)  # every attempt died: failed
            self._block(active, tid)
            return None
        if top is not None:
            if top.worker != self.shared.id:
                self.others.report_takeover(top.worker)
            log.info(
                "%s/%s: worker %s is gone; reclaiming (attempt %d)",
                active.job.id, tid, top.worker, attempt + 1,
            )  # fmt: skip
            self.shared.stats["reclaims"] += 1
        return Candidate(active, task, attempt, top)

    def _top_trusted(self, active: ActiveJob, tid: str) -> tuple[ClaimRef, Sealed] | None:
        """The task's latest claim that opens; the untrusted ones above it are burned."""
        shared = self.shared
        for gen, ref in sorted(active.view.claims.get(tid, {}).items(), reverse=True):
            if gen in active.burned.get(tid, ()):
                continue
            sealed = open_claim(
                shared.trust, shared.store, active.job.id, tid, gen, ref.worker, ref.file
            )
            if sealed is not None:
                return replace(ref, worker=claim_worker(sealed)), sealed
            self._burn(active, tid, gen)
        return None

    def _burn(self, active: ActiveJob, tid: str, gen: int) -> None:
        burned = active.burned.setdefault(tid, set())
        if gen not in burned:
            burned.add(gen)
            self.shared.stats["claims_burned"] += 1

    def _free_attempt(self, active: ActiveJob, task: Task, start: int) -> int | None:
        """The first attempt from ``start`` whose claim id holds nothing we know of."""
        taken = active.view.claims.get(task.id, {})
        for gen in range(start, len(task.claim_ids)):
            if gen not in taken:
                return gen
        return None

    def _block(self, active: ActiveJob, tid: str) -> None:
        """Every remaining claim id of the task holds an untrusted file: blocked, not failed."""
        if tid in active.blocked:
            return
        active.blocked.add(tid)
        active.given_up.add(tid)
        active.elsewhere.discard(tid)
        self.shared.stats["blocked"] += 1
        log.warning(
            "%s/%s: blocked by untrusted files: every remaining claim id of the task holds a"
            " file no trusted key sealed (forged, or from a PC this one does not trust); the"
            " task is not failed. See docs/security.md, 'Who can forge what'.",
            active.job.id, tid,
        )  # fmt: skip

    def _dead(self, active: ActiveJob, claim: ClaimRef, sealed: Sealed) -> bool:
        if claim.worker == self.shared.id:  # ours, but not running or retrying: a past life's
            running = self.shared.is_running(active.job.id, claim.task)
            return not running and claim.task not in active.retries
        return self.others.claim_dead(claim, sealed.body.get("life"))

    # -- the claim itself --

    def claim(self, candidate: Candidate) -> Claimed | None:
        """Claim one attempt; on success it counts as running (a slot must take it)."""
        active, task, attempt = candidate.active, candidate.task, candidate.attempt
        assert attempt is not None
        shared = self.shared
        try:
            return self._create_claim(active, task, attempt)
        except AuthError as exc:
            shared.fail(exc)
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
        """Create the claim; an attempt id held by an untrusted file is burned and the next
        free one tried at once (no lease wait), until one is ours or someone else's."""
        while True:
            outcome = self._try_create(active, task, attempt)
            if outcome != "burned":
                return outcome if isinstance(outcome, tuple) else None
            nxt = self._free_attempt(active, task, attempt + 1)
            if nxt is None:
                self._block(active, task.id)
                return None
            attempt = nxt

    def _try_create(self, active: ActiveJob, task: Task, attempt: int) -> Claimed | str:
        shared = self.shared
        store = shared.store
        # A claim whose create failed without an answer is retried with the same nonce, so a
        # create that did land is recognised as ours (the Drive store also dedupes its own
        # retries; this covers a failure that surfaced to us).
        earlier = active.nonces.pop((task.id, attempt), None)
        nonce = earlier or f"{self._nonce_prefix}{next(self._nonces)}"
        active.nonces[(task.id, attempt)] = nonce
        body = claim_body(
            active.job.id,
            task.id,
            attempt,
            shared.id,
            life=self.lease.life,
            nonce=nonce,
            host=self._host,
            pid=self._pid,
            time=shared.clock.time(),
        )
        name = active.job.claim_name(task.id, attempt, shared.id)
        claim_id = task.claim_ids[attempt]
        claims = active.job.folders["claims"]
        try:
            info = store.create(claims, name, claim_id, shared.trust.seal("claim", body))
        except AlreadyExists:
            info = store.get(claim_id, parent=claims)
            worker = ""
            if active.job.named:
                parsed = parse_claim_name(info.name)
                worker = parsed[2] if parsed and parsed[:2] == (task.id, attempt) else "?"
            theirs = open_claim(shared.trust, store, active.job.id, task.id, attempt, worker, info)
            worker = claim_worker(theirs) if theirs is not None else worker
            active.view.add_claim(ClaimRef(task.id, attempt, worker, info))
            if theirs is None:
                active.nonces.pop((task.id, attempt), None)
                self._burn(active, task.id, attempt)
                return "burned"
            if not (worker == shared.id and theirs.body.get("nonce") == nonce):
                active.nonces.pop((task.id, attempt), None)
                active.elsewhere.add(task.id)
                shared.stats["claims_lost"] += 1
                # We are in another worker's run of tasks: one listing (reads only) tells us
                # all of it, where every further blind try would cost a write.
                active.pending.clear()
                shared.dirty.reload.add(active.job.id)
                return "lost"
        active.nonces.pop((task.id, attempt), None)
        shared.stats["claims"] += 1
        if attempt == 0 and task.id != REDUCE:
            active.frontier, active.replanned = task.index, False
        a = Assignment(active.job, task, attempt, info)
        remember_claimer(info, shared.id)
        active.view.add_claim(ClaimRef(task.id, attempt, shared.id, info))
        with shared.lock:
            shared.running[(active.job.id, task.id)] = a
        return a, active
