#!/usr/bin/env python3
"""Speed benchmark of issue 2: the marginal cost of one trivial task (`true`) on 2 slots.

Every method runs the same N `true` tasks, N = --small and N = --large, in the same run and
interleaved (so drift of the machine hits them all alike); the marginal cost per task is
(T(large) - T(small)) / (large - small), which cancels start-up costs (interpreter, perl,
job submission). Methods:

* floor     concurrent.futures.ThreadPoolExecutor(2) + subprocess.run(["true"])
* parallel  GNU parallel -j2 true ::: ...   (installed with apt-get when root, else skipped)
* article   the seed article's TaskManager, ported to Python 3 with its fixed sleeps; at
            about 0.7 s/task it runs on --article-small / --article-large tasks instead
* drivemr   the CLI on a folder store: `drivemr submit --store DIR job.toml` (not timed),
            then `drivemr worker --store DIR --slots 2 --exit-when-idle` (timed); DIR is
            in the system's temp folder, or under --store-parent (e.g. /dev/shm, a share)
* taskmgr   drivemr.TaskManager, in process

Targets (issue 2): drivemr <= 1.5x the floor, and ahead of GNU parallel. This is a
benchmark, not a test: run it by hand (`python scripts/bench_core.py`); `--check` makes
the exit code say whether the targets were met.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DRIVEMR = [sys.executable, "-c", "import sys; from drivemr.cli import main; sys.exit(main())"]
TRUE = shutil.which("true") or "true"
SCRATCH: Path | None = None
"""Where the folder stores go: a folder under --store-parent (default: the system's temp
folder), removed only when every round is over. Deleting a 1100-task store between rounds
would slow the next round's file creations on some filesystems (ext4 without a journal
skips inodes freed in the last 30 s, one inode-table read each), measuring the benchmark's
own clean-up instead of drivemr."""


# -- the seed article's TaskManager, ported to Python 3 (print, no other change) ----------


class ArticleTaskManager:
    """Holds tasks lists, runs checks on their completion
    and starts new tasks if tasks slot(s) are available."""

    def __init__(self, n_threads, timeouts={}):  # noqa: B006
        self.proc_poll_dt = timeouts.get("proc_poll_dt", 0.2)
        self.next_free_dt = timeouts.get("next_free_dt", 0.5)
        self.proc_popen_dt = timeouts.get("proc_popen_dt", 0.5)
        self.n_threads = n_threads
        self.procs = [None] * n_threads
        self.task_descriptors = []

    def update_task_descriptors(self):
        pass

    def update_tasks_status(self):
        last_avail = None
        for proc_id in range(self.n_threads):
            if self.procs[proc_id] is not None:
                return_val = self.procs[proc_id].poll()  # type: ignore[attr-defined]
                time.sleep(self.proc_poll_dt)
                if return_val is not None:
                    self.procs[proc_id] = None
                    last_avail = proc_id
            else:
                last_avail = proc_id
        return last_avail

    def run(self):
        while True:
            last_avail = self.update_tasks_status()
            if last_avail is None:
                time.sleep(self.next_free_dt)
                continue
            else:
                self.update_task_descriptors()
                if not self.task_descriptors:
                    return
                # Open new process:
                params = self.task_descriptors[-1]
                self.procs[last_avail] = subprocess.Popen(params)  # type: ignore[call-overload]
                self.task_descriptors = self.task_descriptors[:-1]
                time.sleep(self.proc_popen_dt)


# -- the methods: each runs n `true` tasks on 2 slots and returns seconds -----------------


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_floor(n: int) -> float:
    def job(_: int) -> None:
        subprocess.run([TRUE], check=True)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        return timed(lambda: list(pool.map(job, range(n))))


def bench_parallel(n: int) -> float:
    argv = ["parallel", "--will-cite", "-j2", TRUE, ":::", *map(str, range(n))]
    return timed(lambda: subprocess.run(argv, check=True, stdout=subprocess.DEVNULL))


def bench_article(n: int) -> float:
    tm = ArticleTaskManager(2)
    tm.task_descriptors = [[TRUE] for _ in range(n)]
    return timed(tm.run)  # returns while its last tasks may still run: `true` ends at once


def bench_taskmanager(n: int) -> float:
    from drivemr import TaskManager

    tm = TaskManager(2)
    tm.task_descriptors = [[TRUE] for _ in range(n)]
    return timed(tm.run)


def drivemr_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("DRIVEMR_STORE", None)
    return env


def bench_drivemr(n: int) -> float:
    root = Path(tempfile.mkdtemp(prefix="run-", dir=SCRATCH))
    store, job = root / "store", root / "bench.toml"
    store.mkdir()
    job.write_text(f'name = "bench"\n[map]\ncommand = ["{TRUE}"]\nitems = {{range = [0, {n}]}}\n')
    env = drivemr_env()
    subprocess.run([*DRIVEMR, "init", "--store", str(store)], env=env, capture_output=True)
    submit = subprocess.run(
        [*DRIVEMR, "submit", "--store", str(store), str(job)],
        env=env,
        capture_output=True,
        text=True,
    )
    if submit.returncode != 0:
        raise RuntimeError(f"drivemr submit failed:\n{submit.stdout}{submit.stderr}")
    job_id = submit.stdout.strip().splitlines()[-1]
    worker = [*DRIVEMR, "worker", "--store", str(store), "--slots", "2", "--exit-when-idle"]
    worker += ["--workdir", str(root / "work")]
    with open(root / "worker.log", "w+") as log:  # its log costs as much as in real use
        seconds = timed(
            lambda: subprocess.run(worker, env=env, stdout=subprocess.DEVNULL, stderr=log)
        )
        log.seek(0)
        check_done(store, job_id, n, env, log.read()[-2000:])
    return seconds


def probe_disk(n: int = 300) -> float:
    """Microseconds per create-once on the store's disk, made as the folder store makes
    them (layout 2): the exclusive create and write of the id's index record, a temporary
    file written beside the final name, one rename to publish it. Each task costs two, so
    a slow disk (or share) shows here before it shows in drivemr's figure. The files are
    kept (see SCRATCH)."""
    probe = Path(tempfile.mkdtemp(prefix="probe-", dir=SCRATCH))
    index, visible = probe / "index", probe / "visible"
    index.mkdir()
    visible.mkdir()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    start = time.perf_counter()
    for k in range(n):
        fd = os.open(index / f"i{k}", flags, 0o644)
        os.write(fd, b"drivemr-id 2\nf visible/v%d~i%d\n" % (k, k))
        os.close(fd)
        tmp = visible / f".tmp-{k}"
        fd = os.open(tmp, flags, 0o644)
        os.write(fd, b"x" * 300)
        os.close(fd)
        os.rename(tmp, visible / f"v{k}~i{k}")
    return (time.perf_counter() - start) / n * 1e6


def check_done(store: Path, job_id: str, n: int, env: dict[str, str], log: str) -> None:
    """A fast worker that did not do the work would be a lie: count the done tasks."""
    status = subprocess.run(
        [*DRIVEMR, "status", "--store", str(store), job_id, "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    if status.returncode != 0:
        print(f"  (could not check with drivemr status: {status.stderr.strip()[:200]})")
        return
    report = json.loads(status.stdout)
    if isinstance(report, list):  # every job's summary rather than one job's report
        report = next((j for j in report if j.get("job") == job_id), {})
    done = report.get("counts", {}).get("done")
    if done != n:
        raise RuntimeError(f"drivemr ran {done} of {n} tasks; the worker's log ends:\n{log}")


# -- availability --------------------------------------------------------------------------


def gnu_parallel() -> str | None:
    """Why GNU parallel cannot be used, or None when it can (installing it if root)."""
    if shutil.which("parallel") is None:
        if getattr(os, "geteuid", lambda: -1)() != 0 or shutil.which("apt-get") is None:
            return "GNU parallel is not installed (apt-get install parallel, as root)"
        print("installing GNU parallel with apt-get ...", flush=True)

        def apt_get(*args: str) -> int:
            null = subprocess.DEVNULL
            argv = ["apt-get", "-o", "DPkg::Lock::Timeout=300", *args]  # another apt may run
            return subprocess.run(argv, stdout=null, stderr=null).returncode

        if apt_get("install", "-y", "parallel"):
            apt_get("update")
            apt_get("install", "-y", "parallel")
        if shutil.which("parallel") is None:
            return "GNU parallel is missing and apt-get could not install it"
    version = subprocess.run(["parallel", "--version"], capture_output=True, text=True)
    if "GNU parallel" not in version.stdout:
        return "the `parallel` on PATH is not GNU parallel (moreutils?)"
    return None


def drivemr_cli() -> str | None:
    """Why the drivemr CLI cannot be used, or None."""
    probe = subprocess.run(
        [*DRIVEMR, "worker", "--help"], env=drivemr_env(), capture_output=True, text=True
    )
    if probe.returncode != 0:
        return f"the drivemr CLI is not usable yet: {(probe.stderr or probe.stdout).strip()[-200:]}"
    if "--exit-when-idle" not in probe.stdout:
        return "drivemr worker has no --exit-when-idle option yet"
    return None


# -- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--small", type=int, default=100, help="tasks in the small run")
    parser.add_argument("--large", type=int, default=1100, help="tasks in the large run")
    parser.add_argument("--article-small", type=int, default=20)
    parser.add_argument("--article-large", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each size and method")
    parser.add_argument(
        "--article-repeat", type=int, default=1, help="runs of the article's class (slow)"
    )
    parser.add_argument("--stat", choices=["best", "median"], default="best")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["floor", "parallel", "article", "drivemr", "taskmgr"],
    )
    parser.add_argument(
        "--store-parent",
        metavar="DIR",
        help="create the folder store under DIR (default: the system's temp folder); "
        "drivemr's cost includes the store's file creations, so this measures that disk too",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument(
        "--probe-only",
        action="store_true",
        help="only measure the cost per create-once under --store-parent (e.g. a share)",
    )
    args = parser.parse_args(argv)
    if not 0 < args.small < args.large or not 0 < args.article_small < args.article_large:
        parser.error("need 0 < small < large")
    global SCRATCH
    SCRATCH = Path(tempfile.mkdtemp(prefix="drivemr-bench-", dir=args.store_parent))
    try:
        if args.probe_only:
            print(f"store disk ({SCRATCH}): {probe_disk():.0f} us per create-once")
            return 0
        return run(args)
    finally:
        shutil.rmtree(SCRATCH, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    disk = [probe_disk()]
    methods: dict[str, tuple[str, Callable[[int], float], int, int, int]] = {
        "floor": ("floor: ThreadPoolExecutor(2) + subprocess.run", bench_floor, 0, 0, 0),
        "parallel": ("GNU parallel -j2", bench_parallel, 0, 0, 0),
        "article": (
            f"article TaskManager ({args.article_small}/{args.article_large} tasks)",
            bench_article,
            args.article_small,
            args.article_large,
            args.article_repeat,
        ),
        "drivemr": ("drivemr worker, folder store", bench_drivemr, 0, 0, 0),
        "taskmgr": ("drivemr.TaskManager", bench_taskmanager, 0, 0, 0),
    }
    skipped: dict[str, str] = {name: "skipped (--skip)" for name in args.skip}
    if "parallel" not in skipped and (why := gnu_parallel()):
        skipped["parallel"] = why
    if "drivemr" not in skipped and (why := drivemr_cli()):
        skipped["drivemr"] = why
    for name, why in skipped.items():
        print(f"{name}: {why}")

    times: dict[str, dict[int, list[float]]] = {}
    for r in range(args.repeat):
        for name, (_, fn, small, large, reps) in methods.items():
            if name in skipped or (reps and r >= reps):
                continue
            for n in (small or args.small, large or args.large):
                seconds = fn(n)
                times.setdefault(name, {}).setdefault(n, []).append(seconds)
                print(f"  round {r + 1}: {name:9} {n:5} tasks {seconds:8.3f} s", flush=True)

    pick = min if args.stat == "best" else statistics.median
    marginal: dict[str, float] = {}
    rows = []
    for name, by_n in times.items():
        (n_small, t_small), (n_large, t_large) = sorted((n, pick(ts)) for n, ts in by_n.items())
        marginal[name] = (t_large - t_small) / (n_large - n_small)
        rows.append((name, t_small, t_large))

    floor = marginal.get("floor")
    print(f"\nmarginal cost per `true` task on 2 slots ({args.stat} of {args.repeat} runs)")
    print(f"{'method':50} {'T(small)':>10} {'T(large)':>10} {'ms/task':>9} {'x floor':>8}")
    for name, t_small, t_large in rows:
        ratio = f"{marginal[name] / floor:8.2f}" if floor else f"{'-':>8}"
        print(
            f"{methods[name][0]:50} {t_small:8.3f} s {t_large:8.3f} s "
            f"{marginal[name] * 1000:9.2f} {ratio}"
        )
    print(f"(T(small) and T(large) are for {args.small} and {args.large} tasks unless noted)")
    disk.append(probe_disk())
    print(
        f"store disk ({SCRATCH}): {disk[0]:.0f} us per create-once before the runs, "
        f"{disk[1]:.0f} us after (each drivemr task makes two)"
    )
    if max(disk) > 100:
        print(
            "  note: file creation on this disk is slow now; on ext4 without a journal it is "
            "slow for minutes after many files were deleted (the kernel skips recently freed "
            "inodes one by one), e.g. by a test run"
        )

    verdicts: dict[str, bool | None] = {"drivemr <= 1.5x floor": None, "drivemr < parallel": None}
    if "drivemr" in marginal and floor:
        verdicts["drivemr <= 1.5x floor"] = marginal["drivemr"] <= 1.5 * floor
    if "drivemr" in marginal and "parallel" in marginal:
        verdicts["drivemr < parallel"] = marginal["drivemr"] < marginal["parallel"]
    print()
    for target, ok in verdicts.items():
        print(f"target {target:24} {'not measured' if ok is None else 'MET' if ok else 'MISSED'}")

    if args.json:
        figures = {
            "stat": args.stat,
            "repeat": args.repeat,
            "times": {name: {str(n): ts for n, ts in by_n.items()} for name, by_n in times.items()},
            "marginal_seconds_per_task": marginal,
            "ratio_to_floor": {k: v / floor for k, v in marginal.items()} if floor else {},
            "skipped": skipped,
            "targets": verdicts,
            "disk_create_once_us": disk,
        }
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 1 if args.check and not all(verdicts.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
