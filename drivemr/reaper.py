"""Tasks die with their worker, however the worker ends (SIGKILL, OOM kill, crash, power
button on its terminal), without relying on code running in the dying worker.

Tasks run in a process group of their own, or a session of their own when the worker has a
terminal (drivemr.runner), so the worker's terminal signals do not reach them, which is
also why nothing reaps them when the worker dies. The guard fixes that:

* POSIX (Linux, macOS): one *watchdog* process per worker process, started on the first
  task, blocked on reading a pipe whose only write end the worker holds and never writes
  to. The worker records each task's session id in a small file the two share (one
  ``pwrite`` per task start and end, no wake-up of the watchdog). When the pipe closes
  (the kernel closes it however the worker died) the watchdog reads the file and kills, in
  rounds until nobody is found: every recorded session's process group, every process of
  those sessions, the descendants of the task processes, and every process whose
  environment carries this worker's random ``DRIVEMR_TASK_TOKEN`` (double forks and
  ``setsid`` keep their environment); then it exits.
* Windows: a job object with ``JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE``; every task process is
  assigned to it, its descendants inherit the job, and Windows kills them all when the
  worker's handle closes, which it does when the worker ends, however it ends.

Why not ``PR_SET_PDEATHSIG`` (Linux): it needs a ``preexec_fn`` (unsafe in a threaded worker,
and it turns the vfork fast path into a full fork: 2-3x the spawn cost measured) or an extra
exec per task, it fires when the *thread* that forked exits rather than the process, and it
reaches only the direct child. The watchdog costs one idle process per worker, two 16-byte
``pwrite`` calls per task, and nothing else while nothing dies.
See docs/orphans.md for what is caught on each OS.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from drivemr.winjob import KillOnCloseJob

log = logging.getLogger("drivemr.reaper")

TOKEN_ENV = "DRIVEMR_TASK_TOKEN"
"""Every task of a worker carries the worker's token in its environment."""

SWEEP_PAUSE = 0.05
"""Between two kill rounds: a process forked while a round ran is found by the next."""
SWEEP_ROUNDS = 40
MAX_TRACKED = 100_000
"""The watchdog reads at most this many records (a worker runs a few tasks at a time)."""


class TaskGuard:
    """The worker side: gives tasks the token, registers them, keeps the watchdog alive.

    Registering a task costs one ``pwrite`` of 16 bytes into a file the watchdog reads only
    once the worker is gone: no message, no wake-up of the watchdog, nothing that can block.
    Slots register their tasks at the same time, thousands per second with short items, so
    no system call is made under the lock: a thread that blocked on the lock while another
    held it across a call waited for that thread to be scheduled again, which on a loaded
    machine made every start of a trivial item slower (docs/packing.md, "The folder floor").
    """

    def __init__(self, token: str | None = None) -> None:
        self.token = token or secrets.token_hex(16)
        self._lock = threading.Lock()
        self._registry: BinaryIO | None = None  # an unlinked file shared with the watchdog
        self._slots: dict[int, int] = {}  # task pid -> its record's index in the registry
        self._free: list[int] = []  # records of ended tasks, reused first
        self._size = 0  # records ever used: the next new index
        self._writing = 0  # record writes under way outside the lock
        self._close_registry = False  # close() came while writes were under way
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._lifeline: int | None = None  # the pipe's write end: closes when we end
        self._job: KillOnCloseJob | None = None
        self.restarts = 0
        self.record_errors = 0
        self.closed = False
        self.broken: str | None = None
        """Why tasks are not guarded, once the watchdog or the job could not be made."""

    def env(self, env: Mapping[str, str]) -> dict[str, str]:
        """The task's environment: ``env`` plus the token."""
        out = dict(env)
        out[TOKEN_ENV] = self.token
        return out

    def track(self, proc: subprocess.Popen[bytes]) -> None:
        """``proc`` was just started in a process group or session of its own."""
        if sys.platform == "win32":
            with self._lock:
                if self._job is None and self.broken is None and not self.closed:
                    try:
                        self._job = KillOnCloseJob()
                    except OSError as exc:
                        self._give_up(f"no job object ({exc})")
                if self._job is not None:
                    self._job.assign(proc)
            return
        if not self._watchdog_alive():
            with self._lock:
                if not self._watching():
                    return
        with self._lock:
            if proc.pid in self._slots or self._registry is None or self.closed:
                return
            if self._free:
                slot = self._free.pop()
            else:
                slot, self._size = self._size, self._size + 1
            self._slots[proc.pid] = slot
            self._writing += 1
            fd = self._registry.fileno()
        self._record(fd, slot, b"%15d\n" % proc.pid, None)

    def untrack(self, proc: subprocess.Popen[bytes]) -> None:
        """``proc``'s group was reaped: its id may be reused, so forget it."""
        with self._lock:
            slot = self._slots.pop(proc.pid, None)
            if slot is None or self._registry is None:
                return
            self._writing += 1
            fd = self._registry.fileno()
        self._record(fd, slot, _BLANK, slot)  # blanked before anyone may reuse it

    def _watchdog_alive(self) -> bool:
        """The usual case, checked without the lock (``poll`` is safe from any thread)."""
        watchdog = self._watchdog
        return (
            watchdog is not None
            and not self.closed
            and self.broken is None
            and watchdog.poll() is None
        )

    def _record(self, fd: int, slot: int, data: bytes, free: int | None) -> None:
        """Write a record outside the lock (the slot is this thread's until freed), then
        hand ``free`` back, and close the registry if close() came meanwhile."""
        try:
            os.pwrite(fd, data, slot * RECORD)
        except OSError as exc:  # the temp folder's disk is full: the token still works
            if not self.record_errors:
                log.warning("could not record a task for the watchdog: %s", exc)
            self.record_errors += 1
        with self._lock:
            if free is not None:
                self._free.append(free)
            self._writing -= 1
            if self._close_registry and not self._writing:
                self._close_registry_now()

    @property
    def watchdog_pid(self) -> int | None:
        return self._watchdog.pid if self._watchdog is not None else None

    def close(self, timeout: float = 10.0) -> None:
        """Let go as a death would (the watchdog kills what is left and exits), and wait
        for the watchdog; for a clean exit and for tests."""
        with self._lock:
            self.closed = True
            if self._lifeline is not None:
                os.close(self._lifeline)
                self._lifeline = None
            watchdog, self._watchdog = self._watchdog, None
            if self._job is not None:
                self._job.close()
                self._job = None
        if watchdog is not None:
            try:
                watchdog.wait(timeout)
            except subprocess.TimeoutExpired:
                watchdog.kill()
                watchdog.wait()
        with self._lock:
            if self._writing:
                self._close_registry = True  # the last write under way closes it
            else:
                self._close_registry_now()

    # ---------------------------------------------------------------- under self._lock

    def _close_registry_now(self) -> None:
        self._close_registry = False
        if self._registry is not None:
            self._registry.close()
            self._registry = None

    def _watching(self) -> bool:
        """A live watchdog, started (or restarted, if it died) on demand."""
        if self.closed or self.broken is not None:
            return False
        if self._watchdog is not None and self._watchdog.poll() is None:
            return True
        try:
            if self._registry is None:
                self._registry = tempfile.TemporaryFile()  # noqa: SIM115 - lives with us
            if self._watchdog is not None:  # it died: its successor reads the same file
                self.restarts += 1
                log.warning(
                    "the task watchdog ended (%s); starting another", self._watchdog.returncode
                )
            self._start()
        except OSError as exc:
            self._give_up(f"no watchdog process ({exc})")
            return False
        return True

    def _start(self) -> None:
        assert self._registry is not None
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None
        read, write = os.pipe()  # neither end is inherited by the tasks (close_fds)
        registry = self._registry.fileno()
        try:
            env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
            code = f"import sys; sys.path.insert(0, {str(_PACKAGE_PARENT)!r}); " + (
                "from drivemr.reaper import main; sys.exit(main(sys.argv[1:]))"
            )
            self._watchdog = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    code,
                    self.token,
                    str(registry),
                    f"{os.getsid(0)},{os.getpgid(0)}",  # the worker's own: never a task's
                ],
                stdin=read,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,  # holds none of the worker's pipes open
                pass_fds=(registry,),
                env=env,
                start_new_session=True,  # no terminal signal reaches it either
            )
        except BaseException:
            os.close(write)
            raise
        finally:
            os.close(read)
        self._lifeline = write

    def _give_up(self, why: str) -> None:
        self.broken = why
        log.warning("tasks will not be killed if this worker dies: %s", why)


RECORD = 16
"""Bytes per task in the registry: its pid, right-aligned, and a newline; blanks when free."""
_BLANK = b" " * (RECORD - 1) + b"\n"
_PACKAGE_PARENT = Path(__file__).resolve().parent.parent


# -------------------------------------------------------------------- the watchdog process


def main(argv: list[str]) -> int:
    """``python -c ... TOKEN REGISTRY_FD [SID,PGID]``, stdin the worker's pipe: wait for its
    end (a read that returns nothing), read the registry, sweep. SID,PGID: the worker's own
    session and process group, which its tasks may share but which are not theirs."""
    spared = _spared(argv[2]) if len(argv) == 3 else set()
    if len(argv) not in (2, 3) or not argv[0] or not argv[1].isdigit() or spared is None:
        print(
            "usage: drivemr-reaper TOKEN REGISTRY_FD [SID,PGID]  (stdin: the worker's pipe)",
            file=sys.stderr,
        )
        return 2
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    try:
        while os.read(0, 4096):
            pass  # nothing is ever written: only the end matters
    except OSError:
        pass  # a broken pipe is an end too
    sweep(argv[0], read_registry(int(argv[1])), spared)
    return 0


def _spared(text: str) -> set[int] | None:
    parts = text.split(",")
    if len(parts) != 2 or not all(p.isdigit() and len(p) <= 10 for p in parts):
        return None
    return {int(p) for p in parts}


def read_registry(fd: int) -> set[int]:
    """The live task sessions recorded in the registry file (junk is ignored)."""
    data = b""
    while len(data) < MAX_TRACKED * RECORD:
        try:
            chunk = os.pread(fd, 1 << 16, len(data))
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return parse_registry(data)


def parse_registry(data: bytes) -> set[int]:
    live: set[int] = set()
    for line in data.splitlines():
        digits = line.strip()
        if digits.isdigit() and len(digits) <= 10 and int(digits) > 1:
            live.add(int(digits))
    return live


def sweep(token: str, sessions: set[int], spared: set[int] | None = None) -> int:
    """Kill, in rounds, everything of the worker's tasks; returns how many were killed.
    ``sessions``: the recorded tasks' process groups (and sessions); ``spared``: session
    and group ids never to treat as a task's (the worker's own)."""
    total = 0
    quiet = 0
    sessions = sessions - (spared or set())
    for _ in range(SWEEP_ROUNDS):
        killed = kill_round(token, sessions, spared or set())
        total += killed
        quiet = 0 if killed else quiet + 1
        if quiet >= 2:  # two rounds found nobody: nothing was forking while we killed
            break
        time.sleep(SWEEP_PAUSE)
    return total


def kill_round(token: str, sessions: set[int], spared: set[int] | None = None) -> int:
    """One round. ``sessions`` holds the tasks' process group and session ids, and grows by
    the sessions and groups of the token holders found: only a task or its descendants
    carry the token, and apart from the worker's own (``spared``: tasks started in a
    process group share the worker's session) only they can have made those sessions and
    groups (either is made by its first member), so their members are the task's too."""
    import psutil  # only the watchdog needs it, and only once its worker is gone

    spared = spared or set()
    me = os.getpid()
    victims: dict[int, psutil.Process] = {}
    for sid in sessions:  # descendants that left the group: found before their parent dies
        _add_descendants(sid, victims)
    for sid in sessions:
        try:
            os.killpg(sid, signal.SIGKILL)
        except OSError:
            pass  # gone already, or never became a group
    found: set[int] = set()
    holders: list[int] = []
    for proc in psutil.process_iter():
        if proc.pid in (me, 0, 1) or proc.pid in victims:
            continue
        try:
            session, group = _session(proc.pid), _group(proc.pid)
            if session in sessions or group in sessions:
                victims[proc.pid] = proc
            elif proc.environ().get(TOKEN_ENV) == token:
                victims[proc.pid] = proc
                holders.append(proc.pid)
                for made in (session, group):  # a task's session or group: next round
                    if made is not None and made > 1 and made not in spared:
                        found.add(made)
        except (psutil.Error, OSError):
            continue  # gone, or not ours to read
    for pid in holders:  # their children that cleared their environment
        _add_descendants(pid, victims)
    sessions |= found
    killed = 0
    victims.pop(me, None)
    for proc in victims.values():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue  # dead already, waiting for its parent to reap it
            proc.kill()
            killed += 1
        except psutil.Error:
            pass
    return killed


def _add_descendants(pid: int, victims: dict[int, Any]) -> None:
    import psutil

    try:
        for child in psutil.Process(pid).children(recursive=True):
            victims[child.pid] = child
    except psutil.Error:  # gone, or not ours to read
        pass


def _group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


_GUARD: TaskGuard | None = None
_GUARD_LOCK = threading.Lock()


def task_guard() -> TaskGuard:
    """The process's guard: one watchdog (or job object) however many workers or slots."""
    global _GUARD
    guard = _GUARD  # set once: every start after the first reads it without the lock
    if guard is not None:
        return guard
    with _GUARD_LOCK:
        if _GUARD is None:
            _GUARD = TaskGuard()
        return _GUARD
