"""The kill -9 experiment: kill a worker in the middle of its attempts, again and again,
and restart it (with the same worker id or a new one); every task still ends exactly once
and the time to take a dead worker's claim over is measured against the lease.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

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
    percentile,
    write_job,
)
from drivemr.testing.filefacts import result_facts
from drivemr.testing.wait import wait_for


@dataclass
class Kill:
    at: float
    worker_id: str
    pid: int
    in_flight: list[Execution]
    restart: str
    """"same" (the same worker id) or "new"."""


@dataclass
class KillReport:
    store: str
    lease: float
    poll: float
    kills: list[Kill]
    account: Account
    latencies: list[float]
    """Per orphaned claim: seconds from the kill to the claim of the next attempt."""
    latency_by_restart: dict[str, list[float]]
    orphaned_claims: int
    elapsed: float
    exit_codes: dict[str, int]
    task_seconds: float = 0.0
    lapsed_claims: int = 0
    """Claims of workers that were not killed, taken over because that worker's heartbeat
    did go older than the lease (a loaded PC; the worker logged it and discarded them)."""
    unexplained_takeovers: list[str] = field(default_factory=list)
    """Claims taken over although their worker was neither killed nor lapsed (must be none)."""

    @property
    def bound(self) -> float:
        """The documented bound on the reclaim latency: the lease plus one poll interval
        after the kill, plus (when every slot is busy then) the wait for a slot: at most
        one task's run time."""
        return self.lease + self.poll + self.task_seconds

    def lines(self) -> list[str]:
        lat = self.latencies
        out = [
            f"[kill -9 | {self.store}] {len(self.kills)} kills of 1 of 4 workers, lease {self.lease:g} s, "
            f"poll {self.poll:g} s, {self.elapsed:.0f} s",
            f"  {self.account.line()}",
            f"  claims orphaned by the kills {self.orphaned_claims}, lapsed on a loaded worker "
            f"{self.lapsed_claims}, unexplained takeovers {len(self.unexplained_takeovers)}; "
            f"duplicates {self.account.duplicated} <= kills {len(self.kills)}"
            + (f" + lapses {self.lapsed_claims}" if self.lapsed_claims else ""),
        ]
        if lat:
            out.append(
                f"  reclaim latency (kill -> next claim): p50 {percentile(lat, 0.5):.2f} s, "
                f"p95 {percentile(lat, 0.95):.2f} s, max {max(lat):.2f} s "
                f"(lease + poll = {self.lease + self.poll:.2f} s: {sum(x <= self.lease + self.poll for x in lat)}"
                f"/{len(lat)} within; bound with a busy slot's wait = {self.bound:.2f} s)"
            )
            for mode, values in sorted(self.latency_by_restart.items()):
                if values:
                    out.append(
                        f"    restarted with the {mode} worker id: n={len(values)}, "
                        f"p50 {percentile(values, 0.5):.2f} s, max {max(values):.2f} s"
                    )
        return out


def kill_campaign(
    cluster: Cluster,
    *,
    tasks: int = 200,
    kills: int = 10,
    task_seconds: float = 0.4,
    steady_slots: int = 1,
    timeout: float = 600,
    log: Callable[[str], None] = lambda s: None,
) -> KillReport:
    """kill -9 one of 4 workers ``kills`` times during a ``tasks``-task job."""
    job_file = write_job(
        cluster.base / "job-kill",
        cluster.sidefx,
        name="kill",
        tasks=tasks,
        opts=f"sleep={task_seconds}",
        max_attempts=kills + 3,
    )
    job = cluster.submit(job_file)
    t0 = time.time()
    steady = [cluster.start(f"steady{i}", "--exit-when-idle", slots=steady_slots) for i in range(3)]
    victim = cluster.start("victim", slots=1, worker_id="victim")
    done: list[Kill] = []
    incarnation = 0
    deadline = time.monotonic() + timeout
    while len(done) < kills and time.monotonic() < deadline:
        if cluster.results(job) >= tasks:
            break

        def busy(v: WorkerProc = victim) -> list[Execution]:
            return [
                e for e in executions(cluster.sidefx) if e.worker_pid == v.pid and e.end is None
            ]

        try:
            wait_for(
                lambda: busy() or cluster.results(job) >= tasks, 60, "the victim to run a task"
            )
        except TimeoutError:
            break
        in_flight = busy()
        if not in_flight:
            break
        time.sleep(random.uniform(0.0, task_seconds / 2))  # somewhere inside the attempt
        at = time.time()
        victim.popen.send_signal(signal.SIGKILL)
        victim.popen.wait()
        restart = "same" if len(done) % 2 == 0 else "new"
        done.append(Kill(at, victim.worker_id, victim.pid, in_flight, restart))
        log(
            f"kill {len(done)}: {victim.worker_id} (pid {victim.pid}) running {[e.task for e in in_flight]}"
        )
        incarnation += 1
        wid = victim.worker_id if restart == "same" else f"victim-{incarnation}"
        victim = cluster.start("victim", "--exit-when-idle", slots=1, worker_id=wid)
    codes = exit_codes([*steady, victim], deadline)
    elapsed = time.time() - t0
    wait_for(  # a killed worker's tasks run on: let them end (or die) before the account
        lambda: all(e.end is not None or not alive(e.pid) for e in executions(cluster.sidefx)),
        60,
        "orphans to end",
    )
    acc = account(cluster.store, job, cluster.sidefx)
    claims = claims_of(cluster.store, job)
    latencies: list[float] = []
    by_kills: set[tuple[str, int]] = set()
    by_mode: dict[str, list[float]] = {"same": [], "new": []}
    orphaned = 0
    # A claim is orphaned by a kill when the killed incarnation held it at the kill time
    # (created before the kill, after the incarnation started) and no result came of it.
    results = {}
    for info in cluster.store.list(job.folders["results"]):
        ref = result_facts(cluster.store, info)
        if ref is not None:
            results[ref.task] = ref.gen
    starts = [p.started for p in cluster.procs if p.name == "victim"]
    # S3 timestamps are whole seconds: a claim made just after a restart may look older.
    resolution = 1.0 if cluster.kind == "s3" else 0.0
    for k, kill in enumerate(done):
        born_after = starts[k] - resolution
        for (tid, gen), (worker, info) in claims.items():
            if worker != kill.worker_id or not born_after - 0.05 <= info.created <= kill.at:
                continue
            if (tid, gen) in by_kills:
                continue  # the previous incarnation's (same worker id, same second)
            if results.get(tid) == gen:
                continue  # it committed before it died
            orphaned += 1
            by_kills.add((tid, gen))
            nxt = claims.get((tid, gen + 1))
            if nxt is None:
                latencies.append(float("inf"))
                continue
            latency = nxt[1].created - kill.at
            latencies.append(latency)
            by_mode[kill.restart].append(latency)
    lapsed, unexplained = other_takeovers(claims, by_kills, worker_logs(cluster.procs))
    return KillReport(
        cluster.kind,
        cluster.lease,
        cluster.poll,
        done,
        acc,
        latencies,
        by_mode,
        orphaned,
        elapsed,
        codes,
        task_seconds=task_seconds,
        lapsed_claims=lapsed,
        unexplained_takeovers=unexplained,
    )
