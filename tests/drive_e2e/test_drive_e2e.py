"""drivemr on Google Drive, end to end: real `drivemr` processes (init, submit, three
workers, status, reduce), each its own Drive client, against the fake Drive server; with
and without faults (5xx/429, lost acknowledgements, a 3 writes/s quota, lagging name
queries); and `status --json` / `reduce` compared with the same job on a folder store."""

from __future__ import annotations

import collections
import json
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import WorkerProcs, run_cli

from drivemr.protocol import Job, find_job
from drivemr.stores.base import FileInfo
from drivemr.stores.drive import DriveStore
from drivemr.stores.folder import FolderStore
from drivemr.testing.fakedrive import FakeDriveServer
from drivemr.testing.filefacts import claim_facts, result_facts

pytestmark = pytest.mark.timeout(240)

# --------------------------------------------------------------------------- jobs

WORDCOUNT_JOB = """
name = "wc"
files = ["count.py", "merge.py"]
[map]
command = ["python", "{files}/count.py", "{input}"]
inputs = ["data/*.txt"]
outputs = ["counts.json"]
[reduce]
command = ["python", "{files}/merge.py", "{results}"]
outputs = ["total.json"]
"""

COUNT_PY = """
import collections, json, re, sys
with open(sys.argv[1], encoding="utf-8") as fh:
    words = re.findall(r"[a-z]+", fh.read())
with open("counts.json", "w", encoding="utf-8") as out:
    json.dump(collections.Counter(words), out, sort_keys=True)
"""

MERGE_PY = """
import collections, json, pathlib, sys
total = collections.Counter()
tasks = []
for task_dir in sorted(pathlib.Path(sys.argv[1]).iterdir()):
    tasks.append(task_dir.name)
    total.update(json.loads((task_dir / "counts.json").read_text(encoding="utf-8")))
doc = {"tasks": tasks, "counts": dict(sorted(total.items()))}
pathlib.Path("total.json").write_text(json.dumps(doc, sort_keys=True), encoding="utf-8")
"""

VOCABULARY = [
    "drive",
    "folder",
    "claim",
    "result",
    "lease",
    "heartbeat",
    "worker",
    "reduce",
    "shard",
    "quota",
    "token",
    "minted",
    "create",
    "listing",
    "change",
    "cursor",
    "commit",
    "attempt",
    "backoff",
    "jitter",
]

SQUARES_JOB = """
name = "squares"
files = ["square.py", "total.py"]
[map]
command = ["python", "{{files}}/square.py", "{{item}}"]
items = {{range = [0, {n}]}}
outputs = ["out.json"]
max_attempts = 3
[reduce]
command = ["python", "{{files}}/total.py", "{{results}}"]
outputs = ["total.json"]
"""

SQUARE_PY = """
import json, sys
i = int(sys.argv[1])
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

SMALL_JOB = """
name = "small"
files = ["join.py"]
[map]
command = ["python", "-c", "import sys; open('o.txt', 'w').write(sys.argv[1] * 2)", "{item}"]
items = ["a", "b", "c"]
outputs = ["o.txt"]
[reduce]
command = ["python", "{files}/join.py", "{results}"]
outputs = ["all.txt"]
"""

JOIN_PY = """
import pathlib, sys
parts = [(d / "o.txt").read_text() for d in sorted(pathlib.Path(sys.argv[1]).iterdir())]
pathlib.Path("all.txt").write_text("".join(parts))
"""


def wordcount_files(n: int, seed: int = 4) -> tuple[dict[str, str], dict[str, int]]:
    """``n`` input texts for the word-count job, and their word counts computed here."""
    rng = random.Random(seed)
    files = {"count.py": COUNT_PY, "merge.py": MERGE_PY}
    expected: collections.Counter[str] = collections.Counter()
    for k in range(n):
        words = [rng.choice(VOCABULARY) for _ in range(rng.randint(20, 200))]
        files[f"data/part-{k:02d}.txt"] = " ".join(words) + "\n"
        expected.update(words)
    return files, dict(sorted(expected.items()))


# --------------------------------------------------------------------------- helpers


def submit(store_url: str, job_file: Path) -> str:
    return run_cli("submit", "--store", store_url, str(job_file)).stdout.strip().splitlines()[-1]


def status_json(store_url: str, job_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(
        run_cli("status", job_id, "--store", store_url, "--json").stdout
    )
    return doc


def reduce_to(store_url: str, job_id: str, out: Path) -> dict[str, bytes]:
    """`drivemr reduce JOB --out DIR`: the files it wrote, by name."""
    proc = run_cli("reduce", job_id, "--store", store_url, "--out", str(out))
    paths = [Path(line) for line in proc.stdout.strip().splitlines()]
    assert paths and all(p.parent == out for p in paths), proc.stdout
    return {p.name: p.read_bytes() for p in paths}


@pytest.fixture
def inspect_drive(e2e_drive_url: str, e2e_fake: FakeDriveServer) -> Iterator[DriveStore]:
    """An unpaced client of the root, for looking at what the workers left behind."""
    store = DriveStore.from_url(e2e_drive_url, write_rate=None, endpoint=e2e_fake.url)
    yield store
    store.close()


def duplicate_names(entries: list[FileInfo]) -> list[str]:
    counts = collections.Counter(e.name for e in entries)
    return sorted(name for name, c in counts.items() if c > 1)


def check_one_result_per_task_and_no_duplicates(store: DriveStore, job: Job) -> None:
    """Exactly one (done) result per task, each under its minted id; one claim per name,
    each under a minted claim id of its task; no two files with one name anywhere."""
    tasks = [*job.tasks, *([job.reduce_task] if job.reduce_task else [])]
    listings = {kind: store.list(fid) for kind, fid in job.folders.items()}
    listings["root"] = store.list(store.root_id)
    for kind, entries in listings.items():
        assert duplicate_names(entries) == [], f"{kind}/ holds files with the same name"

    results = listings["results"]
    assert len(results) == len(tasks)
    refs = [result_facts(store, info) for info in results]
    assert all(ref is not None for ref in refs), [r.name for r in results]
    by_task = {ref.task: ref for ref in refs if ref is not None}
    assert sorted(by_task) == sorted(t.id for t in tasks)  # distinct task names, none lost
    for task in tasks:
        ref = by_task[task.id]
        assert ref.file.id == task.result_id and ref.state == "done", ref

    claims = listings["claims"]
    assert len({c.id for c in claims}) == len(claims)
    for info in claims:
        parsed = claim_facts(store, info)
        assert parsed is not None, info.name
        task_id, gen, _worker = parsed
        assert info.id == job.task(task_id).claim_ids[gen], info
    claimed = {claim_facts(store, c)[0] for c in claims}  # type: ignore[index]
    assert claimed == {t.id for t in tasks}  # every result came from a claimed attempt


# --------------------------------------------------------------------------- the tests


def test_three_workers_run_a_wordcount_whose_reduce_equals_the_direct_count(
    e2e_drive_url: str,
    e2e_workers: WorkerProcs,
    inspect_drive: DriveStore,
    write_job: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRIVEMR_WRITE_RATE", "0")  # no quota on this run: unpaced clients
    files, expected = wordcount_files(30)
    job_id = submit(e2e_drive_url, write_job(WORDCOUNT_JOB, files))
    for name in ("pc1", "pc2", "pc3"):
        e2e_workers.start(name, "--exit-when-idle", slots=2, lease=30)
    codes = e2e_workers.wait_all(timeout=180)
    assert codes == {"pc1": 0, "pc2": 0, "pc3": 0}, {n: e2e_workers.log(n) for n in codes}

    doc = status_json(e2e_drive_url, job_id)
    assert doc["state"] == "done" and doc["counts"]["done"] == 30
    assert doc["reduce"]["state"] == "done"

    out = reduce_to(e2e_drive_url, job_id, tmp_path / "out")
    total = json.loads(out["total.json"])
    assert total["tasks"] == [f"t{k:04d}" for k in range(30)]
    assert total["counts"] == expected

    _, job = find_job(inspect_drive, job_id)
    check_one_result_per_task_and_no_duplicates(inspect_drive, job)


@pytest.mark.slow  # 25-50 s: backoffs, a lease and lagging names pace the job
def test_faults_quota_lost_acks_and_lagging_names_lose_and_duplicate_nothing(
    e2e_fake: FakeDriveServer,
    e2e_drive_url: str,
    e2e_workers: WorkerProcs,
    inspect_drive: DriveStore,
    write_job: Callable[..., Path],
    tmp_path: Path,
) -> None:
    n = 30
    e2e_fake.configure(
        fault_rate=0.1,  # 500, 503 or 429 on 10% of all calls
        lost_ack_rate=0.1,  # 10% of creates are committed but their answer is lost
        lost_ack_methods=("files.create",),
        write_rate=3.0,  # the account's quota: 403 userRateLimitExceeded beyond it
        name_query_lag=5.0,
        seed=11,
    )
    files = {"square.py": SQUARE_PY, "total.py": TOTAL_PY}
    job_id = submit(e2e_drive_url, write_job(SQUARES_JOB.format(n=n), files))
    workers = ("pc1", "pc2", "pc3")
    for name in workers:
        e2e_workers.start(
            name, "--exit-when-idle", "--write-rate", "3", "--poll-interval", "0.5",
            slots=2, lease=10,
        )  # fmt: skip
    codes = e2e_workers.wait_all(timeout=200)
    assert codes == dict.fromkeys(workers, 0), {w: e2e_workers.log(w) for w in workers}

    # status and reduce through the same faults
    doc = status_json(e2e_drive_url, job_id)
    assert doc["state"] == "done"
    assert doc["counts"] == {
        "pending": 0,
        "running": 0,
        "done": n,
        "failed": 0,
        "lost": 0,
        "cancelled": 0,
        "blocked": 0,
    }
    assert doc["reduce"]["state"] == "done"
    out = reduce_to(e2e_drive_url, job_id, tmp_path / "out")
    assert json.loads(out["total.json"]) == {
        "tasks": n,
        "items": list(range(n)),
        "sum": sum(i * i for i in range(n)),
    }

    stats = e2e_fake.stats()
    assert stats["fault_errors"] > 0 and stats["lost_acks"] > 0  # the faults did happen
    e2e_fake.configure(fault_rate=0.0, lost_ack_rate=0.0, write_rate=None, name_query_lag=0.0)
    _, job = find_job(inspect_drive, job_id)
    check_one_result_per_task_and_no_duplicates(inspect_drive, job)
    committers = {t["worker"] for t in doc["tasks"]}
    assert committers <= set(workers) and len(committers) >= 2  # the PCs shared the work


def normalised(doc: dict[str, Any]) -> dict[str, Any]:
    """A `status --json` document without what differs between two runs of one job."""

    def task(t: dict[str, Any] | None) -> dict[str, Any] | None:
        if t is None:
            return None
        return {**t, "duration": t["duration"] is not None, "worker": t["worker"] is not None}

    doc = {k: v for k, v in doc.items() if k not in ("job", "created")}
    doc["tasks"] = [task(t) for t in doc["tasks"]]
    doc["reduce"] = task(doc["reduce"])
    return doc


def test_status_json_and_reduce_behave_on_drive_exactly_as_on_a_folder(
    e2e_drive_url: str,
    e2e_workers: WorkerProcs,
    folder_store: FolderStore,
    write_job: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRIVEMR_WRITE_RATE", "0")
    job_file = write_job(SMALL_JOB, {"join.py": JOIN_PY})
    folder_workers = WorkerProcs(folder_store.url, tmp_path / "folder-workers")
    folder_workers.workdir.mkdir()
    stores = {"folder": folder_store.url, "drive": e2e_drive_url}
    workers = {"folder": folder_workers, "drive": e2e_workers}
    try:
        ids = {kind: submit(url, job_file) for kind, url in stores.items()}

        def compare(expect_state: str) -> dict[str, Any]:
            docs = {kind: status_json(url, ids[kind]) for kind, url in stores.items()}
            assert docs["drive"]["job"] == ids["drive"] and docs["drive"]["state"] == expect_state
            assert normalised(docs["drive"]) == normalised(docs["folder"])
            return docs["drive"]

        doc = compare("pending")
        assert doc["counts"] == {
            "pending": 3,
            "running": 0,
            "done": 0,
            "failed": 0,
            "lost": 0,
            "cancelled": 0,
            "blocked": 0,
        }

        for kind, url in stores.items():  # nothing to fetch or reduce yet: the same refusal
            proc = run_cli("reduce", ids[kind], "--store", url, check=False)
            assert proc.returncode == 1
            message = proc.stderr.strip().replace(ids[kind], "JOB")
            assert message == "drivemr: job JOB: 3 task(s) have no result yet: t0000, t0001, t0002"

        for kind in stores:  # maps only: the reduce is left to `drivemr reduce`
            workers[kind].start("w", "--exit-when-idle", "--no-reduce", slots=2, lease=30)
            assert workers[kind].wait_all() == {"w": 0}, workers[kind].log("w")
        doc = compare("running")
        assert doc["counts"]["done"] == 3 and doc["reduce"]["state"] == "pending"
        assert all(t["worker"] == "w" and t["exit_code"] == 0 for t in doc["tasks"])

        ran_here = {
            kind: reduce_to(url, ids[kind], tmp_path / f"{kind}-1") for kind, url in stores.items()
        }
        assert ran_here["drive"] == ran_here["folder"] == {"all.txt": b"aabbcc"}
        doc = compare("done")
        assert doc["reduce"]["state"] == "done" and doc["reduce"]["exit_code"] == 0

        fetched = {
            kind: reduce_to(url, ids[kind], tmp_path / f"{kind}-2") for kind, url in stores.items()
        }
        assert fetched == ran_here  # the committed reduce, fetched

        for kind, url in stores.items():  # every job, one line each
            lines = run_cli("status", "--store", url).stdout.splitlines()
            mine = [line for line in lines if ids[kind] in line]
            assert len(mine) == 1 and re.search(r"\bdone\b", mine[0]), lines
    finally:
        folder_workers.stop()
