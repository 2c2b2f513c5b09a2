"""Ending a worker process (issues 16.1, 18.2, 18.11): a closed terminal (SIGHUP) and a
second Ctrl-C stop it at once: running attempts killed, the last heartbeat says
``stopped``, other workers take the tasks over at once (not after the lease), one log line
says why, and ``status`` agrees. Real worker processes on a folder store; the lease is the
default 300 s, so every takeover seen here is one that did not wait for it."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import run_cli

from drivemr.protocol import Job, heartbeats
from drivemr.status import status_of
from drivemr.testing import chaos as cc
from drivemr.worker.signals import (
    CTRL_BREAK_EVENT,
    CTRL_C_EVENT,
    CTRL_CLOSE_EVENT,
    CTRL_LOGOFF_EVENT,
    console_event_handler,
)

LEASE = 300.0
TAKEOVER_WAIT = 60.0
"""Far below the lease: a takeover seen within it did not wait for the lease."""

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture
def cluster(tmp_path: Path, isolated_config: Path) -> Iterator[cc.Cluster]:
    del isolated_config
    with cc.Cluster("folder", tmp_path / "cluster", lease=LEASE, poll=0.2) as c:
        yield c


def _job(cluster: cc.Cluster, tasks: int) -> Job:
    job_file = cc.write_job(
        cluster.base / "job", cluster.sidefx, name="stop", tasks=tasks, opts="sleep=120"
    )
    return cluster.submit(job_file)


def _running(cluster: cc.Cluster, proc: cc.WorkerProc, n: int) -> list[cc.Execution]:
    def busy() -> list[cc.Execution] | None:
        mine = [e for e in cc.executions(cluster.sidefx) if e.worker_pid == proc.pid]
        return mine if len(mine) >= n else None

    return cc.wait_for(busy, 60, f"{n} running attempt(s) of {proc.worker_id}")


def _heartbeat_state(cluster: cc.Cluster, worker: str) -> str | None:
    beats = heartbeats(cluster.store.list(cluster.store.root_id))
    if worker not in beats:
        return None
    doc = json.loads(cluster.store.read(beats[worker].file.id))
    return str(doc["body"].get("state"))  # a sealed heartbeat: {"sealed", "kind", "body", ...}


@posix_only
def test_sighup_stops_at_once_and_another_worker_takes_over(cluster: cc.Cluster) -> None:
    job = _job(cluster, 4)
    w1 = cluster.start("w1", slots=2)
    killed = _running(cluster, w1, 2)
    w2 = cluster.start("w2", slots=4)  # claims the 2 others; 2 slots stay free
    cc.wait_for(
        lambda: len([e for e in cc.executions(cluster.sidefx) if e.worker_pid == w2.pid]) >= 2,
        60,
        "w2 running the other two tasks",
    )

    w1.popen.send_signal(signal.SIGHUP)
    assert w1.popen.wait(timeout=60) == 129, w1.text()
    log = w1.text()
    assert "terminal closed (SIGHUP): stopping now; 2 running attempt(s) killed" in log, log
    assert _heartbeat_state(cluster, "w1") == "stopped"
    for e in killed:  # the killed attempts are gone and never finished
        assert not cc.alive(e.pid)
        assert all(x.end is None for x in cc.executions(cluster.sidefx) if x.pid == e.pid)

    theirs = {e.task for e in killed}

    def taken_over() -> bool:
        claims = cc.claims_of(cluster.store, job)
        return all(claims.get((t, 1), ("", None))[0] == "w2" for t in theirs)

    cc.wait_for(taken_over, TAKEOVER_WAIT, "w2 claiming w1's tasks (lease 300 s)")
    assert "worker w1 is gone; reclaiming" in w2.text()
    assert all(e.task in theirs for e in cc.executions(cluster.sidefx) if e.attempt == 2)


@posix_only
def test_double_ctrl_c_exits_130_and_status_shows_lost(cluster: cc.Cluster) -> None:
    job = _job(cluster, 2)
    w1 = cluster.start("w1", slots=2)
    _running(cluster, w1, 2)
    w1.popen.send_signal(signal.SIGINT)
    cc.wait_for(lambda: "Ctrl-C: claiming nothing more" in w1.text(), 60, "the drain line")
    assert w1.popen.poll() is None  # draining: the attempts run on
    w1.popen.send_signal(signal.SIGINT)
    assert w1.popen.wait(timeout=60) == 130, w1.text()
    assert "Ctrl-C again: stopping now; 2 running attempt(s) killed" in w1.text()
    assert _heartbeat_state(cluster, "w1") == "stopped"
    # Nobody else works: status must not call the killed attempts running.
    st = status_of(cluster.store, job.id, lease=LEASE)
    assert [t.state for t in st.tasks] == ["lost", "lost"], st.tasks
    out = run_cli("status", job.id, "--store", cluster.url).stdout
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("t000")]
    assert [row[1] for row in rows] == ["lost", "lost"], out


@posix_only
def test_single_sigterm_drains_and_exits_0(cluster: cc.Cluster) -> None:
    job_file = cc.write_job(
        cluster.base / "job", cluster.sidefx, name="drain", tasks=1, opts="sleep=1"
    )
    job = cluster.submit(job_file)
    w1 = cluster.start("w1", slots=1)
    _running(cluster, w1, 1)
    w1.popen.send_signal(signal.SIGTERM)
    assert w1.popen.wait(timeout=60) == 0, w1.text()
    assert "SIGTERM: claiming nothing more; waiting for 1 running attempt(s)" in w1.text()
    assert [t.state for t in status_of(cluster.store, job.id).tasks] == ["done"]


@posix_only
def test_cancel_kills_attempts_and_status_says_cancelled(cluster: cc.Cluster) -> None:
    job = _job(cluster, 2)
    w1 = cluster.start("w1", slots=2)
    running = _running(cluster, w1, 2)
    run_cli("cancel", job.id, "--store", cluster.url)
    cc.wait_for(lambda: all(not cc.alive(e.pid) for e in running), 60, "attempts killed")
    st = status_of(cluster.store, job.id, lease=LEASE)
    assert st.state == "cancelled"
    assert [t.state for t in st.tasks] == ["cancelled", "cancelled"]
    assert w1.popen.poll() is None  # the worker serves on


class _FakeWorker:
    def __init__(self) -> None:
        import threading

        self.finished = threading.Event()
        self.calls: list[tuple[str, int]] = []

    def request_stop(self, why: str = "", *, again_code: int = 130) -> None:
        self.calls.append((why, -1))

    def stop_now(self, why: str, *, code: int = 130) -> None:
        self.calls.append((why, code))
        self.finished.set()


def test_console_events_stop_now_and_leave_ctrl_c_to_signals() -> None:
    """The Windows console handler's logic (the ctypes wiring itself runs on Windows only)."""
    w = _FakeWorker()
    handler = console_event_handler(w, has_console=lambda: True)
    assert handler(CTRL_C_EVENT) is False and handler(CTRL_BREAK_EVENT) is False
    assert w.calls == []
    assert handler(CTRL_CLOSE_EVENT) is True
    assert w.calls == [("console closed", 129)]
    service = _FakeWorker()
    assert console_event_handler(service, has_console=lambda: False)(CTRL_LOGOFF_EVENT) is False
    assert service.calls == []  # a service outlives log-offs
    assert handler(CTRL_LOGOFF_EVENT) is True
