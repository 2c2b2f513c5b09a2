"""The worker: claims tasks, runs them in slots, commits their results.

One module per part of the README's "How it works": ``liveness`` (Lease), ``watch``
(Watching for work; how jobs end is in ``ends``), ``plan`` and ``claim`` (Claim),
``slot`` (running an attempt), ``commit`` (Commit), wired by ``daemon``. Follow one task
through claim.py, slot.py and commit.py, in that order.
"""

from drivemr.worker.config import Clock, JobVerifier, SystemClock, WorkerConfig
from drivemr.worker.daemon import Worker
from drivemr.worker.state import ActiveJob, Assignment

__all__ = [
    "ActiveJob",
    "Assignment",
    "Clock",
    "JobVerifier",
    "SystemClock",
    "Worker",
    "WorkerConfig",
]
