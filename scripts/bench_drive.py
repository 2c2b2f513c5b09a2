#!/usr/bin/env python3
"""Figures of issue 4: what a job costs on Google Drive, measured on the fake Drive server.

A job of --tasks trivial map tasks (each writes one small output, which rides inside its
result) and a trivial reduce is submitted with the CLI, then run by --workers `drivemr
worker` processes (each its own Drive client, --slots slots) with the defaults a user gets
on Drive (poll interval, lease, reconcile interval). Everything is counted on the fake
(``GET /_fake/stats``), so every request of every process is included.

Two runs:

* **cost**: the fake has no write quota. Drive writes per task (claims, results,
  heartbeats, markers, logs: every files.create/update/delete during the run, divided by
  the number of map tasks; target <= 2.1) and API calls per task, polling included
  (target <= 4). The submit's own writes are reported separately.
* **quota**: the fake refuses writes beyond --write-rate per second for the account (403
  ``userRateLimitExceeded``, as Drive does) and every worker paces its writes to
  --write-rate. Throughput as a share of the quota's bound: tasks/s divided by
  (write rate / writes per task), target >= 85%; and failed requests surfacing to the
  user (worker log lines at WARNING or ERROR), target 0.

    python scripts/bench_drive.py                # both runs, 200 tasks, 3 workers
    python scripts/bench_drive.py --runs cost    # just the cheap one
    python scripts/bench_drive.py --check        # exit status 1 if a target is missed

This is a benchmark, not a test. The throughput run takes about
tasks * writes-per-task / write-rate seconds (about 2.5 minutes with the defaults).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivemr.testing.fakedrive import FakeDriveServer

DRIVEMR = [sys.executable, "-m", "drivemr.cli"]

JOB = """\
name = "bench"
[map]
command = ["python", "-c", "open('out.txt', 'w').write(str({{item}}))"]
items = {{range = [0, {tasks}]}}
outputs = ["out.txt"]
"""

REDUCE_STAGE = """\
[reduce]
command = ["python", "-c", "import os, sys; print(len(os.listdir(sys.argv[1])))", "{results}"]
"""

TARGETS = {
    "writes_per_task": 2.1,
    "calls_per_task": 4.0,
    "quota_share": 0.85,
    "surfaced_failures": 0,
}

READ_NAMES = {
    "files.list": " (by-parent listings)",
    "files.get": " (metadata and content; a reduce reads every result)",
    "changes.list": " (polling)",
    "changes.getStartPageToken": "",
    "files.generateIds": "",
}

_SURFACED = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|Traceback")


@dataclass
class Run:
    name: str
    tasks: int
    submit_writes: int = 0
    submit_calls: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    elapsed: float = 0.0
    """Workers started -> last map result created (the server's timestamps)."""
    wall: float = 0.0
    """Workers started -> every worker exited."""
    surfaced: list[str] = field(default_factory=list)
    exit_codes: dict[str, int] = field(default_factory=dict)

    @property
    def write_calls(self) -> int:
        return int(self.stats["writes"])

    @property
    def accepted_writes(self) -> int:
        """Write calls minus those the quota refused (a refusal changes nothing)."""
        return int(self.stats["writes"]) - int(self.stats["rate_limited"])

    @property
    def writes_per_task(self) -> float:
        return self.accepted_writes / self.tasks

    @property
    def calls_per_task(self) -> float:
        return int(self.stats["calls"]) / self.tasks

    @property
    def throughput(self) -> float:
        return self.tasks / self.elapsed if self.elapsed > 0 else 0.0


def _cli(env: dict[str, str], *args: str, timeout: float = 600) -> str:
    proc = subprocess.run(
        [*DRIVEMR, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise SystemExit(f"drivemr {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc.stdout


def run_once(name: str, args: argparse.Namespace, base: Path, quota: bool) -> Run:
    from drivemr.stores.drive import DriveStore

    folder = base / name
    folder.mkdir()
    text = JOB.format(tasks=args.tasks) + ("" if args.no_reduce else REDUCE_STAGE)
    (folder / "job.toml").write_text(text, encoding="utf-8")
    run = Run(name, args.tasks)
    with FakeDriveServer(port=0, latency_ms=args.latency_ms) as srv:
        env = dict(os.environ)
        env["DRIVEMR_DRIVE_ENDPOINT"] = srv.url
        env["DRIVEMR_CONFIG_DIR"] = str(base / "config")
        env.pop("DRIVEMR_STORE", None)
        root = _cli(env, "init", "--store", "drive://").strip().splitlines()[-1]
        # The submit is paced like any client; it is not part of the run's figures.
        srv.reset_stats()
        job_id = _cli(env, "submit", "--store", root, str(folder / "job.toml")).strip()
        job_id = job_id.splitlines()[-1]
        st = srv.stats()
        run.submit_writes, run.submit_calls = int(st["writes"]), int(st["calls"])
        if quota:
            srv.configure(write_rate=args.write_rate)
        srv.reset_stats()
        procs: dict[str, subprocess.Popen[str]] = {}
        logs: dict[str, Path] = {}
        started = time.time()
        for n in range(args.workers):
            wid = f"bench{n}"
            logs[wid] = folder / f"{wid}.log"
            extra = []
            if args.poll_interval is not None:
                extra += ["--poll-interval", str(args.poll_interval)]
            if args.lease is not None:
                extra += ["--lease", str(args.lease)]
            with open(logs[wid], "w", encoding="utf-8") as fh:
                procs[wid] = subprocess.Popen(
                    [
                        *DRIVEMR,
                        "worker",
                        "--store",
                        root,
                        "--slots",
                        str(args.slots),
                        "--worker-id",
                        wid,
                        "--workdir",
                        str(folder / wid),
                        "--write-rate",
                        str(args.write_rate),
                        "--exit-when-idle",
                        *extra,
                    ],
                    env=env,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
        try:
            for wid, proc in procs.items():
                run.exit_codes[wid] = proc.wait(timeout=args.timeout)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        run.wall = time.time() - started
        run.stats = srv.stats()
        srv.configure(write_rate=None)
        for wid, path in logs.items():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                if _SURFACED.search(line):
                    run.surfaced.append(f"{wid}: {line}")
        # Timing from the server's timestamps (read after the figures were taken).
        from drivemr.protocol import REDUCE, find_job, load_view

        with DriveStore.from_url(root, write_rate=None, endpoint=srv.url) as store:
            _, job = find_job(store, job_id)
            view = load_view(store, job)
        maps = [r for t, r in view.results.items() if t != REDUCE]
        if len(maps) != args.tasks or any(r.state != "done" for r in maps):
            raise SystemExit(f"{name}: the job did not complete: {len(maps)} map results")
        if not args.no_reduce and REDUCE not in view.results:
            raise SystemExit(f"{name}: the reduce did not run")
        run.elapsed = max(r.file.created for r in maps) - started
    return run


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(runs: dict[str, Run], args: argparse.Namespace) -> bool:
    ok_all = True
    print()
    print(
        f"drivemr on the fake Drive: {args.tasks} trivial map tasks"
        f"{'' if args.no_reduce else ' + a reduce'}, "
        f"{args.workers} workers x {args.slots} slots, --write-rate {args.write_rate}"
    )
    rows: list[tuple[str, str, str, str]] = []

    def row(label: str, value: str, target: str = "", verdict: str = "") -> None:
        rows.append((label, value, target, verdict))

    any_run = next(iter(runs.values()))
    row("submit: writes / calls (whole job)", f"{any_run.submit_writes} / {any_run.submit_calls}")
    for name, run in runs.items():
        s = run.stats
        ends = s["by_endpoint"]
        row(f"[{name}] wall time (workers start -> all exited)", f"{run.wall:.1f} s")
        row(
            f"[{name}] writes accepted / write calls",
            f"{run.accepted_writes} / {run.write_calls}",
        )
        row(
            f"[{name}]   files.create / update / delete",
            f"{ends.get('files.create', 0)} / {ends.get('files.update', 0)}"
            f" / {ends.get('files.delete', 0)}",
        )
        row(
            f"[{name}]   refused by the quota / 409 collisions",
            f"{s['rate_limited']} / {s['by_status'].get('409', 0)}",
        )
        row(f"[{name}] reads", str(s["reads"]))
        for k, v in sorted(ends.items()):
            if k in READ_NAMES:
                row(f"[{name}]   {k}{READ_NAMES[k]}", str(v))
        if name == "cost":
            ok = run.writes_per_task <= TARGETS["writes_per_task"]
            ok_all &= ok
            row(
                f"[{name}] Drive writes per task",
                f"{run.writes_per_task:.3f}",
                "<= 2.1",
                _verdict(ok),
            )
            ok = run.calls_per_task <= TARGETS["calls_per_task"]
            ok_all &= ok
            row(
                f"[{name}] API calls per task (polling included)",
                f"{run.calls_per_task:.3f}",
                "<= 4",
                _verdict(ok),
            )
        else:
            row(f"[{name}] Drive writes per task (accepted)", f"{run.writes_per_task:.3f}")
            row(f"[{name}] API calls per task (polling included)", f"{run.calls_per_task:.3f}")
            bound = args.write_rate / run.writes_per_task
            share = run.throughput / bound
            ok = share >= TARGETS["quota_share"]
            ok_all &= ok
            row(
                f"[{name}] throughput (start -> last map result)",
                f"{run.throughput:.3f} tasks/s in {run.elapsed:.1f} s",
            )
            row(
                f"[{name}] quota bound = {args.write_rate:g} / writes per task",
                f"{bound:.3f} tasks/s",
            )
            row(f"[{name}] throughput / quota bound", f"{share:.1%}", ">= 85%", _verdict(ok))
        ok = not run.surfaced and all(c == 0 for c in run.exit_codes.values())
        ok_all &= ok
        row(
            f"[{name}] failed requests surfacing (WARNING/ERROR lines)",
            str(len(run.surfaced)),
            "0",
            _verdict(ok),
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    header = ("figure", "value", "target", "verdict")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    for run in runs.values():
        for text in run.surfaced[:20]:
            print(f"  surfaced [{run.name}] {text}")
    print()
    print("verdict:", "every target met" if ok_all else "a target was missed")
    if args.json:
        doc = {
            name: {
                "submit_writes": r.submit_writes,
                "stats": r.stats,
                "writes_per_task": r.writes_per_task,
                "calls_per_task": r.calls_per_task,
                "throughput": r.throughput,
                "elapsed": r.elapsed,
                "surfaced": r.surfaced,
            }
            for name, r in runs.items()
        }
        Path(args.json).write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return ok_all


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tasks", type=int, default=200)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--slots", type=int, default=2)
    p.add_argument("--write-rate", type=float, default=3.0, help="the account's writes/s")
    p.add_argument("--poll-interval", type=float, help="worker --poll-interval (default: 5)")
    p.add_argument("--lease", type=float, help="worker --lease (default: drivemr's)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="added to every fake request")
    p.add_argument("--runs", choices=("cost", "quota", "both"), default="both")
    p.add_argument("--no-reduce", action="store_true", help="a job of map tasks only")
    p.add_argument("--timeout", type=float, default=1800.0, help="per run")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = p.parse_args(argv)
    runs: dict[str, Run] = {}
    with tempfile.TemporaryDirectory(prefix="bench-drive-") as tmp:
        base = Path(tmp)
        (base / "config").mkdir(mode=0o700)
        if args.runs in ("cost", "both"):
            print("cost run (no quota on the fake) ...", file=sys.stderr, flush=True)
            runs["cost"] = run_once("cost", args, base, quota=False)
        if args.runs in ("quota", "both"):
            print(
                f"quota run ({args.write_rate:g} writes/s on the fake) ...",
                file=sys.stderr,
                flush=True,
            )
            runs["quota"] = run_once("quota", args, base, quota=True)
    ok = report(runs, args)
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
