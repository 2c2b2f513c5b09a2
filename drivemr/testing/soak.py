"""The soak (issue 16.3): real workers for a long time against the fake Drive with faults
on, a stream of small jobs, a restart every few minutes, and a sample of every worker's
resources every few seconds.

A worker started as a service runs for weeks; the chaos campaign runs for minutes. What a
long run finds is growth: memory, open files, threads, the working folder, the log. The
soak measures the slope of each (per hour and per 1,000 jobs, after a warm-up) and checks
the account of every task (committed once, none lost; duplicates only from restarts).
``scripts/soak.py`` runs it from the command line; ``tests/chaos/test_soak.py`` runs an
80-second version and asserts flatness with a tolerant statistic.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import signal
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivemr.errors import DrivemrError
from drivemr.protocol import Job, mark
from drivemr.testing.chaos.cluster import Cluster, WorkerProc
from drivemr.testing.chaos.ledger import account, executions, write_job
from drivemr.trust import Trust

RESOURCES = ("rss_mb", "fds", "threads", "workdir_kb", "log_kb")


@dataclass(frozen=True)
class SoakSettings:
    seconds: float = 180.0
    workers: int = 2
    slots: int = 2
    job_every: float = 3.0
    """Seconds between two submitted jobs."""
    tasks_per_job: int = 4
    restart_every: float = 60.0
    """Seconds between two restarts of the last worker (alternately kill -9 and SIGTERM)."""
    sample_every: float = 2.0
    warmup: float = 30.0
    """Samples younger than this (from a worker's start) are left out of the figures."""
    lease: float = 8.0
    poll: float = 0.5
    fault_rate: float = 0.02
    """Share of Drive API calls answered 500/503/429."""
    lost_ack_rate: float = 0.02
    """Share of creates that land with their answer lost."""
    write_rate: float | None = 30.0
    """The account's write quota (writes per second; 403 rateLimitExceeded beyond)."""
    cancel_every: int = 10
    fail_every: int = 7
    large_every: int = 9
    large_bytes: int = 2_000_000
    drain_seconds: float = 180.0


@dataclass(frozen=True)
class Sample:
    t: float
    """Seconds since the soak started."""
    jobs: int
    """Jobs submitted so far."""
    worker: str
    pid: int
    age: float
    """Seconds since this worker process started."""
    rss_mb: float
    fds: int
    threads: int
    workdir_kb: float
    log_kb: float


@dataclass(frozen=True)
class Trend:
    """One resource of one worker life after the warm-up."""

    worker: str
    pid: int
    resource: str
    samples: int
    first: float
    """Median of the first half."""
    second: float
    """Median of the second half."""
    per_hour: float
    per_1000_jobs: float | None
    mean: float


@dataclass
class SoakReport:
    settings: SoakSettings
    elapsed: float = 0.0
    jobs: int = 0
    tasks: int = 0
    cancelled: int = 0
    submit_errors: int = 0
    restarts: int = 0
    committed: int = 0
    lost: int = 0
    unexpected: int = 0
    failed: int = 0
    unfinished_jobs: int = 0
    duplicates: int = 0
    """Executions of a (task, attempt) or of a non-poison task beyond the first."""
    duplicates_from_restarts: int = 0
    samples: list[Sample] = field(default_factory=list)
    trends: list[Trend] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    server: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[str]:
        s = self.settings
        out = [
            f"soak: {self.elapsed / 60:.1f} min, {s.workers} worker(s) x {s.slots} slot(s), "
            f"{self.jobs} jobs / {self.tasks} tasks ({self.cancelled} cancelled jobs), "
            f"{self.restarts} restarts, faults {s.fault_rate:.0%} errors + "
            f"{s.lost_ack_rate:.0%} lost acks, quota {s.write_rate} writes/s",
            f"  account: committed {self.committed}, lost {self.lost}, unexpected "
            f"{self.unexpected}, failed (poison) {self.failed}, duplicates {self.duplicates} "
            f"({self.duplicates_from_restarts} from restarts), jobs not ended {self.unfinished_jobs}, "
            f"submit errors {self.submit_errors}",
        ]
        if self.server:
            out.append(
                "  fake Drive: "
                + ", ".join(f"{k} {v}" for k, v in sorted(self.server.items()) if v)
            )
        out.append(
            "  resource (worker life)   samples  1st-half median  2nd-half median  "
            "per hour  per 1,000 jobs"
        )
        for t in self.trends:
            per_k = "-" if t.per_1000_jobs is None else f"{t.per_1000_jobs:+.2f}"
            out.append(
                f"  {t.resource:<10} {t.worker}/{t.pid:<8} {t.samples:>7}  {t.first:>15.2f}  "
                f"{t.second:>15.2f}  {t.per_hour:>+8.2f}  {per_k:>14}"
            )
        out += [f"  problem: {p}" for p in self.problems[:20]]
        return out

    def longest_life(self) -> list[Trend]:
        """The trends of the worker life with the most samples after warm-up."""
        if not self.trends:
            return []
        best = max(self.trends, key=lambda t: t.samples)
        return [t for t in self.trends if (t.worker, t.pid) == (best.worker, best.pid)]


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over xs (0 when xs do not vary)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


def trends(samples: Sequence[Sample], warmup: float) -> list[Trend]:
    lives: dict[tuple[str, int], list[Sample]] = collections.defaultdict(list)
    for s in samples:
        if s.age >= warmup:
            lives[(s.worker, s.pid)].append(s)
    out = []
    for (worker, pid), ss in sorted(lives.items()):
        if len(ss) < 4:
            continue
        half = len(ss) // 2
        for res in RESOURCES:
            ys = [float(getattr(s, res)) for s in ss]
            ts = [s.t / 3600 for s in ss]
            js = [s.jobs / 1000 for s in ss]
            out.append(
                Trend(
                    worker,
                    pid,
                    res,
                    len(ss),
                    statistics.median(ys[:half]),
                    statistics.median(ys[half:]),
                    slope(ts, ys),
                    slope(js, ys) if js[-1] > js[0] else None,
                    statistics.fmean(ys),
                )
            )
    return out


def _tree_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def sample(proc: WorkerProc, workdir: Path, t: float, jobs: int) -> Sample | None:
    import psutil

    try:
        p = psutil.Process(proc.pid)
        with p.oneshot():
            rss = p.memory_info().rss
            fds = p.num_fds() if hasattr(p, "num_fds") else p.num_handles()
            threads = p.num_threads()
    except (psutil.Error, OSError):
        return None
    log = proc.log.stat().st_size if proc.log.exists() else 0
    return Sample(
        t,
        jobs,
        proc.worker_id,
        proc.pid,
        time.time() - proc.started,
        rss / 2**20,
        fds,
        threads,
        _tree_size(workdir) / 1024,
        log / 1024,
    )


class Soak:
    """Runs one soak on a cluster (a fake Drive store) and accounts for it."""

    def __init__(
        self,
        base: Path,
        settings: SoakSettings,
        *,
        progress: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.base = base
        self.s = settings
        self.progress = progress
        self.report = SoakReport(settings)
        self.jobs: list[tuple[Job, Path, str]] = []  # (job, sidefx folder, kind)
        self.cancelled: set[str] = set()
        self.restarted_pids: set[int] = set()
        self.workers: dict[str, WorkerProc] = {}

    def run(self) -> SoakReport:
        s, rep = self.s, self.report
        with Cluster("drive", self.base / "cluster", lease=s.lease, poll=s.poll) as cluster:
            cluster.fake.configure(
                fault_rate=s.fault_rate,
                lost_ack_rate=s.lost_ack_rate,
                write_rate=s.write_rate,
            )
            self.cluster = cluster
            for i in range(s.workers):
                self._start(f"w{i}")
            t0 = time.time()
            next_job = next_sample = t0
            next_restart = t0 + s.restart_every
            cancels: list[tuple[float, Job]] = []
            while (now := time.time()) < t0 + s.seconds:
                if now >= next_job:
                    next_job += s.job_every
                    job = self._submit(len(self.jobs) + rep.submit_errors)
                    if job is not None and len(self.jobs) % s.cancel_every == 0:
                        cancels.append((now + 1.5, job))
                for due, job in list(cancels):
                    if now >= due:
                        cancels.remove((due, job))
                        self._cancel(job)
                if now >= next_restart:
                    next_restart += s.restart_every
                    self._restart(f"w{s.workers - 1}", kill=rep.restarts % 2 == 0)
                if now >= next_sample:
                    next_sample += s.sample_every
                    self._sample(now - t0)
                time.sleep(0.05)
            for _due, job in cancels:
                self._cancel(job)
            self.progress(f"submitted {len(self.jobs)} jobs; draining")
            self._drain(t0)
            rep.elapsed = time.time() - t0
            for p in self.workers.values():
                if p.popen.poll() is None:
                    p.popen.send_signal(signal.SIGINT)
            for p in self.workers.values():
                with contextlib.suppress(Exception):
                    p.popen.wait(timeout=60)
            cluster.fake.configure(fault_rate=0.0, lost_ack_rate=0.0, write_rate=None)
            self._account()
            rep.server = {
                k: v
                for k, v in cluster.fake.stats().items()
                if k in ("requests", "fault_errors", "lost_acks", "rate_limited")
            }
        rep.trends = trends(rep.samples, s.warmup)
        return rep

    # -- parts --

    def _start(self, name: str) -> None:
        self.workers[name] = self.cluster.start(name, slots=self.s.slots)

    def _restart(self, name: str, *, kill: bool) -> None:
        proc = self.workers[name]
        self.restarted_pids.add(proc.pid)
        proc.popen.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.popen.wait(timeout=60)
        except Exception:
            proc.popen.kill()
            proc.popen.wait()
        self.report.restarts += 1
        self.progress(f"restarted {name} ({'kill -9' if kill else 'SIGTERM'})")
        self._start(name)

    def _submit(self, n: int) -> Job | None:
        s = self.s
        kind = "normal"
        poison: list[int] = []
        opts_bad = "fail=3"
        if n % s.fail_every == 3:
            kind, poison = "failing", [0]
        elif n % s.large_every == 5:
            kind, poison, opts_bad = "large", [0], f"sleep=0.05,out={s.large_bytes}"
        sidefx = self.base / "sidefx" / f"j{n}"
        sidefx.mkdir(parents=True, exist_ok=True)
        job_file = write_job(
            self.base / "jobs" / f"j{n}",
            sidefx,
            name=f"soak{n}",
            tasks=s.tasks_per_job,
            opts="sleep=0.05",
            poison=poison,
            poison_opts=opts_bad,
            reduce=True,
            max_attempts=2,
        )
        try:
            job = self.cluster.submit(job_file)
        except DrivemrError as exc:
            self.report.submit_errors += 1
            self.progress(f"submit failed (counted, not retried): {exc}")
            return None
        shutil.rmtree(self.base / "jobs" / f"j{n}", ignore_errors=True)
        self.jobs.append((job, sidefx, kind))
        self.report.jobs += 1
        self.report.tasks += len(job.tasks)
        return job

    def _cancel(self, job: Job) -> None:
        try:
            mark(self.cluster.store, job, "cancel", Trust.for_this_pc())
            self.report.cancelled += 1
            self.cancelled.add(job.id)
        except DrivemrError as exc:
            self.report.problems.append(f"could not cancel {job.id}: {exc}")

    def _sample(self, t: float) -> None:
        for proc in self.workers.values():
            got = sample(proc, self.cluster.workdir / proc.worker_id, t, self.report.jobs)
            if got is not None:
                self.report.samples.append(got)

    def _drain(self, t0: float) -> None:
        from drivemr.status import status_of

        deadline = time.time() + self.s.drain_seconds
        open_jobs = [j for j, _, _ in self.jobs if j.id not in self.cancelled]
        while open_jobs and time.time() < deadline:
            still = []
            for job in open_jobs:
                try:
                    state = status_of(self.cluster.store, job.id).state
                except DrivemrError:
                    still.append(job)
                    continue
                if state not in ("done", "failed", "cancelled"):
                    still.append(job)
            open_jobs = still
            if open_jobs:
                self._sample(time.time() - t0)
                time.sleep(1.0)
        self.report.unfinished_jobs = len(open_jobs)
        self.report.problems += [f"job {j.id} did not end" for j in open_jobs[:10]]

    def _account(self) -> None:
        rep, store = self.report, self.cluster.store
        for job, sidefx, kind in self.jobs:
            acc = account(store, job, sidefx)
            rep.unexpected += acc.unexpected
            rep.problems += [f"{job.id}: {p}" for p in acc.problems if "no result" not in p]
            rep.committed += acc.committed
            rep.failed += acc.failed
            if job.id not in self.cancelled:
                rep.lost += acc.lost
                rep.problems += [f"{job.id}: {p}" for p in acc.problems if "no result" in p]
            runs = executions(sidefx)
            per_task: dict[str, list[Any]] = collections.defaultdict(list)
            for e in runs:
                per_task[e.task].append(e)
            poison = {job.tasks[0].id} if kind == "failing" else set()
            for tid, es in per_task.items():
                es.sort(key=lambda e: e.start)
                # A failing task runs once per attempt: only same-attempt reruns count.
                extra = len(es) - (len({e.attempt for e in es}) if tid in poison else 1)
                if extra <= 0:
                    continue
                rep.duplicates += extra
                if any(e.worker_pid in self.restarted_pids for e in es[:-1]):
                    rep.duplicates_from_restarts += extra
                else:
                    rep.problems.append(
                        f"{job.id}/{tid}: {extra} duplicate execution(s) not explained by a restart"
                    )
