"""The seed article's ``TaskManager``, without its fixed sleeps.

Same public surface as the article (``n_threads``, ``procs``, ``task_descriptors`` taken
from the end, the ``update_task_descriptors()`` hook, ``update_tasks_status()``, ``run()``),
so its subclasses and test code run unchanged. Two things differ on purpose:

* a freed slot is refilled at once: one watcher thread per slot waits for the processes to
  exit and wakes ``run()``, instead of 0.2 s / 0.5 s sleeps around every poll;
* ``run()`` returns only when the list is empty *and* every process it started has exited.

Only ``subprocess`` and ``threading`` are used, so it behaves the same on Windows.
"""

from __future__ import annotations

import queue
import subprocess
import threading
from collections.abc import Mapping


class TaskManager:
    """Runs argv lists from ``task_descriptors`` in ``n_threads`` subprocess slots."""

    def __init__(self, n_threads: int, timeouts: Mapping[str, float] | None = None) -> None:
        """``timeouts`` keeps the article's keys for compatibility; nothing sleeps on them."""
        if n_threads < 1:
            raise ValueError(f"n_threads must be at least 1, not {n_threads}")
        timeouts = timeouts or {}
        self.proc_poll_dt = timeouts.get("proc_poll_dt", 0.2)
        self.next_free_dt = timeouts.get("next_free_dt", 0.5)
        self.proc_popen_dt = timeouts.get("proc_popen_dt", 0.5)
        self.n_threads = n_threads
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * n_threads
        self.task_descriptors: list[list[str]] = []
        self._started: queue.SimpleQueue[subprocess.Popen[bytes] | None] = queue.SimpleQueue()
        self._exited = threading.Condition()
        self._n_exits = 0  # bumped by the watcher threads; run() waits for it to move

    def update_task_descriptors(self) -> None:
        """Hook for subclasses: fill or refresh ``task_descriptors``; called when a slot is free."""

    def update_tasks_status(self) -> int | None:
        """Clear the slots of exited processes; return a free slot (the last one) or None."""
        free = None
        for slot, proc in enumerate(self.procs):
            if proc is not None and proc.poll() is not None:
                self.procs[slot] = None
            if self.procs[slot] is None:
                free = slot
        return free

    def run(self) -> None:
        """Start tasks as slots free up; return once the list is empty and all have exited."""
        watchers = [threading.Thread(target=self._watch, daemon=True) for _ in self.procs]
        for watcher in watchers:
            watcher.start()
        for proc in self.procs:  # put there by a caller: watch them too
            if proc is not None:
                self._started.put(proc)
        try:
            while True:
                with self._exited:
                    seen = self._n_exits  # read before polling: no exit slips by unnoticed
                slot = self.update_tasks_status()
                if slot is not None:
                    self.update_task_descriptors()
                    if self.task_descriptors:
                        proc = subprocess.Popen(self.task_descriptors.pop())
                        self.procs[slot] = proc
                        self._started.put(proc)
                        continue
                    if all(proc is None for proc in self.procs):
                        return
                with self._exited:
                    while self._n_exits == seen:
                        self._exited.wait()
        finally:
            for _ in watchers:
                self._started.put(None)

    def _watch(self) -> None:
        """One thread per slot, reused: a thread per process would cost more than `true`."""
        while (proc := self._started.get()) is not None:
            proc.wait()
            with self._exited:
                self._n_exits += 1
                self._exited.notify_all()
