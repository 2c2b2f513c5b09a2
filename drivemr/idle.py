"""Is the PC's owner using it? For ``drivemr worker --when-idle``.

Like HTCondor's and BOINC's desktop policies: the worker claims tasks only while the CPU
load of every process *other than the worker and its task processes* stays below a
threshold. Our own tasks must not count, or a busy worker would see itself and stop.

The load is measured with psutil (Windows, macOS and Linux alike) as a fraction of the
whole machine: 0.25 means a quarter of all cores. Every measuring function is injectable
so tests need no real load.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable

import psutil

DEFAULT_THRESHOLD = 0.25


def own_process_tree(root: int | None = None) -> set[int]:
    """This process and every descendant (the worker and the tasks it runs)."""
    pid = os.getpid() if root is None else root
    pids = {pid}
    try:
        pids.update(p.pid for p in psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        pass
    return pids


class ProcessCPU:
    """CPU percent (of one core, like ``top``) of given processes since the previous call.

    psutil needs the same Process object across calls to compute a delta, so they are kept.
    A process seen for the first time (a task started since) counts with its CPU time so
    far over the window, or over its age if it is older than the window."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._procs: dict[int, psutil.Process] = {}
        self._clock = clock
        self._last: float | None = None

    def __call__(self, pids: Iterable[int]) -> float:
        now = self._clock()
        window = None if self._last is None else max(1e-3, now - self._last)
        self._last = now
        total = 0.0
        seen: dict[int, psutil.Process] = {}
        for pid in pids:
            proc = self._procs.get(pid)
            try:
                if proc is None:
                    proc = psutil.Process(pid)
                    proc.cpu_percent(None)  # the reference point for the next call
                    if window is not None:
                        times = proc.cpu_times()
                        age = max(1e-3, time.time() - proc.create_time())
                        total += 100.0 * (times.user + times.system) / max(age, window)
                else:
                    total += proc.cpu_percent(None)
                seen[pid] = proc
            except psutil.Error:
                continue
        self._procs = seen
        return total


class IdleMonitor:
    """``busy()`` is True while other processes load the CPU above ``threshold``.

    ``cpu_percent()`` gives the whole machine's CPU percent (0-100) since its previous call
    (psutil.cpu_percent semantics); ``own_pids()`` the worker's process tree;
    ``process_percent(pids)`` those processes' CPU percent of one core since the previous
    call. Measurements are at least ``interval`` seconds apart (shorter windows are noise),
    and until the first one the PC counts as busy (nothing is claimed on a guess);
    once busy, the PC must stay below the threshold for ``hold`` seconds before it counts as
    idle again, so a pause in typing does not start a task that then competes with the owner.
    """

    def __init__(
        self,
        threshold: float = DEFAULT_THRESHOLD,
        *,
        cpu_percent: Callable[[], float] = psutil.cpu_percent,
        own_pids: Callable[[], Iterable[int]] = own_process_tree,
        process_percent: Callable[[Iterable[int]], float] | None = None,
        cpu_count: int | None = None,
        interval: float = 1.0,
        hold: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"idle threshold must be between 0 and 1, not {threshold}")
        self.threshold = threshold
        self._cpu_percent = cpu_percent
        self._own_pids = own_pids
        self._process_percent = process_percent or ProcessCPU()
        self._cpus = cpu_count or psutil.cpu_count() or 1
        self.interval = interval
        self.hold = hold
        self._clock = clock
        self._measured_at: float | None = None
        self._busy_until = float("-inf")
        self._busy = True  # busy until a full window has shown the PC idle
        self.load = 0.0
        """Other processes' share of the machine at the last measurement (0..1)."""
        self.prime()

    def prime(self) -> None:
        """Start a measuring window now (psutil's first reading is meaningless)."""
        self._cpu_percent()
        self._process_percent(self._own_pids())
        self._measured_at = self._clock()

    def measure(self) -> float:
        """Other processes' share of the machine since the previous measurement."""
        total = float(self._cpu_percent()) / 100.0
        own = float(self._process_percent(self._own_pids())) / 100.0 / self._cpus
        self._measured_at = self._clock()
        self.load = min(1.0, max(0.0, total - own))
        return self.load

    def busy(self) -> bool:
        """True while the owner is using the PC: do not claim new tasks."""
        now = self._clock()
        if self._measured_at is not None and now - self._measured_at < self.interval:
            return self._busy
        if self.measure() > self.threshold:
            self._busy_until = now + self.hold
            self._busy = True
        else:
            self._busy = now < self._busy_until
        return self._busy

    def describe(self) -> str:
        """For log lines: why the worker paused or resumed."""
        return f"other processes use {self.load:.0%} of the CPU (threshold {self.threshold:.0%})"


__all__ = ["DEFAULT_THRESHOLD", "IdleMonitor", "ProcessCPU", "own_process_tree"]
