"""What the parts of one worker share: the jobs it serves, the attempts it runs, what
changed in the store, and the lock that guards them.

Every part (the loop, the heartbeat thread, the slots) reads this; :class:`Shared` is the
single owner of the lock, so "who may touch what" is written here once.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from drivemr.protocol import IdPool, Job, JobView, Task
from drivemr.results import ResultReader
from drivemr.runner import Attempt
from drivemr.stores.base import FileInfo, Store
from drivemr.trust import Trust
from drivemr.worker.config import Clock, WorkerConfig


@dataclass
class Assignment:
    """One claimed attempt of a task, running in a slot.

    ``attempt`` counts from 0. It is the *g* of ``claims/<task>.g<g>.<worker>`` in the
    README, the index of the claim id in ``task.claim_ids`` and the protocol's
    ``ClaimRef.gen``; people are shown ``attempt + 1``."""

    job: Job
    task: Task
    attempt: int
    claim: FileInfo
    process: Attempt = field(default_factory=Attempt)
    """The attempt's subprocess, which another thread may kill."""
    abandon: str | None = None
    """Why the attempt's result must not be committed (cancelled, claim lost, shutdown)."""

    def abandon_and_kill(self, reason: str) -> None:
        """Mark the attempt abandoned (its result is never committed; the first reason
        stays), then kill its process. Any thread; the process kill is idempotent."""
        self.abandon = self.abandon or reason
        self.process.kill()


class Retry(NamedTuple):
    """A failed (or unclaimable) attempt to try again once ``due`` (monotonic time)."""

    attempt: int
    due: float


@dataclass
class ActiveJob:
    job: Job
    view: JobView
    pending: collections.deque[str]
    """Never-claimed tasks, in the order this worker means to claim them."""
    elsewhere: set[str]
    """Tasks claimed by another worker (or a past life of ours) and not finished."""
    retries: dict[str, Retry] = field(default_factory=dict)
    nonces: dict[tuple[str, int], str] = field(default_factory=dict)
    given_up: set[str] = field(default_factory=set)
    """Tasks whose result id is taken but whose result cannot be seen (a damaged store)."""
    listed_at: float = 0.0
    frontier: int | None = None
    """Index of the last map task this worker claimed first: the end of its run of tasks."""
    replanned: bool = True
    """``pending`` was just planned from a listing: its first task may be claimed at once."""
    files_ready: threading.Lock = field(default_factory=threading.Lock)
    """Owned by the job: held by the one slot fetching the job's shipped files."""
    files_dir: Path | None = None
    urgent: set[str] = field(default_factory=set)
    """Tasks claimed by a worker known to be dead (or by our own past life): reclaimed
    before any never-claimed task, so a dead PC's work waits no longer than the lease."""
    burned: dict[str, set[int]] = field(default_factory=dict)
    """Task -> attempts whose minted claim id holds a file that does not open (forged or
    junk): never a sign of life, never a failure; the next attempt id is used instead."""
    blocked: set[str] = field(default_factory=set)
    """Tasks whose every remaining claim id is burned: blocked by untrusted files (never
    failed); also in ``given_up`` until the trusted list changes."""
    trust_generation: int = 0
    """The trusted list ``burned`` and ``blocked`` were judged with."""
    committed: set[str] = field(default_factory=set)
    """Ids of the result files this worker created in the job (it verifies the job's
    results when the newest is one of them: :mod:`drivemr.worker.verify`)."""
    verify_at: float | None = None
    """Every task was settled, some only by hints, when first seen (monotonic): if the
    job has not ended a lease later, this worker opens the hints itself."""
    claimers_learned: bool = False
    """The workers of the job's unfinished claims were read from their seals once (jobs of
    format 3, whose claim names say no worker: our own past life's claims go first)."""


@dataclass
class Dirty:
    """What the store says changed and this worker has not looked at yet.

    The loop reads and clears it; slots and the heartbeat only add to it (a ``set.add``
    or a flag store: atomic under the GIL, so no lock)."""

    reload: set[str] = field(default_factory=set)
    """Jobs to relist now."""
    stale: set[str] = field(default_factory=set)
    """Jobs to relist once they have no local candidates left."""
    markers: set[str] = field(default_factory=set)
    """Jobs whose folder changed: look for cancel and finish markers."""
    root: bool = True
    """The root folder changed: relist it (new jobs, heartbeats)."""

    @property
    def now(self) -> bool:
        """Something the loop must look at before sleeping."""
        return self.root or bool(self.reload)


class Rounds:
    """The loop's rounds (a look at the store, then claims for the free slots), counted,
    so a slot can wait until the loop has had its turn: a slot that could not claim its
    next task itself lets the loop claim for it before its result takes a write."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._started = 0
        self._ended = 0
        self._over = False

    def started(self) -> None:
        with self._cv:
            self._started += 1

    def ended(self) -> None:
        with self._cv:
            self._ended += 1
            self._cv.notify_all()

    def over(self) -> None:
        """The loop runs no more rounds (it stops): nobody waits for one."""
        with self._cv:
            self._over = True
            self._cv.notify_all()

    def ticket(self) -> int:
        """For :meth:`wait`: rounds started so far."""
        with self._cv:
            return self._started

    def passed(self, ticket: int) -> bool:
        """A round that started after ``ticket`` was taken has ended (or none will run)."""
        with self._cv:
            return self._over or self._ended > ticket

    def wait(self, ticket: int) -> None:
        """Until :meth:`passed`."""
        with self._cv:
            self._cv.wait_for(lambda: self._over or self._ended > ticket)


class Shared:
    """The state every part of one worker uses. Owns ``lock`` (re-entrant), which guards
    ``jobs``, ``done_jobs``, ``running``, ``trailing``, ``stats`` updates from slots, and each
    ActiveJob's view, retries and given_up; ``stopping`` and ``wake`` are the loop's."""

    def __init__(self, store: Store, config: WorkerConfig, clock: Clock, trust: Trust) -> None:
        self.store = store
        self.trust = trust
        """This PC's key (seals what we write) and trusted keys (what we believe)."""
        self.results = ResultReader(trust)
        """Opens results against the same Trust (its keys, its once-only reports)."""
        self.config = config
        self.clock = clock
        self.id = config.worker_id
        self.workdir = config.workdir.absolute()
        self.pool = IdPool(store, batch=100)
        self.lock = threading.RLock()
        self.jobs: dict[str, ActiveJob] = {}
        self.done_jobs: set[str] = set()
        self.running: dict[tuple[str, str], Assignment] = {}
        self.trailing: set[tuple[str, str]] = set()
        """Attempts in ``running`` that ended and whose result trails, being committed
        while their slot runs its next attempt (worker/trail.py): they hold no slot."""
        self.stats = collections.Counter[str]()
        self.dirty = Dirty()
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.rounds = Rounds()
        self.fatal: BaseException | None = None
        """Set when no store call can succeed any more (signed out): the worker stops."""

    def fail(self, exc: BaseException) -> None:
        """No store call can succeed any more (signed out): record why, stop claiming and
        wake the loop, which ends the worker. Any thread may call it."""
        self.fatal = exc
        self.stopping.set()
        self.wake.set()

    def is_running(self, job_id: str, task_id: str) -> bool:
        """Running here, or ended here and its result still being committed."""
        return (job_id, task_id) in self.running

    def busy_slots(self) -> int:
        """Slots running an attempt (a trailing result holds none)."""
        with self.lock:  # both sets change under it: read them as one
            return len(self.running) - len(self.trailing)

    def abandon(
        self, reason: str, which: Callable[[Assignment], bool] = lambda a: True
    ) -> list[Assignment]:
        """Abandon and kill the running attempts ``which`` selects (all by default):
        chosen under the lock, killed outside it. Returns them."""
        with self.lock:
            doomed = [a for a in self.running.values() if which(a)]
        for a in doomed:
            a.abandon_and_kill(reason)
        return doomed
