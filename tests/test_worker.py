"""The worker on the folder store: retries, failures, timeouts, a killed worker, many workers."""

from __future__ import annotations

import base64
import collections
import functools
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from helpers import WorkerProcs, run_cli, wait_for

from drivemr.protocol import REDUCE, find_job, load_view, submit
from drivemr.results import read_manifest
from drivemr.spec import load_job
from drivemr.status import status_of
from drivemr.stores.folder import FolderStore
from drivemr.worker import Worker, WorkerConfig

FLAKY = """
    import os, sys
    marker = os.path.join(sys.argv[1], "tried-" + sys.argv[2])
    if not os.path.exists(marker):
        open(marker, "w").close()
        sys.exit("first attempt fails on purpose")
    open("out.txt", "w").write("ok " + sys.argv[2])
"""


def run_worker(store: FolderStore, tmp_path: Path, **overrides: object) -> Worker:
    config = WorkerConfig(
        worker_id=str(overrides.pop("worker_id", "w1")),
        slots=int(overrides.pop("slots", 2)),  # type: ignore[call-overload]
        workdir=tmp_path / "work",
        lease=float(overrides.pop("lease", 5.0)),  # type: ignore[arg-type]
        poll_interval=0.05,
        retry_backoff=0.01,
        exit_when_idle=True,
        **overrides,  # type: ignore[arg-type]
    )
    worker = Worker(store, config)
    assert worker.run() == 0
    return worker


def test_failed_attempt_is_retried_and_succeeds(
    folder_store: FolderStore, write_job: Callable[..., Path], tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    job_file = write_job(
        f"""
        name = "flaky"
        files = ["flaky.py"]
        [map]
        command = ["python", "{{files}}/flaky.py", {json.dumps(str(marks))}, "{{item}}"]
        items = ["a", "b", "c"]
        outputs = ["out.txt"]
        max_attempts = 3
        """,
        {"flaky.py": FLAKY},
    )
    job = submit(folder_store, load_job(job_file))
    run_worker(folder_store, tmp_path)
    st = status_of(folder_store, job.id)
    assert st.state == "done"
    assert [(t.state, t.attempts, t.exit_code) for t in st.tasks] == [("done", 2, 0)] * 3
    logs = folder_store.list(job.folders["logs"])
    assert sorted(i.name for i in logs) == ["t0000.g0.log", "t0001.g0.log", "t0002.g0.log"]
    first_log = json.loads(folder_store.read(logs[0].id))
    assert "first attempt fails on purpose" in first_log["stderr"]
    manifest = read_manifest(folder_store, job.tasks[1])
    assert manifest["attempt"] == 2 and manifest["outputs"][0]["name"] == "out.txt"


def test_task_that_always_fails(
    folder_store: FolderStore, write_job: Callable[..., Path], tmp_path: Path
) -> None:
    job_file = write_job(
        """
        name = "poison"
        [map]
        command = ["python", "-c", "import sys; print('bad item', sys.argv[1], file=sys.stderr); sys.exit(3)", "{item}"]
        items = ["x"]
        max_attempts = 3
        """
    )
    job = submit(folder_store, load_job(job_file))
    worker = run_worker(folder_store, tmp_path)
    st = status_of(folder_store, job.id)
    assert st.state == "failed"
    (task,) = st.tasks
    assert (task.state, task.attempts, task.exit_code) == ("failed", 3, 3)
    manifest = read_manifest(folder_store, job.tasks[0])
    assert "bad item x" in manifest["stderr"] and manifest["error"] == "exit code 3"
    assert worker.stats["failed_attempts"] == 3


def test_timeout_kills_the_attempt_and_its_children(
    folder_store: FolderStore, write_job: Callable[..., Path], tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    job_file = write_job(
        f"""
        name = "slow"
        files = ["slow.py"]
        [map]
        command = ["python", "{{files}}/slow.py", {json.dumps(str(pids))}]
        items = ["1"]
        timeout = "0.5s"
        max_attempts = 1
        """,
        {
            "slow.py": """
            import os, subprocess, sys, time
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            with open(os.path.join(sys.argv[1], str(os.getpid())), "w") as fh:
                fh.write(str(child.pid))
            time.sleep(60)
            """
        },
    )
    job = submit(folder_store, load_job(job_file))
    run_worker(folder_store, tmp_path)
    st = status_of(folder_store, job.id)
    assert (st.tasks[0].state, st.tasks[0].exit_code) == ("failed", None)
    assert read_manifest(folder_store, job.tasks[0])["timed_out"] is True
    (pidfile,) = pids.iterdir()

    def gone(pid: int) -> bool:
        return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE

    for pid in (int(pidfile.name), int(pidfile.read_text())):
        wait_for(functools.partial(gone, pid), timeout=5)


def test_bad_job_in_the_store_does_not_stop_the_worker(
    folder_store: FolderStore, write_job: Callable[..., Path], tmp_path: Path
) -> None:
    (folder_id, spec_id) = folder_store.mint_ids(2)
    folder_store.create(folder_store.root_id, "job-broken-1", folder_id, folder=True)
    folder_store.create(folder_id, "job.json", spec_id, b"{not json")
    job_file = write_job(
        'name = "fine"\n[map]\ncommand = ["python", "-c", "pass"]\nitems = ["1", "2"]\n'
    )
    job = submit(folder_store, load_job(job_file))
    worker = run_worker(folder_store, tmp_path)
    assert status_of(folder_store, job.id).state == "done"
    assert "broken-1" in worker.rejected


def test_wordcount_reduce_sees_results_in_task_order(
    folder_store: FolderStore, tmp_path: Path
) -> None:
    from drivemr.example_jobs import example_dir

    job = submit(folder_store, load_job(example_dir("wordcount") / "job.toml"))
    run_worker(folder_store, tmp_path)
    view = load_view(folder_store, job)
    assert view.results[REDUCE].state == "done"
    assert job.reduce_task is not None
    total = json.loads(
        base64.b64decode(read_manifest(folder_store, job.reduce_task)["outputs"][0]["data"])
    )
    words: collections.Counter[str] = collections.Counter()
    import re

    for path in sorted((example_dir("wordcount") / "data").glob("*.txt")):
        words.update(re.findall(r"[a-z']+", path.read_text(encoding="utf-8").lower()))
    assert total["words"] == sum(words.values()) and total["distinct"] == len(words)


def test_exit_when_idle_waits_for_other_workers_tasks(
    folder_store: FolderStore, write_job: Callable[..., Path], tmp_path: Path
) -> None:
    job_file = write_job(
        'name = "tiny"\n[map]\ncommand = ["python", "-c", "pass"]\nitems = ["1"]\n'
    )
    job = submit(folder_store, load_job(job_file))
    run_worker(folder_store, tmp_path)
    assert status_of(folder_store, job.id).state == "done"
    # a second worker finds nothing to do and exits at once
    assert run_worker(folder_store, tmp_path, worker_id="w2").stats["claims"] == 0


# ----------------------------------------------------------------------------- real processes


SLOW_FIRST = """
    import os, sys, time
    if os.environ["DRIVEMR_ATTEMPT"] == "1":
        with open(os.path.join(sys.argv[1], "first-%d" % os.getpid()), "w") as fh:
            fh.write(os.environ.get("DRIVEMR_TASK", ""))
        time.sleep(120)
    open("out.txt", "w").write("finished by attempt " + os.environ["DRIVEMR_ATTEMPT"])
"""


@pytest.mark.skipif(sys.platform == "win32", reason="uses SIGKILL")
def test_killed_worker_task_is_finished_by_another_after_the_lease(
    folder_store: FolderStore, write_job: Callable[..., Path], tmp_path: Path, workers: WorkerProcs
) -> None:
    started = tmp_path / "started"
    started.mkdir()
    job_file = write_job(
        f"""
        name = "killme"
        files = ["slow.py"]
        [map]
        command = ["python", "{{files}}/slow.py", {json.dumps(str(started))}]
        items = ["only"]
        outputs = ["out.txt"]
        """,
        {"slow.py": SLOW_FIRST},
    )
    job_id = (
        run_cli("submit", "--store", folder_store.url, str(job_file))
        .stdout.strip()
        .splitlines()[-1]
    )
    victim = workers.start("victim", slots=1, lease=2.0)
    wait_for(lambda: list(started.iterdir()), timeout=60)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    orphan = int(next(started.iterdir()).name.split("-")[1])
    try:
        rescuer = workers.start("rescuer", "--exit-when-idle", slots=1, lease=2.0)
        assert rescuer.wait(timeout=120) == 0, workers.log("rescuer")
    finally:
        try:
            os.kill(orphan, signal.SIGKILL)
        except ProcessLookupError:
            pass
    st = status_of(folder_store, job_id)
    (task,) = st.tasks
    assert (task.state, task.attempts, task.worker) == ("done", 2, "rescuer")
    _, job = find_job(folder_store, job_id)
    manifest = read_manifest(folder_store, job.tasks[0])
    assert manifest["worker"] == "rescuer" and manifest["attempt"] == 2
    assert "reclaiming" in workers.log("rescuer")


def test_three_worker_processes_thirty_tasks_and_a_reduce(
    folder_store: FolderStore, write_job: Callable[..., Path], tmp_path: Path, workers: WorkerProcs
) -> None:
    job_file = write_job(
        """
        name = "squares"
        files = ["square.py", "total.py"]
        [map]
        command = ["python", "{files}/square.py", "{item}"]
        items = {range = [0, 30]}
        outputs = ["square.txt"]
        [reduce]
        command = ["python", "{files}/total.py", "{results}"]
        outputs = ["total.txt"]
        """,
        {
            "square.py": """
            import os, sys
            n = int(sys.argv[1])
            open("square.txt", "w").write("%d %d %s" % (n, n * n, os.environ["DRIVEMR_TASK"]))
            """,
            "total.py": """
            import os, sys
            lines = [open(os.path.join(sys.argv[1], d, "square.txt")).read() for d in sorted(os.listdir(sys.argv[1]))]
            total = sum(int(line.split()[1]) for line in lines)
            order = ",".join(line.split()[0] for line in lines)
            open("total.txt", "w").write("%d\\n%s\\n" % (total, order))
            """,
        },
    )
    job_id = (
        run_cli("submit", "--store", folder_store.url, str(job_file))
        .stdout.strip()
        .splitlines()[-1]
    )
    for name in ("pc1", "pc2", "pc3"):
        workers.start(name, "--exit-when-idle", slots=2)
    codes = workers.wait_all()
    assert codes == {"pc1": 0, "pc2": 0, "pc3": 0}, {n: workers.log(n) for n in codes}
    out = tmp_path / "out"
    run_cli("reduce", job_id, "--store", folder_store.url, "--out", str(out))
    total, order = (out / "total.txt").read_text().split("\n")[:2]
    assert int(total) == sum(n * n for n in range(30))
    assert order == ",".join(str(n) for n in range(30))
    st = status_of(folder_store, job_id)
    assert st.counts == {
        "pending": 0,
        "running": 0,
        "done": 30,
        "failed": 0,
        "lost": 0,
        "cancelled": 0,
        "blocked": 0,
    }
    results = folder_store.list(find_job(folder_store, job_id)[1].folders["results"])
    assert len(results) == 31  # exactly one result per task, plus the reduce


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_drains_running_tasks_and_exits_zero(
    folder_store: FolderStore, write_job: Callable[..., Path], tmp_path: Path, workers: WorkerProcs
) -> None:
    gate = tmp_path / "gate"
    started = tmp_path / "started"
    started.mkdir()
    job_file = write_job(
        f"""
        name = "drain"
        [map]
        command = ["python", "-c", "import os,sys,time; open(os.path.join(sys.argv[1], sys.argv[3]), 'w').close(); [time.sleep(0.02) for _ in iter(lambda: os.path.exists(sys.argv[2]), True)]", {json.dumps(str(started))}, {json.dumps(str(gate))}, "{{task}}"]
        items = {{range = [0, 4]}}
        """
    )
    job_id = (
        run_cli("submit", "--store", folder_store.url, str(job_file))
        .stdout.strip()
        .splitlines()[-1]
    )
    proc = workers.start("drainer", slots=2)
    wait_for(lambda: len(list(started.iterdir())) == 2, timeout=60)
    proc.send_signal(signal.SIGTERM)
    threading.Timer(0.3, gate.touch).start()
    assert proc.wait(timeout=60) == 0, workers.log("drainer")
    st = status_of(folder_store, job_id)
    assert st.counts["done"] == 2 and st.counts["pending"] == 2  # drained, claimed nothing more
    assert len(list(started.iterdir())) == 2


def test_slots_claim_their_next_task_and_never_overlap_more_than_n(
    folder_store: FolderStore, write_job: Callable[..., Path], tmp_path: Path
) -> None:
    """A slot that finishes claims its next task itself; still never more than N at once."""
    job_file = write_job(
        """
        name = "many"
        [map]
        command = ["python", "-c", "import time; time.sleep(0.01)"]
        items = {range = [0, 40]}
        """
    )
    job = submit(folder_store, load_job(job_file))
    worker = run_worker(folder_store, tmp_path, slots=2)
    assert status_of(folder_store, job.id).state == "done"
    assert worker.stats["slot_claims"] > 0  # the fast path ran
    assert worker.stats["claims"] == 40 and worker.stats["commits"] == 40
    spans = [
        (m["started"], m["ended"]) for m in (read_manifest(folder_store, t) for t in job.tasks)
    ]
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    assert most <= 2


def test_every_attempt_starts_in_an_empty_working_folder(
    folder_store: FolderStore, write_job: Callable[..., Path], tmp_path: Path
) -> None:
    """Slots reuse one folder: whatever an attempt leaves behind is gone before the next."""
    litter = (
        "import os, json; json.dump(sorted(os.listdir('.')), open('seen.json.tmp', 'w'));"
        " os.makedirs('junk/deep'); open('junk/deep/f', 'w').write('x'); open('a.txt', 'w').write('x');"
        " os.replace('seen.json.tmp', 'seen.json')"
    )
    job_file = write_job(
        f"""
        name = "litter"
        [map]
        command = ["python", "-c", {json.dumps(litter)}]
        items = {{range = [0, 12]}}
        outputs = ["seen.json"]
        """
    )
    job = submit(folder_store, load_job(job_file))
    run_worker(folder_store, tmp_path, slots=2)
    assert status_of(folder_store, job.id).state == "done"
    for task in job.tasks:
        (out,) = read_manifest(folder_store, task)["outputs"]
        assert json.loads(base64.b64decode(out["data"])) == []  # listed before writing


def test_quick_tasks_are_summed_up_in_the_log_and_failures_get_a_line(
    folder_store: FolderStore,
    write_job: Callable[..., Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job_file = write_job(
        """
        name = "quick"
        [map]
        command = ["python", "-c", "import sys; sys.exit(int(sys.argv[1]) == 3)", "{item}"]
        items = {range = [0, 6]}
        max_attempts = 1
        """
    )
    job = submit(folder_store, load_job(job_file))
    with caplog.at_level(logging.INFO, logger="drivemr.worker"):
        run_worker(folder_store, tmp_path)
    assert status_of(folder_store, job.id).state == "failed"
    info = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    # A loaded machine may make an attempt take a second (a line of its own) or spread the
    # summary over two lines: count what the manifests say should be where.
    slow = sum(
        read_manifest(folder_store, t)["duration"] >= 1.0 for t in job.tasks if t.id != "t0003"
    )
    assert sum(" done (attempt" in m for m in info) == slow, info
    summed = [int(m.split()[0]) for m in info if " quick task(s) done in " in m]
    assert sum(summed) == 5 - slow and (summed or slow == 5), info
    assert any("t0003 failed (attempt 1, exit code 1)" in m for m in info), info
