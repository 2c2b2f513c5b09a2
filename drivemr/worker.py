"""The worker daemon: one readable loop over the protocol.

    while not stopping:
        heartbeat (its own thread)        one write per worker per lease/3
        maintenance                       change feed -> reload views; reclaim dead claims
        claim                             create-once a claim per free slot
        run, commit                       in slot threads; a slot that finishes claims
                                          its next task itself when the loop has nothing
                                          to do first, else wakes the loop

Liveness is judged on the store's clock: our own heartbeat's server-side modification
time plus the monotonic time elapsed since that write returned is "server now". A worker
whose clock is wrong by hours still judges leases correctly.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import itertools
import json
import logging
import os
import platform
import queue
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from drivemr import __version__
from drivemr.errors import (
    AlreadyExists,
    AuthError,
    DrivemrError,
    NotFound,
    SecurityError,
)
from drivemr.protocol import (
    INLINE_OUTPUT_LIMIT,
    MAX_HEARTBEAT_BYTES,
    REDUCE,
    ClaimRef,
    Heartbeat,
    IdPool,
    Job,
    JobFormatError,
    JobView,
    StoredFile,
    Task,
    claim_is_dead,
    claim_name,
    heartbeat_name,
    heartbeats,
    job_complete,
    list_jobs,
    load_view,
    mark,
    parse_claim_name,
    parse_json,
    parse_result,
    read_job,
    result_name,
)
from drivemr.results import download_outputs
from drivemr.runner import Attempt, AttemptOutcome, OutputFile
from drivemr.spec import expand
from drivemr.stores.base import FileInfo, Store

log = logging.getLogger("drivemr.worker")

SECRET_ENV_PREFIXES = ("DRIVEMR_", "GOOGLE_APPLICATION_CREDENTIALS")
QUIET_TASK_SECONDS = 1.0
"""Successful attempts shorter than this are logged at DEBUG, summed up at INFO every
SUMMARY_SECONDS; longer ones and every failure get a line of their own."""
SUMMARY_SECONDS = 10.0


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def time(self) -> float: ...


_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", None)


class SystemClock:
    def monotonic(self) -> float:
        # Linux's CLOCK_MONOTONIC stops while the PC is suspended; CLOCK_BOOTTIME does not,
        # so a worker waking from sleep knows how long it was away before it commits anything.
        return time.clock_gettime(_BOOTTIME) if _BOOTTIME is not None else time.monotonic()

    def time(self) -> float:
        return time.time()


JobVerifier = Callable[[Job], None]
"""Raises SecurityError when a job must not run on this worker."""


@dataclass(frozen=True)
class WorkerConfig:
    worker_id: str
    slots: int
    workdir: Path
    lease: float = 300.0
    heartbeat_interval: float | None = None
    poll_interval: float = 0.5
    reconcile_interval: float = 120.0
    retry_backoff: float = 1.0
    exit_when_idle: bool = False
    keep_workdirs: bool = False
    jobs: frozenset[str] | None = None
    """Serve only these job ids (None: every job)."""
    run_reduce: bool = True
    """False on PCs that must never run a reduce (another worker or `drivemr reduce` will)."""
    when_idle: bool = False
    """Claim only while the PC's other processes leave the CPU idle (desktop PCs)."""
    idle_threshold: float = 0.25
    """Share of the whole CPU other processes may use before a when_idle worker pauses."""

    @property
    def heartbeat_every(self) -> float:
        return self.heartbeat_interval or self.lease / 3


@dataclass
class Assignment:
    """One claimed attempt (task, generation) running in a slot."""

    job: Job
    task: Task
    gen: int
    claim: FileInfo
    attempt: Attempt = field(default_factory=Attempt)
    abandon: str | None = None
    """Why the attempt's result must not be committed (cancelled, claim lost, shutdown)."""


@dataclass
class ActiveJob:
    job: Job
    view: JobView
    pending: collections.deque[str]
    elsewhere: set[str]
    retries: dict[str, tuple[int, float]] = field(default_factory=dict)
    nonces: dict[tuple[str, int], str] = field(default_factory=dict)
    given_up: set[str] = field(default_factory=set)
    """Tasks whose result id is taken but whose result cannot be seen (a damaged store)."""
    listed_at: float = 0.0
    frontier: int | None = None
    """Index of the last map task this worker claimed first: the end of its run of tasks."""
    replanned: bool = True
    """``pending`` was just planned from a listing: its first task may be claimed at once."""
    files_ready: threading.Lock = field(default_factory=threading.Lock)
    files_dir: Path | None = None
    urgent: set[str] = field(default_factory=set)
    """Tasks claimed by a worker known to be dead (or by our own past life): reclaimed
    before any never-claimed task, so a dead PC's work waits no longer than the lease."""


@dataclass
class SlotHome:
    """A slot's reusable working folder; ``clean`` when its last emptying left nothing."""

    path: Path
    clean: bool = False


class Worker:
    def __init__(
        self,
        store: Store,
        config: WorkerConfig,
        *,
        verify: JobVerifier | None = None,
        clock: Clock | None = None,
        store_factory: Callable[[], Store] | None = None,
        idle: Any = None,
    ) -> None:
        self.store = store
        self.config = config
        self.id = config.worker_id
        self.verify = verify
        if idle is None and config.when_idle:
            from drivemr.idle import IdleMonitor

            idle = IdleMonitor(config.idle_threshold, interval=max(1.0, config.poll_interval))
        self.idle = idle
        """Has ``busy()``: True while the PC's owner uses it (see drivemr.idle)."""
        self._paused = False
        self.clock = clock or SystemClock()
        self._store_factory = store_factory
        self.pool = IdPool(store, batch=100)
        self.jobs: dict[str, ActiveJob] = {}
        self.done_jobs: set[str] = set()
        self.rejected: dict[str, str] = {}
        self._rejected_folders: set[str] = set()
        self._seen: dict[str, str] = {}
        self._seen_path = config.workdir.absolute() / "seen-jobs.tsv"
        self.running: dict[tuple[str, str], Assignment] = {}
        self.beats: dict[str, Heartbeat] = {}
        self._stopped_cache: dict[tuple[str, float], bool] = {}
        self._lock = threading.RLock()
        self._claiming = threading.Lock()  # held while deciding and making claims
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._killing = threading.Event()
        self._hb_id = ""
        # (server time, monotonic time) of our last heartbeat
        self._anchor: tuple[float, float] = (0.0, 0.0)
        self._last_beat_ok = 0.0
        self._lease_at_risk = False
        # other workers whose heartbeat is older than the lease
        self._dead_workers: set[str] = set()
        self._beats_done = threading.Event()  # the heartbeat thread's stop (after draining)
        self._cursor: str | None = None
        self._next_reconcile = 0.0
        self._next_poll = 0.0
        self._reload: set[str] = set()  # relist now
        self._stale: set[str] = set()  # relist once the job has no local candidates left
        self._markers: set[str] = set()  # the job folder changed: cancel or finish markers
        self._root_dirty = True
        self._idle_rounds = 0
        self._summary = (0.0, 0)  # (monotonic time, quick tasks counted) of the last summary
        self.fatal: BaseException | None = None
        self.stats = collections.Counter[str]()
        self.workdir = config.workdir.absolute()
        self._pid = os.getpid()
        self._host = platform.node()
        # claim nonces: unique per worker life, then a counter
        self._nonce_prefix = f"{secrets.token_hex(8)}-"
        self._nonces = itertools.count()
        self._queue: queue.SimpleQueue[tuple[Assignment, ActiveJob] | None] = queue.SimpleQueue()
        # The environment tasks inherit: ours, minus our secrets (computed once).
        self._base_env = {
            k: v for k, v in os.environ.items() if not k.startswith(SECRET_ENV_PREFIXES)
        }

    # ------------------------------------------------------------------ lifecycle

    def request_stop(self) -> None:
        """First call: stop claiming and drain. Second call: kill running attempts too."""
        if self._stopping.is_set():
            self._killing.set()
            with self._lock:
                for a in self.running.values():
                    a.abandon = a.abandon or "worker killed"
                    a.attempt.kill()
        self._stopping.set()
        self._wake.set()

    def run(self) -> int:
        """Serve until stopped (or idle, with exit_when_idle). Returns the exit status."""
        self._check_workdir()
        self._load_seen()
        self._start_heartbeat()
        beat = threading.Thread(target=self._heartbeat_loop, name="drivemr-heartbeat", daemon=True)
        beat.start()
        for slot in range(self.config.slots):
            threading.Thread(
                target=self._slot_loop, args=(slot,), name=f"drivemr-slot{slot}", daemon=True
            ).start()
        try:
            while not self._stopping.is_set():
                try:
                    with self._claiming:  # slots claim on their own too (_claim_next_here)
                        self._maintenance()
                        self._fill_slots()
                except Exception:  # a bug must not take the PC out of the cluster
                    self.stats["loop_errors"] += 1
                    log.exception("unexpected error in the worker loop; continuing")
                    self._stopping.wait(
                        min(5.0, self.config.poll_interval * 2 ** min(self.stats["loop_errors"], 6))
                    )
                if self.fatal is not None:
                    break
                self._log_summary()
                if self.config.exit_when_idle and self._all_done():
                    log.info("every job is finished; exiting")
                    break
                self._wake.wait(self._sleep_time())
                self._wake.clear()
            if self.fatal is not None:  # signed out: no attempt could commit, so none waits
                with self._lock:
                    doomed = list(self.running.values())
                    for a in doomed:
                        a.abandon = a.abandon or f"stopped: {self.fatal}"
                for a in doomed:
                    a.attempt.kill()
            self._drain()
        finally:
            self._log_summary(force=True)
            self._stopping.set()
            for _ in range(self.config.slots):
                self._queue.put(None)
            # Heartbeats went on while we drained (a long drain must not look like a death).
            self._beats_done.set()
            beat.join(timeout=self.config.heartbeat_every)
            self._write_heartbeat(state="stopped")
        if isinstance(self.fatal, AuthError):
            return 4
        return 0 if self.fatal is None else 1

    def _log_summary(self, *, force: bool = False) -> None:
        """One INFO line for the quick tasks done since the last (see QUIET_TASK_SECONDS)."""
        now = self.clock.monotonic()
        since, counted = self._summary
        if not since:
            self._summary = (now, counted)
            return
        if now - since < SUMMARY_SECONDS and not force:
            return
        quiet = self.stats["quiet_done"]
        self._summary = (now, quiet)
        if quiet > counted:
            log.info(
                "%d quick task(s) done in %.1f s (each under a second; %d result(s) committed by this worker)",
                quiet - counted, now - since, self.stats["commits"],
            )  # fmt: skip

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
        if self._reload or self._root_dirty:
            return 0.0
        wait = self.config.poll_interval
        now = self.clock.monotonic()
        with self._lock:
            for active in self.jobs.values():
                for _gen, ready in active.retries.values():
                    wait = min(wait, max(0.0, ready - now))
        # Wake up the moment another worker's heartbeat would pass the lease.
        server_now = self.server_now()
        for worker, beat in list(self.beats.items()):
            if worker != self.id and worker not in self._dead_workers:
                wait = min(
                    wait, max(0.0, beat.file.modified + self.config.lease - server_now + 0.005)
                )
        return wait

    def _drain(self) -> None:
        if self.running:
            log.info("stopping: waiting for %d running attempt(s) to finish", len(self.running))
        while True:
            with self._lock:
                if not self.running:
                    return
            self._wake.wait(0.5)
            self._wake.clear()

    def _all_done(self) -> bool:
        with self._lock:
            if self.running or self._reload or self._root_dirty:
                return False
            return all(self._nothing_left(a) for a in self.jobs.values())

    def _nothing_left(self, active: ActiveJob) -> bool:
        """Nothing this worker could still do for the job, now or later."""
        if job_complete(active.job, active.view) or active.view.cancelled:
            return True
        open_tasks = {t.id for t in active.job.tasks if t.id not in active.view.results}
        if not open_tasks <= active.given_up:
            return False
        if active.job.reduce_task is None or not self.config.run_reduce:
            return True
        return REDUCE in active.given_up or any(
            r.state != "done" for t, r in active.view.results.items() if t != REDUCE
        )

    # ------------------------------------------------------------------ heartbeat

    def _heartbeat_doc(self, state: str) -> bytes:
        with self._lock:
            running = [
                {"job": a.job.id, "task": a.task.id, "gen": a.gen, "since": a.claim.modified}
                for a in self.running.values()
            ]
        return json.dumps(
            {
                "worker": self.id,
                "host": self._host,
                "pid": os.getpid(),
                "slots": self.config.slots,
                "lease": self.config.lease,
                "state": state,
                "running": running,
                "version": __version__,
                "time": self.clock.time(),
            }
        ).encode()

    def _start_heartbeat(self) -> None:
        self._hb_id = self.pool.one()
        sent = self.clock.monotonic()
        info = self.store.create(
            self.store.root_id, heartbeat_name(self.id), self._hb_id, self._heartbeat_doc("running")
        )
        self._set_anchor(info, sent)

    def _set_anchor(self, info: FileInfo, sent: float) -> None:
        now = self.clock.monotonic()
        with self._lock:
            previous = self._anchor[0]
            # The write happened somewhere between sending and the answer: take the middle.
            self._anchor = (info.modified, (sent + now) / 2)
            if self._last_beat_ok and now - self._last_beat_ok > self.config.lease * 0.9:
                self._lease_at_risk = True  # we were silent long enough for others to reclaim
                self._wake.set()
            # Count the beat's age from when it was sent: an answer that arrives late (the PC
            # slept while the request was in flight) must not make an old beat look fresh.
            self._last_beat_ok = max(self._last_beat_ok, sent)
        if previous and info.modified - previous > self.config.lease:
            self._claims_lapsed(info.modified - previous)

    def _claims_lapsed(self, gap: float) -> None:
        """Our heartbeat was older than the lease for a while (on the store's clock): to the
        other workers our claims were dead, so none of our running attempts may commit."""
        with self._lock:
            lapsed = [a for a in self.running.values() if not a.abandon]
            for a in lapsed:
                a.abandon = f"claim lapsed (no heartbeat for {gap:.1f} s, longer than the lease)"
        for a in lapsed:
            log.warning("%s/%s: %s; attempt abandoned", a.job.id, a.task.id, a.abandon)
            a.attempt.kill()

    def server_now(self) -> float:
        server, mono = self._anchor
        return server + (self.clock.monotonic() - mono)

    def _write_heartbeat(self, state: str | None = None) -> None:
        state = state or ("paused" if self._paused else "running")
        try:
            sent = self.clock.monotonic()
            info = self.store.update(self._hb_id, self._heartbeat_doc(state))
            self._set_anchor(info, sent)
        except AuthError as exc:
            self.fatal = exc
            self._stopping.set()
            self._wake.set()
        except DrivemrError as exc:
            log.warning("heartbeat failed (will retry): %s", exc)

    def _heartbeat_loop(self) -> None:
        every = self.config.heartbeat_every
        while not self._beats_done.wait(every) and self.fatal is None:
            if self.clock.monotonic() - self._last_beat_ok > self.config.lease * 0.9:
                self._lease_at_risk = True
            self._write_heartbeat()

    # ------------------------------------------------------------------ maintenance

    def _maintenance(self) -> None:
        """Learn what changed (cheaply), relist only what we need, catch lost claims.

        A busy worker does not relist claims and results: while it has never-claimed tasks
        it simply tries them (a collision tells it to look). Views are relisted when a job
        runs out of local candidates, after a collision, or at the periodic reconcile."""
        try:
            now = self.clock.monotonic()
            if self._cursor is None or now >= self._next_reconcile:
                self._cursor = self.store.changes_cursor()
                self._root_dirty = True
                self._reload.update(self.jobs)
                self._next_reconcile = now + self.config.reconcile_interval
                self._next_poll = now + self.config.poll_interval
            elif now >= self._next_poll:
                self._next_poll = now + self.config.poll_interval
                changes = self.store.poll_changes(self._cursor)
                self._cursor = changes.cursor
                self._note_changes(changes.folders)
            if self._root_dirty:
                self._root_dirty = False
                self._refresh_root()
            for job_id in list(self._markers):
                self._markers.discard(job_id)
                self._check_markers(job_id)
            self._notice_dead_workers()
            with self._lock:
                for job_id in list(self._stale):
                    active = self.jobs.get(job_id)
                    if active is None or (
                        not active.pending and now - active.listed_at >= self.config.poll_interval
                    ):
                        self._stale.discard(job_id)
                        self._reload.add(job_id)
            for job_id in list(self._reload):
                self._reload.discard(job_id)
                self._reload_job(job_id)
            if self._lease_at_risk:
                self._check_lost_claims()
        except AuthError as exc:
            self.fatal = exc
            log.error("%s", exc)
        except DrivemrError as exc:
            self.stats["maintenance_errors"] += 1
            log.warning("store call failed during maintenance (will retry): %s", exc)
            self._root_dirty = True
            self._next_poll = self.clock.monotonic() + self.config.poll_interval

    def _notice_dead_workers(self) -> None:
        """Other workers whose heartbeat is older than the lease, on the store's clock.

        A newly dead worker's claims are relisted and reclaimed before any never-claimed
        task (see ``ActiveJob.urgent``). Its heartbeat is fetched by id first (a consistent
        read), so a listing that lags never condemns a live worker."""
        lease = self.config.lease
        now = self.server_now()
        dead: set[str] = set()
        for worker, beat in list(self.beats.items()):
            if worker == self.id:
                continue
            if now - beat.file.modified <= lease:
                if not self._stopped(beat):  # read once per heartbeat version (cached)
                    continue
                if worker not in self._dead_workers:  # it said it stopped: no need to wait
                    log.info("worker %s stopped: its claims are dead", worker)
                    self._reload.update(self.jobs)
                dead.add(worker)
                continue
            if worker not in self._dead_workers:
                try:
                    fresh = self.store.get(beat.file.id)
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
                self._reload.update(self.jobs)
            dead.add(worker)
        self._dead_workers = dead

    def _note_changes(self, folders: frozenset[str] | None) -> None:
        if folders is None:
            self._root_dirty = True
            self._stale.update(self.jobs)
            self._markers.update(self.jobs)
            return
        if self.store.root_id in folders:
            self._root_dirty = True
        with self._lock:
            for job_id, active in self.jobs.items():
                f = active.job.folders
                if f["job"] in folders:
                    self._markers.add(job_id)
                if f["claims"] in folders or f["results"] in folders:
                    self._stale.add(job_id)

    def _check_markers(self, job_id: str) -> None:
        with self._lock:
            active = self.jobs.get(job_id)
        if active is None:
            return
        names = {info.id for info in self.store.list(active.job.folder)}
        if active.job.markers.get("cancel") in names:
            active.view.cancelled = True
            self._cancel(active)

    def _refresh_root(self) -> None:
        entries = self.store.list(self.store.root_id)
        self.beats = heartbeats(entries)
        for folder in list_jobs(self.store, entries):  # oldest first
            job_id = folder.name[len("job-") :]
            if (
                job_id in self.jobs
                or job_id in self.done_jobs
                or folder.id in self._rejected_folders
            ):
                if job_id in self.jobs and self.jobs[job_id].job.folder != folder.id:
                    self._reject_replay(job_id, folder)
                continue
            if self.config.jobs is not None and job_id not in self.config.jobs:
                continue
            first = self._seen.get(job_id)
            if first is not None and first != folder.id:
                self._reject_replay(job_id, folder)
                continue
            self._adopt_job(job_id, folder)

    def _reject_replay(self, job_id: str, folder: FileInfo) -> None:
        """A job id is used once: the same signed job posted again is a replay, never run."""
        if folder.id in self._rejected_folders:
            return
        reason = f"job {job_id} was already posted in another folder: a replayed copy is never run"
        self._rejected_folders.add(folder.id)
        log.error("job %s (folder %s) rejected: %s", job_id, folder.id, reason)
        self._record_rejection(folder, reason)

    def _remember(self, job_id: str, folder_id: str) -> None:
        """Remember which folder holds each job, across restarts (replays after a job is gone)."""
        if self._seen.get(job_id) == folder_id:
            return
        self._seen[job_id] = folder_id
        try:
            with open(self._seen_path, "a", encoding="utf-8") as fh:
                fh.write(f"{job_id}\t{folder_id}\n")
        except OSError as exc:
            log.debug("could not record seen job: %s", exc)

    def _load_seen(self) -> None:
        try:
            lines = self._seen_path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return
        for line in lines:
            job_id, _, folder_id = line.partition("\t")
            if job_id and folder_id:
                self._seen.setdefault(job_id, folder_id)

    def _adopt_job(self, job_id: str, folder: FileInfo) -> None:
        try:
            job = read_job(self.store, folder)
            if self.verify is not None:
                self.verify(job)
        except NotFound:
            return  # job.json not published yet: the submitter is still uploading
        except (SecurityError, JobFormatError) as exc:
            self.rejected[job_id] = str(exc)
            self._rejected_folders.add(folder.id)
            log.error("job %s rejected: %s", job_id, exc)
            self._record_rejection(folder, str(exc))
            return
        self._remember(job_id, folder.id)
        view = load_view(self.store, job)
        if view.finished or view.cancelled:
            self.done_jobs.add(job_id)
            return
        active = ActiveJob(job, view, collections.deque(), set())
        self._plan(active)
        with self._lock:
            self.jobs[job_id] = active
        log.info("job %s: %d task(s), %d done", job_id, len(job.tasks), view.map_results)

    def _record_rejection(self, folder: FileInfo, reason: str) -> None:
        """Leave one note in the job's folder so `drivemr status` can show the rejection."""
        try:
            (fid,) = self.store.mint_ids(1)
            note = json.dumps({"worker": self.id, "reason": reason, "time": self.clock.time()})
            self.store.create(folder.id, f"rejected.{self.id}", fid, note.encode())
        except DrivemrError as exc:
            log.debug("could not record rejection: %s", exc)

    def _reload_job(self, job_id: str) -> None:
        with self._lock:
            active = self.jobs.get(job_id)
        if active is None:
            return
        listed_at = self.clock.monotonic()
        view = load_view(self.store, active.job)
        with self._lock:
            # Claims and results are never removed: keep what we learnt while listing.
            for gens in active.view.claims.values():
                for ref in gens.values():
                    view.claims.setdefault(ref.task, {}).setdefault(ref.gen, ref)
            for tid, result in active.view.results.items():
                view.results.setdefault(tid, result)
            active.view = view
            active.listed_at = listed_at
            self._plan(active)
            complete = job_complete(active.job, view)
        if view.cancelled:
            self._cancel(active)
        self._abandon_superseded(active)
        if complete:
            self._finish(active)

    def _plan(self, active: ActiveJob) -> None:
        """Sort the job's unfinished tasks into never-claimed (pending) and claimed elsewhere."""
        job, view = active.job, active.view
        pending: list[str] = []
        elsewhere: set[str] = set()
        for task in job.tasks:
            if (
                task.id in view.results
                or (job.id, task.id) in self.running
                or task.id in active.retries
            ):
                continue
            if task.id in active.given_up:
                continue
            if task.id in view.claims:
                elsewhere.add(task.id)
            else:
                pending.append(task.id)
        # Workers claim runs of consecutive tasks, so they only meet where runs end.
        if pending:
            offset = self._run_start(active, pending)
            pending = pending[offset:] + pending[:offset]
        active.replanned = True
        active.pending = collections.deque(pending)
        active.elsewhere = elsewhere
        if (
            self.config.run_reduce
            and job.reduce_task
            and REDUCE not in view.results
            and REDUCE not in active.given_up
            and view.map_results == len(job.tasks)
            and all(r.state == "done" for r in view.results.values())
            and (job.id, REDUCE) not in self.running
        ):
            # every map task succeeded: the reduce is due
            if REDUCE in view.claims:
                active.elsewhere.add(REDUCE)
            else:
                active.pending.appendleft(REDUCE)
        active.urgent = set()
        for tid in active.elsewhere:
            top = view.top_claim(tid)
            if top is not None and (top.worker == self.id or top.worker in self._dead_workers):
                active.urgent.add(tid)

    def _run_start(self, active: ActiveJob, pending: list[str]) -> int:
        """Where in ``pending`` (never-claimed map tasks, in task order) to start claiming.

        Nothing claimed yet: at an offset of our own. Later: right after our last claim
        while that task is free, else in the middle of the longest run of free tasks (whose
        lower end another worker is probably working up: we take the upper half). Between
        listings a worker only goes on to the task right after its last claim, so two
        workers collide (a 409, which costs a write) about once per such jump, not per task."""
        seed = int(hashlib.sha256(self.id.encode()).hexdigest(), 16)
        n = len(active.job.tasks)
        positions = [active.job.task(tid).index for tid in pending]
        if len(positions) == n:
            return seed % n
        if active.frontier is not None:
            after = (active.frontier + 1) % n
            for k, index in enumerate(positions):
                if index == after:
                    return k
        runs: list[tuple[int, int]] = []  # (position in pending, length)
        for k, index in enumerate(positions):
            if runs and positions[k - 1] == index - 1:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1)
            else:
                runs.append((k, 1))
        if len(runs) > 1 and positions[0] == 0 and positions[-1] == n - 1:  # across the end
            first = runs.pop(0)
            runs[-1] = (runs[-1][0], runs[-1][1] + first[1])
        start, length = max(runs, key=lambda r: r[1])
        offset = length // 2
        if length >= 6:  # two workers jumping at once should not pick the same task
            offset += seed % (length // 3 + 1) - length // 6
        return (start + offset) % len(pending)

    def _cancel(self, active: ActiveJob) -> None:
        log.info("job %s cancelled: stopping its attempts", active.job.id)
        with self._lock:
            for (jid, _), a in self.running.items():
                if jid == active.job.id:
                    a.abandon = "job cancelled"
                    a.attempt.kill()
            self.jobs.pop(active.job.id, None)
            self.done_jobs.add(active.job.id)

    def _finish(self, active: ActiveJob) -> None:
        with self._lock:
            if any(jid == active.job.id for jid, _ in self.running):
                return
            self.jobs.pop(active.job.id, None)
            self.done_jobs.add(active.job.id)
        if active.view.finished:
            return  # another worker marked it (a second create would cost a write for a 409)
        try:
            if mark(self.store, active.job, "finished"):
                log.info("job %s finished", active.job.id)
        except DrivemrError as exc:
            log.warning("could not mark job %s finished: %s", active.job.id, exc)

    def _abandon_superseded(self, active: ActiveJob) -> None:
        with self._lock:
            for (jid, tid), a in self.running.items():
                if jid != active.job.id:
                    continue
                top = active.view.top_claim(tid)
                if (top and top.gen > a.gen) or tid in active.view.results:
                    a.abandon = "another worker took over this task"
                    a.attempt.kill()

    def _check_lost_claims(self) -> None:
        """After a silence longer than the lease: ask the store whether our claims survived."""
        self._lease_at_risk = False
        with self._lock:
            mine = list(self.running.values())
        for a in mine:
            if self._superseded(a):
                log.warning(
                    "%s/%s: our claim lapsed and another worker took it over", a.job.id, a.task.id
                )
                a.abandon = "claim lapsed"
                a.attempt.kill()

    def _superseded(self, a: Assignment) -> bool:
        if a.gen + 1 >= len(a.task.claim_ids):
            return False
        try:
            self.store.get(a.task.claim_ids[a.gen + 1])
        except NotFound:
            try:
                self.store.get(a.task.result_id)
            except NotFound:
                return False
        return True

    # ------------------------------------------------------------------ claiming

    def _fill_slots(self) -> None:
        if self._stopping.is_set() or self.fatal is not None:
            return
        if self.idle is not None and len(self.running) < self.config.slots and self._owner_busy():
            return
        while len(self.running) < self.config.slots:
            picked = self._next_candidate()
            if picked is None:
                return
            claimed = self._claim(*picked)
            if claimed is not None:
                self._queue.put(claimed)
            elif self.fatal is not None or picked[1].id in picked[0].retries:
                return

    def _claim_next_here(self) -> tuple[Assignment, ActiveJob] | None:
        """A slot that just finished claims its next task itself, without waking the loop.

        Only the plain case: a job with never-claimed tasks planned and nothing for the
        loop to do first (a relisting, the root, a pause). Anything else is the loop's."""
        if (
            self._stopping.is_set()
            or self.fatal is not None
            or self.idle is not None
            or self._reload
            or self._root_dirty
            or self._markers
            or not self._claiming.acquire(blocking=False)  # the loop is at it: let it fill us
        ):
            return None
        try:
            if len(self.running) >= self.config.slots:
                return None
            picked = self._next_candidate()
            claimed = None if picked is None else self._claim(*picked)
            if claimed is not None:
                self.stats["slot_claims"] += 1
            return claimed
        finally:
            self._claiming.release()

    def _owner_busy(self) -> bool:
        """--when-idle: pause claiming while the owner uses the PC (running tasks go on)."""
        busy = bool(self.idle.busy())
        if busy != self._paused:
            self._paused = busy
            what = "owner busy: not claiming" if busy else "PC idle again: claiming"
            log.info("%s (%s)", what, self.idle.describe())
            # Tell `drivemr workers` now, but never spend more than one write per 5 s on it.
            if self.clock.monotonic() - self._last_beat_ok >= 5.0:
                self._write_heartbeat()
        return busy

    def _stopped(self, beat: Heartbeat) -> bool:
        key = (beat.file.id, beat.file.modified)
        if key not in self._stopped_cache:
            try:
                doc = parse_json(
                    self.store.read(beat.file.id, max_bytes=MAX_HEARTBEAT_BYTES), "heartbeat"
                )
                self._stopped_cache[key] = isinstance(doc, dict) and doc.get("state") == "stopped"
            except DrivemrError:
                return False
        return self._stopped_cache[key]

    def _dead(self, active: ActiveJob, claim: ClaimRef) -> bool:
        if claim.worker == self.id:  # ours, but not running or waiting to retry: a past life's
            key = (active.job.id, claim.task)
            return key not in self.running and claim.task not in active.retries
        return claim_is_dead(claim, self.beats, self.server_now(), self.config.lease, self._stopped)

    def _next_candidate(self) -> tuple[ActiveJob, Task, int] | None:
        now = self.clock.monotonic()
        with self._lock:
            actives = list(self.jobs.values())
        for active in actives:
            if not active.retries:
                continue
            for tid, (gen, ready) in list(active.retries.items()):
                if ready <= now:
                    del active.retries[tid]
                    return active, active.job.task(tid), gen
        for active in actives:
            if active.view.cancelled:
                continue
            # A dead worker's claims go first, our own past life's before all (only we can
            # take those: our heartbeat under that id is alive again).
            for tid in sorted(
                active.urgent, key=lambda t: (self._claimed_by_another(active, t), t)
            ):
                active.urgent.discard(tid)
                picked = self._take_over(active, tid) if tid in active.elsewhere else None
                if picked is not None:
                    return picked
            while active.pending:
                tid = active.pending.popleft()
                if tid not in active.view.results and (active.job.id, tid) not in self.running:
                    task = active.job.task(tid)
                    if not (
                        active.replanned
                        or active.frontier is None
                        or tid == REDUCE
                        or task.index == (active.frontier + 1) % len(active.job.tasks)
                    ):
                        # The end of our run: a listing (reads only) says where to go on.
                        active.pending.clear()
                        self._reload.add(active.job.id)
                        break
                    return active, task, 0
            for tid in list(active.elsewhere):
                picked = self._take_over(active, tid)
                if picked is not None:
                    return picked
        return None

    def _claimed_by_another(self, active: ActiveJob, tid: str) -> bool:
        """Whether the task's newest claim is not ours (ours here: from a previous run)."""
        top = active.view.top_claim(tid)
        return top is None or top.worker != self.id

    def _take_over(self, active: ActiveJob, tid: str) -> tuple[ActiveJob, Task, int] | None:
        """The next attempt of a task claimed elsewhere, if that claim is dead."""
        if tid in active.view.results or (active.job.id, tid) in self.running:
            active.elsewhere.discard(tid)
            return None
        top = active.view.top_claim(tid)
        if top is None or not self._dead(active, top):
            return None
        active.elsewhere.discard(tid)
        task = active.job.task(tid)
        if top.gen + 1 < len(task.claim_ids):
            log.info(
                "%s/%s: worker %s is gone; reclaiming (attempt %d)",
                active.job.id,
                tid,
                top.worker,
                top.gen + 2,
            )
            self.stats["reclaims"] += 1
            return active, task, top.gen + 1
        self._commit_lost(active, task, top)
        return None

    def _claim(
        self, active: ActiveJob, task: Task, gen: int
    ) -> tuple[Assignment, ActiveJob] | None:
        """Claim one attempt; on success it counts as running (a slot must take it)."""
        try:
            return self._claim_attempt(active, task, gen)
        except AuthError as exc:
            self.fatal = exc
        except DrivemrError as exc:
            log.warning("claim of %s/%s failed (will retry): %s", active.job.id, task.id, exc)
            with self._lock:
                active.retries[task.id] = (gen, self.clock.monotonic() + self.config.poll_interval)
        return None

    def _claim_attempt(
        self, active: ActiveJob, task: Task, gen: int
    ) -> tuple[Assignment, ActiveJob] | None:
        # A claim whose create failed without an answer is retried with the same nonce, so a
        # create that did land is recognised as ours (the Drive store also dedupes its own
        # retries; this covers a failure that surfaced to us).
        earlier = active.nonces.pop((task.id, gen), None)
        nonce = earlier or f"{self._nonce_prefix}{next(self._nonces)}"
        active.nonces[(task.id, gen)] = nonce
        body = json.dumps(
            {
                "worker": self.id,
                "nonce": nonce,
                "host": self._host,
                "pid": self._pid,
                "time": self.clock.time(),
            }
        ).encode()
        name = claim_name(task.id, gen, self.id)
        claim_id = task.claim_ids[gen]
        try:
            info = self.store.create(active.job.folders["claims"], name, claim_id, body)
        except AlreadyExists:
            info = self.store.get(claim_id)
            theirs = None
            if earlier:
                theirs = parse_json(
                    self.store.read(claim_id, max_bytes=MAX_HEARTBEAT_BYTES), "claim"
                )
            if not (isinstance(theirs, dict) and theirs.get("nonce") == nonce):
                active.nonces.pop((task.id, gen), None)
                parsed = parse_claim_name(info.name)
                worker = parsed[2] if parsed else "?"
                active.view.add_claim(ClaimRef(task.id, gen, worker, info))
                active.elsewhere.add(task.id)
                self.stats["claims_lost"] += 1
                # We are in another worker's run of tasks: one listing (reads only) tells us
                # all of it, where every further blind try would cost a write.
                active.pending.clear()
                self._reload.add(active.job.id)
                return None
        active.nonces.pop((task.id, gen), None)
        self.stats["claims"] += 1
        if gen == 0 and task.id != REDUCE:
            active.frontier, active.replanned = task.index, False
        a = Assignment(active.job, task, gen, info)
        active.view.add_claim(ClaimRef(task.id, gen, self.id, info))
        with self._lock:
            self.running[(active.job.id, task.id)] = a
        return a, active

    # ------------------------------------------------------------------ running one attempt

    def _slot_loop(self, slot: int) -> None:
        """One thread per slot, alive for the worker's life: no thread start per task.

        After each attempt the slot tries to claim its next task itself: for short tasks
        a round trip through the loop (two thread switches) costs as much as the task."""
        out = OutputFile(self.workdir / f".slot{slot}.stdout")
        err = OutputFile(self.workdir / f".slot{slot}.stderr")
        home = SlotHome(self.workdir / f"slot{slot}")
        home.path.mkdir(exist_ok=True)
        home.clean = _empty(home.path)
        try:
            item = self._queue.get()
            while item is not None:
                self._slot(item[0], item[1], out, err, home)
                item = self._claim_next_here()
                if item is None:
                    self._wake.set()  # the loop fills this slot (or finds there is nothing)
                    item = self._queue.get()
        finally:
            out.close()
            err.close()

    def _slot(
        self, a: Assignment, active: ActiveJob, out: OutputFile, err: OutputFile, home: SlotHome
    ) -> None:
        task_dir: Path | None = None
        try:
            task_dir = self._prepare(a, active, home)
            outcome = self._execute(a, active, task_dir, out, err)
            self._conclude(a, active, task_dir, outcome, out, err)
        except AuthError as exc:
            self.fatal = exc
            log.error("%s", exc)
        except Exception as exc:  # one bad attempt never kills the worker
            log.exception("%s/%s: attempt failed inside the worker: %s", a.job.id, a.task.id, exc)
            self._after_failure(a, active, None, f"worker error: {exc}")
        finally:
            with self._lock:
                self.running.pop((a.job.id, a.task.id), None)
            if a.abandon and not self._stopping.is_set():
                self._reload.add(a.job.id)  # replan: a lapsed claim of ours is reclaimed at once
            if task_dir is not None and not self.config.keep_workdirs:
                if task_dir is home.path:
                    home.clean = _empty(task_dir)  # a scandir: far cheaper than mkdir + rmdir
                else:
                    shutil.rmtree(task_dir, ignore_errors=True)

    def _job_dir(self, job: Job) -> Path:
        return self.workdir / job.id

    def _prepare(self, a: Assignment, active: ActiveJob, home: SlotHome) -> Path:
        """Each slot reuses one empty working folder (emptied after every attempt);
        --keep-workdirs gives every attempt a folder of its own instead."""
        self._ensure_files(active)
        task_dir = home.path  # emptied after every attempt
        if self.config.keep_workdirs or not (home.clean or _is_empty(task_dir)):
            # a folder of its own (kept, or because leftovers could not be removed)
            task_dir = self._job_dir(a.job) / f"{a.task.id}.g{a.gen}-{secrets.token_hex(3)}"
            task_dir.mkdir(parents=True)
        if a.task.input is not None:
            self._fetch(a.task.input, _inside(task_dir, a.task.input.name))
        if a.task.id == REDUCE:
            self._stage_results(a.job, task_dir / "results")
        return task_dir

    def _ensure_files(self, active: ActiveJob) -> Path:
        if active.files_dir is not None:  # set once, never unset: no lock needed to read it
            return active.files_dir
        with active.files_ready:
            if active.files_dir is None:
                files_dir = self._job_dir(active.job) / "files"
                for f in active.job.files:
                    target = _inside(files_dir, f.name)
                    if not target.exists() or _sha256_file(target) != f.sha256:
                        self._fetch(f, target)
                active.files_dir = files_dir
                files_dir.mkdir(parents=True, exist_ok=True)
            return active.files_dir

    def _fetch(self, f: StoredFile, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        self.store.download(f.id, target)
        if _sha256_file(target) != f.sha256:
            target.unlink(missing_ok=True)
            raise SecurityError(f"shipped file {f.name} does not match its digest in job.json")

    def _stage_results(self, job: Job, results_dir: Path) -> None:
        """{results}: one folder per task, in task order, holding that task's outputs."""
        results_dir.mkdir()
        for task in job.tasks:
            download_outputs(self.store, job, task, results_dir / task.id)

    def _task_env(self, a: Assignment, stage_env: Mapping[str, str]) -> dict[str, str]:
        env = dict(self._base_env)
        env.update(stage_env)
        env.update(DRIVEMR_JOB=a.job.id, DRIVEMR_TASK=a.task.id, DRIVEMR_ATTEMPT=str(a.gen + 1))
        return env

    def _execute(
        self, a: Assignment, active: ActiveJob, task_dir: Path, out: OutputFile, err: OutputFile
    ) -> AttemptOutcome:
        stage = a.job.stage_of(a.task)
        values = {
            "task": a.task.id,
            "files": str(active.files_dir),
            "input": a.task.input.name if a.task.input else "",
            "item": a.task.item or "",
            "results": f"{task_dir}{os.sep}results",  # a join per attempt: no pathlib
        }
        argv = expand(stage.command, values)
        log.debug("%s/%s attempt %d: %s", a.job.id, a.task.id, a.gen + 1, argv)
        return a.attempt.run(
            argv,
            cwd=task_dir,
            env=self._task_env(a, stage.env),
            timeout=stage.timeout,
            stdout=out.reset(),
            stderr=err.reset(),
        )

    def _conclude(
        self,
        a: Assignment,
        active: ActiveJob,
        task_dir: Path,
        outcome: AttemptOutcome,
        out: OutputFile,
        err: OutputFile,
    ) -> None:
        if a.abandon or outcome.killed:
            log.info(
                "%s/%s attempt %d not committed: %s",
                a.job.id,
                a.task.id,
                a.gen + 1,
                a.abandon or "killed",
            )
            return
        stdout, stderr = out.tail(), err.tail()
        error = None if outcome.ok else outcome.describe()
        outputs: list[dict[str, Any]] = []
        if error is None:
            try:
                outputs = self._collect_outputs(a, task_dir)
            except (OSError, DrivemrError) as exc:
                error = f"outputs: {exc}"
        if error is None:
            self._commit(a, active, "done", outcome, outputs, stdout, stderr, None)
        else:
            with self._lock:
                self.stats["failed_attempts"] += 1
            log.warning("%s/%s attempt %d failed: %s", a.job.id, a.task.id, a.gen + 1, error)
            self._after_failure(a, active, outcome, error, stdout, stderr)

    def _after_failure(
        self,
        a: Assignment,
        active: ActiveJob,
        outcome: AttemptOutcome | None,
        error: str,
        stdout: str = "",
        stderr: str = "",
    ) -> None:
        if a.abandon:
            return
        try:
            if a.gen + 1 < len(a.task.claim_ids) and not self._stopping.is_set():
                self._write_attempt_log(a, outcome, error, stdout, stderr)
                delay = self.config.retry_backoff * (2**a.gen)
                with self._lock:
                    active.retries[a.task.id] = (a.gen + 1, self.clock.monotonic() + delay)
            elif a.gen + 1 >= len(a.task.claim_ids):
                now = self.clock.time()
                outcome = outcome or AttemptOutcome(None, now, now, error=error)
                self._commit(a, active, "failed", outcome, [], stdout, stderr, error)
        except DrivemrError as exc:
            log.warning("%s/%s: could not record the failure: %s", a.job.id, a.task.id, exc)

    def _write_attempt_log(
        self, a: Assignment, outcome: AttemptOutcome | None, error: str, stdout: str, stderr: str
    ) -> None:
        doc = {
            "task": a.task.id,
            "attempt": a.gen + 1,
            "worker": self.id,
            "exit_code": outcome.exit_code if outcome else None,
            "started": outcome.started if outcome else None,
            "ended": outcome.ended if outcome else None,
            "error": error,
            "stdout": stdout,
            "stderr": stderr,
        }
        self.store.create(
            a.job.folders["logs"],
            f"{a.task.id}.g{a.gen}.log",
            self.pool.one(),
            json.dumps(doc).encode(),
        )

    def _collect_outputs(self, a: Assignment, task_dir: Path) -> list[dict[str, Any]]:
        stage = a.job.stage_of(a.task)
        if not stage.outputs:
            return []
        files: dict[str, Path] = {}
        for pattern in stage.outputs:
            matched = sorted(
                p for p in task_dir.glob(pattern) if p.is_file() and _is_inside(task_dir, p)
            )
            if not matched:
                raise DrivemrError(f"declared output {pattern!r} was not produced")
            for p in matched:
                files[p.relative_to(task_dir).as_posix()] = p
        total = sum(p.stat().st_size for p in files.values())
        outputs = []
        for k, (name, path) in enumerate(sorted(files.items())):
            data = path.read_bytes() if total <= INLINE_OUTPUT_LIMIT else None
            md5 = hashlib.md5(data if data is not None else path.read_bytes()).hexdigest()
            entry: dict[str, Any] = {"name": name, "size": path.stat().st_size, "md5": md5}
            if data is not None:
                entry["data"] = base64.b64encode(data).decode()
            else:
                info = self.store.create(
                    a.job.folders["outputs"],
                    f"{a.task.id}.g{a.gen}.o{k}",
                    self.pool.one(),
                    source=path,
                )
                entry["id"] = info.id
            outputs.append(entry)
        return outputs

    def _commit(
        self,
        a: Assignment,
        active: ActiveJob,
        state: str,
        outcome: AttemptOutcome,
        outputs: list[dict[str, Any]],
        stdout: str,
        stderr: str,
        error: str | None,
    ) -> None:
        if a.abandon:
            log.info(
                "%s/%s attempt %d not committed: %s", a.job.id, a.task.id, a.gen + 1, a.abandon
            )
            return
        # A heartbeat older than half the lease is late (they come every lease/3): renew it
        # before committing, so the claim is still young when the result lands.
        if (
            self._lease_at_risk
            or self.clock.monotonic() - self._last_beat_ok > self.config.lease * 0.5
        ):
            self._write_heartbeat()  # still alive to the others? (a lapse abandons our attempts)
            silent = self.clock.monotonic() - self._last_beat_ok > self.config.lease
            if a.abandon or silent or self._superseded(a):
                log.warning(
                    "%s/%s: claim lapsed while running; result discarded", a.job.id, a.task.id
                )
                a.abandon = a.abandon or "claim lapsed"
                return
        manifest = {
            "format": 1,
            "job": a.job.id,
            "task": a.task.id,
            "state": state,
            "attempt": a.gen + 1,
            "worker": self.id,
            "host": self._host,
            "exit_code": outcome.exit_code,
            "timed_out": outcome.timed_out,
            "started": outcome.started,
            "ended": outcome.ended,
            "duration": outcome.duration,
            "error": error,
            "outputs": outputs,
            "stdout": stdout,
            "stderr": stderr,
        }
        name = result_name(a.task.id, state, a.gen, outcome.exit_code, outcome.duration)
        try:
            info = self.store.create(
                a.job.folders["results"], name, a.task.result_id, json.dumps(manifest).encode()
            )
        except AlreadyExists:
            log.info(
                "%s/%s: another attempt committed first; ours is discarded", a.job.id, a.task.id
            )
            with self._lock:
                self.stats["commits_lost"] += 1
            self._learn_result(active, a.task)
            return
        ref = parse_result(info)
        quiet = state == "done" and outcome.duration < QUIET_TASK_SECONDS
        with self._lock:  # slots commit at once: counters too under the lock
            self.stats["commits"] += 1
            self.stats["quiet_done"] += quiet
            if ref is not None:
                active.view.results[a.task.id] = ref
            everything = len(active.view.results) >= len(active.job.tasks)
        # Near the end, relist to learn the other workers' results (the reduce barrier).
        if everything or a.task.id == REDUCE:
            self._reload.add(a.job.id)
        else:
            self._stale.add(a.job.id)
        if quiet:
            # Thousands of quick tasks would flood the log (and a line costs as much as a
            # quarter of a `true` task): they are counted, and summed up now and then.
            log.debug(
                "%s/%s done (attempt %d, %s)", a.job.id, a.task.id, a.gen + 1, outcome.describe()
            )
        else:
            log.info(
                "%s/%s %s (attempt %d, %s)",
                a.job.id,
                a.task.id,
                state,
                a.gen + 1,
                outcome.describe(),
            )

    def _learn_result(self, active: ActiveJob, task: Task) -> None:
        """Our commit lost the race: record the winner's result so the task is never retried."""
        try:
            ref = parse_result(self.store.get(task.result_id))
        except NotFound:
            ref = None
        with self._lock:
            if ref is not None:
                active.view.results[task.id] = ref
            else:
                log.error(
                    "%s/%s: its result id is taken but no result is visible; giving up on it",
                    active.job.id,
                    task.id,
                )
                active.given_up.add(task.id)
        self._reload.add(active.job.id)

    def _commit_lost(self, active: ActiveJob, task: Task, top: ClaimRef) -> None:
        """Every generation's worker died: the task is committed as failed, once."""
        now = self.clock.time()
        outcome = AttemptOutcome(
            None, now, now, error="no attempt left: every worker running it died"
        )
        a = Assignment(active.job, task, top.gen, top.file)
        try:
            self._commit(a, active, "failed", outcome, [], "", "", outcome.error)
        except DrivemrError as exc:
            log.warning("%s/%s: could not commit the failure: %s", active.job.id, task.id, exc)


def _is_empty(folder: Path) -> bool:
    try:
        with os.scandir(folder) as entries:
            return next(entries, None) is None
    except OSError:
        return False


def _empty(folder: Path) -> bool:
    """Remove what an attempt left in its working folder. Never raises (logs instead);
    True when nothing was left behind, so the next attempt need not look."""
    try:
        with os.scandir(folder) as entries:
            leftovers = [Path(e.path) for e in entries]
        if not leftovers:
            return True
        for path in leftovers:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.warning("could not empty %s: %s", folder, exc)
    return False  # something was removed (maybe not everything): look before the next use


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_inside(base: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(base.resolve())
    except ValueError:
        return False
    return True


def _inside(base: Path, rel: str) -> Path:
    """Join a name from the store onto a local folder, refusing anything that escapes it."""
    try:
        from drivemr.safepaths import safe_join

        return safe_join(base, rel)
    except ImportError:  # pragma: no cover
        target = (base / rel).resolve()
        if not _is_inside(base, target):
            raise SecurityError(f"path {rel!r} escapes {base}") from None
        return target


__all__ = ["Clock", "SystemClock", "Worker", "WorkerConfig"]
