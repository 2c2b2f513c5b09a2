"""Lease: this worker's heartbeat, the store's clock it gives us, and the others' deaths.

Liveness is per worker, not per task: one heartbeat write every lease/3 keeps every claim
of ours alive. Each heartbeat is sealed with this PC's key and carries the worker's
``life`` (random, per process), a sequence number that grows with every beat, and the lease
the worker runs with. Another worker is judged by what the reader itself measured: when it
first saw each (life, seq) of that worker, on its own monotonic clock. A worker whose
sequence has not advanced for the lease *it declared* is dead, whatever timestamps its
file carries (store times are client-settable: a heartbeat dated 2100 keeps nothing
alive), and a replayed old heartbeat is no advance. Only a trusted heartbeat that is an
advance can say "stopped", and then only for the claims of that life.

Our own lapse is judged on the store's clock: our heartbeat's server-side modification
time (as the store answered our own write) plus the monotonic time since. A worker that
was silent longer than the lease (asleep, cut off) must assume the others took its claims
over, so none of its running attempts may commit.
"""

from __future__ import annotations

import logging
import os
import platform
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from drivemr import __version__
from drivemr.errors import AuthError, DrivemrError, NotFound
from drivemr.protocol import ClaimRef, Heartbeat, heartbeat_name, parse_claim_name
from drivemr.stores.base import FileInfo
from drivemr.trust import beat_counter, declared_lease, open_claim, open_heartbeat
from drivemr.worker.state import Assignment, Shared

log = logging.getLogger("drivemr.worker")


class Lease:
    """Our heartbeat and store-clock anchor; any thread beats, the anchor under shared.lock."""

    def __init__(self, shared: Shared, state: Callable[[], str]) -> None:
        self.shared = shared
        self._state = state  # "running" or "paused", from the claimer
        self._host = platform.node()
        self._hb_id = ""
        self.life = secrets.token_hex(8)
        """This worker process's life: claims carry it, so "stopped" ends only its claims."""
        self._seq = 0
        self._anchor: tuple[float, float] = (0.0, 0.0)  # (server time, monotonic time)
        self.last_ok = 0.0
        """Monotonic time the last heartbeat that reached the store was sent."""
        self.at_risk = False
        """We were silent for most of the lease: our claims may have been taken over."""

    # -- writing our heartbeat --

    def start(self) -> None:
        """Create our heartbeat file: the first beat, which also anchors the store's clock."""
        shared = self.shared
        self._hb_id = shared.pool.one()
        sent = shared.clock.monotonic()
        info = shared.store.create(
            shared.store.root_id, heartbeat_name(shared.id), self._hb_id, self._doc("running")
        )
        self._set_anchor(info, sent)

    def beat(self, state: str | None = None) -> None:
        """Rewrite our heartbeat (never raises: a failure is retried at the next beat)."""
        shared = self.shared
        try:
            sent = shared.clock.monotonic()
            info = shared.store.update(self._hb_id, self._doc(state or self._state()))
            self._set_anchor(info, sent)
        except AuthError as exc:
            shared.fail(exc)
        except DrivemrError as exc:
            log.warning("heartbeat failed (will retry): %s", exc)

    def beat_on_schedule(self) -> None:
        """One scheduled beat: flag the risk first when we were silent for most of the lease."""
        if self.silent_for() > self.shared.config.lease * 0.9:
            self.at_risk = True
        self.beat()

    def silent_for(self) -> float:
        """Seconds since the last beat that reached the store was sent."""
        return self.shared.clock.monotonic() - self.last_ok

    def server_now(self) -> float:
        server, mono = self._anchor
        return server + (self.shared.clock.monotonic() - mono)

    def _doc(self, state: str) -> bytes:
        shared = self.shared
        with shared.lock:
            running = [
                {"job": a.job.id, "task": a.task.id, "gen": a.attempt, "since": a.claim.modified}
                for a in shared.running.values()
            ]
            self._seq += 1
            seq = self._seq
        body = {
            "worker": shared.id,
            "life": self.life,
            "seq": seq,
            "host": self._host,
            "pid": os.getpid(),
            "slots": shared.config.slots,
            "lease": shared.config.lease,
            "state": state,
            "running": running,
            "version": __version__,
            "time": shared.clock.time(),
        }
        return shared.trust.seal("heartbeat", body)

    def _set_anchor(self, info: FileInfo, sent: float) -> None:
        shared = self.shared
        now = shared.clock.monotonic()
        with shared.lock:
            previous = self._anchor[0]
            # The write happened somewhere between sending and the answer: take the middle.
            self._anchor = (info.modified, (sent + now) / 2)
            if self.last_ok and now - self.last_ok > shared.config.lease * 0.9:
                self.at_risk = True  # we were silent long enough for others to reclaim
                shared.wake.set()
            # Count the beat's age from when it was sent: an answer that arrives late (the PC
            # slept while the request was in flight) must not make an old beat look fresh.
            self.last_ok = max(self.last_ok, sent)
        if previous and info.modified - previous > shared.config.lease:
            self._claims_lapsed(info.modified - previous)

    # -- did our claims survive? --

    def _claims_lapsed(self, gap: float) -> None:
        """Our heartbeat was older than the lease for a while (on the store's clock): to the
        other workers our claims were dead, so none of our running attempts may commit."""
        reason = f"claim lapsed (no heartbeat for {gap:.1f} s, longer than the lease)"
        for a in self.shared.abandon(reason, lambda a: not a.abandon):
            log.warning("%s/%s: %s; attempt abandoned", a.job.id, a.task.id, a.abandon)

    def check_lost_claims(self) -> None:
        """After a silence longer than the lease: ask the store whether our claims survived."""
        self.at_risk = False
        with self.shared.lock:
            mine = list(self.shared.running.values())
        for a in mine:
            if self.superseded(a):
                log.warning(
                    "%s/%s: our claim lapsed and another worker took it over", a.job.id, a.task.id
                )
                a.abandon_and_kill("claim lapsed")

    def superseded(self, a: Assignment) -> bool:
        """Whether another worker claimed a later attempt of the task (a trusted claim: a
        forged one at the next id supersedes nothing) or committed its result (a valid one:
        a planted file must not stop a running attempt)."""
        store, trust = self.shared.store, self.shared.trust
        for gen in range(a.attempt + 1, len(a.task.claim_ids)):
            try:
                info = store.get(a.task.claim_ids[gen], parent=a.job.folders["claims"])
            except NotFound:
                break  # takers use the first free id: nothing later without this one
            worker = ""
            if a.job.named:
                parsed = parse_claim_name(info.name)
                worker = parsed[2] if parsed and parsed[2] else "?"
            if open_claim(trust, store, a.job.id, a.task.id, gen, worker, info) is not None:
                return True
        return self.shared.results.first_valid(store, a.job, a.task) is not None


class HeartbeatThread:
    """Rewrites our heartbeat every lease/3 until stopped; owns its thread and stop event."""

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="drivemr-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop beating (called after draining: a long drain must not look like a death)."""
        self._done.set()
        self._thread.join(timeout=self.lease.shared.config.heartbeat_every)

    def _loop(self) -> None:
        shared = self.lease.shared
        while not self._done.wait(shared.config.heartbeat_every) and shared.fatal is None:
            self.lease.beat_on_schedule()


@dataclass(frozen=True)
class Seen:
    """What this reader measured of another worker: the last advance of its heartbeat."""

    life: str
    seq: int
    since: float
    """Our monotonic time when we first saw this (life, seq)."""
    lease: float
    """The lease the worker declared (bounded)."""
    stopped: bool
    host: str


class OtherWorkers:
    """Others' heartbeats and deaths, judged on our own clock; the loop updates, slots read
    ``dead`` (replaced whole)."""

    MAX_LIVES = 16

    def __init__(self, shared: Shared, lease: Lease) -> None:
        self.shared = shared
        self.lease = lease
        self.files: list[Heartbeat] = []
        """Every heartbeat-named file of the last root listing."""
        self.seen: dict[str, Seen] = {}
        self.dead: frozenset[str] = frozenset()
        self._read: dict[str, float] = {}  # heartbeat file id -> modified time last read
        self._lives: dict[str, OrderedDict[str, int]] = {}  # worker -> life -> highest seq
        self._first_sight: OrderedDict[str, float] = OrderedDict()  # claim id -> when
        self._reported: set[str] = set()

    # -- what we see --

    def listed(self, files: list[Heartbeat]) -> None:
        """A root listing's heartbeat files: read the ones that changed (once per version)."""
        self.files = files
        for beat in files:
            if beat.worker != self.shared.id and self._read.get(beat.file.id) != beat.file.modified:
                self._observe(beat)

    def _observe(self, beat: Heartbeat, *, fresh: bool = False) -> None:
        shared = self.shared
        self._read[beat.file.id] = beat.file.modified
        if len(self._read) > 50_000:
            self._read.pop(next(iter(self._read)))
        sealed = open_heartbeat(shared.trust, shared.store, beat.worker, beat.file, fresh=fresh)
        counter = None if sealed is None else beat_counter(sealed.body)
        if sealed is None or counter is None:
            return  # untrusted (reported once by Trust) or malformed: no sign of life
        life, seq = counter
        lives = self._lives.setdefault(beat.worker, OrderedDict())
        highest = lives.get(life)
        if highest is not None and seq <= highest:
            return  # an old beat again (replayed or a lagging copy): no sign of life
        lives[life] = seq
        lives.move_to_end(life)
        while len(lives) > self.MAX_LIVES:
            lives.popitem(last=False)
        body = sealed.body
        host = body.get("host")
        self.seen[beat.worker] = Seen(
            life,
            seq,
            shared.clock.monotonic(),
            declared_lease(body.get("lease"), shared.config.lease),
            body.get("state") == "stopped",
            host if isinstance(host, str) else "",
        )
        self._reported.discard(beat.worker)

    def _refresh(self, worker: str) -> None:
        """Before calling a worker dead: read its heartbeat files again by id (consistent
        reads, whatever their times say), so neither a listing that lags nor a file time
        set back hides a live worker's beat."""
        for beat in self.files:
            if beat.worker != worker:
                continue
            try:
                info = self.shared.store.get(beat.file.id, parent=beat.file.parent)
            except NotFound:
                continue
            self._observe(Heartbeat(worker, info), fresh=True)

    # -- judging --

    def _age(self, s: Seen) -> float:
        return self.shared.clock.monotonic() - s.since

    def _gone(self, s: Seen) -> bool:
        return s.stopped or self._age(s) > s.lease

    def notice_dead(self) -> bool:
        """Judge every other worker; True when one newly died (or said it stopped), so
        every job must be relisted and its claims reclaimed first. Logs nothing: a death
        is logged when its claims are actually taken over (see :meth:`report_takeover`)."""
        dead: set[str] = set()
        newly = False
        for worker, s in list(self.seen.items()):
            if worker == self.shared.id:
                continue
            if self._gone(s) and worker not in self.dead:
                self._refresh(worker)
                s = self.seen[worker]
            if self._gone(s):
                dead.add(worker)
                newly = newly or worker not in self.dead
        self.dead = frozenset(dead)
        return newly

    def forget_gone(self) -> None:
        """Drop what we keep of heartbeat files and workers no longer listed (bounded
        memory however many workers ever came and went)."""
        listed_ids = {beat.file.id for beat in self.files}
        listed_workers = {beat.worker for beat in self.files}
        for file_id in [f for f in self._read if f not in listed_ids]:
            del self._read[file_id]
        for worker in [w for w in self._lives if w not in listed_workers]:
            del self._lives[worker]
        for worker in [w for w in self.seen if w not in listed_workers]:
            del self.seen[worker]

    def claim_dead(self, claim: ClaimRef, life: object) -> bool:
        """Whether another worker's (trusted) claim is dead: its worker said it stopped in
        the claim's life, or its heartbeat has not advanced for its declared lease as we
        measured it. A worker we never saw a trusted heartbeat of: the claim is dead a
        lease (ours) after we first saw it."""
        s = self.seen.get(claim.worker)
        now = self.shared.clock.monotonic()
        if s is None:
            first = self._first_sight.setdefault(claim.file.id, now)
            if len(self._first_sight) > 100_000:
                self._first_sight.popitem(last=False)
            return now - first > self.shared.config.lease
        if s.stopped and s.life == life:
            return True
        if self._age(s) <= s.lease:
            return False
        self._refresh(claim.worker)
        s = self.seen[claim.worker]
        return (s.stopped and s.life == life) or self._age(s) > s.lease

    def report_takeover(self, worker: str) -> None:
        """Log a dead worker once, when we first take one of its claims over (18.10)."""
        if worker in self._reported:
            return
        self._reported.add(worker)
        s = self.seen.get(worker)
        if s is None:
            log.info("worker %s left claims but no trusted heartbeat: taking them over", worker)
        elif s.stopped:
            log.info("worker %s stopped: taking its claims over", worker)
        else:
            log.info(
                "worker %s silent for %.1f s (its lease %g s): taking its claims over",
                worker, self._age(s), s.lease,
            )  # fmt: skip

    def alone(self) -> bool:
        """No other worker's heartbeat is alive to us (nobody else could verify a job)."""
        return all(w == self.shared.id or w in self.dead for w in list(self.seen))

    def next_expiry(self) -> float | None:
        """Seconds until the first live worker's heartbeat would pass its lease."""
        ages: Iterable[float] = (
            s.lease - self._age(s)
            for worker, s in list(self.seen.items())
            if worker != self.shared.id and worker not in self.dead
        )
        return min(ages, default=None)
