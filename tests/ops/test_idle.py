"""IdleMonitor: the owner's load is everything but the worker's own process tree."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable

import pytest

from drivemr.idle import IdleMonitor, ProcessCPU, own_process_tree


class Fake:
    """Scripted measurements: whole-machine percent, our tree's percent of one core, a clock."""

    def __init__(self, total: float = 0.0, own: float = 0.0) -> None:
        self.total = total
        self.own = own
        self.now = 1000.0
        self.calls = 0
        self.pids_asked: list[set[int]] = []

    def cpu_percent(self) -> float:
        self.calls += 1
        return self.total

    def own_pids(self) -> set[int]:
        return {1, 2, 3}

    def process_percent(self, pids: Iterable[int]) -> float:
        self.pids_asked.append(set(pids))
        return self.own

    def clock(self) -> float:
        return self.now

    def monitor(self, threshold: float = 0.25, **kw: float) -> IdleMonitor:
        return IdleMonitor(
            threshold,
            cpu_percent=self.cpu_percent,
            own_pids=self.own_pids,
            process_percent=self.process_percent,
            cpu_count=4,
            clock=self.clock,
            **kw,
        )


def test_busy_when_other_processes_load_the_cpu() -> None:
    fake = Fake(total=80.0, own=100.0)  # our tree: one core of four = 25 %; others: 55 %
    mon = fake.monitor()
    fake.now += 2
    assert mon.busy() is True
    assert mon.load == pytest.approx(0.55)
    assert fake.pids_asked[-1] == {1, 2, 3}
    assert "55%" in mon.describe()


def test_own_tasks_do_not_count() -> None:
    fake = Fake(total=60.0, own=200.0)  # two cores of ours out of four: others only 10 %
    mon = fake.monitor()
    fake.now += 2
    assert mon.busy() is False
    assert mon.load == pytest.approx(0.10)


def test_threshold_is_a_share_of_the_whole_machine() -> None:
    fake = Fake(total=30.0)
    mon = fake.monitor(threshold=0.25)
    fake.now += 2
    assert mon.busy() is True
    mon = fake.monitor(threshold=0.5)
    fake.now += 2
    assert mon.busy() is False


def test_measures_at_most_once_per_interval() -> None:
    fake = Fake(total=90.0)
    mon = fake.monitor(interval=1.0)
    primed = fake.calls
    assert mon.busy() is True  # no full window measured yet: busy until shown idle
    assert fake.calls == primed
    fake.now += 1.0
    assert mon.busy() is True and fake.calls == primed + 1
    fake.total = 0.0
    fake.now += 0.5
    assert mon.busy() is True and fake.calls == primed + 1  # cached
    fake.now += 0.5
    assert mon.busy() is False


def test_hold_keeps_it_busy_until_the_pc_stayed_idle() -> None:
    fake = Fake(total=90.0)
    mon = fake.monitor(interval=1.0, hold=30.0)
    fake.now += 1
    assert mon.busy() is True
    fake.total = 5.0
    fake.now += 10
    assert mon.busy() is True  # 10 s quiet is not enough
    fake.now += 21
    assert mon.busy() is False


def test_idle_only_after_a_measured_window() -> None:
    fake = Fake(total=1.0)
    mon = fake.monitor(interval=1.0)
    assert mon.busy() is True
    fake.now += 1.0
    assert mon.busy() is False


def test_rejects_a_threshold_outside_0_1() -> None:
    with pytest.raises(ValueError):
        IdleMonitor(25)


def test_real_psutil_defaults() -> None:
    """The defaults work on this OS: our tree includes children, and a reading is a bool."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        tree = own_process_tree()
        assert os.getpid() in tree and child.pid in tree
        cpu = ProcessCPU()
        assert cpu(tree) >= 0.0
        assert cpu([*tree, 2**22 + 12345]) >= 0.0  # a pid that does not exist is skipped
        mon = IdleMonitor(interval=0.0)
        assert mon.busy() in (True, False)
        assert 0.0 <= mon.load <= 1.0
    finally:
        child.communicate(b"")
