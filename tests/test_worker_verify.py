"""One worker opens a job's results, not every worker (drivemr/worker/verify.py).

Workers plan from hints (files listed at a task's result slots, not opened); a hint never
counts as done: a planted result at slot 0 is listed as a hint, then refused when the job's
end depends on it, and the real result lands in slot 1; the reduce never runs on it; the
worker that created the newest result verifies and marks the job finished, the others end
it on that trusted marker; if the verifier dies, the others verify after a lease.
Stepped workers over a MemoryStore on the test's clock, each worker with its own reader."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivemr.protocol import (
    REDUCE,
    Job,
    job_complete,
    load_view,
    slot_result_name,
    submit,
    verify_hints,
)
from drivemr.results import ResultReader, read_manifest, seal_result
from drivemr.sealed import Sealer
from drivemr.spec import load_job
from drivemr.testing import MemoryStore
from drivemr.testing.clock import ManualClock
from drivemr.testing.stepping import stepping_worker
from drivemr.trust import Trust
from drivemr.worker import Worker

LEASE = 60.0
WRITE_ITEM = "import sys; open('out.txt', 'w').write(sys.argv[1])"
TOTAL = (
    "import os, sys; d = sys.argv[1]; "
    "open('total.txt', 'w').write(str(sum(int(open(os.path.join(d, t, 'out.txt')).read()) "
    "for t in sorted(os.listdir(d)))))"
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(clock: ManualClock) -> MemoryStore:
    return MemoryStore(clock)


@pytest.fixture
def post(store: MemoryStore, write_job: Callable[..., Path]) -> Callable[..., Job]:
    def post(items: int, *, reduce: bool = False) -> Job:
        text = f"""
            name = "verify"
            [map]
            command = ["python", "-c", {json.dumps(WRITE_ITEM)}, "{{item}}"]
            items = {{range = [1, {items + 1}]}}
            outputs = ["out.txt"]
            """
        if reduce:
            text += f"""
            [reduce]
            command = ["python", "-c", {json.dumps(TOTAL)}, "{{results}}"]
            outputs = ["total.txt"]
            """
        return submit(store, load_job(write_job(text)))

    return post


def worker(store: MemoryStore, tmp_path: Path, wid: str, clock: ManualClock) -> Worker:
    return stepping_worker(store, tmp_path, wid, clock, lease=LEASE)


def plant(store: MemoryStore, job: Job, task_id: str, slot: int = 0) -> str:
    """A result sealed by a key nobody trusts, saying 666, at a slot of ``task_id``."""
    value = b"666"
    rid = job.task(task_id).result_ids[slot]
    body: dict[str, Any] = {
        "job": job.id,
        "task": task_id,
        "slot": rid,
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
    }
    data = seal_result(Sealer(Ed25519PrivateKey.generate()), body)
    store.create(job.folders["results"], slot_result_name(task_id, slot), rid, data)
    return rid


def count_opens(w: Worker) -> list[str]:
    """The ids of the result files ``w`` reads and opens from now on."""
    opened: list[str] = []
    real = w.shared.results.open

    def spy(*args: Any) -> Any:
        opened.append(args[-1].id)
        return real(*args)

    w.shared.results.open = spy  # type: ignore[method-assign,assignment]
    return opened


def step(workers: list[Worker], clock: ManualClock, rounds: int = 60) -> None:
    for _ in range(rounds):
        for w in workers:
            w.step()
        clock.now += 1.0
        if all(w.all_done() for w in workers):
            return
    raise AssertionError(f"not done after {rounds} rounds")


def test_a_listed_result_is_a_hint_until_opened_and_a_planted_one_is_dropped(
    store: MemoryStore, post: Callable[..., Job]
) -> None:
    job = post(2)
    rid = plant(store, job, "t0001")
    reader = ResultReader(Trust.reader())
    view = load_view(store, job, reader=reader, verify=False)
    assert "t0001" in view.hints and view.settled("t0001")  # out of the claim plan...
    assert "t0001" not in view.results and not job_complete(job, view)  # ...never done
    assert view.hints["t0001"][0][1].id == rid
    verify_hints(store, job, view, reader)
    assert not view.settled("t0001")  # refused: claimable again
    again = load_view(store, job, reader=reader, verify=False)
    assert not again.settled("t0001")  # known bad: no longer a hint, without a read
    assert not load_view(store, job).settled("t0001")  # the default view opens everything


def test_a_planted_result_at_slot_0_does_not_keep_its_task_from_ending_done(
    store: MemoryStore, clock: ManualClock, post: Callable[..., Job], tmp_path: Path
) -> None:
    job = post(4)
    rid = plant(store, job, "t0002")
    clock.now += 1.0  # planted before the run (a file planted last is covered below)
    a, b = worker(store, tmp_path, "a", clock), worker(store, tmp_path, "b", clock)
    a.step()
    assert "t0002" in a.jobs[job.id].view.hints  # listed, not opened: not claimed yet
    step([a, b], clock)
    view = load_view(store, job)
    assert job_complete(job, view) and view.finished
    assert view.results["t0002"].slot == 1 and view.results["t0002"].state == "done"
    assert read_manifest(store, job.task("t0002"), job)["slot"] != rid
    assert a.stats["commits"] + b.stats["commits"] == 4  # the planted task ran once


def test_the_reduce_never_runs_on_a_planted_map_result(
    store: MemoryStore, clock: ManualClock, post: Callable[..., Job], tmp_path: Path
) -> None:
    job = post(3, reduce=True)
    plant(store, job, "t0000")
    plant(store, job, REDUCE)
    clock.now += 1.0
    a, b = worker(store, tmp_path, "a", clock), worker(store, tmp_path, "b", clock)
    step([a, b], clock)
    view = load_view(store, job)
    assert view.finished and view.results[REDUCE].slot == 1
    manifest = read_manifest(store, job.reduce_task, job)  # type: ignore[arg-type]
    assert int(base64.b64decode(manifest["outputs"][0]["data"])) == 1 + 2 + 3  # never 666


def test_only_the_verifier_opens_the_others_results_the_rest_end_on_its_marker(
    store: MemoryStore, clock: ManualClock, post: Callable[..., Job], tmp_path: Path
) -> None:
    job = post(8)
    workers = [worker(store, tmp_path, w, clock) for w in ("a", "b", "c")]
    opened = {w.shared.id: count_opens(w) for w in workers}
    step(workers, clock)
    assert all(w.stats["commits"] for w in workers)  # all three worked
    assert load_view(store, job).finished
    readers = [wid for wid, ids in opened.items() if ids]
    assert len(readers) == 1, opened  # one worker opened results: the verifier
    committed = {w.shared.id: w.stats["commits"] for w in workers}
    assert len(opened[readers[0]]) == 8 - committed[readers[0]]  # each other result once
    assert all(job.id in w.shared.done_jobs for w in workers)  # the others ended on the marker


def test_a_result_planted_beside_a_valid_one_after_the_last_commit_changes_nothing(
    store: MemoryStore, clock: ManualClock, post: Callable[..., Job], tmp_path: Path
) -> None:
    """The committer knows its results: the planted file is never even a hint to it."""
    job = post(3)
    a = worker(store, tmp_path, "a", clock)
    while a.stats["commits"] < 3:
        a.step()
    clock.now += 1.0
    plant(store, job, "t0001", slot=1)  # beside a's valid result: now the newest file
    step([a], clock, rounds=int(LEASE) + 20)
    view = load_view(store, job)
    assert view.finished and job_complete(job, view)
    assert view.results["t0001"].slot == 0


def test_when_the_verifier_dies_another_worker_verifies_after_a_lease(
    store: MemoryStore, clock: ManualClock, post: Callable[..., Job], tmp_path: Path
) -> None:
    job = post(3)
    a = worker(store, tmp_path, "a", clock)
    for _ in range(20):  # a runs every task, then dies before it looks again
        a.step()
        clock.now += 1.0
        if a.stats["commits"] == 3:
            break
    assert a.stats["commits"] == 3 and not load_view(store, job).finished
    clock.now += 1.0
    plant(store, job, "t0001", slot=1)  # the newest file now: nobody created it
    b = worker(store, tmp_path, "b", clock)
    opened = count_opens(b)
    start = clock.now
    while clock.now - start < LEASE - 5:
        b.step()
        clock.now += 1.0
    assert not opened and job.id in b.jobs  # waiting for a's marker, opening nothing
    assert not load_view(store, job).finished
    step([b], clock, rounds=20)  # a's lease runs out: b opens the results itself
    assert sorted(opened) == sorted(i.id for i in store.list(job.folders["results"]))
    view = load_view(store, job)
    assert view.finished and job_complete(job, view)
    assert view.results["t0001"].slot == 0
