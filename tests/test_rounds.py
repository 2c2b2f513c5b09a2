"""Retry rounds, stepped in-process over a MemoryStore (issue 17, points 1 and 2).

A flaky map (it fails while a control file the test owns exists) and a reduce; every map
execution is appended to a log, so "not re-run" is counted, not assumed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivemr.errors import DrivemrError
from drivemr.protocol import REDUCE, Job, find_job, load_view, mark, submit
from drivemr.report import collect, final_attempts
from drivemr.results import fetch_results
from drivemr.rounds import retry_job
from drivemr.sealed import Sealer
from drivemr.spec import load_job
from drivemr.status import status_of
from drivemr.testing import MemoryStore
from drivemr.testing.clock import ManualClock as TestClock
from drivemr.testing.stepping import step_until_done, stepping_worker
from drivemr.trust import Trust
from drivemr.worker import Worker

ITEMS = 6
FAILING = ("2", "5")


@pytest.fixture
def clock() -> TestClock:
    return TestClock()


@pytest.fixture
def store(clock: TestClock) -> MemoryStore:
    return MemoryStore(clock)


@pytest.fixture
def control(tmp_path: Path) -> Path:
    folder = tmp_path / "control"
    folder.mkdir()
    for item in FAILING:
        (folder / f"fail-{item}").touch()
    return folder


def map_code(control: Path) -> str:
    return (
        "import os, sys; item = sys.argv[1]; "
        f"open({str(control / 'exec.log')!r}, 'a').write('map ' + item + '\\n'); "
        f"failing = os.path.exists(os.path.join({str(control)!r}, 'fail-' + item)); "
        "sys.exit(1) if failing else open('out.txt', 'w').write(item)"
    )


def reduce_code(control: Path, factor: int) -> str:
    return (
        "import os, sys; d = sys.argv[1]; "
        f"open({str(control / 'exec.log')!r}, 'a').write('reduce\\n'); "
        f"total = {factor} * sum(int(open(os.path.join(d, t, 'out.txt')).read()) "
        "for t in sorted(os.listdir(d))); "
        "open('total.txt', 'w').write(str(total))"
    )


def job_text(control: Path, factor: int = 1) -> str:
    return f"""
        name = "flaky"
        [map]
        command = ["python", "-c", {json.dumps(map_code(control))}, "{{item}}"]
        items = {{range = [1, {ITEMS + 1}]}}
        outputs = ["out.txt"]
        max_attempts = 1
        [reduce]
        command = ["python", "-c", {json.dumps(reduce_code(control, factor))}, "{{results}}"]
        outputs = ["total.txt"]
        """


@pytest.fixture
def job(store: MemoryStore, write_job: Callable[..., Path], control: Path) -> Job:
    return submit(store, load_job(write_job(job_text(control))))


def make_worker(store: MemoryStore, tmp_path: Path, wid: str, clock: TestClock) -> Worker:
    return stepping_worker(store, tmp_path, wid, clock)


def run_until_done(workers: list[Worker], clock: TestClock, rounds: int = 80) -> None:
    step_until_done(workers, clock, rounds)


def executions(control: Path) -> list[str]:
    path = control / "exec.log"
    return path.read_text().splitlines() if path.exists() else []


def total(store: MemoryStore, job: Job, tmp_path: Path, name: str) -> str:
    from drivemr.cli import fetch_or_reduce

    (path,) = fetch_or_reduce(store, job.id, tmp_path / name)
    return path.read_text()


def test_retry_failed_reruns_only_the_failed_tasks_then_the_reduce(
    store: MemoryStore, clock: TestClock, job: Job, control: Path, tmp_path: Path
) -> None:
    w = make_worker(store, tmp_path, "a", clock)
    run_until_done([w], clock)
    assert status_of(store, job.id).state == "failed"
    assert len(executions(control)) == ITEMS  # no reduce: two maps failed
    # Every successful output is there before any retry.
    got = fetch_results(store, job.id, tmp_path / "before")
    assert sorted(p.parent.name for p in got) == ["t0000", "t0002", "t0003", "t0005"]
    for item in FAILING:
        (control / f"fail-{item}").unlink()  # "fix the input data"
    rnd = retry_job(store, job.id, failed=True)
    assert rnd.number == 1 and sorted(rnd.tasks) == ["t0001", "t0004"]
    # The same worker saw the job finish; the new round re-opens it.
    run_until_done([w], clock)
    runs = executions(control)
    assert sorted(runs[ITEMS:]) == ["map 2", "map 5", "reduce"]  # the others not re-run
    assert total(store, job, tmp_path, "out") == str(sum(range(1, ITEMS + 1)))
    st = status_of(store, job.id)
    assert (st.state, st.round) == ("done", 1)
    assert {t.task: t.round for t in st.tasks if t.round} == {"t0001": 1, "t0004": 1}
    assert [r["tasks"] for r in st.to_json()["rounds"]] == [["t0001", "t0004"]]
    # joblog and report: every attempt of every round.
    record = collect(store, job.id)
    t1 = [(a.round, a.attempt, a.outcome) for a in record.of("t0001")]
    assert t1 == [(0, 1, "failed"), (1, 2, "done")]
    rows = [(task, a.round if a else None) for task, a, _n in final_attempts(record)]
    assert rows.count(("t0001", 0)) == 1 and rows.count(("t0001", 1)) == 1
    assert ("t0000", 0) in rows and ("t0000", 1) not in rows


def test_reduce_from_reruns_the_reduce_alone_with_its_new_section(
    store: MemoryStore,
    clock: TestClock,
    job: Job,
    control: Path,
    tmp_path: Path,
    write_job: Callable[..., Path],
) -> None:
    for item in FAILING:
        (control / f"fail-{item}").unlink()
    w = make_worker(store, tmp_path, "a", clock)
    run_until_done([w], clock)
    assert total(store, job, tmp_path, "first") == "21"
    before = executions(control)
    edited = write_job(job_text(control, factor=2), name="edited")
    rnd = retry_job(store, job.id, reduce_from=edited)
    assert rnd.tasks == {} and rnd.reduce is not None
    run_until_done([w], clock)
    assert executions(control) == [*before, "reduce"]  # the reduce alone
    assert total(store, job, tmp_path, "second") == "42"
    _folder, now = find_job(store, job.id)
    assert now.reduce is not None and "2 * sum" in now.reduce.command[2]


def test_reduce_from_refuses_a_changed_map_part(
    store: MemoryStore,
    clock: TestClock,
    job: Job,
    control: Path,
    tmp_path: Path,
    write_job: Callable[..., Path],
) -> None:
    run_until_done([make_worker(store, tmp_path, "a", clock)], clock)
    other = write_job(
        job_text(control).replace('outputs = ["out.txt"]', 'outputs = ["o.txt"]'), name="x"
    )
    with pytest.raises(DrivemrError, match="map's outputs"):
        retry_job(store, job.id, reduce_from=other, failed=True)
    more = write_job(job_text(control).replace(f"[1, {ITEMS + 1}]", f"[1, {ITEMS + 2}]"), name="y")
    with pytest.raises(DrivemrError, match="number of items"):
        retry_job(store, job.id, reduce_from=more, failed=True)
    # Failed maps: the reduce cannot run without them.
    same = write_job(job_text(control, factor=3), name="z")
    with pytest.raises(DrivemrError, match="did not succeed"):
        retry_job(store, job.id, reduce_from=same)
    assert find_job(store, job.id)[1].round == 0  # nothing was posted


def test_retry_refuses_a_running_or_cancelled_job_and_bad_names(
    store: MemoryStore, clock: TestClock, job: Job, tmp_path: Path
) -> None:
    with pytest.raises(DrivemrError, match="still running"):
        retry_job(store, job.id, failed=True)
    run_until_done([make_worker(store, tmp_path, "a", clock)], clock)
    with pytest.raises(DrivemrError, match="no task"):
        retry_job(store, job.id, ["t9999"])
    mark(store, job, "cancel", Trust.for_this_pc())
    with pytest.raises(DrivemrError, match="cancelled"):
        retry_job(store, job.id, failed=True)


def test_a_forged_or_misplaced_round_is_ignored(
    store: MemoryStore,
    clock: TestClock,
    job: Job,
    control: Path,
    tmp_path: Path,
    write_job: Callable[..., Path],
) -> None:
    w = make_worker(store, tmp_path, "a", clock)
    run_until_done([w], clock)
    other = submit(store, load_job(write_job(job_text(control), name="other")))
    run_until_done([w], clock)
    # A genuine round of the other job, copied here; and one sealed by an untrusted key.
    for item in FAILING:
        (control / f"fail-{item}").unlink()
    genuine = retry_job(store, other.id, failed=True)
    (src,) = [i for i in store.list(other.folder) if i.name == "round.1"]
    store.create(job.folder, "round.1", store.mint_ids(1)[0], store.read(src.id))
    forged = dict(genuine.to_body(), job=job.id)
    store.create(
        job.folder,
        "round.1",
        store.mint_ids(1)[0],
        Sealer(Ed25519PrivateKey.generate()).seal("round", forged),
    )
    runs = len(executions(control))
    run_until_done([w], clock)
    assert find_job(store, job.id)[1].round == 0
    assert status_of(store, job.id).state == "failed"
    # The other job's real round ran there (the worker picked it up as well).
    assert status_of(store, other.id).state == "done"
    assert len(executions(control)) == runs + 3
    # A real retry of this job still works despite the junk in round.1's place.
    rnd = retry_job(store, job.id, failed=True)
    assert rnd.number == 1
    run_until_done([w], clock)
    assert status_of(store, job.id).state == "done"
    assert load_view(store, find_job(store, job.id)[1]).results[REDUCE].state == "done"


def test_junk_named_like_a_round_never_costs_running_attempts(
    store: MemoryStore, clock: TestClock, job: Job, control: Path, tmp_path: Path
) -> None:
    w = make_worker(store, tmp_path, "a", clock)
    w.step(run=False)  # claimed, not yet run
    (running,) = w.shared.running.values()
    for n in (1, 2):
        store.create(job.folder, f"round.{n}", store.mint_ids(1)[0], b'{"sealed": 1}')
    clock.now += 2.0
    w.watcher.look()
    w.watcher.look()
    assert len(w.watcher._round_files[job.id]) == 2  # looked at, once each
    assert running.abandon is None and job.id in w.jobs
    assert w.run_claimed() == 1 and w.stats["commits"] == 1


def test_a_finished_marker_copied_into_a_later_round_does_not_finish_it(
    store: MemoryStore, clock: TestClock, job: Job, control: Path, tmp_path: Path
) -> None:
    """Markers are sealed with the same Trust as claims and results, and a round's finished
    marker is bound to its round: the genuine round-0 marker, copied to round 1's marker
    id, does not open there, so workers still run the round."""
    trust = Trust.for_this_pc()
    run_until_done([make_worker(store, tmp_path, "a", clock)], clock)
    genuine = store.read(job.markers["finished"])
    for item in FAILING:
        (control / f"fail-{item}").unlink()
    rnd = retry_job(store, job.id, failed=True)
    store.create(job.folder, "finished", rnd.finished, genuine)  # the copy
    _folder, after = find_job(store, job.id)
    assert after.markers["finished"] == rnd.finished
    assert not load_view(store, after, trust).finished
    assert load_view(store, job, trust).finished  # where it belongs, it still opens
    run_until_done([make_worker(store, tmp_path, "b", clock)], clock)
    assert status_of(store, job.id).state == "done"
    assert total(store, job, tmp_path, "after") == str(sum(range(1, ITEMS + 1)))


def test_a_new_round_reopens_a_job_its_worker_remembers_finishing_but_a_wipe_does_not(
    store: MemoryStore, clock: TestClock, job: Job, control: Path, tmp_path: Path
) -> None:
    """The job history keys on (job, round): a worker that saw round 0 end (and restarted
    since) runs a newer signed round, and after that round ends a wipe of its claims,
    results and marker never makes it run the round again."""
    run_until_done([make_worker(store, tmp_path, "a", clock)], clock)
    assert status_of(store, job.id).state == "failed"
    for item in FAILING:
        (control / f"fail-{item}").unlink()
    retry_job(store, job.id, failed=True)
    restarted = make_worker(store, tmp_path, "a", clock)  # same working folder: same history
    assert restarted.watcher.history.is_finished(job.id, 0)
    assert not restarted.watcher.history.is_finished(job.id, 1)
    run_until_done([restarted], clock)
    assert sorted(executions(control)[ITEMS:]) == ["map 2", "map 5", "reduce"]
    assert (status_of(store, job.id).state, status_of(store, job.id).round) == ("done", 1)
    assert restarted.watcher.history.is_finished(job.id, 1)
    # Replay by wipe of round 1: its claims, results and finished marker deleted.
    _, current = find_job(store, job.id)
    doomed = {i for t in current.all_tasks if t.round == 1 for i in (*t.claim_ids, *t.result_ids)}
    doomed.add(current.markers["finished"])
    for folder in (current.folders["claims"], current.folders["results"], current.folder):
        for info in store.list(folder):
            if info.id in doomed:
                store.delete(info.id)
    assert status_of(store, job.id).state != "done"  # the store alone would run it again
    ran = len(executions(control))
    again = make_worker(store, tmp_path, "a", clock)
    for _ in range(20):
        again.step()
        clock.now += 1.0
    assert len(executions(control)) == ran  # remembered: round 1 ended here
    assert job.id in again.shared.done_jobs
