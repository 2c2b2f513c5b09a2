"""The fault-injection campaign's machinery (issue 5): break real drivemr workers, drain,
and account for every task. ``scripts/chaos_campaign.py`` prints the figures of the README
with it; ``tests/chaos`` asserts the guarantees with it.

* :mod:`.ledger`    the chaos task, its side-effect record, and the account of a job;
* :mod:`.cluster`   a store with worker processes (or in-process workers) on it;
* :mod:`.faults`    fault-injecting and attempt-counting stores;
* :mod:`.kill`      the kill -9 experiment;
* :mod:`.stop`      the SIGSTOP-past-the-lease experiment;
* :mod:`.storm`     the storm-of-errors experiment.

Nothing here has state of its own besides the temporary folders it is given.
"""

from __future__ import annotations

from drivemr.testing.chaos.cluster import (
    Cluster,
    WorkerProc,
    alive,
    captured_logs,
    exit_codes,
    run_in_threads,
    worker_logs,
)
from drivemr.testing.chaos.faults import (
    CountingRetryingStore,
    FaultyStore,
    counting_drive_store_class,
    retrying_faulty_folder,
)
from drivemr.testing.chaos.kill import Kill, KillReport, kill_campaign
from drivemr.testing.chaos.ledger import (
    REDUCE_PY,
    TASK_PY,
    Account,
    Execution,
    account,
    claims_of,
    executions,
    other_takeovers,
    percentile,
    reap,
    reduce_runs,
    write_job,
)
from drivemr.testing.chaos.stop import StopReport, stop_campaign
from drivemr.testing.chaos.storm import StormReport, storm_campaign
from drivemr.testing.wait import wait_for

__all__ = [
    "REDUCE_PY",
    "TASK_PY",
    "Account",
    "Cluster",
    "CountingRetryingStore",
    "Execution",
    "FaultyStore",
    "Kill",
    "KillReport",
    "StopReport",
    "StormReport",
    "WorkerProc",
    "account",
    "alive",
    "captured_logs",
    "claims_of",
    "counting_drive_store_class",
    "executions",
    "exit_codes",
    "kill_campaign",
    "other_takeovers",
    "percentile",
    "reap",
    "reduce_runs",
    "retrying_faulty_folder",
    "run_in_threads",
    "stop_campaign",
    "storm_campaign",
    "wait_for",
    "worker_logs",
    "write_job",
]
