#!/usr/bin/env python3
"""Figures of issue 13: many small items, few Drive writes (automatic packing).

Four scenarios, each against a baseline in the same run, as ratios:

* ``drive-items``: the fake Drive with ``--write-rate`` (3 writes/s, as Drive), --workers
  worker processes x --slots slots, --items items of ``sleep 0.1`` with default settings
  (no packing setting in the job file). The workers run first, as a user's worker daemons
  do, and the job is submitted once their heartbeats advertise their slots (so it is
  packed for those slots, as the issue's scheme presumes); wall time (the job's first
  claim -> last item's result) against the ideal items x 0.1 / slots (target <= 1.3x);
  writes per item and the share of the write quota the run used. The time from submit's
  return is reported too: it adds the workers' change-poll latency (a job is seen up to
  ``poll_interval``, 5 s on Drive, after it lands), which no packing changes.
  ``--cold`` times the other case: submitted before any worker runs (packed for the
  default 8 slots), wall time from the workers' start (their ~2 s of start-up included).
* ``drive-balance``: the same cluster and timing (warm, or ``--cold``), 24 items of
  ``sleep 5``: ideal 24 x 5 / 6 = 20 s (target <= 1.3x): packing must not starve slots
  when items are few and long. With ``--verbose`` (workers log at DEBUG; ``--keep`` keeps
  the logs) each Drive job prints its timeline: every claim, who made it and when, its
  items, and when its result landed, in seconds from submit's return (or the start).
* ``folder-floor``: a folder store, --floor-items items of ``true`` on 2 slots (one worker
  process), the marginal time per item (first claim -> last result, so start-up is left
  out) against a ``concurrent.futures`` + ``subprocess.run`` floor running the same
  commands on 2 threads (target <= 1.2x); --floor-repeat rounds of the two, alternated,
  and the round with the median ratio kept (the load of a shared machine drifts).
* ``drive-inputs``: up to --input-files ``.py`` files of this Python's standard library as
  ``inputs``, 2 workers x 2 slots, each parsed by ``python -c "import ast..."``: submit on
  the fake Drive (target
  < 10 s) and the run against the same job on a folder store (target <= 2x).

    python scripts/bench_packing.py                       # every scenario, full scale
    python scripts/bench_packing.py --items 2000          # a scaled-down drive-items
    python scripts/bench_packing.py --only folder-floor drive-balance
    python scripts/bench_packing.py --only drive-balance --cold --verbose --keep /tmp/b

A benchmark, not a test: the full drive-items run takes about three minutes.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import glob
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivemr.testing.fakedrive import FakeDriveServer

DRIVEMR = [sys.executable, "-m", "drivemr.cli"]
VERBOSE: list[str] = []
"""["-v"] with --verbose: the workers log at DEBUG level."""
SCENARIOS = ("drive-items", "drive-balance", "folder-floor", "drive-inputs")


@dataclass
class Figure:
    label: str
    value: float
    baseline: float
    target: float
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("inf")

    @property
    def ok(self) -> bool:
        return self.ratio <= self.target


def cli(env: dict[str, str], *args: str, timeout: float = 900) -> str:
    proc = subprocess.run(
        [*DRIVEMR, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise SystemExit(f"drivemr {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc.stdout


def start_workers(
    env: dict[str, str],
    store: str,
    base: Path,
    workers: int,
    slots: int,
    extra: list[str],
    *,
    idle_exit: bool = True,
) -> list[subprocess.Popen[bytes]]:
    procs = []
    base.mkdir(parents=True, exist_ok=True)
    for n in range(workers):
        log = open(base / f"w{n}.log", "wb")  # noqa: SIM115 - closed with the process
        procs.append(
            subprocess.Popen(
                [
                    *DRIVEMR,
                    *VERBOSE,
                    "worker",
                    "--store",
                    store,
                    "--slots",
                    str(slots),
                    "--worker-id",
                    f"bench{n}",
                    "--workdir",
                    str(base / f"w{n}"),
                    *(["--exit-when-idle"] if idle_exit else []),
                    *extra,
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    return procs


def wait_all(procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    try:
        for p in procs:
            if p.wait(timeout=timeout) != 0:
                raise SystemExit(f"a worker exited with {p.returncode}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def job_times(store: Any, job_id: str) -> tuple[float, float, int, int]:
    """(first claim created, last map result created, tasks, items) from the store."""
    from drivemr.protocol import REDUCE, find_job, load_view
    from drivemr.trust import Trust

    _, job = find_job(store, job_id)
    # Results are sealed by the workers' key: read them with the config dir they use
    # (every run of this script sets DRIVEMR_CONFIG_DIR to one under its base folder).
    view = load_view(store, job, Trust.reader(os.environ["DRIVEMR_CONFIG_DIR"]))
    maps = [r for t, r in view.results.items() if t != REDUCE]
    if len(maps) != len(job.tasks) or any(r.state != "done" for r in maps):
        raise SystemExit(f"{job_id}: not every task is done ({len(maps)}/{len(job.tasks)})")
    first = min(c.file.created for gens in view.claims.values() for c in gens.values())
    return first, max(r.file.created for r in maps), len(job.tasks), len(job.items)


def timeline(store: Any, job_id: str, t0: float) -> str:
    """One line per task, in claim order: who claimed it and when, its items, the seconds
    its items ran and when its result landed (seconds from ``t0``); for --verbose."""
    from drivemr.protocol import REDUCE, find_job, load_view
    from drivemr.trust import Trust

    _, job = find_job(store, job_id)
    view = load_view(store, job, Trust.reader(os.environ["DRIVEMR_CONFIG_DIR"]))
    rows = []
    for tid, gens in view.claims.items():
        if tid == REDUCE:
            continue
        for gen, c in gens.items():
            r = view.results.get(tid)
            size = len(job.task(tid).pack) or 1
            done = f"{r.file.created - t0:6.2f}" if r is not None else "     -"
            ran = f"{r.duration:5.2f}" if r is not None else "    -"
            rows.append(
                (c.file.created, f"  {c.file.created - t0:6.2f} {tid}.g{gen} {c.worker:8s} "
                 f"{size:3d} item(s) ran {ran} s, result {done}")
            )  # fmt: skip
    return "\n".join(line for _, line in sorted(rows))


def write_job(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "job.toml"
    path.write_text(text, encoding="utf-8")
    return path


class Drive:
    """A fake Drive with an initialised root, and the environment that points at it."""

    def __init__(self, base: Path, write_rate: float | None) -> None:
        self.srv = FakeDriveServer(port=0)
        self.srv.__enter__()
        self.env = dict(os.environ)
        self.env["DRIVEMR_DRIVE_ENDPOINT"] = self.srv.url
        self.env["DRIVEMR_CONFIG_DIR"] = str(base / "config")
        self.env.pop("DRIVEMR_STORE", None)
        self.root = cli(self.env, "init", "--store", "drive://").strip().splitlines()[-1]
        self.write_rate = write_rate
        if write_rate:
            self.srv.configure(write_rate=write_rate)

    def store(self) -> Any:
        from drivemr.stores.drive import DriveStore

        return DriveStore.from_url(self.root, write_rate=None, endpoint=self.srv.url)

    def close(self) -> None:
        self.srv.__exit__(None, None, None)


def drive_sleep_job(
    args: argparse.Namespace, base: Path, name: str, items: int, seconds: float
) -> list[Figure]:
    """Warm (default): the workers run first, as a user's daemons do, and the job is
    submitted once their heartbeats are visible (so it is packed for their slots); timed
    from submit's return to the last result. --cold: submitted before any worker runs
    (packed for the default 8 slots), timed from the workers' start."""
    slots = args.workers * args.slots
    drive = Drive(base, args.write_rate)
    rate = ["--write-rate", str(worker_rate(args, args.workers))]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        job = write_job(
            base / name,
            f'name = "{name}"\n[map]\ncommand = ["sleep", "{seconds:g}"]\n'
            f"items = {{range = [0, {items}]}}\n"
            + (f"items_per_task = {args.items_per_task}\n" if args.items_per_task else ""),
        )
        if args.cold:
            out = cli(drive.env, "submit", "--store", drive.root, str(job))
            drive.srv.reset_stats()
            started = time.time()
            procs = start_workers(
                drive.env, drive.root, base / name, args.workers, args.slots, rate
            )
            wait_all(procs, args.timeout)
            submit_s = 0.0
        else:
            procs = start_workers(
                drive.env, drive.root, base / name, args.workers, args.slots, rate, idle_exit=False
            )
            with drive.store() as store:
                wait_for_slots(store, procs, slots, args.timeout)
            drive.srv.reset_stats()
            t0 = time.time()
            out = cli(drive.env, "submit", "--store", drive.root, str(job))
            started = time.time()
            submit_s = started - t0
        job_id = out.strip().splitlines()[-1]
        if not args.cold:
            with drive.store() as store:
                wait_for_results(store, job_id, procs, args.timeout)
            stop_all(procs, args.timeout)
        stats = drive.srv.stats()
        drive.srv.configure(write_rate=None)
        with drive.store() as store:
            first, last, tasks, count = job_times(store, job_id)
            if VERBOSE:
                print(timeline(store, job_id, started), file=sys.stderr, flush=True)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        drive.close()
    # Warm: from the job's first claim, so the workers' change-poll latency (a new job is
    # seen up to poll_interval after it lands: 5 s on Drive, the same for every job) is
    # not counted as imbalance; it is reported. Cold: from the workers' start, as before.
    elapsed = last - started if args.cold else last - first
    wall = last - started
    writes = int(stats["writes"]) - int(stats["rate_limited"])
    ideal = items * seconds / slots
    floor = local_floor(["sleep", f"{seconds:g}"], items, slots) if args.floor else None
    quota = writes / (args.write_rate * wall)
    how = (
        "cold: submitted before the workers started; workers started -> last result"
        if args.cold
        else "warm: submitted to running workers; first claim -> last result; "
        f"submit returned -> last result {wall:.1f} s ({wall / ideal:.2f}x: the job was "
        f"seen {first - started:.1f} s after submit returned, submit took {submit_s:.1f} s)"
    )
    note = (
        f"{how}; {count} items in {tasks} tasks on {args.workers}x{args.slots} slots; "
        f"{writes} writes = {writes / count:.3f} per item; quota share used {quota:.0%}; "
        f"{int(stats['rate_limited'])} writes refused by the quota"
        + (
            f"; first claim -> last result {last - first:.1f} s ({(last - first) / ideal:.2f}x)"
            if args.cold
            else ""
        )
        + (
            ""
            if floor is None
            else f"; local floor (the same commands on {slots} threads, no store) "
            f"{floor:.1f} s, wall / floor {elapsed / floor:.2f}x"
        )
    )
    label = f"{name}: wall / ideal ({items} x {seconds:g} s{', cold' if args.cold else ''})"
    return [Figure(label, elapsed, ideal, 1.3, note)]


def wait_for_slots(
    store: Any, procs: list[subprocess.Popen[bytes]], slots: int, timeout: float
) -> None:
    """Until the running workers' heartbeats advertise ``slots`` slots (what submit packs for)."""
    from drivemr.packing import live_slots

    deadline = time.monotonic() + timeout
    while (live_slots(store) or 0) < slots:
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            raise SystemExit("the workers did not all start (see their logs with --keep)")
        time.sleep(0.1)


def wait_for_results(
    store: Any, job_id: str, procs: list[subprocess.Popen[bytes]], timeout: float
) -> None:
    """Until every map task of the job has a result file (a listing a poll: reads only)."""
    from drivemr.protocol import find_job

    _, job = find_job(store, job_id)
    deadline = time.monotonic() + timeout
    while len(store.list(job.folders["results"])) < len(job.tasks):
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            raise SystemExit(f"{job_id}: the workers ended or timed out before the job did")
        time.sleep(0.2)


def stop_all(procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    """SIGTERM (a service manager's stop: drain and exit), then wait for each."""
    for p in procs:
        p.terminate()
    wait_all(procs, timeout)


def worker_rate(args: argparse.Namespace, workers: int) -> float:
    """Each worker's --write-rate: the account's rate shared out, as docs/google-drive.md
    advises for PCs sharing one account (or --worker-write-rate)."""
    return args.worker_write_rate or args.write_rate / workers


def local_floor(argv: list[str], count: int, threads: int) -> float:
    """Seconds to run ``count`` times ``argv`` on ``threads`` threads: what this machine
    allows without any store (concurrent.futures + subprocess.run)."""
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda _: subprocess.run(argv, check=True), range(count)))
    return time.perf_counter() - t0


def folder_floor(args: argparse.Namespace, base: Path) -> list[Figure]:
    """--floor-repeat rounds of (floor, drivemr), each a fresh folder store: on a shared
    machine the load drifts between two runs, so the figure is the round with the median
    ratio, and the note gives every round's."""
    n = args.floor_items
    env = dict(os.environ)
    env.pop("DRIVEMR_STORE", None)
    env["DRIVEMR_CONFIG_DIR"] = str(base / "config")
    job = write_job(
        base / "floor", f'name = "floor"\n[map]\ncommand = ["true"]\nitems = {{range = [0, {n}]}}\n'
    )
    from drivemr.stores.folder import FolderStore

    rounds: list[tuple[float, float]] = []
    tasks = count = 0
    for r in range(args.floor_repeat):
        floor = local_floor([shutil.which("true") or "true"], n, 2)
        store_dir = base / f"floor-store{r}"
        cli(env, "init", "--store", str(store_dir))
        job_id = cli(env, "submit", "--store", str(store_dir), str(job)).strip().splitlines()[-1]
        wait_all(start_workers(env, str(store_dir), base / f"floor{r}", 1, 2, []), args.timeout)
        first, last, tasks, count = job_times(FolderStore(store_dir), job_id)
        rounds.append((last - first, floor))
    ranked = sorted(rounds, key=lambda t: t[0] / t[1])
    value, floor = ranked[len(ranked) // 2]
    each = ", ".join(f"{v:.2f}/{f:.2f} = {v / f:.2f}x" for v, f in rounds)
    note = f"{count} items in {tasks} tasks; rounds (drivemr s / floor s): {each}"
    return [
        Figure(f"folder-floor: marginal per item / floor ({n} x true)", value, floor, 1.2, note)
    ]


def stdlib_files(limit: int) -> list[Path]:
    lib = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "__pycache__"}
    files = sorted(
        Path(p)
        for p in glob.glob(str(lib / "**" / "*.py"), recursive=True)
        if not skip.intersection(Path(p).relative_to(lib).parts)
    )
    return files[:limit]


def drive_inputs(args: argparse.Namespace, base: Path) -> list[Figure]:
    folder = base / "inputs"
    lib = Path(sysconfig.get_paths()["stdlib"])
    files = stdlib_files(args.input_files)
    for f in files:
        target = folder / "data" / f.relative_to(lib)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target)
    (folder / "parse.py").write_text(
        "import ast, sys\n"
        "try:\n"
        "    print(len(ast.parse(open(sys.argv[1], 'rb').read()).body))\n"
        "except (SyntaxError, ValueError) as exc:  # the test suite's broken files\n"
        "    print('unparsable:', exc)\n",
        encoding="utf-8",
    )
    job = write_job(
        folder,
        'name = "stdlib"\nfiles = ["parse.py"]\n[map]\n'
        'command = ["python", "{files}/parse.py", "{input}"]\ninputs = ["data/**/*.py"]\n',
    )
    times: dict[str, float] = {}
    # Folder store: the baseline.
    env = dict(os.environ)
    env.pop("DRIVEMR_STORE", None)
    env["DRIVEMR_CONFIG_DIR"] = str(base / "config")
    store_dir = base / "inputs-store"
    cli(env, "init", "--store", str(store_dir))
    job_id = cli(env, "submit", "--store", str(store_dir), str(job)).strip().splitlines()[-1]
    started = time.time()
    wait_all(start_workers(env, str(store_dir), base / "inputs-folder", 2, 2, []), args.timeout)
    from drivemr.stores.folder import FolderStore

    _f, last, _t, _c = job_times(FolderStore(store_dir), job_id)
    times["folder"] = last - started
    drive = Drive(base / "inputs-drive", args.write_rate)
    try:
        t0 = time.perf_counter()
        out = cli(drive.env, "submit", "--store", drive.root, str(job))
        submit_s = time.perf_counter() - t0
        job_id = out.strip().splitlines()[-1]
        started = time.time()
        procs = start_workers(
            drive.env, drive.root, base / "inputs-drive", 2, 2,
            ["--write-rate", str(worker_rate(args, 2))],
        )  # fmt: skip
        wait_all(procs, args.timeout)
        drive.srv.configure(write_rate=None)
        with drive.store() as store:
            _f, last, tasks, count = job_times(store, job_id)
    finally:
        drive.close()
    times["drive"] = last - started
    note = f"{count} files in {tasks} tasks; folder store run {times['folder']:.1f} s"
    return [
        Figure("drive-inputs: submit seconds / 10 s", submit_s, 10.0, 1.0, f"{count} files"),
        Figure("drive-inputs: Drive run / folder run", times["drive"], times["folder"], 2.0, note),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--slots", type=int, default=2)
    p.add_argument("--write-rate", type=float, default=3.0)
    p.add_argument(
        "--worker-write-rate",
        type=float,
        help="each worker's --write-rate (default: --write-rate / workers)",
    )
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--floor-items", type=int, default=10_000)
    p.add_argument(
        "--floor-repeat", type=int, default=3, help="folder-floor rounds (the median is kept)"
    )
    p.add_argument("--input-files", type=int, default=1790)
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--items-per-task", type=int, help="set in the jobs (default: automatic)")
    p.add_argument(
        "--no-floor", dest="floor", action="store_false", help="skip the local floor runs"
    )
    p.add_argument(
        "--cold",
        action="store_true",
        help="drive-items/drive-balance: submit before the workers start (packed for the"
        " default 8 slots) and time from their start (the figure before workers ran first)",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--keep", type=Path, help="work in this folder and keep it (logs, stores)")
    p.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    p.add_argument("--verbose", action="store_true", help="workers log at DEBUG level")
    args = p.parse_args(argv)
    if args.verbose:
        VERBOSE.append("-v")
    runs: dict[str, Callable[[Path], list[Figure]]] = {
        "drive-items": lambda b: drive_sleep_job(args, b, "items", args.items, 0.1),
        "drive-balance": lambda b: drive_sleep_job(args, b, "balance", 24, 5.0),
        "folder-floor": lambda b: folder_floor(args, b),
        "drive-inputs": lambda b: drive_inputs(args, b),
    }
    figures: list[Figure] = []
    for name in args.only:
        with tempfile.TemporaryDirectory(prefix=f"drivemr-bench-{name}-") as tmp:
            base = Path(tmp) if args.keep is None else args.keep / name
            base.mkdir(parents=True, exist_ok=True)
            os.environ["DRIVEMR_CONFIG_DIR"] = str(base / "config")  # as the workers'
            print(f"running {name} ...", file=sys.stderr, flush=True)
            for f in runs[name](base):
                figures.append(f)
                verdict = "ok" if f.ok else "MISSED"
                print(
                    f"{f.label}: {f.value:.2f} vs {f.baseline:.2f} = {f.ratio:.2f}x "
                    f"(target <= {f.target:g}x) {verdict}\n    {f.note}",
                    flush=True,
                )
    if args.json:
        print(json.dumps([f.__dict__ | {"ratio": f.ratio, "ok": f.ok} for f in figures], indent=2))
    return 1 if args.check and not all(f.ok for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
