#!/usr/bin/env python3
"""What a task costs on S3, and how fast trivial tasks go: the figures of docs/s3.md.

On a loopback S3 server (moto's server mode, behind drivemr's counting proxy), one job of N
trivial tasks (`true`) runs on W real `drivemr worker` processes of S slots each. Reported:

* S3 requests per task, by operation, and writes per task (every request of every worker
  process is counted by the proxy: claims, results, heartbeats, polling, listings);
* tasks per second, against the same job on a folder store in the same run (the baseline:
  the same workers with a store that costs no requests), as a ratio;
* the idle cost: requests per poll interval of a worker with nothing to do;
* with ``--drive``, the same job on the fake Google Drive with a 3 writes/s quota
  (``--write-rate 3``), for comparison (slow by design: that is the quota).

The default run takes well under a minute::

    python scripts/bench_s3.py                       # 120 tasks, 3 workers x 2 slots
    python scripts/bench_s3.py --tasks 300 --drive   # plus the Drive comparison
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from drivemr.testing.s3proxy import WRITE_OPS, S3Proxy  # noqa: E402
from drivemr.testing.s3server import LoopbackS3  # noqa: E402

DRIVEMR = [sys.executable, "-m", "drivemr.cli"]
BUCKET = "drivemr-bench"


def start_s3(env: dict[str, str]) -> tuple[LoopbackS3, S3Proxy]:
    server = LoopbackS3(BUCKET).start()
    assert server.proxy is not None
    env.update(server.env)
    os.environ.update(server.env)  # this process's boto3 clients (the ceiling probe)
    return server, server.proxy


def cli(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([*DRIVEMR, *args], env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"drivemr {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout.strip().splitlines()[-1]


def run_workers(
    url: str, env: dict[str, str], base: Path, args: argparse.Namespace, *extra: str
) -> float:
    """W worker processes on the store, timed until every one has exited when idle."""
    base.mkdir()
    procs = []
    started = time.perf_counter()
    for w in range(args.workers):
        log = open(base / f"worker{w}.log", "w")  # noqa: SIM115 - closed below
        cmd = [
            *DRIVEMR, "worker", "--store", url, "--slots", str(args.slots), "--exit-when-idle",
            "--worker-id", f"pc{w}", "--workdir", str(base / f"work{w}"),
            "--poll-interval", str(args.poll), "--lease", str(args.lease), *extra,
        ]  # fmt: skip
        procs.append((subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log), log))
    try:
        for proc, log in procs:
            code = proc.wait()
            log.close()
            if code:
                tail = Path(log.name).read_text(errors="replace")[-3000:]
                raise SystemExit(f"a worker exited with {code}; its log ends:\n{tail}")
    finally:  # never leave a worker behind (its store is about to go away)
        for proc, log in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    return time.perf_counter() - started


def check_done(url: str, env: dict[str, str], job_id: str, n: int) -> int:
    """A fast run that did not do the work would be a lie: every item done (``n`` of
    them). Returns the number of tasks (items packed several to a task count once)."""
    proc = subprocess.run(
        [*DRIVEMR, "status", job_id, "--store", url, "--json"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    counts = json.loads(proc.stdout)["counts"]
    if counts["done"] != n:
        raise SystemExit(f"only {counts} of {n} items done on {url}")
    from drivemr.protocol import find_job
    from drivemr.stores import open_store

    with open_store(url) as store:
        return len(find_job(store, job_id)[1].tasks)


def idle_cost(url: str, env: dict[str, str], base: Path, proxy: S3Proxy, args: Any) -> float:
    """Requests per poll interval of one worker with nothing to do (after its start-up)."""
    proc = subprocess.Popen(
        [
            *DRIVEMR, "worker", "--store", url, "--slots", "1", "--worker-id", "idle",
            "--workdir", str(base / "idle"), "--poll-interval", str(args.poll),
            "--lease", str(args.lease),
        ],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(2.0)  # start-up: heartbeat, first listings
        proxy.reset()
        time.sleep(args.idle_seconds)
        requests = proxy.total()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
    return requests / (args.idle_seconds / args.poll)


def server_ceiling(seconds: float, threads: int) -> float:
    """Conditional PUTs per second the loopback server answers to ``threads`` clients at
    once: the store's own ceiling in this run (moto is Python; real S3 is not the limit)."""
    import threading

    import boto3

    counts = [0] * threads
    start = threading.Barrier(threads + 1)
    stop = threading.Event()

    def client(n: int) -> None:
        s3 = boto3.session.Session().client("s3")
        start.wait()
        while not stop.is_set():
            s3.put_object(Bucket=BUCKET, Key=f"ceiling/{n}/{counts[n]}", Body=b"x", IfNoneMatch="*")
            counts[n] += 1

    pool = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    return sum(counts) / (time.perf_counter() - began)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=120)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--poll", type=float, default=0.5, help="worker poll interval (default)")
    ap.add_argument("--lease", type=float, default=30.0)
    ap.add_argument("--idle-seconds", type=float, default=5.0)
    ap.add_argument(
        "--items-per-task",
        type=int,
        default=1,
        help="items packed per task (default 1: the per-task figures; 0: drivemr's packing)",
    )
    ap.add_argument("--drive", action="store_true", help="also run the job on the fake Drive")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="drivemr-bench-s3-") as tmp:
        base = Path(tmp)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
        env["DRIVEMR_CONFIG_DIR"] = str(base / "config")
        (base / "config").mkdir(mode=0o700)
        server, proxy = start_s3(env)
        job = base / "job.toml"
        packing = f"items_per_task = {args.items_per_task}\n" if args.items_per_task else ""
        job.write_text(
            f'name = "bench"\n[map]\ncommand = ["true"]\nitems = {{range = [0, {args.tasks}]}}\n'
            + packing
        )
        figures: dict[str, Any] = {
            "tasks": args.tasks,
            "workers": args.workers,
            "slots": args.slots,
            "items_per_task": args.items_per_task or "packed",
        }
        try:
            folder_url = cli(env, "init", "--store", str(base / "folder-store"))
            job_id = cli(env, "submit", "--store", folder_url, str(job))
            t_folder = run_workers(folder_url, env, base / "folder", args)
            check_done(folder_url, env, job_id, args.tasks)

            s3_url = cli(env, "init", "--store", f"s3://{BUCKET}/bench")
            proxy.reset()
            job_id = cli(env, "submit", "--store", s3_url, str(job))
            figures["submit_requests"] = proxy.total()
            proxy.reset()
            t_s3 = run_workers(s3_url, env, base / "s3", args)
            counts = dict(proxy.counts)
            requests = sum(counts.values())
            writes = sum(n for op, n in counts.items() if op in WRITE_OPS)
            tasks = check_done(s3_url, env, job_id, args.tasks)
            figures.update(
                job_tasks=tasks,
                folder_seconds=round(t_folder, 2),
                s3_seconds=round(t_s3, 2),
                folder_tasks_per_s=round(args.tasks / t_folder, 1),
                s3_tasks_per_s=round(args.tasks / t_s3, 1),
                s3_vs_folder_speed=round(t_folder / t_s3, 2),
                requests_per_task=round(requests / tasks, 2),
                writes_per_task=round(writes / tasks, 2),
                requests_per_item=round(requests / args.tasks, 2),
                writes_per_item=round(writes / args.tasks, 2),
                by_operation=counts,
            )
            figures["s3_requests_per_s"] = round(requests / t_s3, 1)
            figures["server_ceiling_per_s"] = round(
                server_ceiling(2.0, args.workers * args.slots), 1
            )
            figures["idle_requests_per_poll"] = round(
                idle_cost(f"s3://{BUCKET}/idle", env, base, proxy, args), 2
            )
            if args.drive:
                figures.update(drive_figures(env, job, base, args))
        finally:
            server.stop()
    if args.json:
        print(json.dumps(figures, indent=2, sort_keys=True))
    else:
        report(figures)
    return 0


def drive_figures(env: dict[str, str], job: Path, base: Path, args: Any) -> dict[str, Any]:
    from drivemr.testing.fakedrive import FakeDriveServer

    fake = FakeDriveServer(port=0, write_rate=3.0).start()
    try:
        denv = {**env, "DRIVEMR_DRIVE_ENDPOINT": fake.url}
        url = cli(denv, "init", "--store", "drive://")
        job_id = cli(denv, "submit", "--store", url, str(job))
        seconds = run_workers(url, denv, base / "drive", args, "--write-rate", "3")
        check_done(url, denv, job_id, args.tasks)
    finally:
        fake.stop()
    return {"drive_seconds": round(seconds, 1), "drive_tasks_per_s": round(args.tasks / seconds, 2)}


def report(f: dict[str, Any]) -> None:
    print(
        f"{f['tasks']} trivial items in {f['job_tasks']} tasks ({f['items_per_task']} items per "
        f"task), {f['workers']} worker processes x {f['slots']} slots"
    )
    print(
        f"  folder store (baseline) {f['folder_seconds']:7.2f} s  {f['folder_tasks_per_s']:6.1f} tasks/s"
    )
    print(f"  S3 (moto, loopback)     {f['s3_seconds']:7.2f} s  {f['s3_tasks_per_s']:6.1f} tasks/s  "
          f"({f['s3_vs_folder_speed']:.2f}x the folder store's speed)")  # fmt: skip
    if "drive_seconds" in f:
        print(
            f"  fake Drive, 3 writes/s  {f['drive_seconds']:7.1f} s  {f['drive_tasks_per_s']:6.2f} tasks/s"
        )
    print(f"  S3 requests per task {f['requests_per_task']} (writes {f['writes_per_task']}); "
          f"submit {f['submit_requests']} requests")  # fmt: skip
    if f["job_tasks"] != f["tasks"]:
        print(f"  S3 requests per item {f['requests_per_item']} (writes {f['writes_per_item']})")
    print(
        f"  S3 requests answered: {f['s3_requests_per_s']}/s during the run; the loopback "
        f"server's ceiling: {f['server_ceiling_per_s']} conditional PUTs/s "
        f"({f['workers'] * f['slots']} clients)"
    )
    print("  by operation: " + ", ".join(f"{k} {v}" for k, v in sorted(f["by_operation"].items())))
    print(f"  idle worker: {f['idle_requests_per_poll']} requests per poll interval")


if __name__ == "__main__":
    sys.exit(main())
