"""No orphans (issue 16): a worker's tasks die with the worker, however it dies.

End to end: a real ``drivemr worker`` process on a folder store runs a task that writes a
line to a file every 100 ms (itself, through a double-forked ``setsid`` daemon, or through a
child that cleared its environment); ``kill -9`` of the worker must stop the file growing
within 1.5 s. Then the watchdog (drivemr.reaper) on its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import psutil
import pytest
from helpers import WorkerProcs, run_cli, wait_for

from drivemr.protocol import heartbeats
from drivemr.reaper import RECORD, TOKEN_ENV, TaskGuard, parse_registry, read_registry
from drivemr.reaper import main as reaper_main
from drivemr.stores.folder import FolderStore

POSIX = sys.platform != "win32"
NO_SUCH_PID = 5_000_000
"""Above every OS's largest pid (Linux: 2**22), for registrations that must kill nothing."""
STOP_WITHIN = 1.5
"""The issue's bound: seconds from the worker's death to the last line written."""

WRITER = """
    import os, subprocess, sys, time

    out, pids, mode = sys.argv[1], sys.argv[2], sys.argv[3]

    def write_forever():
        open(os.path.join(pids, str(os.getpid())), "w").close()
        while True:
            with open(out, "a") as fh:
                fh.write("%d %f\\n" % (os.getpid(), time.time()))
            time.sleep(0.1)

    if mode == "direct":
        write_forever()
    elif mode == "daemon":  # the classic double fork: a new session, parent gone
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                write_forever()
            os._exit(0)
        time.sleep(3600)
    elif mode == "scrubbed":  # no token in its environment, a process group of its own
        env = {"PATH": os.environ.get("PATH", "")}
        if os.name == "nt":
            env["SYSTEMROOT"] = os.environ.get("SYSTEMROOT", "")
        code = "import sys; sys.argv[1:] = %r; exec(open(%r).read())" % (
            [out, pids, "direct"], os.path.abspath(__file__))
        kwargs = {"preexec_fn": os.setpgrp} if os.name != "nt" else {
            "creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.DETACHED_PROCESS}
        subprocess.Popen([sys.executable, "-c", code], env=env, **kwargs)
        time.sleep(3600)
"""


def _platform_modes() -> list[Any]:
    """Every mode on every OS; each case runs only where its OS is (skipped elsewhere)."""
    cases = []
    for os_name in ("linux", "darwin", "win32"):
        for mode in ("direct", "daemon", "scrubbed"):
            marks = [
                pytest.mark.skipif(sys.platform != os_name, reason=f"{os_name} only"),
            ]
            if os_name == "win32" and mode == "daemon":
                continue  # no fork on Windows; "scrubbed" is its detached child
            cases.append(pytest.param(os_name, mode, marks=marks, id=f"{os_name}-{mode}"))
    return cases


@pytest.fixture
def writers(tmp_path: Path) -> Iterator[Path]:
    """The folder where writers record their pids; any still alive at the end are killed
    (so a failing test leaves nothing behind)."""
    pids = tmp_path / "pids"
    pids.mkdir()
    yield pids
    for entry in pids.iterdir():
        try:
            psutil.Process(int(entry.name)).kill()
        except (psutil.Error, ValueError):
            pass


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _last_growth_after(out: Path, since: float, *, quiet: float = 0.6) -> float:
    """Poll ``out``; once it has not grown for ``quiet`` seconds (six missed lines), return
    how long after ``since`` it last grew (0 if it never did)."""
    size = out.stat().st_size
    last = since
    deadline = time.monotonic() + 60  # a writer nobody kills fails the test, not hangs it
    while time.monotonic() < deadline:
        time.sleep(0.02)
        now_size = out.stat().st_size
        now = time.monotonic()
        if now_size != size:
            size, last = now_size, now
        elif now - last >= quiet:
            return last - since
    raise AssertionError(f"{out} still grows a minute after the worker was killed")


@pytest.mark.parametrize(("os_name", "mode"), _platform_modes())
def test_killed_worker_takes_its_tasks_with_it(
    os_name: str,
    mode: str,
    folder_store: FolderStore,
    write_job: Callable[..., Path],
    tmp_path: Path,
    workers: WorkerProcs,
    writers: Path,
) -> None:
    out = tmp_path / "lines.txt"
    out.touch()
    job_file = write_job(
        f"""
        name = "writer"
        files = ["writer.py"]
        [map]
        command = ["python", "{{files}}/writer.py", {json.dumps(str(out))}, {json.dumps(str(writers))}, "{mode}"]
        items = ["only"]
        """,
        {"writer.py": WRITER},
    )
    run_cli("submit", "--store", folder_store.url, str(job_file))
    victim = workers.start("victim", slots=1)
    wait_for(lambda: out.read_text().count("\n") >= 3, timeout=60)  # growing
    (writer,) = (int(p.name) for p in writers.iterdir())
    assert _alive(writer)
    # The worker's own pid, from its heartbeat (a venv's launcher on Windows is not it).
    beat = heartbeats(folder_store.list(folder_store.root_id))["victim"]
    worker = psutil.Process(json.loads(folder_store.read(beat.file.id))["body"]["pid"])  # sealed
    worker.kill()  # SIGKILL, or TerminateProcess on Windows: no code of the worker runs
    killed_at = time.monotonic()
    worker.wait(timeout=30)
    victim.wait(timeout=30)
    grew_for = _last_growth_after(out, killed_at)
    assert grew_for <= STOP_WITHIN, f"{mode} writer went on {grew_for:.2f} s after the kill"
    wait_for(lambda: not _alive(writer), timeout=10)
    assert "Traceback" not in workers.log("victim"), workers.log("victim")


# ------------------------------------------------------------------ the watchdog itself


def test_registry_parsing_ignores_junk(tmp_path: Path) -> None:
    data = b"%15d\n%15d\n%s\n  x\n\n%15d\n99999999999\n-5\n" % (100, 200, b" " * 15, 1)
    assert parse_registry(data) == {100, 200}
    with open(tmp_path / "registry", "w+b") as fh:
        fh.write(data)
        fh.flush()
        assert read_registry(fh.fileno()) == {100, 200}
    assert read_registry(-1) == set()  # an unreadable registry: the token still works


def test_watchdog_refuses_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert reaper_main([]) == 2 and reaper_main(["token", "x"]) == 2
    assert "usage" in capsys.readouterr().err


def _sleeper(
    guard: TaskGuard | None, code: str = "import time; time.sleep(3600)"
) -> subprocess.Popen[bytes]:
    """A task like the runner starts one: its own session, the token only if ``guard``."""
    env = (
        guard.env(os.environ) if guard else {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    )
    kwargs: dict[str, Any] = (
        {"start_new_session": True}
        if POSIX
        else {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
    )
    return subprocess.Popen([sys.executable, "-c", code], env=env, **kwargs)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()


def _fake(pid: int) -> subprocess.Popen[bytes]:
    """A stand-in for a task with only a pid (all the guard reads of it)."""
    return cast("subprocess.Popen[bytes]", SimpleNamespace(pid=pid))


def _gone(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is not None


@pytest.mark.skipif(not POSIX, reason="the watchdog process is the POSIX guard")
def test_closing_the_pipe_kills_tracked_sessions_and_token_holders_only(
    procs: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    guard = TaskGuard()
    tracked_no_token = _sleeper(None)  # found by its session
    token_untracked = _sleeper(guard)  # found by its token
    bystander = _sleeper(None)  # neither: must survive
    tracked_then_done = _sleeper(None)  # untracked: its session id may be reused, forget it
    procs += [tracked_no_token, token_untracked, bystander, tracked_then_done]
    guard.track(tracked_no_token)
    guard.track(tracked_then_done)
    guard.untrack(tracked_then_done)
    watchdog = guard.watchdog_pid
    assert watchdog is not None and _alive(watchdog)
    guard.close()
    assert not _alive(watchdog)
    wait_for(lambda: _gone(tracked_no_token) and _gone(token_untracked), timeout=10)
    assert tracked_no_token.returncode == -signal.SIGKILL
    assert bystander.poll() is None and tracked_then_done.poll() is None


@pytest.mark.skipif(not POSIX, reason="the watchdog process is the POSIX guard")
def test_descendants_that_left_the_session_are_found_by_token(
    procs: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    pidfile = tmp_path / "daemon.pid"
    daemonize = textwrap.dedent(
        f"""
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                open({str(pidfile)!r} + ".tmp", "w").write(str(os.getpid()))
                os.rename({str(pidfile)!r} + ".tmp", {str(pidfile)!r})
                time.sleep(3600)
            os._exit(0)
        time.sleep(3600)
        """
    )
    guard = TaskGuard()
    task = _sleeper(guard, daemonize)
    procs.append(task)
    guard.track(task)
    wait_for(pidfile.exists, timeout=30)
    daemon = int(pidfile.read_text())
    try:
        assert os.getsid(daemon) != task.pid  # really detached
        guard.close()
        wait_for(lambda: not _alive(daemon) and _gone(task), timeout=10)
    finally:
        if _alive(daemon):
            os.kill(daemon, signal.SIGKILL)


@pytest.mark.skipif(not POSIX, reason="the watchdog process is the POSIX guard")
def test_a_child_that_left_the_session_without_the_token_is_found_through_its_parent(
    procs: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    pidfile = tmp_path / "child.pid"
    spawn = textwrap.dedent(
        f"""
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"],
                                 env={{}}, start_new_session=True)
        open({str(pidfile)!r} + ".tmp", "w").write(str(child.pid))
        os.rename({str(pidfile)!r} + ".tmp", {str(pidfile)!r})
        time.sleep(3600)
        """
    )
    guard = TaskGuard()
    task = _sleeper(None, spawn)
    procs.append(task)
    guard.track(task)
    wait_for(pidfile.exists, timeout=30)
    child = int(pidfile.read_text())
    try:
        assert os.getsid(child) == child and TOKEN_ENV not in psutil.Process(child).environ()
        guard.close()
        wait_for(lambda: not _alive(child) and _gone(task), timeout=10)
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


@pytest.mark.skipif(not POSIX, reason="the watchdog process is the POSIX guard")
def test_an_unrecorded_task_session_is_found_through_its_token(
    procs: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """The worker died between starting a task and recording it: the task holds the token,
    and its child without the token (own process group, same session) goes with it."""
    pidfile = tmp_path / "child.pid"
    spawn = textwrap.dedent(
        f"""
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"],
                                 env={{}}, preexec_fn=os.setpgrp)
        open({str(pidfile)!r} + ".tmp", "w").write(str(child.pid))
        os.rename({str(pidfile)!r} + ".tmp", {str(pidfile)!r})
        child.wait()
        """
    )
    guard = TaskGuard()
    guard.track(_fake(NO_SUCH_PID))  # a watchdog
    task = _sleeper(guard, spawn)
    procs.append(task)
    wait_for(pidfile.exists, timeout=30)
    child = int(pidfile.read_text())
    try:
        assert os.getsid(child) == task.pid and os.getpgid(child) == child
        guard.close()
        wait_for(lambda: not _alive(child) and _gone(task), timeout=10)
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


@pytest.mark.skipif(not POSIX, reason="the watchdog process is the POSIX guard")
def test_a_dead_watchdog_is_replaced_and_its_successor_reads_the_same_records(
    procs: list[subprocess.Popen[bytes]],
) -> None:
    guard = TaskGuard()
    first = _sleeper(None)
    procs.append(first)
    guard.track(first)
    old = guard.watchdog_pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: not _alive(old), timeout=10)
    second = _sleeper(None)
    procs.append(second)
    guard.track(second)  # notices the death: a new watchdog, same registry file
    assert guard.restarts == 1 and guard.watchdog_pid not in (None, old)
    assert first.poll() is None
    guard.close()
    wait_for(lambda: _gone(first) and _gone(second), timeout=10)


@pytest.mark.skipif(not POSIX, reason="the watchdog process is the POSIX guard")
def test_registry_reuses_records_and_a_stopped_watchdog_blocks_nothing(
    procs: list[subprocess.Popen[bytes]],
) -> None:
    guard = TaskGuard()
    task = _sleeper(None)
    procs.append(task)
    guard.track(task)
    watchdog = guard.watchdog_pid
    assert watchdog is not None
    os.kill(watchdog, signal.SIGSTOP)  # the worker never waits for it
    try:
        fakes = [_fake(NO_SUCH_PID + i) for i in range(3)]
        for _ in range(10_000):
            for fake in fakes:
                guard.track(fake)
            for fake in fakes:
                guard.untrack(fake)
    finally:
        os.kill(watchdog, signal.SIGCONT)
    assert guard._registry is not None
    assert os.fstat(guard._registry.fileno()).st_size == 4 * RECORD  # at most 4 at a time
    twice, other = _fake(NO_SUCH_PID + 10), _fake(NO_SUCH_PID + 11)
    guard.track(twice)
    guard.track(twice)  # recorded once: no record lost or overwritten
    guard.track(other)
    assert read_registry(guard._registry.fileno()) == {task.pid, twice.pid, other.pid}
    guard.untrack(twice)
    guard.untrack(other)
    assert read_registry(guard._registry.fileno()) == {task.pid}
    guard.close()
    assert not _alive(watchdog)
    wait_for(lambda: _gone(task), timeout=10)


@pytest.mark.skipif(not POSIX, reason="SIGKILL")
def test_sigkilled_owner_process_takes_its_tasks(tmp_path: Path) -> None:
    """The guard in a process of its own, killed with SIGKILL: nothing of it runs after."""
    pidfile = tmp_path / "task.pid"
    owner_code = textwrap.dedent(
        f"""
        import os, subprocess, sys, time
        from drivemr.reaper import TaskGuard
        guard = TaskGuard()
        task = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"],
                                env=guard.env({{}}), start_new_session=True)
        guard.track(task)
        open({str(pidfile)!r} + ".tmp", "w").write(str(task.pid))
        os.rename({str(pidfile)!r} + ".tmp", {str(pidfile)!r})
        time.sleep(3600)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", owner_code])
    try:
        wait_for(pidfile.exists, timeout=30)
        task = int(pidfile.read_text())
        assert _alive(task)
        owner.kill()
        owner.wait()
        wait_for(lambda: not _alive(task), timeout=STOP_WITHIN + 5)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        if pidfile.exists() and _alive(int(pidfile.read_text())):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


@pytest.mark.skipif(sys.platform != "win32", reason="job objects are Windows'")
def test_job_object_kills_the_task_when_closed(procs: list[subprocess.Popen[bytes]]) -> None:
    guard = TaskGuard()
    task = _sleeper(guard)
    procs.append(task)
    guard.track(task)
    assert guard.broken is None
    guard.close()  # the handle closes as it does when the worker dies
    wait_for(lambda: _gone(task), timeout=10)
