"""The Python API: drivemr.Client and its job handles, on a folder store with real worker
processes, and the CLI's --json built from the same dataclasses."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import WorkerProcs, wait_for

import drivemr
from drivemr.api import Client, WorkerInfo
from drivemr.cli import main
from drivemr.errors import (
    DrivemrError,
    JobSpecError,
    JobStateError,
    NoWorkerError,
    WaitTimeout,
)
from drivemr.spec import load_job
from drivemr.status import JobStatus
from drivemr.stores.folder import FolderStore

JOB = """
name = "api"
[map]
command = ["python", "-c", "import sys; print('hello', sys.argv[1]); open('o.txt', 'w').write(sys.argv[1] * 2)", "{item}"]
items = ["a", "b", "c"]
outputs = ["o.txt"]
[reduce]
command = ["python", "-c", "import os, sys; d = sys.argv[1]; open('all.txt', 'w').write(''.join(open(os.path.join(d, t, 'o.txt')).read() for t in sorted(os.listdir(d))))", "{results}"]
outputs = ["all.txt"]
"""

SLOW_JOB = """
name = "slow"
[map]
command = ["python", "-c", "import time; time.sleep(60)"]
items = ["a", "b"]
"""


def cli_json(*args: str) -> object:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_exports() -> None:
    assert drivemr.Client is Client
    assert drivemr.TaskManager.__name__ == "TaskManager"
    assert issubclass(drivemr.MapError, drivemr.DrivemrError)


def test_store_resolution(
    folder_store: FolderStore, monkeypatch: pytest.MonkeyPatch, isolated_config: Path
) -> None:
    with pytest.raises(DrivemrError, match="no store given"):
        Client()
    monkeypatch.setenv("DRIVEMR_STORE", str(folder_store.path))
    with Client() as client:
        assert client.url == folder_store.url
        assert client.jobs() == []
    monkeypatch.delenv("DRIVEMR_STORE")
    (isolated_config / "config.toml").write_text(f"store = {str(folder_store.path)!r}\n")
    try:
        with Client() as client:
            assert client.url == folder_store.url
    finally:
        (isolated_config / "config.toml").unlink()
    with Client(folder_store.path) as client:  # a path, as for --store
        assert client.url == folder_store.url


def test_submit_wait_status_logs_reduce(
    folder_store: FolderStore,
    write_job: Callable[..., Path],
    tmp_path: Path,
    workers: WorkerProcs,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = Client(folder_store.url)
    job = client.submit(write_job(JOB))
    st = job.status()
    assert isinstance(st, JobStatus) and st.state == "pending"
    assert st.counts["pending"] == 3 and st.reduce is not None
    # status --json is built from the same dataclass
    assert cli_json("status", job.id, "--store", folder_store.url, "--json") == json.loads(
        json.dumps(st.to_json())
    )
    with pytest.raises(JobStateError, match="no result yet"):
        job.reduce(tmp_path / "early")

    workers.start("w1")
    workers.start("w2")
    wait_for(lambda: {w.worker for w in client.workers() if w.alive} == {"w1", "w2"})
    final = job.wait(poll=0.05)
    assert final.state == "done", [workers.log("w1"), workers.log("w2")]
    assert final.counts["done"] == 3 and final.reduce and final.reduce.state == "done"
    assert {t.worker for t in final.tasks} <= {"w1", "w2"}

    assert cli_json("status", job.id, "--store", folder_store.url, "--json") == json.loads(
        json.dumps(job.status().to_json())
    )
    listed = client.jobs()
    assert [s.job for s in listed] == [job.id]
    assert isinstance(listed[0], JobStatus) and listed[0].state == "done"
    jobs_json = cli_json("jobs", "--store", folder_store.url, "--json")
    assert isinstance(jobs_json, list) and jobs_json[0]["job"] == job.id
    assert jobs_json[0]["total"] == 3

    seen = client.workers()
    assert {w.worker for w in seen} == {"w1", "w2"}
    assert all(isinstance(w, WorkerInfo) and w.alive and w.slots == 2 for w in seen)
    rows = cli_json("workers", "--store", folder_store.url, "--json")
    assert isinstance(rows, list) and {r["worker"] for r in rows} == {"w1", "w2"}

    attempt = job.logs("t0001")
    assert attempt.outcome == "done" and attempt.stdout == "hello b\n"
    assert attempt.worker in ("w1", "w2")
    assert [a.task for a in job.attempts()] == ["t0000", "t0001", "t0002", "reduce"]
    with pytest.raises(DrivemrError, match="no task 'nope'"):
        job.logs("nope")

    paths = job.reduce(tmp_path / "r")
    assert [p.name for p in paths] == ["all.txt"]
    assert (tmp_path / "r" / "all.txt").read_text() == "aabbcc"
    assert client.job(job.id[:8]).id == job.id  # a unique prefix finds it
    with pytest.raises(JobStateError, match="already finished"):
        job.cancel()
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""  # nothing printed unless asked


def test_submit_a_parsed_spec_and_refuse_a_bad_file(
    folder_store: FolderStore, write_job: Callable[..., Path]
) -> None:
    client = Client(folder_store)
    spec = load_job(write_job(JOB))
    job = client.submit(spec)
    assert job.definition.name == "api" and len(job.definition.tasks) == 3
    bad = write_job('name = "x"\n[map]\nitems = ["a"]\n', name="bad")
    with pytest.raises(JobSpecError, match=r"map\.command"):
        client.submit(bad)
    assert [s.job for s in client.jobs()] == [job.id]


def test_cancel_and_wait_on_a_cancelled_job(
    folder_store: FolderStore, write_job: Callable[..., Path]
) -> None:
    client = Client(folder_store)
    job = client.submit(write_job(SLOW_JOB))
    assert job.cancel() is True
    assert job.cancel() is False
    st = job.wait(poll=0.01)
    assert st.state == "cancelled" and st.counts["cancelled"] == 2


def test_wait_timeout_and_the_nobody_working_notice(
    folder_store: FolderStore, write_job: Callable[..., Path]
) -> None:
    client = Client(folder_store)
    job = client.submit(write_job(SLOW_JOB))
    with pytest.raises(WaitTimeout, match=job.id):
        job.wait(timeout=0.2, poll=0.01)
    with pytest.raises(NoWorkerError, match="no live worker serves"):
        job.wait(poll=0.01, idle_after=0.02, on_notice="raise")
    said: list[str] = []
    with pytest.raises(WaitTimeout):
        job.wait(timeout=0.3, poll=0.01, idle_after=0.02, on_notice=said.append)
    assert len(said) == 1 and "drivemr worker --store" in said[0]  # said once
    out = io.StringIO()
    with pytest.raises(WaitTimeout):
        job.wait(timeout=0.3, progress=True, out=out, poll=0.01, idle_after=0.02)
    shown = out.getvalue()
    assert f"job {job.id}:" in shown and "2 pending" in shown and "no live worker" in shown


def test_progress_lines_and_cli_watch_share_the_loop(
    folder_store: FolderStore, write_job: Callable[..., Path], workers: WorkerProcs
) -> None:
    client = Client(folder_store)
    job = client.submit(write_job(JOB))
    workers.start("w", "--exit-when-idle")
    out = io.StringIO()
    st = job.wait(progress=True, out=out, poll=0.05)
    assert st.state == "done"
    assert "3/3 done" in out.getvalue()
    result = CliRunner().invoke(main, ["status", job.id, "--watch", "--store", folder_store.url])
    assert result.exit_code == 0 and f"job {job.id} done" in result.stdout
