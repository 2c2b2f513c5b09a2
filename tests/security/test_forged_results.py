"""The forged-result attacks of issue 12 on a folder store, with worker processes: an
attacker who can write the shared folder but holds no trusted key.

Every one: 0 wrong results accepted (reduce, `drivemr reduce --out`, `drivemr results`),
nothing written outside `--out`, workers exit cleanly, each forged file reported once
per worker; the real results still commit (in the next result slot)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from helpers import WorkerProcs, wait_for

from drivemr.cli import main
from drivemr.protocol import REDUCE, Job, find_job, load_view, result_name
from drivemr.results import seal_result
from drivemr.sealed import Sealer
from drivemr.stores.folder import FolderStore

ITEMS = 4
WAIT_FOR_GO = (
    "import os, sys, time\n"
    "while not os.path.exists(os.environ['GO']):\n"
    "    time.sleep(0.02)\n"
    "open('out.txt', 'w').write(sys.argv[1])\n"
)
TOTAL = (
    "import os, sys; d = sys.argv[1]; "
    "open('total.txt', 'w').write(str(sum(int(open(os.path.join(d, t, 'out.txt')).read()) "
    "for t in sorted(os.listdir(d)))))"
)
RIGHT = str(sum(range(1, ITEMS + 1)))


def job_text(go: Path, *, big: bool = False) -> str:
    code = WAIT_FOR_GO.replace("sys.argv[1])", "sys.argv[1] * 300000)") if big else WAIT_FOR_GO
    reduce = (
        ""
        if big
        else f"""
        [reduce]
        command = ["python", "-c", {json.dumps(TOTAL)}, "{{results}}"]
        outputs = ["total.txt"]
        """
    )
    return (
        f"""
        name = "attacked"
        [map]
        command = ["python", "-c", {json.dumps(code)}, "{{item}}"]
        items = {{range = [1, {ITEMS + 1}]}}
        outputs = ["out.txt"]
        env = {{GO = {json.dumps(str(go))}}}
        """
        + reduce
    )


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def submit(store: FolderStore, write_job: Callable[..., Path], text: str) -> Job:
    code, out, err = invoke("submit", "--store", str(store.path), str(write_job(text)))
    assert code == 0, err
    return find_job(store, out.strip().splitlines()[-1])[1]


def forged(
    job: Job, task_id: str, slot: int, *, value: bytes = b"666", **extra: object
) -> dict[str, object]:
    return {
        "job": job.id,
        "task": task_id,
        "slot": job.task(task_id).result_ids[slot],
        "round": 0,
        "state": "done",
        "attempt": 1,
        "worker": "mallory",
        "exit_code": 0,
        "duration": 0.1,
        "outputs": [
            {
                "name": "total.txt" if task_id == REDUCE else "out.txt",
                "size": len(value),
                "sha256": hashlib.sha256(value).hexdigest(),
                "data": base64.b64encode(value).decode(),
            }
        ],
        **extra,
    }


def plant(store: FolderStore, job: Job, task_id: str, slot: int, data: bytes) -> str:
    rid = job.task(task_id).result_ids[slot]
    store.create(job.folders["results"], result_name(task_id, "done", 0, 0, 0.1), rid, data)
    return rid


def edit_in_place(store: FolderStore, file_id: str, data: bytes) -> None:
    """What an attacker does with the folder: rewrite a committed file's bytes."""
    with open(store.path / store._rel(file_id), "r+b") as fh:
        fh.truncate(0)
        fh.write(data)


def run(workers: WorkerProcs, go: Path | None = None) -> dict[str, str]:
    for name in ("a", "b"):
        workers.start(name, "--exit-when-idle")
    if go is not None:
        go.touch()
    codes = workers.wait_all()
    logs = {n: workers.log(n) for n in codes}
    assert set(codes.values()) == {0}, logs
    workers.procs.clear()
    return logs


def test_results_forged_before_the_run_never_reach_the_reduce_or_out(
    folder_store: FolderStore, write_job: Callable[..., Path], tmp_path: Path, workers: WorkerProcs
) -> None:
    go = tmp_path / "go"
    go.touch()
    job = submit(folder_store, write_job, job_text(go))
    mallory = Sealer(Ed25519PrivateKey.generate())
    planted = [
        plant(
            folder_store,
            job,
            "t0000",
            0,
            json.dumps({"format": 1, **forged(job, "t0000", 0)}).encode(),
        ),
        plant(folder_store, job, "t0001", 0, seal_result(mallory, forged(job, "t0001", 0))),
    ]
    # A forged reduce result whose output entry splices another store file into --out.
    target = next(i for i in folder_store.list(job.folder) if i.name == "job.json")
    splice = forged(job, REDUCE, 0)
    splice["outputs"] = [
        {"name": "total.txt", "size": target.size, "sha256": "0" * 64, "id": target.id}
    ]
    planted.append(
        plant(folder_store, job, REDUCE, 0, json.dumps({"format": 1, **splice}).encode())
    )
    logs = run(workers)
    for log in logs.values():
        for rid in planted:
            assert log.count(rid) <= 1  # reported once per worker, at most
    assert any(rid in log for log in logs.values() for rid in planted)
    view = load_view(folder_store, job)
    assert view.results["t0000"].slot == 1 and view.results[REDUCE].slot == 1
    code, _out, err = invoke(
        "reduce", job.id, "--store", str(folder_store.path), "--out", str(tmp_path / "out")
    )
    assert code == 0, err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["total.txt"]
    assert (tmp_path / "out" / "total.txt").read_text() == RIGHT


def test_results_forged_during_the_run_neither_stop_it_nor_win(
    folder_store: FolderStore, write_job: Callable[..., Path], tmp_path: Path, workers: WorkerProcs
) -> None:
    go = tmp_path / "go"
    job = submit(folder_store, write_job, job_text(go))
    for name in ("a", "b"):
        workers.start(name, "--exit-when-idle")
    # Every task claimed, each attempt waiting for the go file: forge all their results now.
    wait_for(lambda: len(folder_store.list(job.folders["claims"])) == ITEMS)
    mallory = Sealer(Ed25519PrivateKey.generate())
    for t in job.tasks:
        plant(folder_store, job, t.id, 0, seal_result(mallory, forged(job, t.id, 0)))
    go.touch()
    codes = workers.wait_all()
    assert set(codes.values()) == {0}, {n: workers.log(n) for n in codes}
    view = load_view(folder_store, job)
    assert all(view.results[t.id].slot == 1 for t in job.tasks)
    assert len(folder_store.list(job.folders["claims"])) == ITEMS + 1  # nothing ran twice
    code, _out, err = invoke(
        "reduce", job.id, "--store", str(folder_store.path), "--out", str(tmp_path / "out")
    )
    assert code == 0, err
    assert (tmp_path / "out" / "total.txt").read_text() == RIGHT


def test_in_place_edits_after_commit_are_refused(
    folder_store: FolderStore, write_job: Callable[..., Path], tmp_path: Path, workers: WorkerProcs
) -> None:
    go = tmp_path / "go"
    go.touch()
    job = submit(folder_store, write_job, job_text(go))
    run(workers)
    view = load_view(folder_store, job)
    store = str(folder_store.path)
    for tid in ("t0002", REDUCE):
        rid = view.results[tid].file.id
        doc = json.loads(folder_store.read(rid))
        value = b"999999"
        doc["body"]["outputs"][0].update(
            data=base64.b64encode(value).decode(),
            size=len(value),
            sha256=hashlib.sha256(value).hexdigest(),
        )
        edit_in_place(folder_store, rid, json.dumps(doc).encode())
    code, _out, err = invoke("reduce", job.id, "--store", store, "--out", str(tmp_path / "out"))
    assert code == 1 and "no result" in err
    assert not (tmp_path / "out" / "total.txt").exists()
    code, out, err = invoke("results", job.id, "--store", store, "--out", str(tmp_path / "res"))
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == ["t0000", "t0001", "t0003"]
    code, out, err = invoke("status", job.id, "--store", store, "--json")
    doc = json.loads(out)
    states = {t["task"]: t["state"] for t in doc["tasks"]}
    assert states["t0002"] not in ("done", "failed") and doc["state"] != "done"


def test_an_oversize_swapped_output_is_refused(
    folder_store: FolderStore, write_job: Callable[..., Path], tmp_path: Path, workers: WorkerProcs
) -> None:
    go = tmp_path / "go"
    go.touch()
    job = submit(folder_store, write_job, job_text(go, big=True))
    run(workers)
    doc = json.loads(folder_store.read(load_view(folder_store, job).results["t0001"].file.id))
    (out,) = doc["body"]["outputs"]
    assert out["size"] == 300_000 and "id" in out
    edit_in_place(folder_store, out["id"], b"2" * (64 << 20))  # a sealed 300 kB file, now 64 MiB
    store = str(folder_store.path)
    code, _out, err = invoke("results", job.id, "--store", store, "--out", str(tmp_path / "res"))
    assert code == 1 and "larger than the size of 300000 bytes in its sealed result" in err
    assert not (tmp_path / "res" / "t0001" / "out.txt").exists()
    leftovers = [
        p for p in (tmp_path / "res").rglob("*") if p.is_file() and p.stat().st_size > 300_000
    ]
    assert leftovers == []
    assert os.path.getsize(folder_store.path / folder_store._rel(out["id"])) == 64 << 20
