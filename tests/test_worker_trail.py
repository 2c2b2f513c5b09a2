"""Trailing results (drivemr/worker/trail.py): a slot claims its next task before its
finished attempt's result is written, the result is committed while the next attempt runs,
a slot never has more than one result uncommitted, and a graceful stop commits them all."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import wait_for

from drivemr.protocol import find_job, load_view, submit
from drivemr.spec import load_job
from drivemr.stores.base import FileInfo
from drivemr.testing.memory import MemoryStore
from drivemr.trust import Trust
from drivemr.worker import Worker, WorkerConfig
from drivemr.worker.commit import Committer
from drivemr.worker.slot import Slot
from drivemr.worker.state import Rounds

TOUCH = "import sys; open(sys.argv[1] + '.ran', 'w').close()"


class RecordingStore(MemoryStore):
    """Remembers the name of every file created in a job's claims and results folders,
    in order; ``gate`` (when set) holds every result's create until it is opened."""

    def __init__(self) -> None:
        super().__init__()
        self.created: list[str] = []
        self.watched: dict[str, str] = {}  # folder id -> "claim" / "result"
        self.gate: threading.Event | None = None

    def create(
        self,
        parent: str,
        name: str,
        file_id: str,
        data: bytes | None = None,
        *,
        source: Path | None = None,
        folder: bool = False,
    ) -> FileInfo:
        kind = self.watched.get(parent)
        if kind == "result" and self.gate is not None:
            self.gate.wait()
        info = super().create(parent, name, file_id, data, source=source, folder=folder)
        if kind is not None:
            self.created.append(f"{kind} {name.split('.')[0]}")
        return info


def submit_items(
    store: RecordingStore, write_job: Callable[..., Path], marks: Path, n: int, extra: str
) -> str:
    job_file = write_job(
        f"""
        name = "trail"
        [map]
        command = ["python", "-c", {json.dumps(TOUCH)}, {json.dumps(f"{marks}/{{task}}")}]
        items = {{range = [0, {n}]}}
        {extra}
        """
    )
    job = submit(store, load_job(job_file), slots=2)
    store.watched = {job.folders["claims"]: "claim", job.folders["results"]: "result"}
    return job.id


def one_slot_worker(store: RecordingStore, tmp_path: Path) -> Worker:
    config = WorkerConfig(
        worker_id="w1",
        slots=1,
        workdir=tmp_path / "work",
        lease=30.0,
        poll_interval=0.05,
        retry_backoff=0.01,
        exit_when_idle=True,
    )
    return Worker(store, config)


@pytest.mark.parametrize(
    ("extra", "tasks"),
    [
        # one item per task: the slot claims its next task itself
        ("items_per_task = 1", ["t0000", "t0001", "t0002"]),
        # a guided packed job (3, 2, 1 items): the loop claims after a listing
        ("", ["p0000", "p0001", "p0002"]),
    ],
)
def test_a_slot_claims_its_next_task_before_its_result_is_written(
    write_job: Callable[..., Path], tmp_path: Path, extra: str, tasks: list[str]
) -> None:
    store = RecordingStore()
    marks = tmp_path / "marks"
    marks.mkdir()
    job_id = submit_items(store, write_job, marks, 6 if not extra else 3, extra)
    worker = one_slot_worker(store, tmp_path)
    assert worker.run() == 0
    # in the order this worker claimed them (a guided job's first claim is at an offset)
    t0, t1, t2 = [c.split()[1] for c in store.created if c.startswith("claim")]
    assert store.created == [
        f"claim {t0}",
        f"claim {t1}",  # the claim unblocks work: it goes first
        f"result {t0}",  # committed while t1 runs
        f"claim {t2}",
        f"result {t1}",
        f"result {t2}",
    ]
    _, job = find_job(store, job_id)
    view = load_view(store, job, Trust.for_this_pc())
    assert sorted(view.results) == tasks and all(r.state == "done" for r in view.results.values())
    assert not worker.shared.running and not worker.shared.trailing


def test_one_uncommitted_result_per_slot_and_a_graceful_stop_commits_it(
    write_job: Callable[..., Path], tmp_path: Path
) -> None:
    """Results cannot be written (held at a gate) while t0 and t1 run: the slot does not
    claim t2 while t0's result is uncommitted and t1's waits. Asked to stop, it claims
    nothing more, and both results land once the store takes them."""
    store = RecordingStore()
    store.gate = threading.Event()
    marks = tmp_path / "marks"
    marks.mkdir()
    submit_items(store, write_job, marks, 3, "items_per_task = 1")
    worker = one_slot_worker(store, tmp_path)
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(worker.run()))
    thread.start()
    try:
        wait_for(lambda: (marks / "t0001.ran").exists(), what="t1 to run")
        worker.request_stop()
    finally:
        store.gate.set()
        thread.join()
    assert codes == [0]
    assert store.created == ["claim t0000", "claim t0001", "result t0000", "result t0001"]
    assert not (marks / "t0002.ran").exists()


def test_only_a_slot_with_a_trail_holds_its_results(tmp_path: Path) -> None:
    """Worker.step() (tests, embedding) runs each attempt to its commit: the worker's own
    committer does not hold; a slot whose committer holds needs a trail."""
    worker = Worker(MemoryStore(), WorkerConfig(worker_id="w1", slots=1, workdir=tmp_path / "w"))
    shared = worker.shared
    assert not worker.committer.holds
    with pytest.raises(ValueError, match="needs a trail"):
        Slot(0, shared, Committer(shared, worker.lease, hold=True), {})


def test_a_slot_waits_for_a_loop_round_that_started_after_it_asked() -> None:
    """A round already under way when the slot asked may have filled the free slots before
    this one was free: only the next one counts. A stopping loop lets every waiter go."""
    rounds = Rounds()
    rounds.started()
    ticket = rounds.ticket()
    rounds.ended()
    assert not rounds.passed(ticket)
    rounds.started()
    assert not rounds.passed(ticket)
    rounds.ended()
    assert rounds.passed(ticket)
    rounds.wait(ticket)  # returns at once
    idle = Rounds()
    ticket = idle.ticket()
    assert not idle.passed(ticket)
    idle.over()
    assert idle.passed(ticket)
    idle.wait(ticket)


def test_a_failed_claim_by_the_slot_still_commits_its_held_result(
    write_job: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The slot's own claim of its next task raises (a request that failed past its
    retries, a bad file): the slot survives, its held result is still committed, and the
    loop claims the rest. Before, the slot thread died holding the result, so the task
    stayed 'running' in the heartbeat forever and a graceful stop never ended."""
    from drivemr.errors import TransientStoreError
    from drivemr.worker.claim import Claimer

    store = RecordingStore()
    marks = tmp_path / "marks"
    marks.mkdir()
    job_id = submit_items(store, write_job, marks, 3, "items_per_task = 1")
    real = Claimer.claim_for_slot
    failed: list[bool] = []

    def flaky(self: Claimer) -> object:
        if not failed:
            failed.append(True)
            raise TransientStoreError("claims listing: 503 SlowDown (retries used up)")
        return real(self)

    monkeypatch.setattr(Claimer, "claim_for_slot", flaky)
    worker = one_slot_worker(store, tmp_path)
    assert worker.run() == 0
    assert failed == [True]
    _, job = find_job(store, job_id)
    view = load_view(store, job, Trust.for_this_pc())
    assert sorted(view.results) == ["t0000", "t0001", "t0002"]
    assert all(r.state == "done" for r in view.results.values())
    assert not worker.shared.running and not worker.shared.trailing
