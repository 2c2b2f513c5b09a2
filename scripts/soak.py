#!/usr/bin/env python3
"""The soak (issue 16.3): run one to three real workers for a given time against the fake
Drive with faults on, and report whether anything grows.

A stream of small jobs is submitted continuously (a few cancelled, a few with a failing
task, a few with a large output); the last worker is restarted every few minutes
(alternately kill -9 and SIGTERM); every worker's RSS, open file descriptors, threads,
working folder size and log size are sampled every few seconds (psutil). The report gives,
per worker life after a warm-up, the medians of the first and second half of the samples
and the least-squares slope per hour and per 1,000 jobs, then the account of every task
(committed once, none lost; duplicates only from the restarts).

Usage::

    python scripts/soak.py --minutes 30 --workers 2
    python scripts/soak.py --minutes 3 --json soak.json

The machinery lives in :mod:`drivemr.testing.soak` (tests/chaos/test_soak.py runs an
80-second version of it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=2, choices=(1, 2, 3))
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--job-every", type=float, default=3.0, help="seconds between jobs")
    parser.add_argument("--tasks-per-job", type=int, default=4)
    parser.add_argument("--restart-every", type=float, default=180.0, help="seconds")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds")
    parser.add_argument("--warmup", type=float, default=120.0, help="seconds")
    parser.add_argument("--fault-rate", type=float, default=0.02)
    parser.add_argument("--lost-ack-rate", type=float, default=0.02)
    parser.add_argument("--write-rate", type=float, default=30.0, help="writes/s quota")
    parser.add_argument("--json", type=Path, help="write the report and samples here")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args(argv)

    from drivemr.testing.soak import Soak, SoakSettings

    settings = SoakSettings(
        seconds=args.minutes * 60,
        workers=args.workers,
        slots=args.slots,
        job_every=args.job_every,
        tasks_per_job=args.tasks_per_job,
        restart_every=args.restart_every,
        sample_every=args.sample_every,
        warmup=args.warmup,
        fault_rate=args.fault_rate,
        lost_ack_rate=args.lost_ack_rate,
        write_rate=args.write_rate or None,
    )
    with tempfile.TemporaryDirectory(prefix="drivemr-soak-") as tmp:
        base = args.keep or Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        os.environ["DRIVEMR_CONFIG_DIR"] = str(base / "config")  # the signing key lives here
        t0 = time.time()

        def progress(line: str) -> None:
            print(f"[{time.time() - t0:7.1f} s] {line}", flush=True)

        report = Soak(base, settings, progress=progress).run()
    for line in report.lines():
        print(line)
    if args.json:
        doc = dataclasses.asdict(report)
        args.json.write_text(json.dumps(doc, indent=1, default=str), encoding="utf-8")
    ok = report.lost == 0 and report.unexpected == 0 and report.unfinished_jobs == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
