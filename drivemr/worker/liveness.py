"""Lease: this worker's heartbeat, the store's clock it gives us, and the others' deaths.

Liveness is per worker, not per task: one heartbeat write every lease/3 keeps every claim
of ours alive. Leases are judged on the store's clock: our own heartbeat's server-side
modification time plus the monotonic time elapsed since that write returned is "server
now", so a worker whose clock is wrong by hours still judges leases correctly. A worker
that was silent longer than the lease (asleep, cut off) must assume the others took its
claims over, so none of its running attempts may commit.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import threading
from collections.abc import Callable, Iterable

from drivemr import __version__
from drivemr.errors import AuthError, DrivemrError, NotFound
from drivemr.protocol import (
    MAX_HEARTBEAT_BYTES,
    ClaimRef,
    Heartbeat,
    claim_is_dead,
    heartbeat_name,
    parse_json,
)
from drivemr.stores.base import FileInfo
from drivemr.worker.state import Assignment, Shared

log = logging.getLogger("drivemr.worker")


class Lease:
    """Our heartbeat and store-clock anchor; any thread beats, the anchor under shared.lock."""

    def __init__(self, shared: Shared, state: Callable[[], str]) -> None:
        self.shared = shared
        self._state = state  # "running" or "paused", from the claimer
        self._host = platform.node()
        self._hb_id = ""
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
            shared.fatal = exc
            shared.stopping.set()
            shared.wake.set()
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
        return json.dumps(
            {
                "worker": shared.id,
                "host": self._host,
                "pid": os.getpid(),
                "slots": shared.config.slots,
                "lease": shared.config.lease,
                "state": state,
                "running": running,
                "version": __version__,
                "time": shared.clock.time(),
            }
        ).encode()

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
        """Whether another worker claimed the task's next attempt or committed its result."""
        if a.attempt + 1 >= len(a.task.claim_ids):
            return False
        store = self.shared.store
        try:
            store.get(a.task.claim_ids[a.attempt + 1])
        except NotFound:
            try:
                store.get(a.task.result_id)
            except NotFound:
                return False
        return True


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


class OtherWorkers:
    """Others' heartbeats and deaths; the loop updates, slots read ``dead`` (replaced whole)."""

    def __init__(self, shared: Shared, lease: Lease) -> None:
        self.shared = shared
        self.lease = lease
        self.beats: dict[str, Heartbeat] = {}
        self.dead: frozenset[str] = frozenset()
        self._stopped_cache: dict[str, tuple[float, bool]] = {}
        """Heartbeat file id -> (version read, whether it said stopped): one per file."""

    def notice_dead(self) -> bool:
        """Judge every other worker's heartbeat; True when one newly died (or said it
        stopped), so every job must be relisted and its claims reclaimed first.

        A heartbeat older than the lease is fetched by id first (a consistent read), so a
        listing that lags never condemns a live worker."""
        lease = self.shared.config.lease
        now = self.lease.server_now()
        dead: set[str] = set()
        newly = False
        for worker, beat in list(self.beats.items()):
            if worker == self.shared.id:
                continue
            if now - beat.file.modified <= lease:
                if not self.stopped(beat):  # read once per heartbeat version (cached)
                    continue
                if worker not in self.dead:  # it said it stopped: no need to wait
                    log.info("worker %s stopped: its claims are dead", worker)
                    newly = True
                dead.add(worker)
                continue
            if worker not in self.dead:
                try:
                    fresh = self.shared.store.get(beat.file.id)
                except NotFound:
                    fresh = beat.file
                if now - fresh.modified <= lease:
                    self.beats[worker] = Heartbeat(worker, fresh)
                    continue
                silent = now - fresh.modified
                log.log(
                    logging.INFO if silent < 3 * lease else logging.DEBUG,
                    "worker %s silent for %.1f s (lease %g s): its claims are dead",
                    worker, silent, lease,
                )  # fmt: skip
                newly = True
            dead.add(worker)
        self.dead = frozenset(dead)
        return newly

    def stopped(self, beat: Heartbeat) -> bool:
        """Whether the worker's heartbeat says it stopped (read once per version)."""
        cached = self._stopped_cache.get(beat.file.id)
        if cached is None or cached[0] != beat.file.modified:
            try:
                raw = self.shared.store.read(beat.file.id, max_bytes=MAX_HEARTBEAT_BYTES)
                doc = parse_json(raw, "heartbeat")
            except DrivemrError:
                return False
            said = isinstance(doc, dict) and doc.get("state") == "stopped"
            cached = self._stopped_cache[beat.file.id] = (beat.file.modified, said)
        return cached[1]

    def forget_gone(self) -> None:
        """Drop what we cached of heartbeat files no longer listed (bounded memory)."""
        listed = {beat.file.id for beat in self.beats.values()}
        for file_id in [f for f in self._stopped_cache if f not in listed]:
            del self._stopped_cache[file_id]

    def claim_dead(self, claim: ClaimRef) -> bool:
        """Whether another worker's claim is dead (see protocol.claim_is_dead)."""
        return claim_is_dead(
            claim, self.beats, self.lease.server_now(), self.shared.config.lease, self.stopped
        )

    def next_expiry(self) -> float | None:
        """Seconds until the first live worker's heartbeat would pass the lease."""
        now = self.lease.server_now()
        lease = self.shared.config.lease
        ages: Iterable[float] = (
            beat.file.modified + lease - now
            for worker, beat in list(self.beats.items())
            if worker != self.shared.id and worker not in self.dead
        )
        return min(ages, default=None)
