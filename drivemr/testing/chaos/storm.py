"""The storm experiment: in-process workers run a job while a share of the store's answers
fail (or are lost); every operation stays within its retry cap and the job still ends.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from dataclasses import dataclass
from typing import Any

from drivemr.testing.chaos.cluster import (
    Cluster,
    run_in_threads,
)
from drivemr.testing.chaos.faults import counting_drive_store_class, retrying_faulty_folder
from drivemr.testing.chaos.ledger import (
    Account,
    account,
    write_job,
)


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
