"""The campaign's experiments: kill -9 workers, SIGSTOP them past the lease, and a storm of
transient errors; each returns a report with the account of its job.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drivemr.protocol import parse_result
from drivemr.stores.base import Store
from drivemr.testing.chaos.cluster import (
    Cluster,
    WorkerProc,
    alive,
    exit_codes,
    run_in_threads,
    worker_logs,
)
from drivemr.testing.chaos.faults import counting_drive_store_class, retrying_faulty_folder
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
        ref = parse_result(info)
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
        ref = parse_result(info)
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


@dataclass
class StormReport:
    store: str
    fault_rate: float
    account: Account
    job_state: str
    cap: int
    max_attempts_seen: int
    ops: int
    attempts: int
    server_requests: int
    faults_injected: int
    gave_up: int
    attempts_histogram: dict[int, int]
    elapsed: float

    def lines(self) -> list[str]:
        hist = ", ".join(f"{k}:{v}" for k, v in sorted(self.attempts_histogram.items()))
        what = "file-system attempts" if self.store == "folder" else "HTTP attempts"
        return [
            f"[{self.fault_rate:.0%} storm | {self.store}] job {self.job_state}, {self.elapsed:.0f} s",
            f"  {self.account.line()}",
            f"  {self.ops} operations, {self.attempts} {what} ({self.server_requests} seen by the server), "
            f"{self.faults_injected} faults injected, {self.gave_up} operations gave up",
            f"  attempts per operation: max {self.max_attempts_seen} (cap {self.cap}); histogram {hist}",
        ]


def storm_campaign(
    cluster: Cluster,
    *,
    tasks: int = 40,
    workers: int = 3,
    fault_rate: float = 0.3,
    task_seconds: float = 0.05,
    lease: float = 10.0,
    timeout: float = 300,
    backoff_base: float = 0.1,
) -> StormReport:
    """Run a job with in-process workers while ``fault_rate`` of the store's answers fail."""
    from drivemr.status import status_of
    from drivemr.worker import Worker, WorkerConfig

    job_file = write_job(
        cluster.base / "job-storm",
        cluster.sidefx,
        name="storm",
        tasks=tasks,
        opts=f"sleep={task_seconds}",
        reduce=True,
    )
    job = cluster.submit(job_file)
    stores: list[Any] = []
    if cluster.kind == "drive":
        cls = counting_drive_store_class()
        cluster.fake.reset_stats()
        cluster.fake.configure(fault_rate=fault_rate, fault_codes=(500, 503, 429))
        stores = [
            cluster.drive_client(cls, backoff_base=backoff_base, backoff_max=2.0)
            for _ in range(workers)
        ]
        cap = stores[0].max_attempts
    elif cluster.kind == "s3":  # the proxy answers 503/500/409 or loses the answer
        from drivemr.stores.s3 import S3_POLICY

        policy = dataclasses.replace(S3_POLICY, backoff_base=backoff_base)
        s3_ops: list[int] = []
        s3_lock = threading.Lock()

        def record(_what: str, attempts: int) -> None:
            with s3_lock:
                s3_ops.append(attempts)

        stores = [cluster.s3_client(policy=policy, observe=record) for _ in range(workers)]
        cluster.fake.proxy.reset()
        cluster.fake.proxy.storm(fault_rate, seed=1)
        cap = stores[0].max_attempts
    else:
        stores = [
            retrying_faulty_folder(cluster.base / "store", fault_rate=fault_rate, seed=i)
            for i in range(workers)
        ]
        cap = stores[0].max_attempts
    ws = [
        Worker(
            s,
            WorkerConfig(
                worker_id=f"storm{i}",
                slots=2,
                workdir=cluster.workdir / f"storm{i}",
                lease=lease,
                poll_interval=0.1,
                retry_backoff=0.1,
                exit_when_idle=True,
            ),
            verify=None,
        )
        for i, s in enumerate(stores)
    ]
    t0 = time.time()
    run_in_threads(ws, timeout)
    elapsed = time.time() - t0
    if cluster.kind == "drive":
        cluster.fake.configure(fault_rate=0.0)
        server = cluster.fake.stats()
        ops = [n for s in stores for _, n in getattr(s, "op_attempts", [])]
        gave_up = int(sum(s.stats["gave_up"] for s in stores))
        faults = int(server["fault_errors"])
        server_requests = int(server["requests"])
    elif cluster.kind == "s3":
        proxy = cluster.fake.proxy
        faults, server_requests = proxy.injected, proxy.total()
        proxy.reset()
        with s3_lock:
            ops = list(s3_ops)
        gave_up = sum(s.retry_stats["gave_up"] for s in stores)
    else:
        ops = [n for s in stores for _, n in getattr(s, "op_attempts", [])]
        gave_up = sum(s.retry_stats["gave_up"] for s in stores)
        faults = sum(n for s in stores for op, n in s.faults.items() if op != "create-ack")
        server_requests = sum(n for s in stores for op, n in s.calls.items() if op != "create-ack")
    acc = account(cluster.store, job, cluster.sidefx)
    state = status_of(cluster.store, job.id).state
    return StormReport(
        cluster.kind,
        fault_rate,
        acc,
        state,
        cap,
        max(ops, default=0),
        len(ops),
        sum(ops),
        server_requests,
        faults,
        gave_up,
        dict(collections.Counter(ops)),
        elapsed,
    )
