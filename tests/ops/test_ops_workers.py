"""cancel and workers against real `drivemr worker` processes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from click.testing import CliRunner
from helpers import WorkerProcs, wait_for

from drivemr.cli import main
from drivemr.progress import follow
from drivemr.protocol import find_job, heartbeat_name, load_view
from drivemr.stores.folder import FolderStore
from drivemr.trust import Trust

SLEEPER = """
import os, sys, time
open(os.path.join(sys.argv[1], sys.argv[2] + ".pid"), "w").write(str(os.getpid()))
time.sleep(600)
"""


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def workers_json(store: FolderStore) -> list[dict[str, Any]]:
    code, out, err = invoke("workers", "--json", "--store", str(store.path))
    assert code == 0, err
    rows: list[dict[str, Any]] = json.loads(out)
    return rows


def test_cancel_kills_running_attempts(
    folder_store: FolderStore,
    write_job: Callable[..., Path],
    workers: WorkerProcs,
    tmp_path: Path,
) -> None:
    s = str(folder_store.path)
    pids = tmp_path / "pids"
    pids.mkdir()
    job_file = write_job(
        f"""
        name = "sleepy"
        [map]
        command = ["python", "-c", {json.dumps(SLEEPER)}, {json.dumps(str(pids))}, "{{item}}"]
        items = ["a", "b", "c"]
        """
    )
    workers.start("w1", slots=2)
    code, out, err = invoke("submit", "--store", s, str(job_file))
    assert code == 0, err
    job_id = out.strip().splitlines()[-1]

    # Both slots run an attempt; the heartbeat says so.
    wait_for(lambda: len(list(pids.glob("*.pid"))) == 2)
    wait_for(lambda: len(workers_json(folder_store)[0]["running"]) == 2)
    row = workers_json(folder_store)[0]
    assert row["worker"] == "w1" and row["alive"] and row["slots"] == 2
    assert {r["job"] for r in row["running"]} == {job_id}

    # Someone follows the job live while it is cancelled.
    followed: list[int] = []
    out_buf = io.StringIO()
    watcher = threading.Thread(
        target=lambda: followed.append(follow(folder_store, job_id, poll=0.05, out=out_buf))
    )
    watcher.start()

    code, out, _ = invoke("cancel", job_id, "--store", s)
    assert code == 0 and "cancelled" in out
    cancelled_at = time.monotonic()
    pid_values = [int(p.read_text()) for p in pids.glob("*.pid")]
    assert len(pid_values) == 2
    wait_for(lambda: all(gone(pid) for pid in pid_values), interval=0.02)
    killed_after = time.monotonic() - cancelled_at
    watcher.join(timeout=60)
    assert followed == [3] and "was cancelled" in out_buf.getvalue()

    code, out, _ = invoke("status", job_id, "--json", "--store", s)
    assert json.loads(out)["state"] == "cancelled"
    code, _, _ = invoke("status", job_id, "--watch", "--store", s)
    assert code == 3
    code, out, _ = invoke("cancel", job_id, "--store", s)
    assert code == 0 and "already cancelled" in out

    # Nothing was committed, the third task never started, and the worker serves on.
    _, job = find_job(folder_store, job_id)
    view = load_view(folder_store, job)
    assert view.results == {} and "t0002" not in view.claims
    assert len(list(pids.glob("*.pid"))) == 2
    assert workers.procs["w1"].poll() is None
    assert "cancelled" in workers.log("w1")
    code, out, _ = invoke("logs", job_id, "t0000", "--store", s)
    assert code == 0 and "cancelled" in out
    print(f"attempts killed {killed_after:.2f} s after the cancel (poll interval 0.1 s)")


def test_cancel_refuses_a_finished_job(
    folder_store: FolderStore, write_job: Callable[..., Path], workers: WorkerProcs
) -> None:
    s = str(folder_store.path)
    job_file = write_job('name = "quick"\n[map]\ncommand = ["python", "-c", "pass"]\nitems = [1]\n')
    code, out, _ = invoke("submit", "--store", s, str(job_file))
    job_id = out.strip().splitlines()[-1]
    workers.start("w", "--exit-when-idle")
    assert workers.wait_all() == {"w": 0}, workers.log("w")
    code, _, err = invoke("cancel", job_id, "--store", s)
    assert code == 1 and "already finished (done)" in err
    code, _, err = invoke("cancel", "nosuchjob", "--store", s)
    assert code == 1 and "no job" in err


def test_workers_lists_live_stopped_and_lost(
    folder_store: FolderStore, workers: WorkerProcs
) -> None:
    s = str(folder_store.path)
    workers.start("live", slots=3)
    stopped = workers.start("gone", "--exit-when-idle", slots=1)
    assert stopped.wait(timeout=120) == 0, workers.log("gone")
    # A worker that died without a word: its heartbeat is older than its lease.
    (fid,) = folder_store.mint_ids(1)
    doc = {
        "worker": "dead",
        "host": "pc9",
        "slots": 4,
        "lease": 3.0,
        "state": "running",
        "running": [],
    }
    doc.update(life="0123abcd", seq=1)
    sealed = Trust.for_this_pc().seal("heartbeat", doc)  # this PC's key: a trusted beat
    info = folder_store.create(folder_store.root_id, heartbeat_name("dead"), fid, sealed)
    old = time.time() - 60
    os.utime(folder_store.path / folder_store._rel(info.id), (old, old))

    wait_for(lambda: {r["worker"] for r in workers_json(folder_store)} == {"live", "gone", "dead"})
    rows = {r["worker"]: r for r in workers_json(folder_store)}
    assert rows["live"]["alive"] is True and rows["live"]["state"] == "running"
    assert rows["live"]["slots"] == 3 and rows["live"]["host"] and rows["live"]["pid"]
    assert rows["gone"]["alive"] is False and rows["gone"]["state"] == "stopped"
    assert rows["dead"]["alive"] is False and rows["dead"]["age"] > 50
    assert set(rows["live"]) >= {
        "worker", "host", "pid", "slots", "lease", "state", "running", "version", "last_seen", "age", "alive",
    }  # fmt: skip

    code, out, _ = invoke("workers", "--store", s)
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert lines["live"].endswith("alive") and lines["gone"].endswith("stopped")
    assert "lost" in lines["dead"] and "pc9" in lines["dead"]


def _worker_has(option: str) -> bool:
    command = main.commands.get("worker")
    return command is not None and any(option in p.opts for p in command.params)


@pytest.mark.skipif(not _worker_has("--when-idle"), reason="worker --when-idle is not wired yet")
def test_when_idle_worker_claims_only_while_the_pc_is_idle(
    folder_store: FolderStore, write_job: Callable[..., Path], workers: WorkerProcs
) -> None:
    """Other processes saturate every core: the worker pauses (heartbeat state "paused") and
    claims nothing; once they stop, it claims and finishes the job."""
    s = str(folder_store.path)
    job_file = write_job(
        'name = "polite"\n[map]\ncommand = ["python", "-c", "pass"]\nitems = [1, 2]\n'
    )
    code, out, err = invoke("submit", "--store", s, str(job_file))
    assert code == 0, err
    job_id = out.strip().splitlines()[-1]
    _, job = find_job(folder_store, job_id)
    spin = [sys.executable, "-c", "while True: pass"]
    spinners = [subprocess.Popen(spin) for _ in range(2 * (os.cpu_count() or 1))]
    try:
        extra = ["--when-idle"] + (
            ["--idle-threshold", "0.8"] if _worker_has("--idle-threshold") else []
        )
        workers.start("polite", *extra)
        wait_for(
            lambda: any(
                r["worker"] == "polite" and r["state"] == "paused"
                for r in workers_json(folder_store)
            ),
            timeout=120,
            interval=0.5,
        )
        assert load_view(folder_store, job).claims == {}
    finally:
        for proc in spinners:
            proc.kill()
            proc.wait()
    wait_for(lambda: len(load_view(folder_store, job).results) == 2, timeout=120, interval=0.5)
    assert all(r.state == "done" for r in load_view(folder_store, job).results.values())
