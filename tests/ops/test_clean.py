"""`drivemr clean` on a folder store and a (shared) fake Drive, and workers that outlive a
job folder removed under them, with real `drivemr worker` processes."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from helpers import WorkerProcs, run_cli, wait_for

from drivemr.protocol import JOB_PREFIX, find_job, list_jobs
from drivemr.stores.drive import DriveStore
from drivemr.stores.folder import FolderStore
from drivemr.testing.fakedrive import FakeDriveServer

pytestmark = pytest.mark.timeout(180)

QUICK = """
name = "{name}"
[map]
command = ["python", "-c", "print('hi')"]
items = ["a", "b"]
"""

SLEEPER = """
import os, sys, time
open(os.path.join(sys.argv[1], sys.argv[2] + ".pid"), "w").write(str(os.getpid()))
time.sleep(600)
"""


def _submit(store: str, job_file: Path, **env: str) -> str:
    return run_cli("submit", "--store", store, str(job_file), env=env or None).stdout.split()[-1]


def _job_ids(store: FolderStore) -> set[str]:
    return {f.name[len(JOB_PREFIX) :] for f in list_jobs(store)}


def test_clean_removes_finished_jobs_only_and_dry_run_changes_nothing(
    folder_store: FolderStore,
    write_job: Callable[..., Path],
    workers: WorkerProcs,
) -> None:
    s = str(folder_store.path)
    done = _submit(s, write_job(QUICK.format(name="done"), name="done"))
    workers.start("w1", "--exit-when-idle", slots=2)
    assert workers.wait_all(timeout=120) == {"w1": 0}, workers.log("w1")
    cancelled = _submit(s, write_job(QUICK.format(name="gone"), name="gone"))
    run_cli("cancel", cancelled, "--store", s)
    pending = _submit(s, write_job(QUICK.format(name="later"), name="later"))

    dry = run_cli("clean", "--older-than", "0s", "--dry-run", "--store", s).stdout
    assert f"would remove {done}" in dry and f"would remove {cancelled}" in dry
    assert pending not in dry  # a pending job is not even a candidate for an age sweep
    assert "2 job(s)" in dry and "2 folder removal(s)" in dry
    assert _job_ids(folder_store) == {done, cancelled, pending}

    kept = run_cli("clean", "--older-than", "30d", "--store", s).stdout
    assert "removed 0 job(s)" in kept and _job_ids(folder_store) == {done, cancelled, pending}

    proc = run_cli("clean", pending, "--store", s, check=False)
    assert proc.returncode == 1 and f"keeping {pending}: it is pending" in proc.stdout

    out = run_cli("clean", "--older-than", "0s", "--store", s).stdout
    assert "removed 2 job(s)" in out
    assert _job_ids(folder_store) == {pending}
    assert run_cli("status", "--store", s, check=False).returncode in (0, 1)

    bad = run_cli("clean", "--store", s, check=False)
    assert bad.returncode != 0 and "--older-than" in bad.stderr


def test_a_running_job_is_never_removed_and_a_vanished_job_is_forgotten(
    folder_store: FolderStore,
    write_job: Callable[..., Path],
    workers: WorkerProcs,
    tmp_path: Path,
) -> None:
    s = str(folder_store.path)
    pids = tmp_path / "pids"
    pids.mkdir()
    sleepy = write_job(
        f"""
        name = "sleepy"
        [map]
        command = ["python", "-c", {json.dumps(SLEEPER)}, {json.dumps(str(pids))}, "{{item}}"]
        items = ["a", "b", "c"]
        items_per_task = 1
        """,
        name="sleepy",
    )
    workers.start("w1", slots=2)
    workers.start("w2", slots=1)
    job_id = _submit(s, sleepy)
    wait_for(lambda: len(list(pids.glob("*.pid"))) == 3, what="three attempts running")

    proc = run_cli("clean", job_id, "--store", s, check=False)
    assert proc.returncode == 1 and f"keeping {job_id}: it is running" in proc.stdout
    assert job_id in _job_ids(folder_store)

    # The folder goes anyway (by hand, or a PC with an older drivemr): the workers stop
    # its attempts, forget the job and go on serving.
    folder, _ = find_job(folder_store, job_id)
    folder_store.delete(folder.id)
    attempt_pids = [int(p.read_text()) for p in pids.glob("*.pid")]

    def ended(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_for(lambda: all(ended(pid) for pid in attempt_pids), what="attempts stopped")
    after = _submit(s, write_job(QUICK.format(name="after"), name="after"))
    wait_for(
        lambda: (
            run_cli("status", after, "--json", "--store", s, check=False).stdout.find(
                '"state": "done"'
            )
            >= 0
        ),
        what="the next job done",
        interval=0.3,
    )
    for name in ("w1", "w2"):
        assert workers.procs[name].poll() is None, workers.log(name)
        log = workers.log(name)
        assert "Traceback" not in log, log
        assert "gone from the store" in log, log
    for proc_ in workers.procs.values():
        proc_.send_signal(signal.SIGINT if os.name != "nt" else signal.SIGTERM)
    workers.wait_all(timeout=60)


def test_clean_on_a_shared_drive_needs_a_managers_role(
    monkeypatch: pytest.MonkeyPatch, write_job: Callable[..., Path], tmp_path: Path
) -> None:
    srv = FakeDriveServer(port=0, minted_ids="anyone").start()
    try:
        monkeypatch.setenv("DRIVEMR_DRIVE_ENDPOINT", srv.url)
        monkeypatch.setenv("DRIVEMR_CONFIG_DIR", str(tmp_path / "config"))
        monkeypatch.setenv("DRIVEMR_WRITE_RATE", "0")
        drive_id = srv.create_drive("team", organizer="alice", members={"bob": "writer"})
        alice, bob = {"DRIVEMR_DRIVE_TOKEN": "alice"}, {"DRIVEMR_DRIVE_TOKEN": "bob"}
        url = run_cli("init", "--store", "drive://", "--shared-drive", drive_id, env=alice)
        root = url.stdout.split()[-1]
        job_id = _submit(root, write_job(QUICK.format(name="one")), **bob)
        run_cli("cancel", job_id, "--store", root, env=bob)

        dry = run_cli("clean", job_id, "--dry-run", "--store", root, env=bob).stdout
        assert f"would remove {job_id}" in dry and "1 delete request(s)" in dry

        proc = run_cli("clean", job_id, "--store", root, env=bob, check=False)
        assert proc.returncode == 1
        assert "fileOrganizer" in proc.stderr and ".." not in proc.stderr, proc.stderr

        run_cli("clean", job_id, "--store", root, env=alice)
        monkeypatch.setenv("DRIVEMR_DRIVE_TOKEN", "alice")
        with DriveStore.from_url(root, write_rate=None) as store:
            assert list_jobs(store) == []
    finally:
        srv.stop()
