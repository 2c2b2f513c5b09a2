"""The SIGSTOP experiment: suspend a worker past its lease while another takes its claims
over, then wake it; the stale worker must neither commit a result for a claim it lost nor
let its suspended attempt run on.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from drivemr.stores.base import Store
from drivemr.testing.chaos.cluster import (
    Cluster,
    WorkerProc,
    alive,
    exit_codes,
    worker_logs,
)
from drivemr.testing.chaos.ledger import (
    Account,
    Execution,
    account,
    claims_of,
    executions,
    other_takeovers,
    write_job,
)
from drivemr.testing.filefacts import result_facts
from drivemr.testing.wait import wait_for


@dataclass
class StopReport:
    store: str
    lease: float
    stops: int
    account: Account
    stale_claims: int
    """Claims the stopped workers held when they were stopped, taken over by another worker."""
    stale_results: int
    """Results committed by a stopped worker for a claim taken over meanwhile (must be 0)."""
    stale_killed: int
    """Suspended long attempts killed by their worker after SIGCONT (they never finished)."""
    lapse_messages: int
    exit_codes: dict[str, int]
    elapsed: float
    stale_targets: int = 0
    """Long attempts (still running when their worker woke up) that were suspended."""
    lapsed_claims: int = 0
    """Other claims taken over because their worker logged its heartbeat lapsing (load)."""
    unexplained_takeovers: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"[SIGSTOP past the lease | {self.store}] {self.stops} stops, lease {self.lease:g} s, {self.elapsed:.0f} s",
            f"  {self.account.line()}",
            f"  claims taken over from stopped workers {self.stale_claims}; suspended long attempts killed "
            f"on waking {self.stale_killed}/{self.stale_targets}; stale results accepted {self.stale_results}",
        ]


def stop_campaign(
    cluster: Cluster,
    *,
    tasks: int = 60,
    stops: int = 1,
    workers: int = 2,
    task_seconds: float = 0.3,
    long_first: float = 30.0,
    timeout: float = 300,
    log: Callable[[str], None] = lambda s: None,
) -> StopReport:
    """Suspend a worker together with its running tasks (SIGSTOP, as a sleeping PC) until
    another worker has taken over its long attempt, then resume it (SIGCONT).

    Before each stop the campaign arms the next task to start: that first attempt sleeps
    ``long_first`` seconds, so it is still running when its worker wakes up."""
    job_file = write_job(
        cluster.base / "job-stop",
        cluster.sidefx,
        name="stop",
        tasks=tasks,
        opts=f"sleep={task_seconds},armed={long_first}",
    )
    job = cluster.submit(job_file)
    t0 = time.time()
    procs = [cluster.start(f"w{i}", "--exit-when-idle", slots=2) for i in range(workers)]
    by_pid = {p.pid: p for p in procs}
    stale: list[tuple[WorkerProc, list[Execution], float]] = []
    deadline = time.monotonic() + timeout
    arm = cluster.sidefx / "arm"
    while len(stale) < stops and time.monotonic() < deadline:
        if cluster.results(job) >= tasks - 2 * workers * 2:
            break  # too late in the job: no task left to arm
        arm.write_text("")
        armed = wait_for(lambda: sorted(cluster.sidefx.glob("armed-*")), 60, "an armed task")
        target = armed[-1].name[len("armed-") :]
        armed[-1].rename(cluster.sidefx / f"done-{target}")

        def running(t: str = target) -> Execution | None:
            return next(
                (e for e in executions(cluster.sidefx) if e.task == t and e.attempt == 1), None
            )

        e = wait_for(running, 60, f"{target} to start")
        victim = by_pid[e.worker_pid]
        # A suspended PC: the worker and its running tasks stop together.
        frozen = [
            x for x in executions(cluster.sidefx) if x.worker_pid == victim.pid and x.end is None
        ]
        stopped_at = time.time()
        for pid in (victim.pid, *(x.pid for x in frozen)):
            with contextlib.suppress(ProcessLookupError):  # a short task may just have ended
                os.kill(pid, signal.SIGSTOP)
        log(f"stopped {victim.worker_id} running {[x.task for x in frozen]}")
        next_claim = job.task(target).claim_ids[1]
        wait_for(
            functools.partial(_exists, cluster.store, next_claim),
            cluster.lease * 10 + 30,
            f"a takeover of {target}",
        )
        for pid in (*(x.pid for x in frozen), victim.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        log(f"resumed {victim.worker_id}")
        stale.append((victim, [e], stopped_at))
    arm.unlink(missing_ok=True)
    codes = exit_codes(procs, deadline)
    elapsed = time.time() - t0
    acc = account(cluster.store, job, cluster.sidefx)
    claims = claims_of(cluster.store, job)
    results = {}
    for info in cluster.store.list(job.folders["results"]):
        ref = result_facts(cluster.store, info)
        if ref is not None:
            results[ref.task] = (ref.gen, info)
    # A stale result: committed under a claim after the next attempt's claim existed.
    stale_results = sum(
        1
        for tid, (gen, info) in results.items()
        if (tid, gen + 1) in claims and claims[(tid, gen + 1)][1].created <= info.created
    )
    lapsed = 0
    killed = 0
    by_stops: set[tuple[str, int]] = set()
    for victim, long_ones, stopped_at in stale:
        taken = {
            (tid, gen)
            for (tid, gen), (worker, info) in claims.items()
            if worker == victim.worker_id
            and info.created <= stopped_at
            and (tid, gen + 1) in claims
            and claims[(tid, gen + 1)][1].created > stopped_at
        }
        lapsed += len(taken)
        by_stops |= taken
        final: dict[int, Execution] = {}  # pid -> its first execution record, read once
        for x in executions(cluster.sidefx) if long_ones else []:
            final.setdefault(x.pid, x)
        for e in long_ones:
            last = final.get(e.pid)
            if last is not None and last.end is None and not alive(e.pid):
                killed += 1
    texts = [p.text() for p in procs]
    lapses = sum(t.count("claim lapsed") + t.count("result discarded") for t in texts)
    return StopReport(
        cluster.kind,
        cluster.lease,
        len(stale),
        acc,
        lapsed,
        stale_results,
        killed,
        lapses,
        codes,
        elapsed,
        sum(len(x[1]) for x in stale),
        *other_takeovers(claims, by_stops, worker_logs(procs)),
    )


def _exists(store: Store, file_id: str) -> bool:
    from drivemr.errors import NotFound

    try:
        store.get(file_id)
    except NotFound:
        return False
    return True
