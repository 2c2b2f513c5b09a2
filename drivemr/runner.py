"""Running one attempt as a local subprocess: argv only, a timeout, and a kill that reaches
the whole process tree, on Windows, macOS and Linux alike. Every attempt is also registered
with the process's task guard (drivemr.reaper), which kills it if the worker dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import psutil

from drivemr.reaper import TaskGuard, task_guard

TAIL_BYTES = 64 * 1024


@dataclass(frozen=True)
class AttemptOutcome:
    exit_code: int | None
    """None when the process could not start or was killed."""
    started: float
    ended: float
    timed_out: bool = False
    killed: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.killed and self.error is None

    @property
    def duration(self) -> float:
        return max(0.0, self.ended - self.started)

    def describe(self) -> str:
        if self.error:
            return self.error
        if self.timed_out:
            return "timed out"
        if self.killed:
            return "killed"
        if self.exit_code is not None and self.exit_code < 0:
            return f"killed by signal {-self.exit_code}"
        return f"exit code {self.exit_code}"


def resolve_argv(argv: Sequence[str]) -> list[str]:
    """``python``/``python3`` as the first word run the worker's own interpreter, so the same
    job runs on PCs where only ``python`` or only ``py`` is on PATH."""
    out = list(argv)
    if out and out[0] in ("python", "python3"):
        out[0] = sys.executable
    return out


class CommandPaths:
    """Where bare command names resolve on PATH, looked up once for many starts (POSIX).

    ``subprocess`` resolves a bare name such as ``true`` at every start: it builds the list
    of ``PATH`` entries in Python and the child tries ``execve`` on each in turn until one
    works, while the thread that started it waits (9 calls for ``/usr/bin/true`` on a
    typical PATH). A pack runs the same command for every item, so its items share one
    ``CommandPaths``: the first start looks the name up as ``execvp`` would and the next
    ones exec the file found directly (``argv[0]`` stays as written). A start that fails
    through the file found forgets it and searches PATH again, as before; so do names with
    a slash, a PATH with a relative entry (relative to each item's own folder) and Windows,
    where ``CreateProcess`` searches on its own.
    """

    def __init__(self) -> None:
        self._found: dict[tuple[str, str | None], str | None] = {}

    def lookup(self, name: str, env: Mapping[str, str]) -> str | None:
        """The file ``name`` runs with ``env``'s PATH, or None to let the start search."""
        if os.name == "nt" or not name or "/" in name:
            return None
        key = (name, env.get("PATH"))
        if key not in self._found:
            self._found[key] = _search_path(name, env)
        return self._found[key]

    def forget(self, name: str, env: Mapping[str, str]) -> None:
        self._found[(name, env.get("PATH"))] = None


def _search_path(name: str, env: Mapping[str, str]) -> str | None:
    for folder in os.get_exec_path(env):
        if not os.path.isabs(folder):
            return None  # relative to the child's folder: leave it to the start
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """Kill a process and every descendant, even ones that were re-parented."""
    try:
        parent = psutil.Process(proc.pid)
        family = [*parent.children(recursive=True), parent]
    except psutil.Error:
        family = []
    if os.name != "nt":
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the group we started it in
        except (ProcessLookupError, PermissionError, OSError):
            pass
    for p in family:
        try:
            p.kill()
        except psutil.Error:
            pass
    # Wait until each is gone or a zombie: an orphaned grandchild's zombie waits for init to
    # reap it, which in a container (a PID 1 that reaps lazily, or never) can take seconds.
    deadline = time.monotonic() + 2
    while family and time.monotonic() < deadline:
        _, family = psutil.wait_procs(family, timeout=0.02)
        family = [p for p in family if _running(p)]


def _running(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


_DEVNULL: int | None = None
_APART: dict[str, object] | None = None


def _apart() -> dict[str, object]:
    """How a task is started apart from the worker, so that a kill reaches its whole tree
    and no signal of the worker's terminal reaches it (decided once per worker process).

    Windows: a process group of its own. POSIX: a process group of its own too when the
    worker has no controlling terminal (a service, ``nohup``, CI, a remote runner); only a
    worker with a terminal puts each task in a session of its own, so that a task that opens
    ``/dev/tty`` (an ``ssh`` or ``git`` prompt) fails at once instead of stopping on
    ``SIGTTIN`` in a background group. A session costs: with Linux's scheduler autogroups
    (on by default), each ``setsid`` makes a scheduling group, and a short task waits for
    it to be scheduled against the whole machine; on a loaded 2-core machine that made each
    start of ``true`` 40-90% slower than in a process group (docs/packing.md, "The folder floor").
    Python 3.10 has no ``process_group``: sessions there.
    """
    global _APART
    if _APART is None:
        if os.name == "nt":
            _APART = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
        elif sys.version_info >= (3, 11) and not has_terminal():
            _APART = {"process_group": 0}
        else:
            _APART = {"start_new_session": True}
    return _APART


def has_terminal() -> bool:
    """Whether this process has a controlling terminal (POSIX)."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError:
        return False
    os.close(fd)
    return True


def _devnull() -> int:
    """One /dev/null descriptor for every attempt's stdin (Popen opens one per call)."""
    global _DEVNULL
    if _DEVNULL is None:
        _DEVNULL = os.open(os.devnull, os.O_RDONLY)
    return _DEVNULL


class Attempt:
    """A running subprocess that another thread may kill (cancel, lost claim, shutdown)."""

    def __init__(self, guard: TaskGuard | None = None) -> None:
        self._guard = guard
        self._proc: subprocess.Popen[bytes] | None = None
        self._killed = False  # set under _lock; one per attempt, so kept cheap
        self._lock = threading.Lock()

    def kill(self) -> None:
        with self._lock:
            self._killed = True
            if self._proc is not None and self._proc.poll() is None:
                kill_tree(self._proc)

    @property
    def killed(self) -> bool:
        return self._killed

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        timeout: float | None,
        stdout: BinaryIO,
        stderr: BinaryIO,
        paths: CommandPaths | None = None,
    ) -> AttemptOutcome:
        """Run ``argv``; its output goes to the given (already open) files. ``paths``:
        where bare command names were found for earlier starts (a pack's items)."""
        started = time.time()
        guard = self._guard or task_guard()
        command = resolve_argv(argv)
        task_env = guard.env(env)
        try:
            with self._lock:
                if self._killed:
                    return AttemptOutcome(None, started, time.time(), killed=True)
                self._proc = self._start(command, cwd, task_env, stdout, stderr, paths)
                guard.track(self._proc)  # never raises: a task runs guarded or not at all
        except OSError as exc:
            return AttemptOutcome(
                None, started, time.time(), error=f"could not start {argv[0]!r}: {exc}"
            )
        proc = self._proc
        timed_out = False
        try:
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                kill_tree(proc)
                code = proc.wait()
            ended = time.time()
            if self.killed:
                return AttemptOutcome(None, started, ended, killed=True)
            if not timed_out and os.name != "nt":
                self._reap_group(proc.pid)
            return AttemptOutcome(None if timed_out else code, started, ended, timed_out=timed_out)
        finally:
            guard.untrack(proc)

    @staticmethod
    def _start(
        argv: list[str],
        cwd: Path,
        env: dict[str, str],
        stdout: BinaryIO,
        stderr: BinaryIO,
        paths: CommandPaths | None,
    ) -> subprocess.Popen[bytes]:
        found = paths.lookup(argv[0], env) if paths is not None and argv else None
        try:
            return subprocess.Popen(
                argv,
                executable=found,
                cwd=cwd,
                env=env,
                stdin=_devnull(),
                stdout=stdout,
                stderr=stderr,
                **_apart(),  # type: ignore[call-overload]
            )
        except OSError:
            if found is None:
                raise
            assert paths is not None
            paths.forget(argv[0], env)  # moved or replaced: search PATH as before
            return Attempt._start(argv, cwd, env, stdout, stderr, None)

    @staticmethod
    def _reap_group(pgid: int) -> None:
        """Background children left behind by a finished task must not outlive it."""
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass


class OutputFile:
    """A slot's reusable capture file: truncated per attempt, read only if written to."""

    def __init__(self, path: Path, redact: Callable[[str], str] | None = None) -> None:
        self.path = path
        self._redact = redact
        self.file: BinaryIO = open(path, "w+b")  # noqa: SIM115 - lives as long as the slot
        self._maybe_written = False

    def reset(self) -> BinaryIO:
        if self._maybe_written:
            self.file.seek(0)
            self.file.truncate()
        self._maybe_written = True  # the next attempt may write to it
        return self.file

    def tail(self, limit: int = TAIL_BYTES) -> str:
        size = os.fstat(self.file.fileno()).st_size
        if not size:
            self._maybe_written = False  # still empty: no need to truncate next time
            return ""
        self.file.seek(max(0, size - limit))
        text = self.file.read().decode("utf-8", errors="replace")
        return self._redact(text) if self._redact is not None else text

    def close(self) -> None:
        self.file.close()
