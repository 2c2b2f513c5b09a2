#!/usr/bin/env python3
"""Issue 14's figure: how soon idle workers on a shared-drive root notice work.

A shared drive on the fake Drive server with three member accounts (alice organizes, bob
and carol are writers); ``drivemr init --shared-drive`` as alice; three ``drivemr worker``
processes, one per account, with the default Drive poll interval (5 s) and re-listing
interval (2 minutes). Once all three are idle (polling the drive's change log), alice
submits a small word-count job (--tasks map tasks and a reduce). Measured on the store's
own timestamps (the fake's clock is this PC's):

* **submit -> first claim**: job.json published -> the first claim created;
* **last result -> reduce**: the last map result -> the reduce's claim.

Both are reported as a ratio to the poll interval (target: about 1, never the 24x of the
2-minute re-listing), and against a baseline measured in the same run: one account's My
Drive root (the user's change log). The fake answers every request at once, so the
figures are the protocol's latency, not Google's.

    python scripts/shared_drive_latency.py [--tasks 6] [--runs 3] [--minted-ids anyone]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from drivemr.protocol import REDUCE, find_job, parse_claim_name, parse_slot_result_name
from drivemr.stores.drive import DriveStore
from drivemr.testing.fakedrive import FakeDriveServer

ACCOUNTS = ("alice", "bob", "carol")
JOB = """
name = "wc"
[map]
command = ["python", "-c", "import sys; print(len(sys.argv[1]))", "{item}"]
items = [ITEMS]
[reduce]
command = ["python", "-c", "print('reduced')"]
"""


def cli(*args: str, env: dict[str, str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "drivemr.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        **kw,
    )


def one_run(
    tmp: Path, tasks: int, minted_ids: str, poll: float, my_drive: bool = False
) -> tuple[float, float]:
    srv = FakeDriveServer(port=0, minted_ids=minted_ids).start()
    procs: list[subprocess.Popen[str]] = []
    try:
        base = {
            **os.environ,
            "DRIVEMR_DRIVE_ENDPOINT": srv.url,
            "DRIVEMR_CONFIG_DIR": str(tmp / "config"),
            "PYTHONUNBUFFERED": "1",
        }
        base.pop("DRIVEMR_RECONCILE_INTERVAL", None)
        base.pop("DRIVEMR_POLL_INTERVAL", None)
        # The baseline: one account's My Drive (the user's change log), as before shared drives.
        env = {a: {**base, "DRIVEMR_DRIVE_TOKEN": "alice" if my_drive else a} for a in ACCOUNTS}
        where: list[str] = []
        if not my_drive:
            drive_id = srv.create_drive(
                "team", organizer="alice", members={"bob": "writer", "carol": "writer"}
            )
            where = ["--shared-drive", drive_id]
        root = cli("init", "--store", "drive://", *where, env=env["alice"]).stdout.split()[-1]
        for account in ACCOUNTS:
            log = open(tmp / f"{account}.log", "w", encoding="utf-8")  # noqa: SIM115
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "drivemr.cli",
                        "worker",
                        "--store",
                        root,
                        "--slots",
                        "2",
                        "--poll-interval",
                        str(poll),
                        "--workdir",
                        str(tmp / f"work-{account}"),
                    ],
                    env=env[account],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
            log.close()
        # Idle: every worker has read the drive's change log at least twice.
        srv.reset_stats()
        deadline = time.monotonic() + 120
        while srv.stats()["by_endpoint"].get("changes.list", 0) < 2 * len(ACCOUNTS):
            if time.monotonic() > deadline:
                raise SystemExit("the workers never polled the change feed")
            time.sleep(0.2)
        job_dir = tmp / "job"
        job_dir.mkdir(exist_ok=True)
        items = ", ".join(json.dumps(f"item-{n}") for n in range(tasks))
        (job_dir / "job.toml").write_text(JOB.replace("ITEMS", items), encoding="utf-8")
        job_id = cli("submit", "--store", root, str(job_dir / "job.toml"), env=env["alice"])
        job_id_s = job_id.stdout.split()[-1]
        os.environ["DRIVEMR_DRIVE_ENDPOINT"] = srv.url
        os.environ["DRIVEMR_DRIVE_TOKEN"] = "alice"
        with DriveStore.from_url(root, write_rate=None) as store:
            folder, job = find_job(store, job_id_s)
            deadline = time.monotonic() + 600
            while True:
                results = [  # (task, file): names say which task's slot a result is
                    (parsed[0], info)
                    for info in store.list(job.folders["results"])
                    if (parsed := parse_slot_result_name(info.name)) is not None
                ]
                if any(task == REDUCE for task, _info in results):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit("the job did not finish in 10 minutes")
                time.sleep(0.5)
            published = next(e for e in store.list(folder.id) if e.name == "job.json").created
            claims = store.list(job.folders["claims"])
            parsed = [(parse_claim_name(c.name), c) for c in claims]
            first_claim = min(c.created for p, c in parsed if p and p[0] != REDUCE)
            reduce_claim = min(c.created for p, c in parsed if p and p[0] == REDUCE)
            last_result = max(info.created for task, info in results if task != REDUCE)
        return first_claim - published, reduce_claim - last_result
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        srv.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=6)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--poll", type=float, default=5.0, help="worker poll interval (default 5)")
    ap.add_argument("--minted-ids", default="anyone", choices=("anyone", "account"))
    args = ap.parse_args()
    if args.minted_ids == "account":
        print("note: under --minted-ids account, bob's and carol's workers refuse to start")
    medians: dict[str, dict[str, float]] = {}
    for setup in ("my-drive", "shared-drive"):
        firsts, reduces = [], []
        for n in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="drivemr-latency-") as tmp:
                first, reduce_ = one_run(
                    Path(tmp), args.tasks, args.minted_ids, args.poll, setup == "my-drive"
                )
            firsts.append(first)
            reduces.append(reduce_)
            print(
                f"{setup} run {n + 1}: submit -> first claim {first:.2f} s, "
                f"last result -> reduce {reduce_:.2f} s"
            )
        medians[setup] = {}
        for label, values in (
            ("submit -> first claim", firsts),
            ("last result -> reduce", reduces),
        ):
            med = medians[setup][label] = statistics.median(values)
            print(
                f"{setup}: {label}: median {med:.2f} s, max {max(values):.2f} s = "
                f"{med / args.poll:.2f} x the poll interval ({args.poll:g} s); "
                f"the re-listing would be {120 / args.poll:.0f} x"
            )
    for label in ("submit -> first claim", "last result -> reduce"):
        base = medians["my-drive"][label]
        ratio = medians["shared-drive"][label] / base if base > 0 else float("inf")
        print(f"shared drive / My Drive baseline, {label}: {ratio:.2f}")


if __name__ == "__main__":
    main()
