"""Workers stepped one loop iteration at a time over a MemoryStore, on a clock the test
owns: claiming, liveness, commit and the reduce barrier, in-process and deterministic.

Every worker shares the store (their common folder) and the test's clock; attempts run
as real subprocesses, inline in the stepping thread (``Worker.step``)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from drivemr.protocol import (
    FORMAT,
    REDUCE,
    Job,
    load_view,
    mark,
    parse_claim_name,
    parse_result,
    submit,
)
from drivemr.results import read_manifest
from drivemr.spec import load_job
from drivemr.testing import MemoryStore
from drivemr.testing.clock import ManualClock as TestClock
from drivemr.testing.filefacts import claim_facts, result_facts
from drivemr.testing.stepping import stepping_worker
from drivemr.worker import Worker
from drivemr.worker.claim import Candidate

LEASE = 60.0
WRITE_ITEM = "import sys; open('out.txt', 'w').write(sys.argv[1])"
TOTAL = (
    "import os, sys; d = sys.argv[1]; "
    "open('total.txt', 'w').write(str(sum(int(open(os.path.join(d, t, 'out.txt')).read()) "
    "for t in sorted(os.listdir(d)))))"
)


class SkewedView:
    """Another PC's view of the same time: its clocks read differently, time passes alike."""

    def __init__(self, clock: TestClock, *, skew: float, base: float) -> None:
        self.clock, self.skew, self.base = clock, skew, base

    def monotonic(self) -> float:
        return self.clock.now + self.base

    def time(self) -> float:
        return self.clock.now + self.skew


@pytest.fixture
def clock() -> TestClock:
    return TestClock()


@pytest.fixture
def store(clock: TestClock) -> MemoryStore:
    return MemoryStore(clock)


@pytest.fixture
def post(store: MemoryStore, write_job: Callable[..., Path]) -> Callable[..., Job]:
    def post(items: int = 1, *, reduce: bool = False, map_code: str = WRITE_ITEM, **kw: int) -> Job:
        text = f"""
            name = "steps"
            [map]
            command = ["python", "-c", {json.dumps(map_code)}, "{{item}}"]
            items = {{range = [1, {items + 1}]}}
            outputs = ["out.txt"]
            max_attempts = {kw.get("attempts", 2)}
            """
        if reduce:
            text += f"""
            [reduce]
            command = ["python", "-c", {json.dumps(TOTAL)}, "{{results}}"]
            outputs = ["total.txt"]
            """
        return submit(store, load_job(write_job(text)))

    return post


def make_worker(
    store: MemoryStore, tmp_path: Path, wid: str, clock: object, slots: int = 1
) -> Worker:
    return stepping_worker(store, tmp_path, wid, clock, slots=slots, lease=LEASE)


def results_of(store: MemoryStore, job: Job) -> list[str]:
    """``<task>.<state>.g<attempt>`` of each result (from its sealed body)."""
    out = []
    for info in store.list(job.folders["results"]):
        ref = result_facts(store, info)
        assert ref is not None, info.name
        out.append(f"{ref.task}.{ref.state}.g{ref.gen}")
    return sorted(out)


def claims_of(store: MemoryStore, job: Job) -> list[str]:
    """``<task>.g<attempt>.<worker>`` of each claim (the worker from its sealed body)."""
    out = []
    for info in store.list(job.folders["claims"]):
        facts = claim_facts(store, info)
        assert facts is not None, info.name
        out.append(f"{facts[0]}.g{facts[1]}.{facts[2]}")
    return sorted(out)


def run_until_done(workers: list[Worker], clock: TestClock, rounds: int = 50) -> None:
    for _ in range(rounds):
        for w in workers:
            w.step()
        clock.now += 1.0
        if all(w.all_done() for w in workers):
            return
    raise AssertionError(f"not done after {rounds} rounds")


# --------------------------------------------------------------------------- claim


def test_two_workers_claim_the_same_attempt_and_one_wins(
    store: MemoryStore, clock: TestClock, post: Callable[..., Job], tmp_path: Path
) -> None:
    a, b = make_worker(store, tmp_path, "a", clock), make_worker(store, tmp_path, "b", clock)
    for w in (a, b):
        w.step()  # started, heartbeat written, nothing to do yet
    job = post(1)
    clock.now += 1.0
    for w in (a, b):
        w.watcher.look()  # both see the job, neither has claimed
    task = job.tasks[0]
    won = a.claimer.claim(Candidate(a.jobs[job.id], task, 0))
    lost = b.claimer.claim(Candidate(b.jobs[job.id], task, 0))
    assert won is not None and lost is None
    assert claims_of(store, job) == ["t0000.g0.a"]
    # the name says no worker (format 3): the loser learned the winner from its seal
    assert [i.name for i in store.list(job.folders["claims"])] == ["t0000.g0"]
    assert b.jobs[job.id].view.claims[task.id][0].worker == "a"
    assert b.stats["claims_lost"] == 1
    assert task.id in b.jobs[job.id].elsewhere  # b knows who has it
    assert job.id in b.shared.dirty.reload  # and relists (reads) before trying again
    assert a.shared.is_running(job.id, task.id) and not b.shared.running


def test_two_workers_share_a_job_one_claim_and_one_result_per_task(
    store: MemoryStore, clock: TestClock, post: Callable[..., Job], tmp_path: Path
) -> None:
    job = post(8)
    a, b = make_worker(store, tmp_path, "a", clock), make_worker(store, tmp_path, "b", clock)
    run_until_done([a, b], clock)
    assert len(results_of(store, job)) == 8
    claims = claims_of(store, job)
    assert len(claims) == 8 and all(".g0." in c for c in claims)  # nobody ran a task twice
    assert a.stats["commits"] + b.stats["commits"] == 8
    assert a.stats["commits"] and b.stats["commits"]  # both worked
    assert load_view(store, job).finished  # and the job is marked finished


# --------------------------------------------------------------------------- liveness


def test_a_silent_worker_s_claim_is_taken_over_after_the_lease_on_store_time(
    store: MemoryStore, clock: TestClock, post: Callable[..., Job], tmp_path: Path
) -> None:
    job = post(1)
    a = make_worker(store, tmp_path, "a", clock)
    # b's wall clock is three hours fast and its monotonic clock counts from elsewhere:
    # only the store's timestamps decide.
    b = make_worker(store, tmp_path, "b", SkewedView(clock, skew=3 * 3600, base=-5e5))
    a.step(run=False)  # a claims the task, then goes silent (never steps again)
    assert claims_of(store, job) == ["t0000.g0.a"]
    b.step()
    clock.now += LEASE - 1
    b.step()
    assert b.stats["claims"] == 0  # a's lease still holds
    clock.now += 2
    b.step()  # a's heartbeat is now older than the lease
    assert b.stats["reclaims"] == 1
    assert claims_of(store, job) == ["t0000.g0.a", "t0000.g1.b"]
    manifest = read_manifest(store, job.tasks[0])
    assert (manifest["worker"], manifest["attempt"], manifest["state"]) == ("b", 2, "done")


def test_a_worker_that_said_it_stopped_is_taken_over_at_once(
    store: MemoryStore, clock: TestClock, post: Callable[..., Job], tmp_path: Path
) -> None:
    job = post(1)
    a, b = make_worker(store, tmp_path, "a", clock), make_worker(store, tmp_path, "b", clock)
    a.step(run=False)
    b.step()
    assert b.stats["claims"] == 0
    clock.now += 1.0
    a.lease.beat(state="stopped")  # as run() does on its way out
    clock.now += 1.0  # far less than the lease: the poll interval
    b.step()
    assert b.stats["reclaims"] == 1
    assert read_manifest(store, job.tasks[0])["worker"] == "b"


def test_a_task_whose_every_attempt_died_is_committed_failed_once(
    store: MemoryStore, clock: TestClock, post: Callable[..., Job], tmp_path: Path
) -> None:
    job = post(1, attempts=1)
    a, b = make_worker(store, tmp_path, "a", clock), make_worker(store, tmp_path, "b", clock)
    a.step(run=False)
    b.step()
    clock.now += LEASE + 1
    b.step()
    manifest = read_manifest(store, job.tasks[0])
    assert (manifest["state"], manifest["worker"]) == ("failed", "b")
    assert "every worker running it died" in manifest["error"]
    assert claims_of(store, job) == ["t0000.g0.a"] and b.stats["reclaims"] == 0


# --------------------------------------------------------------------------- commit


def test_an_attempt_whose_lease_lapsed_is_not_committed(
    store: MemoryStore, clock: TestClock, post: Callable[..., Job], tmp_path: Path
) -> None:
    job = post(1)
    a, b = make_worker(store, tmp_path, "a", clock), make_worker(store, tmp_path, "b", clock)
    a.step(run=False)  # a claims, then its PC sleeps longer than the lease
    b.step()
    clock.now += LEASE + 5
    b.step()  # b takes over and commits
    a.run_claimed()  # a wakes up and finishes: its heartbeat shows the gap, so it gives up
    assert a.stats["commits"] == 0 and a.stats["commits_lost"] == 0
    assert len(results_of(store, job)) == 1
    assert read_manifest(store, job.tasks[0])["worker"] == "b"


def test_the_lease_re_check_asks_the_store_before_committing(
    store: MemoryStore, clock: TestClock, post: Callable[..., Job], tmp_path: Path
) -> None:
    job = post(1)
    a = make_worker(store, tmp_path, "a", clock)
    a.step(run=False)
    clock.now += LEASE * 0.6  # a late heartbeat (but no lapse): renew it, then commit
    updates = store.calls.get("update", 0)
    a.run_claimed()
    assert store.calls["update"] == updates + 1  # the heartbeat, renewed before the result
    assert a.stats["commits"] == 1 and len(results_of(store, job)) == 1


def test_two_attempts_finish_and_only_the_first_result_counts(
    store: MemoryStore, clock: TestClock, post: Callable[..., Job], tmp_path: Path
) -> None:
    job = post(1)
    a, b = make_worker(store, tmp_path, "a", clock), make_worker(store, tmp_path, "b", clock)
    a.step(run=False)
    clock.now += 1.0
    a.lease.beat(state="stopped")  # b may take over, yet a's attempt still finishes
    clock.now += 1.0
    b.step()
    assert b.stats["commits"] == 1
    a.run_claimed()
    assert a.stats["commits"] == 0 and a.stats["commits_lost"] == 1
    assert len(results_of(store, job)) == 1
    assert read_manifest(store, job.tasks[0])["worker"] == "b"
    assert a.jobs[job.id].view.results["t0000"].gen == 1  # a learnt the winner's result


# --------------------------------------------------------------------------- reduce


def test_the_reduce_runs_once_after_every_map_result(
    store: MemoryStore, clock: TestClock, post: Callable[..., Job], tmp_path: Path
) -> None:
    job = post(5, reduce=True)
    a, b = make_worker(store, tmp_path, "a", clock), make_worker(store, tmp_path, "b", clock)
    run_until_done([a, b], clock)
    results = {i.name.split(".")[0]: i for i in store.list(job.folders["results"])}
    assert set(results) == {*(t.id for t in job.tasks), REDUCE}
    reduce_claims = [i for i in store.list(job.folders["claims"]) if i.name.startswith(REDUCE)]
    assert len(reduce_claims) == 1  # claimed once, by one worker
    last_map = max(results[t.id].created for t in job.tasks)
    assert reduce_claims[0].created >= last_map  # the barrier: not before every map result
    manifest = read_manifest(store, job.reduce_task)  # type: ignore[arg-type]
    assert manifest["outputs"][0]["name"] == "total.txt"
    total = manifest["outputs"][0]["data"]
    assert int(base64.b64decode(total)) == sum(range(1, 6))


def test_a_failed_map_task_keeps_the_reduce_from_running(
    store: MemoryStore, clock: TestClock, post: Callable[..., Job], tmp_path: Path
) -> None:
    fail_on_2 = "import sys; sys.exit(3) if sys.argv[1] == '2' else open('out.txt', 'w').write('1')"
    job = post(3, reduce=True, map_code=fail_on_2, attempts=1)
    a = make_worker(store, tmp_path, "a", clock)
    run_until_done([a], clock)
    names = results_of(store, job)
    assert len(names) == 3 and sum(".failed." in n for n in names) == 1
    assert not [i for i in store.list(job.folders["claims"]) if i.name.startswith(REDUCE)]
    assert load_view(store, job).finished  # and the job is marked finished


def test_a_cancelled_job_s_claimed_attempt_is_never_committed(
    store: MemoryStore, clock: TestClock, post: Callable[..., Job], tmp_path: Path
) -> None:
    job = post(2)
    a = make_worker(store, tmp_path, "a", clock)
    a.step(run=False)
    assert mark(store, job, "cancel", a.shared.trust)
    clock.now += 1.0
    a.step()  # the change feed shows the marker: the claimed attempt is abandoned
    assert results_of(store, job) == [] and a.stats["commits"] == 0
    assert job.id in a.shared.done_jobs and not a.jobs
    a.step()  # the abandoned attempt's relisting, then nothing left
    assert a.all_done() and a.stats["claims"] == 1


def test_a_job_of_an_older_format_keeps_its_informative_names(
    store: MemoryStore,
    clock: TestClock,
    post: Callable[..., Job],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A job posted before format 3 (names carry the worker and the outcome) is run by
    today's workers with those names, so the older workers serving it beside them read
    them as they always did."""
    import drivemr.protocol.publish as publish

    monkeypatch.setattr(publish, "FIXED_NAMES_FORMAT", FORMAT)
    a, b = make_worker(store, tmp_path, "a", clock), make_worker(store, tmp_path, "b", clock)
    job = post(4)
    assert job.doc["format"] == FORMAT and job.named
    run_until_done([a, b], clock)
    claims = [parse_claim_name(i.name) for i in store.list(job.folders["claims"])]
    assert sorted(c[0] for c in claims if c) == ["t0000", "t0001", "t0002", "t0003"]
    assert {c[2] for c in claims if c} <= {"a", "b"}
    refs = [parse_result(i) for i in store.list(job.folders["results"])]
    assert sorted((r.task, r.state) for r in refs if r) == [(f"t000{n}", "done") for n in range(4)]


def test_a_lost_race_in_an_older_format_job_names_the_winner(
    store: MemoryStore,
    clock: TestClock,
    post: Callable[..., Job],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import drivemr.protocol.publish as publish

    monkeypatch.setattr(publish, "FIXED_NAMES_FORMAT", FORMAT)
    a, b = make_worker(store, tmp_path, "a", clock), make_worker(store, tmp_path, "b", clock)
    for w in (a, b):
        w.step()
    job = post(1)
    clock.now += 1.0
    for w in (a, b):
        w.watcher.look()
    task = job.tasks[0]
    assert a.claimer.claim(Candidate(a.jobs[job.id], task, 0)) is not None
    assert b.claimer.claim(Candidate(b.jobs[job.id], task, 0)) is None
    assert b.jobs[job.id].view.claims[task.id][0].worker == "a"
    assert [i.name for i in store.list(job.folders["claims"])] == ["t0000.g0.a"]
