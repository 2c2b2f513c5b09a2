"""Starting an item's process cheaply (issue 13's folder floor): a pack looks its command's
program up on PATH once, and a worker without a terminal starts tasks in a process group of
its own rather than a session (a ``setsid`` per task is slow under Linux's scheduler
autogroups); the watchdog still reaps such tasks and spares the worker's own session."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import psutil
import pytest
from helpers import wait_for

from drivemr import runner
from drivemr.reaper import RECORD, TaskGuard, read_registry
from drivemr.runner import Attempt, CommandPaths, OutputFile

POSIX = sys.platform != "win32"
NO_SUCH_PID = 5_000_000
"""Above every OS's largest pid (Linux: 2**22): fake tasks whose records kill nothing."""
posix_only = pytest.mark.skipif(not POSIX, reason="PATH lookup and process groups of POSIX")


def _program(folder: Path, name: str, says: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f'#!/bin/sh\necho "{says} $*"\n', encoding="utf-8")
    path.chmod(0o755)
    return path


@pytest.fixture
def files(tmp_path: Path) -> Iterator[tuple[OutputFile, OutputFile]]:
    out, err = OutputFile(tmp_path / "out"), OutputFile(tmp_path / "err")
    yield out, err
    out.close()
    err.close()


def _run(
    argv: list[str], env: dict[str, str], cwd: Path, files: tuple[OutputFile, OutputFile],
    paths: CommandPaths | None,
) -> tuple[runner.AttemptOutcome, str]:  # fmt: skip
    out, err = files
    outcome = Attempt().run(
        argv, cwd=cwd, env=env, timeout=60, stdout=out.reset(), stderr=err.reset(), paths=paths
    )
    return outcome, out.tail() + err.tail()


@posix_only
def test_a_pack_looks_its_program_up_once_and_keeps_argv0_as_written(
    tmp_path: Path, files: tuple[OutputFile, OutputFile]
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    found = _program(second, "prog", "second")
    env = {"PATH": f"{first}{os.pathsep}{second}"}
    paths = CommandPaths()
    outcome, text = _run(["prog", "x"], env, tmp_path, files, paths)
    assert outcome.ok, text
    assert text == "second x\n"
    assert paths.lookup("prog", env) == str(found)
    # Found once per pack: a program that appears earlier on PATH meanwhile is seen by the
    # next pack (a new CommandPaths), as a new start of the worker would.
    _program(first, "prog", "first")
    assert _run(["prog", "y"], env, tmp_path, files, paths)[1] == "second y\n"
    assert _run(["prog", "y"], env, tmp_path, files, CommandPaths())[1] == "first y\n"
    # The program sees argv[0] as the job wrote it, not the path found.
    (first / "py").symlink_to(os.path.realpath(sys.executable))
    code = "import sys; print(sys.orig_argv[0])"
    outcome, text = _run(["py", "-c", code], env, tmp_path, files, paths)
    assert outcome.ok and text == "py\n", text


@posix_only
def test_a_program_moved_away_is_searched_for_again(
    tmp_path: Path, files: tuple[OutputFile, OutputFile]
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    found = _program(first, "prog", "moved")
    second.mkdir()
    env = {"PATH": f"{first}{os.pathsep}{second}"}
    paths = CommandPaths()
    assert _run(["prog"], env, tmp_path, files, paths)[0].ok
    shutil.move(found, second / "prog")  # the file found is gone; PATH still has one
    outcome, text = _run(["prog"], env, tmp_path, files, paths)
    assert outcome.ok and text == "moved \n"
    assert paths.lookup("prog", env) is None  # forgotten: the starts search PATH again
    (second / "prog").unlink()
    outcome, _ = _run(["prog"], env, tmp_path, files, paths)
    assert not outcome.ok and outcome.error and "could not start 'prog'" in outcome.error


@posix_only
def test_names_with_a_slash_and_relative_path_entries_are_left_to_the_start(
    tmp_path: Path,
) -> None:
    _program(tmp_path / "bin", "prog", "x")
    paths = CommandPaths()
    assert paths.lookup("bin/prog", {"PATH": str(tmp_path / "bin")}) is None
    assert paths.lookup("prog", {"PATH": f"bin{os.pathsep}{tmp_path / 'bin'}"}) is None
    assert paths.lookup("prog", {"PATH": str(tmp_path / "bin")}) == str(tmp_path / "bin/prog")
    assert paths.lookup("no-such-program", {"PATH": str(tmp_path / "bin")}) is None


@pytest.mark.skipif(not POSIX or sys.version_info < (3, 11), reason="process_group: 3.11+")
def test_without_a_terminal_a_task_gets_a_process_group_not_a_session(
    tmp_path: Path, files: tuple[OutputFile, OutputFile], monkeypatch: pytest.MonkeyPatch
) -> None:
    code = "import os; print(os.getpid(), os.getpgid(0), os.getsid(0))"
    for terminal, own_session in ((False, False), (True, True)):
        monkeypatch.setattr(runner, "_APART", None)
        monkeypatch.setattr(runner, "has_terminal", lambda t=terminal: t)
        outcome, text = _run(["python", "-c", code], dict(os.environ), tmp_path, files, None)
        assert outcome.ok, text
        pid, group, session = map(int, text.split())
        assert group == pid  # a kill of its group reaches its whole tree
        assert (session == pid) is own_session
        assert own_session or session == os.getsid(0)


OWNER = """
import os, subprocess, sys, time
from drivemr.reaper import TaskGuard
pids = sys.argv[1]
guard = TaskGuard()
# A task as a worker without a terminal starts one: a process group of its own, the token.
# Its child leaves the group and clears its environment: found through its parent.
child_code = "import time; time.sleep(3600)"
task_code = (
    "import subprocess, sys, time;"
    f"c = subprocess.Popen([sys.executable, '-c', {child_code!r}], env={{}}, process_group=0);"
    f"open({pids!r} + '/child.tmp', 'w').write(str(c.pid));"
    f"__import__('os').rename({pids!r} + '/child.tmp', {pids!r} + '/child');"
    "time.sleep(3600)"
)
task = subprocess.Popen([sys.executable, "-c", task_code], env=guard.env(os.environ),
                        process_group=0)
guard.track(task)
# A token holder that joined the worker's own group: the group must not be swept.
joined = subprocess.Popen([sys.executable, "-c", child_code], env=guard.env(os.environ))
# Neither a task nor a token holder, in the worker's session and group: must survive.
bystander = subprocess.Popen([sys.executable, "-c", child_code])
for name, proc in (("task", task), ("joined", joined), ("bystander", bystander)):
    open(os.path.join(pids, name), "w").write(str(proc.pid))
open(os.path.join(pids, "ready"), "w").close()
time.sleep(3600)
"""


@pytest.mark.skipif(not POSIX or sys.version_info < (3, 11), reason="process_group: 3.11+")
def test_the_watchdog_reaps_process_group_tasks_and_spares_the_worker_s_session(
    tmp_path: Path,
) -> None:
    """The owner runs in a session of its own: were the worker's session swept, only this
    test's processes would go (and the bystander with them)."""
    pids = tmp_path / "pids"
    pids.mkdir()
    owner = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(OWNER), str(pids)], start_new_session=True
    )
    found: dict[str, int] = {}
    try:
        wait_for(lambda: (pids / "ready").exists() and (pids / "child").exists(), timeout=60)
        found = {p.name: int(p.read_text()) for p in pids.iterdir() if p.name != "ready"}
        assert os.getpgid(found["child"]) == found["child"] != os.getpgid(found["task"])
        assert os.getsid(found["task"]) == owner.pid  # the worker's session, not its own
        owner.kill()
        owner.wait()
        wait_for(lambda: not any(_alive(found[n]) for n in ("task", "child", "joined")), 10)
        assert _alive(found["bystander"])
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        for pid in found.values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@posix_only
def test_slots_registering_at_once_keep_the_registry_exact() -> None:
    """Records are written outside the guard's lock: two threads tracking and untracking
    thousands of tasks at once leave exactly the live ones, in at most one record each."""
    guard = TaskGuard()
    errors: list[BaseException] = []

    def slot(base: int, live: int) -> None:
        try:
            for n in range(3000):
                fake = _fake(base + n)
                guard.track(fake)
                guard.untrack(fake)
            guard.track(_fake(live))  # one left running per slot
        except BaseException as exc:  # a test fails when a thread it started raised
            errors.append(exc)

    threads = [
        threading.Thread(target=slot, args=(NO_SUCH_PID + 10_000 * k, NO_SUCH_PID - 1 - k))
        for k in range(2)
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert guard._registry is not None
        registry = guard._registry.fileno()
        assert read_registry(registry) == {NO_SUCH_PID - 1, NO_SUCH_PID - 2}
        assert os.fstat(registry).st_size <= 2 * RECORD  # never more than two at a time
    finally:
        guard.close()


def _fake(pid: int) -> subprocess.Popen[bytes]:
    return cast("subprocess.Popen[bytes]", SimpleNamespace(pid=pid))
