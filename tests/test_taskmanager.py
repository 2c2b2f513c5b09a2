"""TaskManager: the seed article's own tests, ported to Python 3, plus what it got wrong."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from drivemr import TaskManager

# The article's sleep task (task_man_test.py), in Python 3, sleeping 0.2 s instead of 10 s;
# it also leaves a file behind so the tests can see that it finished.
SLEEP_TASK = textwrap.dedent(
    """
    if __name__ == '__main__':
        import os
        import time
        import sys
        print(sys.argv[1:])
        time.sleep(0.2)
        open(os.path.join(os.path.dirname(__file__), 'done-' + sys.argv[1]), 'w').close()
        print(__file__, ':Done.')
    """
)

# Waits for a gate file (60 s at most, a safety net, not a measure) and says whether it came.
WAIT_FOR_GATE = textwrap.dedent(
    """
    import os, sys, time
    gate, out = sys.argv[1], sys.argv[2]
    deadline = time.monotonic() + 60
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    open(out, 'w').write('gate' if os.path.exists(gate) else 'timeout')
    """
)

TOUCH = "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + chr(10))"


def touch(path: Path, text: str = "x") -> list[str]:
    """A task that appends a line to a file."""
    return [sys.executable, "-c", TOUCH, str(path), text]


# -- the article's test code -----------------------------------------------------------


def test_trivial() -> None:
    tmon = TaskManager(3)
    tmon.run()


class SleepTaskManager(TaskManager):
    def __init__(self, module: Path) -> None:
        TaskManager.__init__(self, 2)
        self.n_created = 0
        self.executable = [sys.executable, str(module)]

    def update_task_descriptors(self) -> None:
        if self.n_created == 0:
            self.n_created = 10
            for ii in range(self.n_created):
                next_task = [*self.executable, str(ii)]
                self.task_descriptors.append(next_task)


def test_sleep(tmp_path: Path) -> None:
    module = tmp_path / "task_man_test.py"
    module.write_text(SLEEP_TASK)
    tmon = SleepTaskManager(module)
    tmon.run()
    print("Test sleep completed.")
    # run() returned after the last task finished (the article's class also gets there
    # with 0.2 s tasks, only because it sleeps 0.5 s after starting each one).
    assert sorted(p.name for p in tmp_path.glob("done-*")) == sorted(f"done-{i}" for i in range(10))
    assert tmon.task_descriptors == []
    assert all(proc is None or proc.returncode is not None for proc in tmon.procs)


# -- what drivemr fixes ------------------------------------------------------------------


def test_surface() -> None:
    tmon = TaskManager(2, {"proc_poll_dt": 1.0, "next_free_dt": 2.0, "proc_popen_dt": 3.0})
    assert tmon.n_threads == 2
    assert tmon.procs == [None, None]
    assert tmon.task_descriptors == []
    assert (tmon.proc_poll_dt, tmon.next_free_dt, tmon.proc_popen_dt) == (1.0, 2.0, 3.0)
    assert tmon.update_tasks_status() == 1
    with pytest.raises(ValueError):
        TaskManager(0)


def test_descriptors_are_taken_from_the_end(tmp_path: Path) -> None:
    log = tmp_path / "log"
    tmon = TaskManager(1)
    tmon.task_descriptors = [touch(log, str(i)) for i in range(5)]
    tmon.run()
    assert log.read_text().split() == ["4", "3", "2", "1", "0"]


def test_a_freed_slot_is_refilled_while_another_is_busy(tmp_path: Path) -> None:
    """The long task can only finish if the other slot runs the four tasks after it."""
    gate, seen = tmp_path / "gate", tmp_path / "long-saw"
    log = tmp_path / "log"
    tmon = TaskManager(2)
    tmon.task_descriptors = [
        touch(gate),
        touch(log, "c"),
        touch(log, "b"),
        touch(log, "a"),
        [sys.executable, "-c", WAIT_FOR_GATE, str(gate), str(seen)],
    ]
    tmon.run()
    assert seen.read_text() == "gate"
    assert log.read_text().split() == ["a", "b", "c"]


def test_run_waits_for_running_tasks_and_asks_the_hook_again(tmp_path: Path) -> None:
    """With the list empty but a task running, run() waits, then asks for more work.

    The first task outlives the article's 0.5 s + 0.2 s of sleeps, after which its run()
    returned with the task still running and the second one never started.
    """
    first, second = tmp_path / "first", tmp_path / "second"

    class Waves(TaskManager):
        waves = 0

        def update_task_descriptors(self) -> None:
            if self.waves == 0:
                self.waves = 1
                script = f"import time; time.sleep(1); open({str(first)!r}, 'w')"
                self.task_descriptors.append([sys.executable, "-c", script])
            elif self.waves == 1 and first.exists():
                self.waves = 2
                self.task_descriptors.append(touch(second))

    tmon = Waves(2)
    tmon.run()
    assert first.exists() and second.exists()
    assert all(proc is None or proc.returncode is not None for proc in tmon.procs)


def test_update_tasks_status_frees_exited_slots(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    tmon = TaskManager(2)
    busy = [sys.executable, "-c", WAIT_FOR_GATE, str(gate), str(tmp_path / "out")]
    tmon.procs = [subprocess.Popen(busy), subprocess.Popen(busy)]
    assert tmon.update_tasks_status() is None
    gate.touch()
    for proc in list(tmon.procs):
        assert proc is not None
        proc.wait()
    assert tmon.update_tasks_status() == 1
    assert tmon.procs == [None, None]


def test_no_sleeps_whatever_the_timeouts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_sleep(seconds: float) -> None:
        raise AssertionError(f"TaskManager slept {seconds} s")

    log = tmp_path / "log"
    tmon = TaskManager(2, {"proc_poll_dt": 60, "next_free_dt": 60, "proc_popen_dt": 60})
    tmon.task_descriptors = [touch(log, str(i)) for i in range(6)]
    monkeypatch.setattr(time, "sleep", no_sleep)
    tmon.run()
    assert sorted(log.read_text().split()) == [str(i) for i in range(6)]


def test_run_also_waits_for_processes_a_caller_put_in_procs(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    script = f"import time; time.sleep(0.3); open({str(marker)!r}, 'w')"
    tmon = TaskManager(2)
    tmon.procs[0] = subprocess.Popen([sys.executable, "-c", script])
    tmon.task_descriptors = [touch(tmp_path / "log")]
    tmon.run()
    assert marker.exists() and (tmp_path / "log").exists()
    assert tmon.procs == [None, None] or all(
        p is None or p.returncode is not None for p in tmon.procs
    )
