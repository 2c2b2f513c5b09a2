"""Sealed results and retry rounds on the Drive store, over real HTTP against the fake Drive
with the real google-api-python-client: a forged result before the run never wins, and a
retry round re-runs only the failed task."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivemr.cli import fetch_or_reduce
from drivemr.protocol import REDUCE, find_job, load_view, result_name, submit
from drivemr.results import fetch_results, seal_result
from drivemr.rounds import retry_job
from drivemr.sealed import Sealer
from drivemr.spec import load_job
from drivemr.worker import Worker, WorkerConfig


def job_text(control: Path) -> str:
    code = (
        "import os, sys; item = sys.argv[1]; "
        f"failing = os.path.exists(os.path.join({str(control)!r}, 'fail-' + item)); "
        "sys.exit(1) if failing else open('out.txt', 'w').write(item)"
    )
    total = (
        "import os, sys; d = sys.argv[1]; "
        "open('total.txt', 'w').write(str(sum(int(open(os.path.join(d, t, 'out.txt')).read()) "
        "for t in sorted(os.listdir(d)))))"
    )
    return f"""
        name = "drive"
        [map]
        command = ["python", "-c", {json.dumps(code)}, "{{item}}"]
        items = {{range = [1, 4]}}
        outputs = ["out.txt"]
        max_attempts = 1
        [reduce]
        command = ["python", "-c", {json.dumps(total)}, "{{results}}"]
        outputs = ["total.txt"]
        """


def run_worker(store: Any, tmp_path: Path, name: str) -> None:
    config = WorkerConfig(
        worker_id=name,
        slots=2,
        workdir=tmp_path / name,
        lease=30.0,
        poll_interval=0.05,
        retry_backoff=0.01,
        exit_when_idle=True,
    )
    assert Worker(store, config).run() == 0


def test_forged_result_and_retry_round_on_drive(
    make_drive_store: Callable[..., Any], write_job: Callable[..., Path], tmp_path: Path
) -> None:
    store = make_drive_store()
    control = tmp_path / "control"
    control.mkdir()
    (control / "fail-3").touch()
    job = submit(store, load_job(write_job(job_text(control))))
    forged = {
        "job": job.id,
        "task": "t0000",
        "slot": job.tasks[0].result_ids[0],
        "round": 0,
        "state": "done",
        "attempt": 1,
        "outputs": [],
    }
    mallory = Sealer(Ed25519PrivateKey.generate())
    store.create(
        job.folders["results"],
        result_name("t0000", "done", 0, 0, 0.1),
        job.tasks[0].result_ids[0],
        seal_result(mallory, forged),
    )
    run_worker(make_drive_store(), tmp_path, "w1")
    view = load_view(store, job)
    assert view.results["t0000"].slot == 1 and view.results["t0002"].state == "failed"
    got = fetch_results(store, job.id, tmp_path / "parts")
    assert sorted(p.parent.name for p in got) == ["t0000", "t0001"]
    assert (tmp_path / "parts" / "t0000" / "out.txt").read_text() == "1"

    (control / "fail-3").unlink()
    rnd = retry_job(store, job.id, failed=True)
    assert list(rnd.tasks) == ["t0002"]
    run_worker(make_drive_store(), tmp_path, "w2")
    _folder, now = find_job(store, job.id)
    assert now.round == 1 and load_view(store, now).results[REDUCE].state == "done"
    (path,) = fetch_or_reduce(store, job.id, tmp_path / "out")
    assert path.read_text() == "6"
