"""drivemr on S3, end to end: real `drivemr` processes (init, submit, workers, status,
reduce), each its own boto3 client, against the S3 server on loopback; a storm of 503/500/
409 answers and lost acknowledgements; and `kill -9` of a worker in the middle of a job.
Every task must be committed exactly once, under its minted result id."""

from __future__ import annotations

import collections
import json
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import WorkerProcs, run_cli, wait_for

from drivemr.protocol import Job, find_job
from drivemr.stores import open_store
from drivemr.stores.base import Store
from drivemr.testing.filefacts import claim_facts, result_facts
from drivemr.testing.s3proxy import S3Proxy

pytestmark = pytest.mark.timeout(300)

DONE = {"pending": 0, "running": 0, "failed": 0, "lost": 0, "cancelled": 0, "blocked": 0}
"""The status counts of a finished job, but for ``done``."""

SQUARES_JOB = """
name = "squares"
files = ["square.py", "total.py"]
[map]
command = ["python", "{{files}}/square.py", "{{item}}", {sidefx}]
items = {{range = [0, {n}]}}
outputs = ["out.json"]
max_attempts = 4
items_per_task = 1  # one item per task: claims, kills and duplicates are counted per item
[reduce]
command = ["python", "{{files}}/total.py", "{{results}}"]
outputs = ["total.json"]
"""

SQUARE_PY = """
import json, os, sys, time
i = int(sys.argv[1])
marker = os.path.join(sys.argv[2], "%s.a%s.p%d" % (os.environ["DRIVEMR_TASK"],
                                                   os.environ["DRIVEMR_ATTEMPT"], os.getpid()))
open(marker, "w").close()
time.sleep(float(os.environ.get("SQUARE_SLEEP", "0")))
with open("out.json", "w") as out:
    json.dump({"i": i, "sq": i * i}, out)
"""

TOTAL_PY = """
import json, pathlib, sys
folders = sorted(pathlib.Path(sys.argv[1]).iterdir())
rows = [json.loads((d / "out.json").read_text()) for d in folders]
doc = {"tasks": len(rows), "items": sorted(r["i"] for r in rows)}
doc["sum"] = sum(r["sq"] for r in rows)
pathlib.Path("total.json").write_text(json.dumps(doc, sort_keys=True))
"""


@pytest.fixture
def s3_store_url(s3_url: str) -> str:
    """A store made the way a user makes one: `drivemr init --store s3://...`."""
    lines = run_cli("init", "--store", s3_url).stdout.strip().splitlines()
    assert lines[-1] == s3_url and any("conditional creates honoured" in x for x in lines)
    return s3_url


@pytest.fixture
def s3_workers(s3_store_url: str, tmp_path: Path) -> Iterator[WorkerProcs]:
    procs = WorkerProcs(s3_store_url, tmp_path / "workers")
    procs.workdir.mkdir()
    yield procs
    procs.stop()


@pytest.fixture
def inspect(s3_store_url: str) -> Iterator[Store]:
    store = open_store(s3_store_url)
    yield store
    store.close()


def squares_job(write_job: Callable[..., Path], sidefx: Path, n: int) -> Path:
    files = {"square.py": SQUARE_PY, "total.py": TOTAL_PY}
    return write_job(SQUARES_JOB.format(n=n, sidefx=json.dumps(str(sidefx))), files)


def submit(url: str, job_file: Path) -> str:
    return run_cli("submit", "--store", url, str(job_file)).stdout.strip().splitlines()[-1]


def check_one_result_per_task(store: Store, job: Job) -> None:
    """Exactly one done result per task (and the reduce), each under its minted id; every
    claim under a minted claim id of its task; no name twice in any folder."""
    tasks = [*job.tasks, *([job.reduce_task] if job.reduce_task else [])]
    results = store.list(job.folders["results"])
    names = collections.Counter(r.name for r in results)
    assert [n for n, c in names.items() if c > 1] == []
    refs = [result_facts(store, info) for info in results]
    assert all(ref is not None for ref in refs), [r.name for r in results]
    by_task = {ref.task: ref for ref in refs if ref is not None}
    assert len(results) == len(tasks) and sorted(by_task) == sorted(t.id for t in tasks)
    for task in tasks:
        assert by_task[task.id].file.id == task.result_id and by_task[task.id].state == "done"
    for info in store.list(job.folders["claims"]):
        parsed = claim_facts(store, info)
        assert parsed is not None, info.name
        assert info.id == job.task(parsed[0]).claim_ids[parsed[1]], info


def executions(sidefx: Path) -> collections.Counter[str]:
    return collections.Counter(p.name.split(".")[0] for p in sidefx.iterdir())


@pytest.mark.slow  # 10-15 s of worker processes on the loopback S3 server
def test_three_workers_through_a_storm_of_faults_commit_every_task_once(
    s3_store_url: str,
    s3_workers: WorkerProcs,
    s3_proxy: S3Proxy,
    inspect: Store,
    write_job: Callable[..., Path],
    tmp_path: Path,
) -> None:
    n = 30
    sidefx = tmp_path / "sidefx"
    sidefx.mkdir()
    job_id = submit(s3_store_url, squares_job(write_job, sidefx, n))
    s3_proxy.storm(0.08, seed=7)  # 503 SlowDown, 500, 409 and lost answers on 8% of requests
    workers = ("pc1", "pc2", "pc3")
    for name in workers:
        s3_workers.start(name, "--exit-when-idle", slots=2, lease=10)
    codes = s3_workers.wait_all(timeout=240)
    assert codes == dict.fromkeys(workers, 0), {w: s3_workers.log(w) for w in workers}
    injected = s3_proxy.injected
    s3_proxy.reset()
    assert injected > 20  # the faults did happen

    doc = json.loads(run_cli("status", job_id, "--store", s3_store_url, "--json").stdout)
    assert doc["state"] == "done"
    assert doc["counts"] == DONE | {"done": n}
    out = tmp_path / "out"
    run_cli("reduce", job_id, "--store", s3_store_url, "--out", str(out))
    assert json.loads((out / "total.json").read_text()) == {
        "tasks": n,
        "items": list(range(n)),
        "sum": sum(i * i for i in range(n)),
    }
    _, job = find_job(inspect, job_id)
    check_one_result_per_task(inspect, job)
    assert sorted(executions(sidefx)) == sorted(t.id for t in job.tasks)
    assert len({t["worker"] for t in doc["tasks"]}) >= 2  # the PCs shared the work


@pytest.mark.slow  # 10-15 s: a lease to expire and 40 tasks on the loopback S3 server
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_kill9_of_a_worker_mid_job_loses_and_duplicates_nothing_beyond_its_claims(
    s3_store_url: str,
    s3_workers: WorkerProcs,
    inspect: Store,
    write_job: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    n = 40
    sidefx = tmp_path / "sidefx"
    sidefx.mkdir()
    monkeypatch.setenv("SQUARE_SLEEP", "0.3")
    job_id = submit(s3_store_url, squares_job(write_job, sidefx, n))
    victim = s3_workers.start("victim", slots=2, lease=3)
    tree = psutil.Process(victim.pid)

    def victim_running_tasks() -> list[Any]:
        return [p for p in tree.children(recursive=True) if "square.py" in " ".join(p.cmdline())]

    for name in ("pc1", "pc2"):
        s3_workers.start(name, "--exit-when-idle", slots=2, lease=3)
    orphans = wait_for(victim_running_tasks, timeout=120)
    assert isinstance(orphans, list)
    victim.send_signal(signal.SIGKILL)  # the PC dies: the worker and its tasks
    for proc in orphans:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    victim.wait()
    codes = {name: s3_workers.procs[name].wait(timeout=240) for name in ("pc1", "pc2")}
    assert codes == {"pc1": 0, "pc2": 0}, {w: s3_workers.log(w) for w in codes}

    _, job = find_job(inspect, job_id)
    check_one_result_per_task(inspect, job)
    claims = [claim_facts(inspect, c) for c in inspect.list(job.folders["claims"])]
    victims = {c[0] for c in claims if c is not None and c[2] == "victim"}
    retaken = {c[0] for c in claims if c is not None and c[1] >= 1}
    done = json.loads(run_cli("status", job_id, "--store", s3_store_url, "--json").stdout)
    assert done["counts"] == DONE | {"done": n}
    ran = executions(sidefx)
    assert sorted(ran) == sorted(t.id for t in job.tasks)  # nothing lost
    duplicated = sum(c - 1 for c in ran.values())
    assert 1 <= len(retaken) <= 2  # the victim's running claims (2 slots) were taken over
    assert retaken <= victims and duplicated <= len(retaken), (ran, claims)
