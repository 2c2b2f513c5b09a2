"""What a worker is told (its config) and how it tells time (its clock).

The clock is a parameter so tests can step a worker through minutes of lease in no
time; the system clock counts time asleep, so a PC waking from suspend knows how long it
was away before it commits anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from drivemr.protocol import Job

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
    pass_env: frozenset[str] = frozenset()
    """Variables on the secrets deny-list (drivemr.taskenv) that tasks get anyway."""

    @property
    def heartbeat_every(self) -> float:
        return self.heartbeat_interval or self.lease / 3
