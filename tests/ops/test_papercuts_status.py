"""Issue 18 point 2 (reader side): an attempt whose worker stopped, went silent or whose job
was cancelled never shows as ``running``; a lost attempt's time stops at its worker's last
sign of life. Claims and heartbeats are written with the store's own primitives, exactly as
a worker writes them, and aged with real file times."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from drivemr.cli import main
from drivemr.protocol import Job, claim_name, heartbeat_name, mark, submit
from drivemr.report import collect
from drivemr.spec import load_job
from drivemr.status import status_of
from drivemr.stores.folder import FolderStore
from drivemr.trust import Trust, claim_body

JOB = """
name = "cut"
[map]
command = ["python", "-c", "pass", "{item}"]
items = ["a", "b"]
"""


def _setup(tmp_path: Path) -> tuple[FolderStore, Job]:
    store = FolderStore(tmp_path / "store", create=True)
    (tmp_path / "job.toml").write_text(JOB, encoding="utf-8")
    return store, submit(store, load_job(tmp_path / "job.toml"))


def _age(store: FolderStore, file_id: str, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(store.path / store._rel(file_id), (then, then))


def _claim(store: FolderStore, job: Job, worker: str, age: float) -> str:
    task = job.tasks[0]
    body = claim_body(job.id, task.id, 0, worker, life="life-1", nonce="n")
    info = store.create(
        job.folders["claims"],
        claim_name(task.id, 0, worker),
        task.claim_ids[0],
        Trust.for_this_pc().seal("claim", body),
    )
    _age(store, info.id, age)
    return info.id


def _beat(
    store: FolderStore, worker: str, state: str, age: float, lease: float | None = 300.0
) -> str:
    (fid,) = store.mint_ids(1)
    doc = {"worker": worker, "life": "life-1", "seq": 1, "state": state, "lease": lease}
    sealed = Trust.for_this_pc().seal("heartbeat", doc)
    info = store.create(store.root_id, heartbeat_name(worker), fid, sealed)
    _age(store, info.id, age)
    return info.id


def test_a_live_workers_attempt_is_running(tmp_path: Path) -> None:
    store, job = _setup(tmp_path)
    _claim(store, job, "w1", 20)
    _beat(store, "w1", "running", 1)
    t0 = status_of(store, job.id).tasks[0]
    assert t0.state == "running" and t0.worker == "w1"
    assert t0.duration is not None and t0.duration >= 19


def test_cancelled_attempts_show_cancelled(tmp_path: Path) -> None:
    store, job = _setup(tmp_path)
    _claim(store, job, "w1", 20)
    _beat(store, "w1", "running", 1)  # the worker is alive, but the job was cancelled
    mark(store, job, "cancel", Trust.for_this_pc())
    st = status_of(store, job.id)
    assert [t.state for t in st.tasks] == ["cancelled", "cancelled"]
    assert st.state == "cancelled" and st.counts["running"] == 0
    assert st.counts["cancelled"] == 2
    out = CliRunner().invoke(main, ["status", job.id, "--store", str(store.path)]).stdout
    assert "running" not in out.split("\n", 1)[1] and "cancelled" in out


def test_a_stopped_workers_attempt_is_lost_and_its_time_stops(tmp_path: Path) -> None:
    store, job = _setup(tmp_path)
    _claim(store, job, "w1", 30)
    _beat(store, "w1", "stopped", 10)  # a worker killed mid-task said it stopped 10 s ago
    t0 = status_of(store, job.id).tasks[0]
    assert t0.state == "lost" and t0.worker == "w1"
    assert t0.duration is not None and 19 <= t0.duration <= 21  # claim to last sign of life
    record = collect(store, job.id)
    lost = record.of(t0.task)[0]
    assert lost.outcome == "lost" and lost.duration is not None and lost.duration <= 21


def test_a_lapsed_heartbeat_makes_the_attempt_lost(tmp_path: Path) -> None:
    store, job = _setup(tmp_path)
    _claim(store, job, "w1", 500)
    _beat(store, "w1", "running", 400)  # silent for longer than the 300 s lease
    st = status_of(store, job.id)
    t0 = st.tasks[0]
    assert t0.state == "lost" and st.counts["lost"] == 1 and st.state == "running"
    assert t0.duration is not None and 99 <= t0.duration <= 101
    # The duration does not grow while nobody reclaims the task.
    assert (
        collect(store, job.id).of(t0.task)[0].duration
        == collect(store, job.id).of(t0.task)[0].duration
    )


def test_logs_follow_says_output_arrives_when_the_attempt_ends(tmp_path: Path) -> None:
    import subprocess

    from helpers import drivemr_cmd

    store, job = _setup(tmp_path)
    _claim(store, job, "w1", 5)
    _beat(store, "w1", "running", 0)
    task = job.tasks[0].id
    args = ["logs", job.id, task, "--follow", "--poll", "0.05", "--store", str(store.path)]
    with subprocess.Popen(drivemr_cmd(*args), stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        mark(store, job, "cancel", Trust.for_this_pc())  # the task ends: --follow returns
        rest = proc.stderr.read()
        assert proc.wait() == 0, rest
    assert f"{task} attempt 1 is running on w1" in first
    assert "output when it ends, so it is printed then" in first


def test_status_judges_by_the_configured_lease(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker is judged by the lease its heartbeat declares; the configured lease is for
    heartbeats that declare none."""
    store, job = _setup(tmp_path)
    _claim(store, job, "w1", 50)
    _beat(store, "w1", "running", 40, lease=None)
    args = ["status", job.id, "--store", str(store.path), "--json"]
    doc = json.loads(CliRunner().invoke(main, args).stdout)
    assert doc["tasks"][0]["state"] == "running"  # within the default 300 s lease
    monkeypatch.setenv("DRIVEMR_LEASE", "30")
    doc = json.loads(CliRunner().invoke(main, args).stdout)
    assert doc["tasks"][0]["state"] == "lost" and doc["counts"]["lost"] == 1


def test_status_judges_a_worker_by_the_lease_it_declared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, job = _setup(tmp_path)
    _claim(store, job, "w1", 50)
    _beat(store, "w1", "running", 40, lease=20.0)
    args = ["status", job.id, "--store", str(store.path), "--json"]
    doc = json.loads(CliRunner().invoke(main, args).stdout)
    assert doc["tasks"][0]["state"] == "lost"  # silent for 40 s, past its declared 20 s
