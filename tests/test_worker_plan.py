"""Planning and the reduce barrier as pure functions: no store, no worker, no threads."""

from __future__ import annotations

from typing import Any

from drivemr.protocol import (
    REDUCE,
    ClaimRef,
    Job,
    JobView,
    ResultRef,
    job_from_doc,
    nothing_left,
    reduce_due,
)
from drivemr.stores.base import FileInfo
from drivemr.worker.plan import (
    due_retry,
    next_attempt,
    next_pending,
    plan_tasks,
    run_start,
    takeover_order,
)


def make_job(n: int, *, reduce: bool = False, attempts: int = 2) -> Job:
    stage = {"command": ["true"], "outputs": [], "timeout": None, "max_attempts": attempts}
    doc: dict[str, Any] = {
        "format": 1,
        "id": "j",
        "name": "j",
        "created": 0.0,
        "folders": {k: k for k in ("job", "files", "claims", "results", "outputs", "logs")},
        "markers": {"cancel": "mc", "finished": "mf"},
        "files": [],
        "map": stage,
        "tasks": [
            {"id": f"t{k}", "claims": [f"c{k}.{g}" for g in range(attempts)], "result": f"r{k}"}
            for k in range(n)
        ],
        "reduce": stage if reduce else None,
        "reduce_task": {"claims": ["cr0", "cr1"], "result": "rr"} if reduce else None,
    }
    return job_from_doc(doc, "job")


def claimed(view: JobView, task: str, worker: str, gen: int = 0, at: float = 0.0) -> None:
    info = FileInfo(f"c-{task}-{gen}", f"{task}.g{gen}.{worker}", "claims", modified=at)
    view.add_claim(ClaimRef(task, gen, worker, info))


def result(view: JobView, task: str, state: str = "done") -> None:
    info = FileInfo(f"r-{task}", f"{task}.{state}.g0.x0.d1", "results")
    view.results[task] = ResultRef(task, state, 0, 0, 0.001, info)


def test_plan_sorts_tasks_into_pending_and_claimed_elsewhere() -> None:
    job = make_job(6)
    view = JobView()
    result(view, "t0")
    claimed(view, "t1", "alive")
    claimed(view, "t2", "dead")
    claimed(view, "t3", "me")  # our own past life's claim
    plan = plan_tasks(job, view, me="me", busy={"t4"}, dead_workers={"dead"})
    assert plan.pending == ("t5",)
    assert plan.elsewhere == {"t1", "t2", "t3"}
    assert plan.urgent == {"t2", "t3"}  # a dead worker's and our past life's go first


def test_given_up_tasks_are_left_alone() -> None:
    plan = plan_tasks(make_job(3), JobView(), me="me", given_up={"t1"})
    assert sorted(plan.pending) == ["t0", "t2"] and not plan.elsewhere


def test_pending_is_a_rotation_starting_after_our_last_claim() -> None:
    job = make_job(10)
    view = JobView()
    for k in range(4):
        claimed(view, f"t{k}", "me")
    plan = plan_tasks(job, view, me="me", frontier=3)
    assert plan.pending == tuple(f"t{k}" for k in range(4, 10))
    # nothing claimed yet: every worker starts at an offset of its own
    every = [f"t{k}" for k in range(10)]
    assert len({run_start(job, every, me=f"pc{n}", frontier=None) for n in range(8)}) > 1


def test_the_reduce_is_planned_first_once_every_map_task_succeeded() -> None:
    job = make_job(2, reduce=True)
    view = JobView()
    result(view, "t0")
    assert not reduce_due(job, view)
    assert REDUCE not in plan_tasks(job, view, me="me").pending
    result(view, "t1")
    assert reduce_due(job, view)
    assert plan_tasks(job, view, me="me").pending == (REDUCE,)
    assert plan_tasks(job, view, me="me", run_reduce=False).pending == ()
    assert plan_tasks(job, view, me="me", busy={REDUCE}).pending == ()
    claimed(view, REDUCE, "other")
    plan = plan_tasks(job, view, me="me")
    assert plan.pending == () and plan.elsewhere == {REDUCE}


def test_a_failed_map_task_means_no_reduce_and_nothing_left() -> None:
    job = make_job(2, reduce=True)
    view = JobView()
    result(view, "t0")
    result(view, "t1", "failed")
    assert not reduce_due(job, view)
    assert nothing_left(job, view)
    assert plan_tasks(job, view, me="me") == plan_tasks(job, view, me="me", run_reduce=False)


def test_nothing_left_counts_the_reduce_only_where_it_may_run() -> None:
    job = make_job(1, reduce=True)
    view = JobView()
    assert not nothing_left(job, view)
    result(view, "t0")
    assert not nothing_left(job, view)  # the reduce is due
    assert nothing_left(job, view, run_reduce=False)  # but never here
    assert nothing_left(job, view, {REDUCE})  # given up
    result(view, REDUCE)
    assert nothing_left(job, view)
    view = JobView(cancelled=True)
    assert nothing_left(job, view)
    assert not nothing_left(make_job(2), JobView(), {"t0"})
    assert nothing_left(make_job(2), JobView(), {"t0", "t1"})


def test_next_pending_goes_along_our_run_and_stops_at_its_end() -> None:
    job = make_job(10)
    free = {"t9"}.__contains__
    assert next_pending(job, ["t4", "t5"], settled=free, frontier=3, replanned=False).task == "t4"
    ended = next_pending(job, ["t6"], settled=free, frontier=3, replanned=False)
    assert ended.run_ended and ended.task is None
    assert next_pending(job, ["t6"], settled=free, frontier=3, replanned=True).task == "t6"
    skipped = next_pending(job, ["t9", "t0"], settled=free, frontier=9, replanned=False)
    assert (skipped.skip, skipped.task) == (1, "t0")  # wraps around the end
    assert next_pending(job, ["t9"], settled=free, frontier=None, replanned=False).task is None


def test_retries_takeovers_and_the_last_attempt() -> None:
    assert due_retry({"a": (1, 5.0), "b": (2, 1.0)}, now=2.0) == ("b", 2)
    assert due_retry({"a": (1, 5.0)}, now=2.0) is None
    view = JobView()
    claimed(view, "t2", "other")
    claimed(view, "t1", "other")
    claimed(view, "t3", "me")
    assert takeover_order({"t1", "t2", "t3"}, view, "me") == ["t3", "t1", "t2"]
    top = view.top_claim("t1")
    assert top is not None
    assert next_attempt(top, ("c0", "c1")) == 1
    claimed(view, "t1", "other", gen=1)
    top = view.top_claim("t1")
    assert top is not None and next_attempt(top, ("c0", "c1")) is None
