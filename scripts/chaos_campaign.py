#!/usr/bin/env python3
"""The fault-injection campaign: break real drivemr workers, drain, and account for every task.

Runs three experiments on the folder store and on the fake Google Drive (``--store s3``: on
a loopback S3 server) and prints, for each, the account of the job: tasks attempted,
committed, lost, unexpected, duplicated, and the reclaim latency (time from a worker's death
to another attempt's claim):

* ``kill``   kill -9 one of 4 worker processes over and over during a job (restarting it
             each time: every other restart keeps the worker id, like a service manager
             would; the others come back under a new id, like a fresh `drivemr worker`);
* ``stop``   SIGSTOP a worker and its running tasks past the lease, then SIGCONT them (a
             PC that slept): the stale worker must kill its attempts and commit nothing;
* ``storm``  30% of the fake Drive's answers are 500/503/429 (on S3: the proxy answers
             500/503/409 or loses the answer; on the folder store: 30% of
             the file-system calls under the store's retry layer fail with EIO): the job
             completes, and no operation makes more attempts than the store's cap.

Usage (a few minutes with the defaults; the figures in README.md#guarantees come from the
larger run)::

    python scripts/chaos_campaign.py
    python scripts/chaos_campaign.py --tasks 1000 --kills 20 --stops 5 --storm-tasks 300

Side effects are measured outside drivemr: each execution of a task writes one file
``<task>.a<attempt>.p<pid>.w<worker pid>`` holding ``task attempt pid start end`` into a
shared folder (``end`` missing when the execution never finished), so duplicates are counted
from what really ran, not from what drivemr says it ran.

The machinery (the chaos task, the cluster, the fault-injecting stores, the experiments)
lives in :mod:`drivemr.testing.chaos`, which tests/chaos uses too; this script only runs the
experiments and prints their figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from drivemr.testing.chaos import (
    Account,
    Cluster,
    kill_campaign,
    percentile,
    stop_campaign,
    storm_campaign,
)

# --------------------------------------------------------------------------- the script


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--store", choices=["folder", "drive", "s3", "both"], default="both")
    ap.add_argument("--items", default="kill,stop,storm", help="comma-separated: kill, stop, storm")
    ap.add_argument("--tasks", type=int, default=200, help="tasks of the kill -9 job (200)")
    ap.add_argument("--kills", type=int, default=10, help="kill -9 count (10)")
    ap.add_argument(
        "--task-seconds", type=float, default=0.4, help="duration of one task of the kill -9 job"
    )
    ap.add_argument("--stops", type=int, default=2, help="SIGSTOP/SIGCONT cycles (2)")
    ap.add_argument("--storm-tasks", type=int, default=60, help="tasks of the storm job (60)")
    ap.add_argument("--fault-rate", type=float, default=0.3)
    ap.add_argument("--lease", type=float, default=3.0)
    ap.add_argument("--poll", type=float, default=0.2)
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = ap.parse_args(argv)
    kinds = ["folder", "drive"] if args.store == "both" else [args.store]
    items = [i.strip() for i in args.items.split(",") if i.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="drivemr-chaos-"))
    os.environ["DRIVEMR_CONFIG_DIR"] = str(tmp / "config")  # never the user's keys
    (tmp / "config").mkdir(mode=0o700)
    import logging  # the in-process workers (storm) log here; worker processes next to their folders

    logging.basicConfig(
        filename=tmp / "campaign.log",
        level=logging.INFO,
        format="%(asctime)s %(threadName)s %(message)s",
    )
    figures: list[dict[str, Any]] = []
    ok = True
    say = lambda s: print(s, flush=True)  # noqa: E731
    try:
        for kind in kinds:
            if "kill" in items:
                with Cluster(kind, tmp / f"{kind}-kill", lease=args.lease, poll=args.poll) as c:
                    r = kill_campaign(
                        c, tasks=args.tasks, kills=args.kills, task_seconds=args.task_seconds
                    )
                for line in r.lines():
                    say(line)
                good = (
                    r.account.lost == 0
                    and r.account.unexpected == 0
                    and r.account.committed == r.account.tasks
                    and r.account.duplicated <= len(r.kills) + r.lapsed_claims
                    and not r.unexplained_takeovers
                    and all(x <= r.bound for x in r.latencies)
                )
                ok &= good
                figures.append(
                    {
                        "item": "kill",
                        "store": kind,
                        "kills": len(r.kills),
                        "lease": r.lease,
                        "poll": r.poll,
                        **_acc(r.account),
                        "orphaned_claims": r.orphaned_claims,
                        "lapsed_claims": r.lapsed_claims,
                        "reclaim_p50": percentile(r.latencies, 0.5),
                        "reclaim_p95": percentile(r.latencies, 0.95),
                        "reclaim_max": max(r.latencies, default=float("nan")),
                        "seconds": r.elapsed,
                        "ok": good,
                    }
                )
            if "stop" in items:
                with Cluster(kind, tmp / f"{kind}-stop", lease=args.lease, poll=args.poll) as c:
                    s = stop_campaign(c, stops=args.stops, tasks=60 * args.stops)
                for line in s.lines():
                    say(line)
                good = (
                    s.account.lost == 0
                    and s.account.unexpected == 0
                    and s.stale_results == 0
                    and s.stale_killed == s.stale_targets
                )
                ok &= good
                figures.append(
                    {
                        "item": "stop",
                        "store": kind,
                        "stops": s.stops,
                        **_acc(s.account),
                        "stale_results": s.stale_results,
                        "stale_killed": s.stale_killed,
                        "ok": good,
                    }
                )
            if "storm" in items:
                with Cluster(kind, tmp / f"{kind}-storm", lease=args.lease, poll=args.poll) as c:
                    m = storm_campaign(c, tasks=args.storm_tasks, fault_rate=args.fault_rate)
                for line in m.lines():
                    say(line)
                good = (
                    m.job_state == "done" and m.account.lost == 0 and m.max_attempts_seen <= m.cap
                )
                ok &= good
                figures.append(
                    {
                        "item": "storm",
                        "store": kind,
                        "fault_rate": m.fault_rate,
                        **_acc(m.account),
                        "ops": m.ops,
                        "attempts": m.attempts,
                        "server_requests": m.server_requests,
                        "max_attempts": m.max_attempts_seen,
                        "cap": m.cap,
                        "ok": good,
                    }
                )
    finally:
        if args.keep:
            say(f"kept {tmp}")
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1), encoding="utf-8")
    say("campaign: " + ("every guarantee held" if ok else "A GUARANTEE WAS BROKEN"))
    return 0 if ok else 1


def _acc(a: Account) -> dict[str, Any]:
    return {
        "tasks": a.tasks,
        "attempted": a.attempted,
        "executions": a.executions,
        "committed": a.committed,
        "lost": a.lost,
        "unexpected": a.unexpected,
        "duplicated": a.duplicated,
    }


if __name__ == "__main__":
    sys.exit(main())
