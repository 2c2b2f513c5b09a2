"""What keeps a Drive job near 2 writes per task and within the account's quota:

* workers claim runs of consecutive tasks and, at the end of a run or after a collision,
  relist (reads) before claiming again, instead of trying task after task (a 409 costs a
  write); a worker that jumps takes the upper half of the longest run of free tasks;
* every Drive client slows its writes down when the shared quota refuses one, and speeds
  up again write by write, so several PCs on one account share it without give-ups.
"""

from __future__ import annotations

import collections
import itertools
import threading
from typing import Any

import pytest

from drivemr.protocol import ClaimRef, JobView, job_from_doc
from drivemr.stores.base import FileInfo
from drivemr.stores.drive import DriveStore, WritePacer
from drivemr.testing.fakedrive import FakeDriveServer
from drivemr.worker import ActiveJob
from drivemr.worker.plan import NextPending, next_pending, plan_tasks

# --------------------------------------------------------------------------- claim runs


def make_active(n: int) -> ActiveJob:
    doc: dict[str, Any] = {
        "format": 1,
        "id": "j",
        "name": "j",
        "created": 0.0,
        "folders": {k: k for k in ("job", "files", "claims", "results", "outputs", "logs")},
        "markers": {"cancel": "mc", "finished": "mf"},
        "files": [],
        "map": {"command": ["true"], "outputs": [], "timeout": None, "max_attempts": 2},
        "tasks": [{"id": f"t{k:04d}", "claims": [f"c{k}a", f"c{k}b"], "result": f"r{k}"}
                  for k in range(n)],
        "reduce": None,
        "reduce_task": None,
    }  # fmt: skip
    job = job_from_doc(doc, "job")
    return ActiveJob(job, JobView(), collections.deque(), set())


def claim(active: ActiveJob, indices: range | list[int], worker: str = "other") -> None:
    for k in indices:
        tid = f"t{k:04d}"
        info = FileInfo(f"c{k}a", f"{tid}.g0.{worker}", "claims")
        active.view.add_claim(ClaimRef(tid, 0, worker, info))


def plan(active: ActiveJob, me: str = "me") -> None:
    """Plan as a worker does after a listing (plan.plan_tasks, applied to the job)."""
    made = plan_tasks(active.job, active.view, me=me, frontier=active.frontier)
    active.pending = collections.deque(made.pending)


def first(active: ActiveJob) -> int:
    return int(active.pending[0][1:])


def test_first_plan_starts_at_an_offset_of_each_worker() -> None:
    starts = set()
    for wid in ("pc1", "pc2", "pc3", "pc4"):
        active = make_active(200)
        plan(active, wid)
        assert len(active.pending) == 200
        # a rotation of the task order: runs of consecutive tasks
        order = [int(t[1:]) for t in active.pending]
        assert all((b - a) % 200 == 1 for a, b in itertools.pairwise(order))
        starts.add(order[0])
    assert len(starts) > 1


def test_a_worker_goes_on_after_its_last_claim() -> None:
    active = make_active(40)
    claim(active, range(0, 10), "me")
    claim(active, range(30, 35))
    active.frontier = 9
    plan(active)
    assert first(active) == 10


def test_at_the_end_of_its_run_a_worker_jumps_into_the_longest_free_run() -> None:
    active = make_active(40)
    claim(active, range(0, 10))  # free: 10-14 (5 tasks)
    claim(active, range(15, 20), "me")
    claim(active, [20])  # free: 21-39 (19 tasks), probably being worked up from 21
    active.frontier = 19
    plan(active)
    assert 21 + 19 // 3 <= first(active) <= 21 + 2 * 19 // 3


def test_the_longest_free_run_may_wrap_around_the_end() -> None:
    active = make_active(40)
    claim(active, range(10, 30))  # free: 30-39 and 0-9, one run of 20 across the end
    plan(active)
    assert first(active) in {*range(36, 40), *range(0, 5)}


def test_no_blind_claim_past_the_end_of_a_run() -> None:
    job = make_active(40).job
    # our run ended at 7; 8-11 were taken meanwhile: a listing (reads) first, not a write
    step = next_pending(
        job, ["t0012", "t0013"], settled=lambda t: False, frontier=7, replanned=False
    )
    assert step.run_ended and step.task is None
    step = next_pending(
        job, ["t0008", "t0009"], settled=lambda t: False, frontier=7, replanned=False
    )
    assert step == NextPending(0, "t0008")
    # settled tasks at the front are skipped; right after a listing any task may go
    step = next_pending(
        job, ["t0008", "t0020"], settled={"t0008"}.__contains__, frontier=7, replanned=True
    )
    assert step == NextPending(1, "t0020")


# --------------------------------------------------------------------------- pacing


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_pacer_halves_on_a_refusal_and_wins_the_rate_back() -> None:
    clock = FakeClock()
    pacer = WritePacer(3.0, burst=2.0, clock=clock, sleep=clock.sleep)
    pacer.slow_down()
    assert pacer.rate == pytest.approx(1.5)
    pacer.slow_down()  # refused together (several slots): one halving
    assert pacer.rate == pytest.approx(1.5)
    clock.now += 1.5
    pacer.slow_down()
    assert pacer.rate == pytest.approx(0.75)
    for _ in range(10):
        clock.now += 2
        pacer.slow_down()
    assert pacer.rate == pytest.approx(0.3)  # never below a tenth
    waited = pacer.acquire()  # no saved burst right after a refusal
    assert waited == pytest.approx(1 / 0.3)
    for _ in range(100):
        pacer.speed_up()
    assert pacer.rate == pytest.approx(3.0)  # up to the configured rate, not beyond


def test_three_clients_share_one_accounts_quota_without_giving_up() -> None:
    """Three clients, each paced at the account's whole rate, against that quota."""
    rate, per_client = 20.0, 20
    with FakeDriveServer(port=0) as srv:
        stores = [
            DriveStore.from_url(
                "drive://", endpoint=srv.url, pacer=WritePacer(rate, burst=2.0),
                backoff_base=0.05, backoff_max=0.5,
            )
            for _ in range(3)
        ]  # fmt: skip
        ids = [s.mint_ids(per_client) for s in stores]
        srv.configure(write_rate=rate)
        errors: list[BaseException] = []

        def work(store: DriveStore, fids: list[str]) -> None:
            try:
                for n, fid in enumerate(fids):
                    store.create("root", f"f{fid}-{n}", fid, b"x")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        pairs = zip(stores, ids, strict=True)
        threads = [threading.Thread(target=work, args=pair) for pair in pairs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        refused = srv.stats()["rate_limited"]
        srv.configure(write_rate=None)
        assert errors == []
        assert all(s.stats["gave_up"] == 0 for s in stores)
        assert sum(s.stats["retries"] for s in stores) == refused
        if refused:  # whoever was refused slowed down
            assert any(s.pacer is not None and s.pacer.rate < rate for s in stores)
        listed = {f.id for f in stores[0].list("root")}
        assert all(fid in listed for fids in ids for fid in fids)
        for s in stores:
            s.close()
