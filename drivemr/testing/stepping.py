"""Workers stepped in the test's own thread, over one store, on a :class:`ManualClock`.

``Worker.step()`` runs one loop iteration; these two helpers are the set-up every such test
needs: a worker configured for stepping (one-second polls, a short lease, no periodic full
re-listing to muddle what a step does) and a loop that steps several workers, moving the
clock a second per round, until every one of them has nothing left to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivemr.testing.clock import ManualClock

if TYPE_CHECKING:
    from drivemr.stores.base import Store
    from drivemr.trust import Trust
    from drivemr.worker import Worker

__all__ = ["step_until_done", "stepping_worker"]


def stepping_worker(
    store: Store,
    workdir: Path,
    worker_id: str,
    clock: Any,
    *,
    slots: int = 1,
    lease: float = 60.0,
    retry_backoff: float = 1.0,
    trust: Trust | None = None,
) -> Worker:
    """A worker for ``Worker.step()``: its working folder is ``workdir / worker_id``."""
    from drivemr.worker import Worker, WorkerConfig

    config = WorkerConfig(
        worker_id=worker_id,
        slots=slots,
        workdir=workdir / worker_id,
        lease=lease,
        poll_interval=1.0,
        retry_backoff=retry_backoff,
        reconcile_interval=3600.0,
    )
    return Worker(store, config, clock=clock, trust=trust)


def step_until_done(workers: Sequence[Worker], clock: ManualClock, rounds: int = 40) -> None:
    """Step every worker once per round, a second apart, until all are done; raise
    AssertionError after ``rounds`` rounds."""
    for _ in range(rounds):
        for w in workers:
            w.step()
        clock.now += 1.0
        if all(w.all_done() for w in workers):
            return
    raise AssertionError(f"not done after {rounds} rounds")
