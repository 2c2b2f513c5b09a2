"""A worker that runs for weeks (issues 16.4, 19.1): what it remembers is bounded by what
the store holds, its working folder keeps only live jobs, and a job it cannot read is
never taken as finished. In-process workers over a MemoryStore (``Worker.step`` on a
clock the test owns), except the ``--exit-when-idle`` test, which runs the real loop."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from drivemr.errors import NotFound
from drivemr.protocol import Job, heartbeat_name, submit
from drivemr.spec import load_job
from drivemr.testing import MemoryStore
from drivemr.testing.clock import ManualClock as Clock
from drivemr.worker import Worker, WorkerConfig
from drivemr.worker.unreadable import EXIT_UNREADABLE

LEASE = 60.0
TRUE = "true" if sys.platform != "win32" else "cmd /c exit 0"


class HidingStore(MemoryStore):
    """A store on which some published files cannot be read (as on sshfs before issue 19)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.hidden: set[str] = set()
        self.tries: dict[str, int] = {}

    def read(
        self, file_id: str, *, max_bytes: int | None = None, parent: str | None = None
    ) -> bytes:
        if file_id in self.hidden:
            self.tries[file_id] = self.tries.get(file_id, 0) + 1
            raise NotFound(f"read {file_id}: not found")
        return super().read(file_id, max_bytes=max_bytes)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> HidingStore:
    return HidingStore(clock)


@pytest.fixture
def post(store: MemoryStore, write_job: Callable[..., Path]) -> Callable[..., Job]:
    def post(items: int = 1, name: str = "tiny") -> Job:
        text = f"""
            name = "{name}"
            [map]
            command = {json.dumps(TRUE.split())}
            items = {{range = [1, {items + 1}]}}
            """
        return submit(store, load_job(write_job(text, name=name)))

    return post


def make_worker(
    store: MemoryStore, tmp_path: Path, clock: Clock, wid: str = "w", **kw: object
) -> Worker:
    options: dict[str, object] = {
        "worker_id": wid,
        "slots": 1,
        "workdir": tmp_path / wid,
        "lease": LEASE,
        "poll_interval": 1.0,
        "retry_backoff": 1.0,
        "reconcile_interval": 3600.0,
        **kw,
    }
    return Worker(store, WorkerConfig(**options), clock=clock)  # type: ignore[arg-type]


def job_json_id(store: MemoryStore, job: Job) -> str:
    (spec,) = [i for i in store.list(job.folder) if i.name == "job.json"]
    return spec.id


# --------------------------------------------------------------------------- unreadable jobs


def test_an_unreadable_job_is_reported_once_retried_with_backoff_and_never_finished(
    store: HidingStore,
    clock: Clock,
    post: Callable[..., Job],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="drivemr")
    w = make_worker(store, tmp_path, clock, exit_when_idle=True)
    job = post(2)
    spec = job_json_id(store, job)
    store.hidden.add(spec)
    for _ in range(120):  # two minutes of steps, one a second
        w.step()
        clock.now += 1.0
        assert not w.all_done()  # never "finished" while the job cannot be read
    reports = [r.getMessage() for r in caplog.records if "cannot read job" in r.getMessage()]
    assert len(reports) == 1, reports  # once
    assert f"job {job.id}" in reports[0] and "job.json" in reports[0]
    assert "not found" in reports[0] and job.folder in reports[0]  # which file, what error
    assert 3 <= store.tries[spec] <= 9, store.tries  # backoff: not once a step

    store.hidden.clear()  # readable again: adopted at its next try, run, finished
    for _ in range(200):
        w.step()
        clock.now += 1.0
        if w.all_done():
            break
    assert w.all_done()
    assert len(store.list(job.folders["results"])) == 2
    assert any("can be read again" in r.getMessage() for r in caplog.records)


def test_a_folder_without_job_json_yet_is_not_reported_at_once(
    store: HidingStore, clock: Clock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A submit in progress (folder made, job.json not yet there) is not news; it is once it
    stays so for long (and it still counts as a job that is not finished)."""
    caplog.set_level(logging.INFO, logger="drivemr")
    w = make_worker(store, tmp_path, clock, exit_when_idle=True)
    (fid,) = store.mint_ids(1)
    store.create(store.root_id, "job-half-20261130-000000-abcd", fid, folder=True)
    for _ in range(5):
        w.step()
        clock.now += 1.0
    assert not w.all_done()
    assert not [r for r in caplog.records if "cannot read" in r.getMessage()]
    for _ in range(60):
        w.step()
        clock.now += 1.0
    (line,) = [r.getMessage() for r in caplog.records if "cannot read" in r.getMessage()]
    assert "no job.json yet" in line


def test_exit_when_idle_exits_non_zero_naming_the_unreadable_job(
    store: HidingStore, post: Callable[..., Job], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="drivemr")
    readable = post(1, name="fine")
    broken = post(1, name="broken")
    store.hidden.add(job_json_id(store, broken))
    from drivemr.worker.config import SystemClock

    w = Worker(
        store,
        WorkerConfig(
            worker_id="w",
            slots=1,
            workdir=tmp_path / "w",
            lease=1.0,
            poll_interval=0.05,
            exit_when_idle=True,
        ),
        clock=SystemClock(),
    )
    assert w.run() == EXIT_UNREADABLE
    assert len(store.list(readable.folders["results"])) == 1  # the readable job was served
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert f"cannot read job {broken.id}" in text
    assert "1 job(s) cannot be read; exiting with status 5" in text
    assert "every job is finished" not in text


# --------------------------------------------------------------------------- bounded memory


@pytest.mark.slow
def test_six_hundred_jobs_leave_every_cache_bounded(
    store: HidingStore, clock: Clock, post: Callable[..., Job], tmp_path: Path
) -> None:
    """Serve 600 one-task jobs, deleting each finished job's folder a while later (as a
    user cleaning up would), with another worker's heartbeat rewritten all along: every
    cache and the working folder stay small however many jobs were served.

    The bounds checked are about 25 entries, so 600 jobs (24 times that; 2,000 once) still
    catch a cache that keeps one entry per 20 jobs, and the 12 minutes of clock they take
    span every timer of the worker (sweeps every 30 s, backoffs up to 300 s)."""
    w = make_worker(store, tmp_path, clock)
    other_hb = store.mint_ids(1)[0]
    store.create(store.root_id, heartbeat_name("other"), other_hb, b'{"state": "running"}')
    served: list[Job] = []
    sizes: list[tuple[int, ...]] = []
    keep = 20  # job folders left in the store at any time
    for n in range(600):
        served.append(post(1, name=f"j{n}"))
        store.update(other_hb, json.dumps({"state": "running", "n": n}).encode())
        for _ in range(3):
            w.step()
            clock.now += 0.4
        if len(served) > keep:
            store.delete(served[-keep - 1].folder)
        if n % 25 == 0:
            w.sweep_workdir()
            sizes.append(
                (
                    len(w.jobs),
                    len(w.shared.done_jobs),
                    len(w.rejected),
                    len(w.others._read),
                    len(w.watcher._rejected_folders),
                    len(w.watcher.unreadable),
                    len([p for p in w.workdir.iterdir() if p.is_dir()]),
                )
            )
    done = sum(1 for job in served[-keep:] if store.list(job.folders["results"]))
    assert done >= keep - 3  # the worker kept up
    for row in sizes:
        jobs, done_jobs, rejected, stopped, rejected_folders, unreadable, dirs = row
        assert jobs <= 5 and done_jobs <= keep + 5 and stopped <= 2, row
        assert rejected == rejected_folders == unreadable == 0, row
        assert dirs <= keep + 5, row  # the slot's home and live jobs' folders only


def test_the_working_folder_is_swept_of_ended_jobs_only(
    store: HidingStore, clock: Clock, post: Callable[..., Job], tmp_path: Path
) -> None:
    """Folders of jobs that ended (or that an earlier life left) go; a live job's folder, the
    slot homes and anything not named like a job stay; --keep-workdirs keeps everything."""
    leftover = tmp_path / "w" / "old-20260101-000000-beef" / "files"
    leftover.mkdir(parents=True)
    (tmp_path / "w" / "notes").mkdir()
    w = make_worker(store, tmp_path, clock)
    job = post(1)
    for _ in range(5):
        w.step()
        clock.now += 1.0
    assert store.list(job.folders["results"])
    assert not leftover.parent.exists()  # swept at the first step
    (tmp_path / "w" / job.id).mkdir(exist_ok=True)
    assert w.sweep_workdir() == 1  # the finished job's folder
    assert (tmp_path / "w" / "notes").is_dir()

    kept = make_worker(store, tmp_path, clock, wid="k", keep_workdirs=True)
    (tmp_path / "k" / job.id).mkdir(parents=True)
    kept.step()
    assert kept.sweep_workdir() == 0 and (tmp_path / "k" / job.id).is_dir()


def test_a_few_jobs_deleted_from_the_store_are_forgotten(
    store: HidingStore, clock: Clock, post: Callable[..., Job], tmp_path: Path
) -> None:
    """The quick version of the 600-job test: finished jobs are remembered while their
    folder is in the store, forgotten when it goes; another worker's heartbeat rewritten
    many times is cached once."""
    w = make_worker(store, tmp_path, clock)
    other = store.mint_ids(1)[0]
    store.create(store.root_id, heartbeat_name("other"), other, b'{"state": "running"}')
    jobs = [post(1, name=f"j{n}") for n in range(6)]
    for n in range(30):
        store.update(other, json.dumps({"state": "running", "n": n}).encode())
        w.step()
        clock.now += 1.0
    assert w.shared.done_jobs == {j.id for j in jobs}
    assert len(w.others._read) <= 1
    for job in jobs[:4]:
        store.delete(job.folder)
    store.delete(other)
    w.watcher.look()
    w.shared.dirty.root = True
    w.step()
    assert w.shared.done_jobs == {j.id for j in jobs[4:]}
    assert w.others._read == {}
