"""The chaos task and its ledger: what really ran, and the account of a job.

Side effects are measured outside drivemr: each execution of a task writes one file
``<task>.a<attempt>.p<pid>.w<worker pid>`` holding ``task attempt pid start end`` into a
shared folder (``end`` missing when the execution never finished), so duplicates are counted
from what really ran, not from what drivemr says it ran.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivemr.protocol import REDUCE, Job
from drivemr.stores.base import FileInfo, Store
from drivemr.testing.filefacts import claim_facts, result_facts

# --------------------------------------------------------------------------- the task

TASK_PY = r'''
"""A chaos task: records every execution in a side-effect folder, then does its work.

argv: SIDEFX TASK key=value[,key=value]...   keys: sleep, first (sleep of attempt 1), out (bytes of
output), fail (exit code), child (spawn that many child processes that log while alive),
armed (sleep that long instead, if this first attempt is the first to find SIDEFX/arm)."""
import os, subprocess, sys, time

sidefx, task = sys.argv[1], sys.argv[2]
opts = dict(kv.split("=", 1) for word in sys.argv[3:] for kv in word.split(",") if kv)
attempt = os.environ.get("DRIVEMR_ATTEMPT", "0")
me = os.path.join(sidefx, "%s.a%s.p%d.w%d" % (task, attempt, os.getpid(), os.getppid()))
start = time.time()
with open(me, "a") as fh:
    fh.write("%s %s %d %.6f" % (task, attempt, os.getpid(), start))
for n in range(int(opts.get("child", 0))):
    log = os.path.join(sidefx, "%s.a%s.child%d" % (task, attempt, n))
    subprocess.Popen([sys.executable, "-c",
        "import os, sys, time\n"
        "f = open(sys.argv[1], 'a')\n"
        "while True:\n"
        "    f.write('%d %.6f\\n' % (os.getpid(), time.time())); f.flush(); time.sleep(0.02)\n", log])
delay = float(opts.get("first" if attempt == "1" and "first" in opts else "sleep", 0))
if attempt == "1" and "armed" in opts:  # the first task to start after the campaign armed one
    try:
        os.rename(os.path.join(sidefx, "arm"), os.path.join(sidefx, "armed-" + task))
        delay = float(opts["armed"])
    except OSError:
        pass
if delay:
    time.sleep(delay)
size = int(opts.get("out", 0))
with open("out.txt", "w") as fh:
    fh.write("%s attempt %s\n" % (task, attempt))
    if size:
        fh.write(("%s." % task) * (size // (len(task) + 1) + 1))
if "fail" in opts:
    print("poison %s attempt %s: this task always fails" % (task, attempt), file=sys.stderr)
with open(me, "a") as fh:
    fh.write(" %.6f\n" % time.time())
sys.exit(int(opts.get("fail", 0)))
'''

REDUCE_PY = r'''
"""Reduce: records when it started and what it was given (file names, first line of out.txt)."""
import json, os, sys, time
sidefx, results = sys.argv[1], sys.argv[2]
start = time.time()
seen = {}
for t in sorted(os.listdir(results)):
    files = sorted(os.listdir(os.path.join(results, t)))
    head = ""
    if "out.txt" in files:
        with open(os.path.join(results, t, "out.txt")) as fh:
            head = fh.readline().strip()
    seen[t] = {"files": files, "head": head}
with open(os.path.join(sidefx, "reduce.p%d" % os.getpid()), "w") as fh:
    json.dump({"start": start, "tasks": seen}, fh)
missing = [t for t, v in seen.items() if "out.txt" not in v["files"]]
with open("total.txt", "w") as fh:
    fh.write("%d tasks, %d missing\n" % (len(seen), len(missing)))
sys.exit(1 if missing else 0)
'''


def write_job(
    folder: Path,
    sidefx: Path,
    *,
    name: str,
    tasks: int,
    opts: str = "sleep=0.3",
    poison: Sequence[int] = (),
    poison_opts: str = "fail=3",
    reduce: bool = False,
    max_attempts: int = 3,
    timeout: str | None = None,
    inputs: dict[str, bytes] | None = None,
) -> Path:
    """Write a job folder using the chaos task; returns job.toml. ``poison``: indexes of
    tasks given ``poison_opts`` instead of ``opts`` (items carry the options)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "task.py").write_text(TASK_PY, encoding="utf-8")
    (folder / "reduce.py").write_text(REDUCE_PY, encoding="utf-8")
    sfx = json.dumps(str(sidefx))
    lines = [f'name = "{name}"', 'files = ["task.py", "reduce.py"]', "", "[map]"]
    if inputs:
        (folder / "data").mkdir(exist_ok=True)
        for fname, data in inputs.items():
            (folder / "data" / fname).write_bytes(data)
        lines.append(f'command = ["python", "{{files}}/task.py", {sfx}, "{{task}}", "{opts}"]')
        lines.append('inputs = ["data/*"]')
    else:
        items = [poison_opts if i in set(poison) else opts for i in range(tasks)]
        lines.append(f'command = ["python", "{{files}}/task.py", {sfx}, "{{task}}", "{{item}}"]')
        lines.append(f"items = {json.dumps(items)}")
    lines.append('outputs = ["out.txt"]')
    lines.append(f"max_attempts = {max_attempts}")
    # One item per task: the ledger counts claims, kills and duplicates per item.
    lines.append("items_per_task = 1")
    if timeout:
        lines.append(f'timeout = "{timeout}"')
    if reduce:
        lines += [
            "",
            "[reduce]",
            f'command = ["python", "{{files}}/reduce.py", {sfx}, "{{results}}"]',
            'outputs = ["total.txt"]',
        ]
    job = folder / "job.toml"
    job.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return job


# --------------------------------------------------------------------------- side effects


@dataclass(frozen=True)
class Execution:
    """One real execution of a task, as the task itself recorded it."""

    task: str
    attempt: int
    pid: int
    worker_pid: int
    start: float
    end: float | None


def executions(sidefx: Path) -> list[Execution]:
    found = []
    for path in sidefx.iterdir():
        parts = path.name.split(".")
        if len(parts) != 4 or not parts[1].startswith("a") or not parts[3].startswith("w"):
            continue
        try:
            fields_ = path.read_text(encoding="utf-8").split()
        except OSError:
            continue
        if len(fields_) < 4:
            continue  # being written
        found.append(
            Execution(
                task=fields_[0],
                attempt=int(fields_[1]),
                pid=int(fields_[2]),
                worker_pid=int(parts[3][1:]),
                start=float(fields_[3]),
                end=float(fields_[4]) if len(fields_) > 4 else None,
            )
        )
    return found


def reduce_runs(sidefx: Path) -> list[dict[str, Any]]:
    """What each execution of the reduce recorded: start time, and per task the files it
    was given and the first line of its out.txt."""
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(sidefx.glob("reduce.p*"))]


def reap(sidefx: Path) -> None:
    """Kill what a killed worker left running (its tasks run in their own process groups)."""
    for e in executions(sidefx):
        if e.end is None:
            with contextlib.suppress(OSError):
                os.kill(e.pid, signal.SIGKILL)
    for path in sidefx.glob("*.child*"):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[-1:]:
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(line.split()[0]), signal.SIGKILL)


# --------------------------------------------------------------------------- the account


@dataclass
class Account:
    """What happened to every task of one job."""

    tasks: int
    attempted: int = 0
    """Tasks executed at least once."""
    executions: int = 0
    committed: int = 0
    """Tasks with exactly one result."""
    done: int = 0
    failed: int = 0
    lost: int = 0
    """Tasks without a result."""
    unexpected: int = 0
    """Results not under a task's minted result id, extra results for a task, results whose
    attempt never ran, executions of tasks the job does not have."""
    duplicated: int = 0
    """Executions beyond the first, per task."""
    unfinished: int = 0
    """Executions that never reached their end (killed)."""
    results_by_worker: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"attempted {self.attempted}/{self.tasks}, executions {self.executions}, "
            f"committed {self.committed}, lost {self.lost}, unexpected {self.unexpected}, "
            f"duplicated {self.duplicated} (unfinished {self.unfinished}), "
            f"done {self.done}, failed {self.failed}"
        )


def account(store: Store, job: Job, sidefx: Path) -> Account:
    """The account of the job's map tasks (its reduce's single result is checked too)."""
    tasks = {t.id: t for t in job.tasks}
    minted = {t.result_id: t.id for t in job.tasks}
    if job.reduce_task is not None:
        minted[job.reduce_task.result_id] = REDUCE
    acc = Account(len(tasks))
    every_run = executions(sidefx)
    runs = [e for e in every_run if e.task in tasks]
    acc.executions = len(runs)
    acc.unfinished = sum(1 for e in runs if e.end is None)
    per_task = collections.Counter(e.task for e in runs)
    acc.attempted = len(per_task)
    acc.duplicated = sum(n - 1 for n in per_task.values())
    strays = [e for e in every_run if e.task not in tasks]
    acc.unexpected += len(strays)
    acc.problems += [f"execution of unknown task {e.task}" for e in strays]
    results: dict[str, list[FileInfo]] = collections.defaultdict(list)
    for info in store.list(job.folders["results"]):
        owner = minted.get(info.id)
        ref = result_facts(store, info)
        if owner is None or ref is None or ref.task != owner:
            acc.unexpected += 1
            acc.problems.append(f"stray result {info.name} ({info.id})")
            continue
        results[owner].append(info)
    if len(results.get(REDUCE, [])) > 1:
        acc.unexpected += len(results[REDUCE]) - 1
        acc.problems.append(f"{len(results[REDUCE])} reduce results")
    ran = {(e.task, e.attempt) for e in runs if e.end is not None}
    claimers = _claimers(store, job)
    for tid in tasks:
        infos = results.get(tid, [])
        if not infos:
            acc.lost += 1
            acc.problems.append(f"{tid}: no result")
            continue
        if len(infos) > 1:
            acc.unexpected += len(infos) - 1
            acc.problems.append(f"{tid}: {len(infos)} results")
        acc.committed += 1
        ref = result_facts(store, infos[0])
        assert ref is not None
        if ref.state == "done":
            acc.done += 1
            if (tid, ref.gen + 1) not in ran:
                acc.unexpected += 1
                acc.problems.append(f"{tid}: result of attempt {ref.gen + 1}, which never finished")
        else:
            acc.failed += 1
        worker = claimers.get(job.task(tid).claim_ids[ref.gen], "?")
        acc.results_by_worker[worker] = acc.results_by_worker.get(worker, 0) + 1
    return acc


def _claimers(store: Store, job: Job) -> dict[str, str]:
    """Claim id -> the worker of the claim (its name or its body)."""
    out = {}
    for info in store.list(job.folders["claims"]):
        parsed = claim_facts(store, info)
        if parsed is not None:
            out[info.id] = parsed[2]
    return out


def claims_of(store: Store, job: Job) -> dict[tuple[str, int], tuple[str, FileInfo]]:
    """(task, gen) -> (worker, claim file), checking that every claim is unique."""
    out: dict[tuple[str, int], tuple[str, FileInfo]] = {}
    every = [*job.tasks, *([job.reduce_task] if job.reduce_task else [])]
    valid = {cid for t in every for cid in t.claim_ids}
    for info in store.list(job.folders["claims"]):
        parsed = claim_facts(store, info)
        assert parsed is not None and info.id in valid, f"stray claim {info.name}"
        key = (parsed[0], parsed[1])
        assert key not in out, f"two claims for {key}"
        assert job.task(parsed[0]).claim_ids[parsed[1]] == info.id, (
            f"claim {info.name} under a wrong id"
        )
        out[key] = (parsed[2], info)
    return out


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def other_takeovers(
    claims: dict[tuple[str, int], tuple[str, FileInfo]],
    explained: set[tuple[str, int]],
    logs: dict[str, str],
) -> tuple[int, list[str]]:
    """Claims taken over (a next attempt was claimed) for another reason than ``explained``:
    (how many of them their worker logged as its own claim lapsing, the others)."""
    lapsed, unexplained = 0, []
    for (tid, gen), (worker, _) in sorted(claims.items()):
        if (tid, gen + 1) not in claims or (tid, gen) in explained:
            continue
        if f"/{tid}: claim lapsed" in logs[worker] or f"/{tid}: our claim lapsed" in logs[worker]:
            lapsed += 1
        else:
            unexplained.append(f"{tid}.g{gen} of {worker}")
    return lapsed, unexplained
