#!/usr/bin/env python3
"""The fault-injection campaign: break real drivemr workers, drain, and account for every task.

Runs three experiments on the folder store and on the fake Google Drive (``--store s3``: on
a loopback S3 server) and prints, for each,
the account of the job: tasks attempted, committed, lost, unexpected, duplicated, and the
reclaim latency (time from a worker's death to another attempt's claim):

* ``kill``   kill -9 one of 4 worker processes over and over during a job (restarting it
             each time: every other restart keeps the worker id, like a service manager
             would; the others come back under a new id, like a fresh `drivemr worker`);
* ``stop``   SIGSTOP a worker and its running tasks past the lease, then SIGCONT them (a
             PC that slept): the stale worker must kill its attempts and commit nothing;
* ``storm``  30% of the fake Drive's answers are 500/503/429 (on the folder store: 30% of
             the file-system calls under the store's retry layer fail with EIO): the job
             completes, and no operation makes more attempts than the store's cap.

Usage (a few minutes with the defaults; the figures in docs/guarantees.md come from the
larger run)::

    python scripts/chaos_campaign.py
    python scripts/chaos_campaign.py --tasks 1000 --kills 20 --stops 5 --storm-tasks 300

Side effects are measured outside drivemr: each execution of a task writes one file
``<task>.a<attempt>.p<pid>.w<worker pid>`` holding ``task attempt pid start end`` into a
shared folder (``end`` missing when the execution never finished), so duplicates are counted
from what really ran, not from what drivemr says it ran.

tests/chaos imports this module; it has no state of its own besides the temporary folders
it is given.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivemr.errors import TransientStoreError
from drivemr.protocol import REDUCE, Job, find_job, parse_claim_name, parse_result, submit
from drivemr.spec import load_job
from drivemr.stores.base import Changes, FileInfo, Store

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


def run_in_threads(workers: Sequence[Any], timeout: float = 300) -> list[int]:
    """Run in-process workers (exit_when_idle) to the end; returns their exit codes."""
    codes: list[int] = []
    threads = [
        threading.Thread(target=lambda w=w: codes.append(w.run()), daemon=True) for w in workers
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    for w in workers:
        if any(t.is_alive() for t in threads):
            w.request_stop()
            w.request_stop()
    return codes


def _exit_codes(procs: list[WorkerProc], deadline: float) -> dict[str, int]:
    """Wait for worker processes until the deadline (at least 5 s each); -999: still running."""
    codes = {}
    for p in procs:
        try:
            codes[p.worker_id] = p.popen.wait(timeout=max(5.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            codes[p.worker_id] = -999
    return codes


def reap(sidefx: Path) -> None:
    """Kill what a killed worker left running (its tasks run in their own sessions)."""
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
        ref = parse_result(info)
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
        ref = parse_result(infos[0])
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
    """Claim id -> the worker named in the claim: one listing, not a read per task."""
    out = {}
    for info in store.list(job.folders["claims"]):
        parsed = parse_claim_name(info.name)
        if parsed is not None:
            out[info.id] = parsed[2]
    return out


def claims_of(store: Store, job: Job) -> dict[tuple[str, int], tuple[str, FileInfo]]:
    """(task, gen) -> (worker, claim file), checking that every claim is unique."""
    out: dict[tuple[str, int], tuple[str, FileInfo]] = {}
    every = [*job.tasks, *([job.reduce_task] if job.reduce_task else [])]
    valid = {cid for t in every for cid in t.claim_ids}
    for info in store.list(job.folders["claims"]):
        parsed = parse_claim_name(info.name)
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


# --------------------------------------------------------------------------- a cluster


def wait_for(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass
class WorkerProc:
    name: str
    worker_id: str
    popen: subprocess.Popen[bytes]
    log: Path
    started: float

    @property
    def pid(self) -> int:
        return self.popen.pid

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


class Cluster:
    """One store (a folder, a fresh root on a fake Drive, or a fresh prefix on a loopback S3
    server) and worker processes on it.

    The caller provides ``DRIVEMR_CONFIG_DIR`` (an isolated one: the signing key lives there)."""

    def __init__(
        self,
        kind: str,
        base: Path,
        *,
        lease: float = 3.0,
        poll: float = 0.2,
        fake: Any = None,
        fake_settings: dict[str, Any] | None = None,
    ) -> None:
        self.kind = kind
        self.base = base
        self.lease = lease
        self.poll = poll
        self.sidefx = base / "sidefx"
        self.sidefx.mkdir(parents=True, exist_ok=True)
        self.workdir = base / "workers"
        self.workdir.mkdir(exist_ok=True)
        self.procs: list[WorkerProc] = []
        self.env = dict(os.environ)
        self.env["PYTHONUNBUFFERED"] = "1"
        self._own_fake = False
        self.fake = fake
        if kind == "folder":
            from drivemr.stores.folder import FolderStore

            self.store: Store = FolderStore(base / "store", create=True)
            self.url = self.store.url
        elif kind == "drive":
            from drivemr.stores.drive import DriveStore

            if self.fake is None:
                from drivemr.testing.fakedrive import FakeDriveServer

                self.fake = FakeDriveServer(port=0, **(fake_settings or {})).start()
                self._own_fake = True
                # A killed worker's connections end in resets: expected here, not news.
                self.fake._httpd.handle_error = lambda request, client_address: None
            self.env["DRIVEMR_DRIVE_ENDPOINT"] = self.fake.url
            with DriveStore.from_url("drive://", endpoint=self.fake.url, write_rate=None) as bare:
                self.url = bare.create_root(name=f"chaos-{base.name}")
            self.store = self.drive_client()
        elif kind == "s3":  # moto's S3 server on loopback (fake: a running LoopbackS3)
            from drivemr.testing.s3server import LoopbackS3

            if self.fake is None:
                self.fake = LoopbackS3().start()
                self._own_fake = True
            self.env.update(self.fake.env)
            self.url = f"s3://{self.fake.bucket}/chaos-{base.name}-{os.getpid()}"
            self.store = self.fake.store(self.url.split("/", 3)[3])
        else:
            raise ValueError(f"unknown store kind {kind!r}")

    def drive_client(self, cls: Any = None, **options: Any) -> Any:
        from drivemr.stores.drive import DriveStore

        options.setdefault("write_rate", None)
        options.setdefault("endpoint", self.fake.url)
        return (cls or DriveStore).from_url(self.url, **options)

    def client(self) -> Store:
        """A fresh store client of this cluster (for in-process workers)."""
        if self.kind == "folder":
            from drivemr.stores.folder import FolderStore

            return FolderStore(self.base / "store")
        if self.kind == "s3":
            return self.fake.store(self.url.split("/", 3)[3])
        return self.drive_client()

    # -- jobs --

    def submit(self, job_file: Path) -> Job:
        from drivemr import signing

        key, _ = signing.load_or_create_signing_key(signing.config_dir())
        return submit(
            self.store, load_job(job_file), sign=lambda doc: signing.sign_document(doc, key)
        )

    def job(self, job_id: str) -> Job:
        return find_job(self.store, job_id)[1]

    def results(self, job: Job) -> int:
        return len(self.store.list(job.folders["results"]))

    # -- workers --

    def worker_cmd(
        self, worker_id: str, slots: int, *extra: str, lease: float | None = None
    ) -> list[str]:
        return [
            sys.executable,
            "-m",
            "drivemr.cli",
            "worker",
            "--store",
            self.url,
            "--slots",
            str(slots),
            "--lease",
            str(lease or self.lease),
            "--worker-id",
            worker_id,
            "--workdir",
            str(self.workdir / worker_id),
            "--poll-interval",
            str(self.poll),
            "--write-rate",
            "0",
            *extra,
        ]

    def start(
        self,
        name: str,
        *extra: str,
        slots: int = 2,
        worker_id: str | None = None,
        lease: float | None = None,
        prefix: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> WorkerProc:
        worker_id = worker_id or name
        log = self.workdir / f"{name}.log"
        with open(log, "ab") as fh:
            fh.write(f"--- start {worker_id} at {time.time():.3f}\n".encode())
            fh.flush()
            popen = subprocess.Popen(
                [*prefix, *self.worker_cmd(worker_id, slots, *extra, lease=lease)],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env={**self.env, **(env or {})},
            )
        proc = WorkerProc(name, worker_id, popen, log, time.time())
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for p in self.procs:
            if p.popen.poll() is None:
                with contextlib.suppress(OSError):
                    p.popen.send_signal(signal.SIGCONT)
                p.popen.kill()
                p.popen.wait()
        reap(self.sidefx)
        with contextlib.suppress(Exception):
            self.store.close()
        if self._own_fake:
            self.fake.stop()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- store wrappers


class FaultyStore(Store):
    """Wraps a store (in-process workers): transient failures and lost acknowledgements.

    ``fault_rate``: a call fails with TransientStoreError before reaching the store.
    ``lost_ack_rate``: a create reaches the store, then the caller hears an error, as
    when an answer is lost on an NFS/SMB share. ``after_create(parent, info)`` is called
    after every successful create (to crash a worker in a precise window).
    ``calls`` counts calls per operation kind, ``faults`` the injected failures."""

    def __init__(
        self,
        inner: Store,
        *,
        fault_rate: float = 0.0,
        lost_ack_rate: float = 0.0,
        seed: int | None = None,
        after_create: Callable[[str, FileInfo], None] | None = None,
    ) -> None:
        self.inner = inner
        self.url = inner.url
        self.root_id = inner.root_id
        self.fault_rate = fault_rate
        self.lost_ack_rate = lost_ack_rate
        self.after_create = after_create
        self.auth_error = False
        """When set, every call fails as a store does once the sign-in expired or was revoked."""
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.calls: collections.Counter[str] = collections.Counter()
        self.faults: collections.Counter[str] = collections.Counter()

    def _dice(self, op: str, rate: float) -> bool:
        with self._lock:
            self.calls[op] += 1
            hit = rate > 0 and self._rng.random() < rate
            if hit:
                self.faults[op] += 1
            return hit

    def _maybe_fail(self, op: str) -> None:
        if self.auth_error:
            from drivemr.errors import AuthError

            raise AuthError(f"{op}: sign-in expired or revoked; run `drivemr auth login` again")
        if self._dice(op, self.fault_rate):
            raise TransientStoreError(f"{op}: injected transient failure (EIO)")

    def mint_ids(self, count: int) -> list[str]:
        self._maybe_fail("mint_ids")
        return self.inner.mint_ids(count)

    def create(
        self,
        parent: str,
        name: str,
        file_id: str,
        data: bytes | None = None,
        *,
        source: Path | None = None,
        folder: bool = False,
    ) -> FileInfo:
        self._maybe_fail("create")
        info = self.inner.create(parent, name, file_id, data, source=source, folder=folder)
        if self.after_create is not None:
            self.after_create(parent, info)
        if self.lost_ack_rate and self._dice("create-ack", self.lost_ack_rate):
            raise TransientStoreError(f"create {name}: the answer was lost (injected)")
        return info

    def list(self, parent: str) -> list[FileInfo]:
        self._maybe_fail("list")
        return self.inner.list(parent)

    def get(self, file_id: str) -> FileInfo:
        self._maybe_fail("get")
        return self.inner.get(file_id)

    def read(self, file_id: str, *, max_bytes: int | None = None) -> bytes:
        self._maybe_fail("read")
        return self.inner.read(file_id, max_bytes=max_bytes)

    def download(self, file_id: str, dest: Path) -> None:
        self._maybe_fail("download")
        self.inner.download(file_id, dest)

    def update(self, file_id: str, data: bytes) -> FileInfo:
        self._maybe_fail("update")
        return self.inner.update(file_id, data)

    def delete(self, file_id: str) -> None:
        self._maybe_fail("delete")
        self.inner.delete(file_id)

    def changes_cursor(self) -> str:
        self._maybe_fail("changes_cursor")
        return self.inner.changes_cursor()

    def poll_changes(self, cursor: str) -> Changes:
        self._maybe_fail("poll_changes")
        return self.inner.poll_changes(cursor)

    def close(self) -> None:
        self.inner.close()


def retrying_faulty_folder(path: Path, **faults: Any) -> Any:
    """What ``open_store`` gives for a folder (its retry layer), with faults injected below
    the retries, where a share's EIO/ESTALE would come from. ``op_attempts`` records how
    many attempts each operation made."""
    from drivemr.stores.folder import FolderStore
    from drivemr.stores.retrying import RetryMixin

    class CountingRetryingFaultyFolder(RetryMixin, FaultyStore):
        op_attempts: list[tuple[str, int]]

        def _call(self, what: str, fn: Callable[[], Any], attempts: list[int] | None = None) -> Any:
            n = [0]
            try:
                return super()._call(what, fn, n)
            finally:
                if attempts is not None:
                    attempts[0] = n[0]
                with self._lock:
                    self.__dict__.setdefault("op_attempts", []).append((what, n[0]))

    return CountingRetryingFaultyFolder(FolderStore(path), **faults)


def counting_drive_store_class() -> Any:
    """A DriveStore that records how many HTTP attempts each operation made."""
    from drivemr.stores.drive import DriveStore

    class CountingDriveStore(DriveStore):
        op_attempts: list[tuple[str, int]]

        def _call(
            self, what: str, kind: str, fn: Callable[[Any], Any], attempts: list[int] | None = None
        ) -> Any:
            n = [0]

            def counted(svc: Any) -> Any:
                n[0] += 1
                return fn(svc)

            try:
                return super()._call(what, kind, counted, attempts)
            finally:
                with self._lock:
                    self.__dict__.setdefault("op_attempts", []).append((what, n[0]))

    return CountingDriveStore


# --------------------------------------------------------------------------- experiments


@dataclass
class Kill:
    at: float
    worker_id: str
    pid: int
    in_flight: list[Execution]
    restart: str
    """"same" (the same worker id) or "new"."""


@dataclass
class KillReport:
    store: str
    lease: float
    poll: float
    kills: list[Kill]
    account: Account
    latencies: list[float]
    """Per orphaned claim: seconds from the kill to the claim of the next attempt."""
    latency_by_restart: dict[str, list[float]]
    orphaned_claims: int
    elapsed: float
    exit_codes: dict[str, int]
    task_seconds: float = 0.0
    lapsed_claims: int = 0
    """Claims of workers that were not killed, taken over because that worker's heartbeat
    did go older than the lease (a loaded PC; the worker logged it and discarded them)."""
    unexplained_takeovers: list[str] = field(default_factory=list)
    """Claims taken over although their worker was neither killed nor lapsed (must be none)."""

    @property
    def bound(self) -> float:
        """The documented bound on the reclaim latency: the lease plus one poll interval
        after the kill, plus (when every slot is busy then) the wait for a slot: at most
        one task's run time."""
        return self.lease + self.poll + self.task_seconds

    def lines(self) -> list[str]:
        lat = self.latencies
        out = [
            f"[kill -9 | {self.store}] {len(self.kills)} kills of 1 of 4 workers, lease {self.lease:g} s, "
            f"poll {self.poll:g} s, {self.elapsed:.0f} s",
            f"  {self.account.line()}",
            f"  claims orphaned by the kills {self.orphaned_claims}, lapsed on a loaded worker "
            f"{self.lapsed_claims}, unexplained takeovers {len(self.unexplained_takeovers)}; "
            f"duplicates {self.account.duplicated} <= kills {len(self.kills)}"
            + (f" + lapses {self.lapsed_claims}" if self.lapsed_claims else ""),
        ]
        if lat:
            out.append(
                f"  reclaim latency (kill -> next claim): p50 {percentile(lat, 0.5):.2f} s, "
                f"p95 {percentile(lat, 0.95):.2f} s, max {max(lat):.2f} s "
                f"(lease + poll = {self.lease + self.poll:.2f} s: {sum(x <= self.lease + self.poll for x in lat)}"
                f"/{len(lat)} within; bound with a busy slot's wait = {self.bound:.2f} s)"
            )
            for mode, values in sorted(self.latency_by_restart.items()):
                if values:
                    out.append(
                        f"    restarted with the {mode} worker id: n={len(values)}, "
                        f"p50 {percentile(values, 0.5):.2f} s, max {max(values):.2f} s"
                    )
        return out


def kill_campaign(
    cluster: Cluster,
    *,
    tasks: int = 200,
    kills: int = 10,
    task_seconds: float = 0.4,
    steady_slots: int = 1,
    timeout: float = 600,
    log: Callable[[str], None] = lambda s: None,
) -> KillReport:
    """kill -9 one of 4 workers ``kills`` times during a ``tasks``-task job."""
    job_file = write_job(
        cluster.base / "job-kill",
        cluster.sidefx,
        name="kill",
        tasks=tasks,
        opts=f"sleep={task_seconds}",
        max_attempts=kills + 3,
    )
    job = cluster.submit(job_file)
    t0 = time.time()
    steady = [cluster.start(f"steady{i}", "--exit-when-idle", slots=steady_slots) for i in range(3)]
    victim = cluster.start("victim", slots=1, worker_id="victim")
    done: list[Kill] = []
    incarnation = 0
    deadline = time.monotonic() + timeout
    while len(done) < kills and time.monotonic() < deadline:
        if cluster.results(job) >= tasks:
            break

        def busy(v: WorkerProc = victim) -> list[Execution]:
            return [
                e for e in executions(cluster.sidefx) if e.worker_pid == v.pid and e.end is None
            ]

        try:
            wait_for(
                lambda: busy() or cluster.results(job) >= tasks, 60, "the victim to run a task"
            )
        except TimeoutError:
            break
        in_flight = busy()
        if not in_flight:
            break
        time.sleep(random.uniform(0.0, task_seconds / 2))  # somewhere inside the attempt
        at = time.time()
        victim.popen.send_signal(signal.SIGKILL)
        victim.popen.wait()
        restart = "same" if len(done) % 2 == 0 else "new"
        done.append(Kill(at, victim.worker_id, victim.pid, in_flight, restart))
        log(
            f"kill {len(done)}: {victim.worker_id} (pid {victim.pid}) running {[e.task for e in in_flight]}"
        )
        incarnation += 1
        wid = victim.worker_id if restart == "same" else f"victim-{incarnation}"
        victim = cluster.start("victim", "--exit-when-idle", slots=1, worker_id=wid)
    codes = _exit_codes([*steady, victim], deadline)
    elapsed = time.time() - t0
    wait_for(  # a killed worker's tasks run on: let them end (or die) before the account
        lambda: all(e.end is not None or not _alive(e.pid) for e in executions(cluster.sidefx)),
        60,
        "orphans to end",
    )
    acc = account(cluster.store, job, cluster.sidefx)
    claims = claims_of(cluster.store, job)
    latencies: list[float] = []
    by_kills: set[tuple[str, int]] = set()
    by_mode: dict[str, list[float]] = {"same": [], "new": []}
    orphaned = 0
    # A claim is orphaned by a kill when the killed incarnation held it at the kill time
    # (created before the kill, after the incarnation started) and no result came of it.
    results = {}
    for info in cluster.store.list(job.folders["results"]):
        ref = parse_result(info)
        if ref is not None:
            results[ref.task] = ref.gen
    starts = [p.started for p in cluster.procs if p.name == "victim"]
    # S3 timestamps are whole seconds: a claim made just after a restart may look older.
    resolution = 1.0 if cluster.kind == "s3" else 0.0
    for k, kill in enumerate(done):
        born_after = starts[k] - resolution
        for (tid, gen), (worker, info) in claims.items():
            if worker != kill.worker_id or not born_after - 0.05 <= info.created <= kill.at:
                continue
            if (tid, gen) in by_kills:
                continue  # the previous incarnation's (same worker id, same second)
            if results.get(tid) == gen:
                continue  # it committed before it died
            orphaned += 1
            by_kills.add((tid, gen))
            nxt = claims.get((tid, gen + 1))
            if nxt is None:
                latencies.append(float("inf"))
                continue
            latency = nxt[1].created - kill.at
            latencies.append(latency)
            by_mode[kill.restart].append(latency)
    lapsed, unexplained = other_takeovers(claims, by_kills, worker_logs(cluster.procs))
    return KillReport(
        cluster.kind,
        cluster.lease,
        cluster.poll,
        done,
        acc,
        latencies,
        by_mode,
        orphaned,
        elapsed,
        codes,
        task_seconds=task_seconds,
        lapsed_claims=lapsed,
        unexplained_takeovers=unexplained,
    )


@dataclass
class StopReport:
    store: str
    lease: float
    stops: int
    account: Account
    stale_claims: int
    """Claims the stopped workers held when they were stopped, taken over by another worker."""
    stale_results: int
    """Results committed by a stopped worker for a claim taken over meanwhile (must be 0)."""
    stale_killed: int
    """Suspended long attempts killed by their worker after SIGCONT (they never finished)."""
    lapse_messages: int
    exit_codes: dict[str, int]
    elapsed: float
    stale_targets: int = 0
    """Long attempts (still running when their worker woke up) that were suspended."""
    lapsed_claims: int = 0
    """Other claims taken over because their worker logged its heartbeat lapsing (load)."""
    unexplained_takeovers: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"[SIGSTOP past the lease | {self.store}] {self.stops} stops, lease {self.lease:g} s, {self.elapsed:.0f} s",
            f"  {self.account.line()}",
            f"  claims taken over from stopped workers {self.stale_claims}; suspended long attempts killed "
            f"on waking {self.stale_killed}/{self.stale_targets}; stale results accepted {self.stale_results}",
        ]


def stop_campaign(
    cluster: Cluster,
    *,
    tasks: int = 60,
    stops: int = 1,
    workers: int = 2,
    task_seconds: float = 0.3,
    long_first: float = 30.0,
    timeout: float = 300,
    log: Callable[[str], None] = lambda s: None,
) -> StopReport:
    """Suspend a worker together with its running tasks (SIGSTOP, as a sleeping PC) until
    another worker has taken over its long attempt, then resume it (SIGCONT).

    Before each stop the campaign arms the next task to start: that first attempt sleeps
    ``long_first`` seconds, so it is still running when its worker wakes up."""
    job_file = write_job(
        cluster.base / "job-stop",
        cluster.sidefx,
        name="stop",
        tasks=tasks,
        opts=f"sleep={task_seconds},armed={long_first}",
    )
    job = cluster.submit(job_file)
    t0 = time.time()
    procs = [cluster.start(f"w{i}", "--exit-when-idle", slots=2) for i in range(workers)]
    by_pid = {p.pid: p for p in procs}
    stale: list[tuple[WorkerProc, list[Execution], float]] = []
    deadline = time.monotonic() + timeout
    arm = cluster.sidefx / "arm"
    while len(stale) < stops and time.monotonic() < deadline:
        if cluster.results(job) >= tasks - 2 * workers * 2:
            break  # too late in the job: no task left to arm
        arm.write_text("")
        armed = wait_for(lambda: sorted(cluster.sidefx.glob("armed-*")), 60, "an armed task")
        target = armed[-1].name[len("armed-") :]
        armed[-1].rename(cluster.sidefx / f"done-{target}")

        def running(t: str = target) -> Execution | None:
            return next(
                (e for e in executions(cluster.sidefx) if e.task == t and e.attempt == 1), None
            )

        e = wait_for(running, 60, f"{target} to start")
        victim = by_pid[e.worker_pid]
        # A suspended PC: the worker and its running tasks stop together.
        frozen = [
            x for x in executions(cluster.sidefx) if x.worker_pid == victim.pid and x.end is None
        ]
        stopped_at = time.time()
        for pid in (victim.pid, *(x.pid for x in frozen)):
            with contextlib.suppress(ProcessLookupError):  # a short task may just have ended
                os.kill(pid, signal.SIGSTOP)
        log(f"stopped {victim.worker_id} running {[x.task for x in frozen]}")
        next_claim = job.task(target).claim_ids[1]
        wait_for(
            lambda c=next_claim: _exists(cluster.store, c),
            cluster.lease * 10 + 30,
            f"a takeover of {target}",
        )
        for pid in (*(x.pid for x in frozen), victim.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        log(f"resumed {victim.worker_id}")
        stale.append((victim, [e], stopped_at))
    arm.unlink(missing_ok=True)
    codes = _exit_codes(procs, deadline)
    elapsed = time.time() - t0
    acc = account(cluster.store, job, cluster.sidefx)
    claims = claims_of(cluster.store, job)
    results = {}
    for info in cluster.store.list(job.folders["results"]):
        ref = parse_result(info)
        if ref is not None:
            results[ref.task] = (ref.gen, info)
    # A stale result: committed under a claim after the next attempt's claim existed.
    stale_results = sum(
        1
        for tid, (gen, info) in results.items()
        if (tid, gen + 1) in claims and claims[(tid, gen + 1)][1].created <= info.created
    )
    lapsed = 0
    killed = 0
    by_stops: set[tuple[str, int]] = set()
    for victim, long_ones, stopped_at in stale:
        taken = {
            (tid, gen)
            for (tid, gen), (worker, info) in claims.items()
            if worker == victim.worker_id
            and info.created <= stopped_at
            and (tid, gen + 1) in claims
            and claims[(tid, gen + 1)][1].created > stopped_at
        }
        lapsed += len(taken)
        by_stops |= taken
        final: dict[int, Execution] = {}  # pid -> its first execution record, read once
        for x in executions(cluster.sidefx) if long_ones else []:
            final.setdefault(x.pid, x)
        for e in long_ones:
            last = final.get(e.pid)
            if last is not None and last.end is None and not _alive(e.pid):
                killed += 1
    texts = [p.text() for p in procs]
    lapses = sum(t.count("claim lapsed") + t.count("result discarded") for t in texts)
    return StopReport(
        cluster.kind,
        cluster.lease,
        len(stale),
        acc,
        lapsed,
        stale_results,
        killed,
        lapses,
        codes,
        elapsed,
        sum(len(x[1]) for x in stale),
        *other_takeovers(claims, by_stops, worker_logs(procs)),
    )


def worker_logs(procs: Sequence[WorkerProc]) -> dict[str, str]:
    logs: dict[str, str] = collections.defaultdict(str)
    for p in procs:
        logs[p.worker_id] += p.text()
    return logs


@contextlib.contextmanager
def captured_logs() -> Iterator[dict[str, str]]:
    """The log of in-process workers while the block runs: every worker's lines together,
    under any worker id (they share the process's logger)."""
    import logging

    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Keep(level=logging.INFO)
    logger = logging.getLogger("drivemr")
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    text: dict[str, str] = collections.defaultdict(lambda: "\n".join(lines))
    try:
        yield text
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


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


def _exists(store: Store, file_id: str) -> bool:
    from drivemr.errors import NotFound

    try:
        store.get(file_id)
    except NotFound:
        return False
    return True


def _alive(pid: int) -> bool:
    try:
        import psutil

        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except Exception:
        return False


@dataclass
class StormReport:
    store: str
    fault_rate: float
    account: Account
    job_state: str
    cap: int
    max_attempts_seen: int
    ops: int
    attempts: int
    server_requests: int
    faults_injected: int
    gave_up: int
    attempts_histogram: dict[int, int]
    elapsed: float

    def lines(self) -> list[str]:
        hist = ", ".join(f"{k}:{v}" for k, v in sorted(self.attempts_histogram.items()))
        what = "HTTP attempts" if self.store == "drive" else "file-system attempts"
        return [
            f"[{self.fault_rate:.0%} storm | {self.store}] job {self.job_state}, {self.elapsed:.0f} s",
            f"  {self.account.line()}",
            f"  {self.ops} operations, {self.attempts} {what} ({self.server_requests} seen by the server), "
            f"{self.faults_injected} faults injected, {self.gave_up} operations gave up",
            f"  attempts per operation: max {self.max_attempts_seen} (cap {self.cap}); histogram {hist}",
        ]


def storm_campaign(
    cluster: Cluster,
    *,
    tasks: int = 40,
    workers: int = 3,
    fault_rate: float = 0.3,
    task_seconds: float = 0.05,
    lease: float = 10.0,
    timeout: float = 300,
    backoff_base: float = 0.1,
) -> StormReport:
    """Run a job with in-process workers while ``fault_rate`` of the store's answers fail."""
    from drivemr.status import status_of
    from drivemr.worker import Worker, WorkerConfig

    job_file = write_job(
        cluster.base / "job-storm",
        cluster.sidefx,
        name="storm",
        tasks=tasks,
        opts=f"sleep={task_seconds}",
        reduce=True,
    )
    job = cluster.submit(job_file)
    stores: list[Any] = []
    if cluster.kind == "drive":
        cls = counting_drive_store_class()
        cluster.fake.reset_stats()
        cluster.fake.configure(fault_rate=fault_rate, fault_codes=(500, 503, 429))
        stores = [
            cluster.drive_client(cls, backoff_base=backoff_base, backoff_max=2.0)
            for _ in range(workers)
        ]
        cap = stores[0].max_attempts
    elif cluster.kind == "s3":  # the proxy answers 503/500/409 or loses the answer
        prefix = cluster.url.split("/", 3)[3]
        stores = [cluster.fake.store(prefix) for _ in range(workers)]
        for s in stores:
            s.backoff_base = backoff_base
        cluster.fake.proxy.reset()
        cluster.fake.proxy.storm(fault_rate, seed=1)
        cap = stores[0].max_attempts
    else:
        stores = [
            retrying_faulty_folder(cluster.base / "store", fault_rate=fault_rate, seed=i)
            for i in range(workers)
        ]
        cap = stores[0].max_attempts
    ws = [
        Worker(
            s,
            WorkerConfig(
                worker_id=f"storm{i}",
                slots=2,
                workdir=cluster.workdir / f"storm{i}",
                lease=lease,
                poll_interval=0.1,
                retry_backoff=0.1,
                exit_when_idle=True,
            ),
            verify=None,
        )
        for i, s in enumerate(stores)
    ]
    t0 = time.time()
    run_in_threads(ws, timeout)
    elapsed = time.time() - t0
    if cluster.kind == "drive":
        cluster.fake.configure(fault_rate=0.0)
        server = cluster.fake.stats()
        ops = [n for s in stores for _, n in getattr(s, "op_attempts", [])]
        gave_up = int(sum(s.stats["gave_up"] for s in stores))
        faults = int(server["fault_errors"])
        server_requests = int(server["requests"])
    elif cluster.kind == "s3":
        proxy = cluster.fake.proxy
        faults, server_requests = proxy.injected, proxy.total()
        proxy.reset()
        ops = []
        gave_up = sum(s.retry_stats["gave_up"] for s in stores)
    else:
        ops = [n for s in stores for _, n in getattr(s, "op_attempts", [])]
        gave_up = sum(s.retry_stats["gave_up"] for s in stores)
        faults = sum(n for s in stores for op, n in s.faults.items() if op != "create-ack")
        server_requests = sum(n for s in stores for op, n in s.calls.items() if op != "create-ack")
    acc = account(cluster.store, job, cluster.sidefx)
    state = status_of(cluster.store, job.id).state
    return StormReport(
        cluster.kind,
        fault_rate,
        acc,
        state,
        cap,
        max(ops, default=0),
        len(ops),
        sum(ops),
        server_requests,
        faults,
        gave_up,
        dict(collections.Counter(ops)),
        elapsed,
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
