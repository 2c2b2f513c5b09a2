"""The worker daemon: one readable loop over the protocol, wired from one part per concern.

    while not stopping:
        heartbeat (its own thread)        one write per worker per lease/3   liveness.py
        look                              change feed -> relist; others'     watch.py
                                          deaths; our claims after a silence
        claim                             create-once a claim per free slot  claim.py
        run, commit                       in slot threads; a slot that       slot.py,
                                          finishes claims its next task      commit.py,
                                          itself when the loop has nothing   trail.py
                                          to do first, else wakes the loop;
                                          its result trails, committed
                                          while the next attempt runs

``step()`` runs one iteration in the caller's thread, with time from the injected clock,
so tests drive several workers over one in-memory store deterministically.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import re
import shutil
import threading
from typing import Any

from drivemr.errors import AuthError, DrivemrError
from drivemr.protocol import nothing_left
from drivemr.stores.base import Store
from drivemr.taskenv import Redactor
from drivemr.trust import Trust
from drivemr.worker.claim import Claimed, Claimer
from drivemr.worker.commit import Committer
from drivemr.worker.config import SUMMARY_SECONDS, Clock, JobVerifier, SystemClock, WorkerConfig
from drivemr.worker.liveness import HeartbeatThread, Lease, OtherWorkers
from drivemr.worker.slot import Slot, task_base_env
from drivemr.worker.state import ActiveJob, Shared
from drivemr.worker.trail import Trail
from drivemr.worker.unreadable import EXIT_UNREADABLE
from drivemr.worker.watch import Watcher

log = logging.getLogger("drivemr.worker")

JOB_FOLDER = re.compile(r".+-[0-9]{8}-[0-9]{6}-[0-9a-f]{4}")
"""A job's working folder is named by its id (``protocol.new_job_id``)."""

SWEEP_SECONDS = 30.0
"""How often the working folder is swept of the folders of jobs that ended."""


class Worker:
    """The loop thread: wires the parts, looks, claims; shared state lives in Shared."""

    def __init__(
        self,
        store: Store,
        config: WorkerConfig,
        *,
        verify: JobVerifier | None = None,
        clock: Clock | None = None,
        idle: Any = None,
        trust: Trust | None = None,
    ) -> None:
        """``trust``: this PC's key (seals claims, heartbeats, markers, notes and results)
        and trusted keys (default: the config directory's, creating the key on first use,
        as the first submit does)."""
        if idle is None and config.when_idle:
            from drivemr.idle import IdleMonitor

            idle = IdleMonitor(config.idle_threshold, interval=max(1.0, config.poll_interval))
        trust = trust or Trust.for_this_pc()
        self.shared = shared = Shared(store, config, clock or SystemClock(), trust)
        self.store, self.config, self.clock, self.id = store, config, shared.clock, shared.id
        self.workdir = shared.workdir
        self.lease = Lease(shared, lambda: "paused" if self.claimer.paused else "running")
        self.others = OtherWorkers(shared, self.lease)
        self.watcher = Watcher(shared, self.lease, self.others, verify)
        self.committer = Committer(shared, self.lease)
        self.claimer = Claimer(shared, self.lease, self.others, self.committer, idle)
        self._slots: queue.SimpleQueue[Claimed | None] = queue.SimpleQueue()
        self._base_env = task_base_env(config.pass_env)
        self._redact = Redactor(os.environ, passed=config.pass_env) or None
        self._started = False
        self._inline_slot: Slot | None = None
        self._summary = (0.0, 0)  # (monotonic time, quick tasks counted) of the last summary
        self._next_beat = 0.0  # step(): when the next scheduled heartbeat is due
        self.identity: Any = None
        """Set by the CLI: the working folder's worker-id lock, held for our life."""
        self._next_sweep = 0.0  # when the working folder is next swept of ended jobs
        self.stop_code: int | None = None
        """Exit status asked for by :meth:`stop_now` (130 after a second Ctrl-C)."""
        self.finished = threading.Event()
        """Set when :meth:`run` ended (its last heartbeat written)."""

    # -- what callers and tests read --

    @property
    def fatal(self) -> BaseException | None:
        return self.shared.fatal

    @property
    def stats(self) -> collections.Counter[str]:
        return self.shared.stats

    @property
    def jobs(self) -> dict[str, ActiveJob]:
        return self.shared.jobs

    @property
    def rejected(self) -> dict[str, str]:
        return self.watcher.rejected

    def server_now(self) -> float:
        return self.lease.server_now()

    # -- lifecycle --

    def request_stop(self, why: str = "", *, again_code: int = 130) -> None:
        """First call: stop claiming and drain. Second call: as :meth:`stop_now` (exit
        status ``again_code``: 130 as a shell reports an interrupted command). ``why`` names the cause
        in the log (a signal handler passes "Ctrl-C"); without it nothing is logged."""
        if self.shared.stopping.is_set():
            self.stop_now(f"{why} again" if why else "asked again to stop", code=again_code)
            return
        if why:
            with self.shared.lock:
                running = len(self.shared.running)
            log.info(
                "%s: claiming nothing more; waiting for %d running attempt(s) to finish "
                "(again to kill them and release their tasks at once)",
                why, running,
            )  # fmt: skip
        self.shared.stopping.set()
        self.shared.wake.set()

    def stop_now(self, why: str, *, code: int = 130) -> None:
        """Stop at once: kill the running attempts (their results are never committed),
        then the loop ends and the last heartbeat says ``stopped``, so other workers take
        the tasks over at once instead of after the lease. One log line says why. Safe from
        a signal handler or any thread; ``run`` then returns ``code``."""
        if self.stop_code is None:
            self.stop_code = code
        doomed = self.shared.abandon(f"worker stopped: {why}")
        log.warning(
            "%s: stopping now; %d running attempt(s) killed, their tasks are released to "
            "other workers at once",
            why, len(doomed),
        )  # fmt: skip
        self.shared.stopping.set()
        self.shared.wake.set()

    def _start(self) -> None:
        """Before the first claim: a writable working folder, the replay guard, a heartbeat."""
        self._check_workdir()
        self.watcher.seen.load()
        self.lease.start()
        self._next_beat = self.clock.monotonic() + self.config.heartbeat_every
        self._started = True

    def run(self) -> int:
        """Serve until stopped (or idle, with exit_when_idle). Returns the exit status."""
        shared = self.shared
        self._start()
        beat = HeartbeatThread(self.lease)
        beat.start()
        trail = Trail(shared, self.committer, self.config.slots)
        for number in range(self.config.slots):
            # Each slot's own committer holds its results: they trail (worker/trail.py).
            holding = Committer(shared, self.lease, hold=True)
            slot = Slot(number, shared, holding, self._base_env, self._redact, trail)
            slot.start(self._slots, self.claimer.claim_for_slot)
        try:
            while not shared.stopping.is_set():
                try:
                    self._round()
                except Exception:  # a bug must not take the PC out of the cluster
                    shared.stats["loop_errors"] += 1
                    log.exception("unexpected error in the worker loop; continuing")
                    shared.stopping.wait(
                        min(
                            5.0,
                            self.config.poll_interval * 2 ** min(shared.stats["loop_errors"], 6),
                        )
                    )
                if shared.fatal is not None:
                    break
                self._maybe_sweep()
                self._log_summary()
                if self.config.exit_when_idle and self.all_done():
                    log.info("every job is finished; exiting")
                    break
                if self.config.exit_when_idle and self._only_unreadable_left():
                    break
                shared.wake.wait(self._sleep_time())
                shared.wake.clear()
            shared.rounds.over()
            if shared.fatal is not None:  # signed out: no attempt could commit, so none waits
                shared.abandon(f"stopped: {shared.fatal}")
            self._drain()
        finally:
            shared.rounds.over()
            self._log_summary(force=True)
            shared.stopping.set()
            for _ in range(self.config.slots):
                self._slots.put(None)
            # Heartbeats went on while we drained (a long drain must not look like a death).
            beat.stop()
            trail.close()
            self.lease.beat(state="stopped")
            self.finished.set()
        if isinstance(shared.fatal, AuthError):
            return 4
        if shared.fatal is not None:
            return 1
        return self.stop_code or 0

    def _round(self) -> None:
        """Look at the store, then claim for every free slot (slots claim too: hold the lock)."""
        rounds = self.shared.rounds
        rounds.started()
        try:
            with self.claimer.claiming:
                self.watcher.look()
                self.claimer.fill_slots(self._slots)
        finally:
            rounds.ended()

    def step(self, *, run: bool = True) -> int:
        """One iteration of the loop in the caller's thread, on the injected clock: the
        heartbeat when due, a look at the store, claims for the free slots and, with
        ``run``, every claimed attempt run to its commit here (no thread is started).
        Returns how many attempts it ran. For tests and embedding, not with :meth:`run`."""
        if not self._started:
            self._start()
        if self.clock.monotonic() >= self._next_beat:
            self._next_beat = self.clock.monotonic() + self.config.heartbeat_every
            self.lease.beat_on_schedule()
        self._round()
        ran = self.run_claimed() if run else 0
        self._maybe_sweep()
        return ran

    def run_claimed(self) -> int:
        """Run every attempt claimed so far, one after another, in the caller's thread."""
        if self._inline_slot is None:
            self._inline_slot = Slot(0, self.shared, self.committer, self._base_env, self._redact)
        ran = 0
        while True:
            try:
                item = self._slots.get_nowait()
            except queue.Empty:
                return ran
            if item is not None:
                self._inline_slot.run(*item)
                ran += 1

    def _log_summary(self, *, force: bool = False) -> None:
        """One INFO line for the quick tasks done since the last (see QUIET_TASK_SECONDS)."""
        now = self.clock.monotonic()
        since, counted = self._summary
        if not since:
            self._summary = (now, counted)
            return
        if now - since < SUMMARY_SECONDS and not force:
            return
        quiet = self.shared.stats["quiet_done"]
        self._summary = (now, quiet)
        if quiet > counted:
            log.info(
                "%d quick task(s) done in %.1f s (each under a second; %d result(s) committed by this worker)",
                quiet - counted, now - since, self.shared.stats["commits"],
            )  # fmt: skip

    def _maybe_sweep(self) -> None:
        now = self.clock.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_SECONDS
            self.sweep_workdir()

    def sweep_workdir(self) -> int:
        """Remove the working folders (shipped files, kept task folders) of jobs this
        worker no longer serves and runs nothing of: the working folder of a worker that
        runs for weeks holds only its live jobs, whatever an earlier life left behind.
        Only folders named like a job id are touched. Returns how many it removed."""
        if self.config.keep_workdirs:
            return 0
        shared = self.shared
        with shared.lock:
            live = set(shared.jobs) | {jid for jid, _ in shared.running}
        try:
            entries = list(os.scandir(self.workdir))
        except OSError:
            return 0
        removed = 0
        for entry in entries:
            if (
                entry.name not in live
                and JOB_FOLDER.fullmatch(entry.name)
                and entry.is_dir(follow_symlinks=False)
            ):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed += 1
        return removed

    def _check_workdir(self) -> None:
        """A PC that cannot write its working folder must not claim anything: every attempt
        would fail there and use up the tasks' attempts. Refuse to start, saying why."""
        probe = self.workdir / f".drivemr-probe-{os.getpid()}"
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"drivemr")
            probe.unlink()
        except OSError as exc:
            raise DrivemrError(
                f"the working folder {self.workdir} is not writable ({exc.strerror or exc}): "
                "pass a writable one with --workdir (or set workdir in the config file)"
            ) from None

    def _sleep_time(self) -> float:
        shared = self.shared
        if shared.dirty.now:
            return 0.0
        wait = self.config.poll_interval
        now = self.clock.monotonic()
        with shared.lock:
            for active in shared.jobs.values():
                for retry in active.retries.values():
                    wait = min(wait, max(0.0, retry.due - now))
        due = self.watcher.unreadable.next_due()
        if due is not None:
            wait = min(wait, max(0.0, due - now))
        # Wake up the moment another worker's heartbeat would pass the lease.
        expiry = self.others.next_expiry()
        if expiry is not None:
            wait = min(wait, max(0.0, expiry + 0.005))
        return wait

    def _drain(self) -> None:
        shared = self.shared
        if shared.running:
            log.info("stopping: waiting for %d running attempt(s) to finish", len(shared.running))
        while True:
            with shared.lock:
                if not shared.running:
                    return
            shared.wake.wait(0.5)
            shared.wake.clear()

    def all_done(self) -> bool:
        """Nothing running, nothing to look at, no job we could not read, and nothing
        left to do for any job."""
        return not self.watcher.unreadable and self._nothing_left()

    def _only_unreadable_left(self) -> bool:
        """With exit_when_idle: every readable job is done and the jobs left have been
        unreadable for a lease (a submitter would have finished uploading): name them and
        ask :meth:`run` to exit with EXIT_UNREADABLE."""
        stuck = self.watcher.unreadable.stuck(self.config.lease)
        if not stuck or not self._nothing_left():
            return False
        for entry in stuck:
            log.error("cannot read %s", entry.line())
        log.error(
            "every job this worker can read is finished, but %d job(s) cannot be read; "
            "exiting with status %d",
            len(stuck), EXIT_UNREADABLE,
        )  # fmt: skip
        self.stop_code = self.stop_code or EXIT_UNREADABLE
        return True

    def _nothing_left(self) -> bool:
        shared = self.shared
        with shared.lock:
            if shared.running or shared.dirty.now:
                return False
            return all(
                nothing_left(a.job, a.view, a.given_up, run_reduce=self.config.run_reduce)
                for a in shared.jobs.values()
            )
