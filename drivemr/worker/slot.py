"""Running one attempt in a slot: fetch what it needs, run it, hand it to the commit.

A worker runs N slots, one thread each, alive for the worker's life (no thread start per
task). A slot reuses one working folder, emptied after every attempt (a scandir is far
cheaper than a mkdir and rmdir per task); ``--keep-workdirs`` gives each attempt a folder
of its own instead. After each attempt the slot claims its next task itself when it can
(claim.py): for short tasks a round trip through the loop costs as much as the task.
A threaded slot's result trails (trail.py): the slot claims its next task first and the
result is committed in the background while the next attempt runs.

Before: claim.py made the claim. Next: commit.py records the result.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import queue
import secrets
import shutil
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from drivemr import taskenv
from drivemr.errors import AuthError
from drivemr.fileio import sha256_file
from drivemr.protocol import REDUCE, StoredFile
from drivemr.results import download_checked, stage_results
from drivemr.runner import AttemptOutcome, OutputFile
from drivemr.safepaths import safe_join
from drivemr.spec import expand
from drivemr.worker.commit import Committer
from drivemr.worker.items import PackRun
from drivemr.worker.state import ActiveJob, Assignment, Shared
from drivemr.worker.trail import Trail, release

log = logging.getLogger("drivemr.worker")

Claimed = tuple[Assignment, ActiveJob]


class Slot:
    """A slot thread: runs claimed attempts one by one; its folder and files are its own."""

    def __init__(
        self,
        number: int,
        shared: Shared,
        committer: Committer,
        base_env: Mapping[str, str],
        redact: Callable[[str], str] | None = None,
        trail: Trail | None = None,
    ) -> None:
        """``trail``: results trail (``committer`` must hold them: ``hold=True``);
        without it each attempt commits before :meth:`run` returns."""
        if committer.holds and trail is None:
            raise ValueError("a slot whose committer holds its results needs a trail")
        self.shared = shared
        self.committer = committer
        self.trail = trail
        self._trailing: concurrent.futures.Future[None] | None = None
        """This slot's result being committed by the trail (at most one)."""
        self._base_env = base_env
        workdir = shared.workdir
        self.out = OutputFile(workdir / f".slot{number}.stdout", redact)
        self.err = OutputFile(workdir / f".slot{number}.stderr", redact)
        self.home = workdir / f"slot{number}"
        self.home.mkdir(exist_ok=True)
        self._home_clean = clear_folder(self.home)
        """True when the home folder's last emptying left nothing (no need to look)."""
        self._thread: threading.Thread | None = None
        self.name = f"drivemr-slot{number}"

    def start(
        self, slots: queue.SimpleQueue[Claimed | None], claim_next: Callable[[], Claimed | None]
    ) -> None:
        self._thread = threading.Thread(
            target=self.serve, args=(slots, claim_next), name=self.name, daemon=True
        )
        self._thread.start()

    def serve(
        self, slots: queue.SimpleQueue[Claimed | None], claim_next: Callable[[], Claimed | None]
    ) -> None:
        """Run what arrives until a None; after each attempt claim the next one here,
        then hand the attempt's held result to the trail (claims first: they unblock work)."""
        try:
            item = slots.get()
            while item is not None:
                held = self.run(*item)
                nxt = None
                try:
                    self.await_trailing()  # never more than one result uncommitted
                    if held is not None:  # this slot is free from now on: it may claim
                        with self.shared.lock:
                            self.shared.trailing.add((item[0].job.id, item[0].task.id))
                    nxt = self._claim_next(claim_next)
                    if nxt is None:
                        ticket = self.shared.rounds.ticket()
                        self.shared.wake.set()  # the loop fills this slot (or finds nothing)
                        if held is not None:
                            # After a listing, maybe: let it claim before our result's write.
                            self.shared.rounds.wait(ticket)
                finally:  # whatever happened above, a held result is always handed on
                    if held is not None:
                        assert self.trail is not None  # only a slot with a trail holds
                        self._trailing = self.trail.hand(*item, held)
                item = nxt if nxt is not None else slots.get()
        finally:
            self.await_trailing()
            self.close()

    def _claim_next(self, claim_next: Callable[[], Claimed | None]) -> Claimed | None:
        """The slot's own claim of its next task; never raises (a failed request, a bad
        file: the loop claims for this slot instead, and a held result still trails)."""
        shared = self.shared
        try:
            return claim_next()
        except AuthError as exc:
            shared.fail(exc)
        except Exception as exc:  # one failed claim never kills a slot
            log.warning(
                "%s: claiming the next task failed (the loop will retry): %s", self.name, exc
            )
        return None

    def await_trailing(self) -> None:
        """Wait until this slot's trailing result (if any) is committed."""
        if self._trailing is not None:
            self._trailing.result()  # Trail.commit never raises
            self._trailing = None

    def close(self) -> None:
        self.out.close()
        self.err.close()

    def run(self, a: Assignment, active: ActiveJob) -> Callable[[], None] | None:
        """One attempt, start to commit. Never raises: one bad attempt never kills the
        worker. With a holding committer, returns the held commit (None: nothing to commit)
        and ``a`` stays running (and its slot busy) until :meth:`serve` hands it on."""
        shared = self.shared
        task_dir: Path | None = None
        try:
            if a.task.packed:
                ensure_job_files(shared, active)
                PackRun(self, a, active).run()
            else:
                task_dir = self._prepare(a, active)
                outcome = self._execute(a, active, task_dir)
                self.committer.conclude(a, active, task_dir, outcome, self.out, self.err)
        except AuthError as exc:
            shared.fail(exc)
            log.error("%s", exc)
        except Exception as exc:
            log.exception("%s/%s: attempt failed inside the worker: %s", a.job.id, a.task.id, exc)
            self.committer.after_failure(a, active, None, f"worker error: {exc}")
        finally:
            held = self.committer.take_held()
            if held is None:
                release(shared, a)
            if task_dir is not None:
                self.release_folder(task_dir)
        return held

    @property
    def base_env(self) -> Mapping[str, str]:
        return self._base_env

    def folder_for(self, job_id: str, name: str) -> Path:
        """A working folder for one attempt (of a task, or of an item of a pack): the
        slot's own when it is empty, else (kept, or leftovers that could not be removed)
        a folder of its own."""
        if self.shared.config.keep_workdirs or not (self._home_clean or is_empty(self.home)):
            folder = self.shared.workdir / job_id / f"{name}-{secrets.token_hex(3)}"
            folder.mkdir(parents=True)
            return folder
        self._home_clean = False
        return self.home

    def release_folder(self, folder: Path) -> None:
        """Empty (or remove) a folder from :meth:`folder_for` once its attempt ended."""
        if self.shared.config.keep_workdirs:
            return
        if folder == self.home:
            self._home_clean = clear_folder(folder)
        else:
            shutil.rmtree(folder, ignore_errors=True)

    # -- before the attempt --

    def _prepare(self, a: Assignment, active: ActiveJob) -> Path:
        """The attempt's working folder, with its input (and, for the reduce, every result)."""
        ensure_job_files(self.shared, active)
        task_dir = self.folder_for(a.job.id, f"{a.task.id}.g{a.attempt}")
        if a.task.input is not None:
            fetch(
                self.shared,
                a.task.input,
                safe_join(task_dir, a.task.input.name),
                folder=a.job.folders["files"],
            )
        if a.task.id == REDUCE:
            with self.shared.lock:
                refs = dict(active.view.results)
            # {results}: one folder per task, each result opened again and its outputs
            # checked against their sealed sha256 as they arrive.
            stage_results(
                self.shared.store, a.job, refs, task_dir / "results", reader=self.shared.results
            )
        return task_dir

    # -- the attempt --

    def _execute(self, a: Assignment, active: ActiveJob, task_dir: Path) -> AttemptOutcome:
        stage = a.job.stage_of(a.task)
        values = {
            "task": a.task.id,
            "files": str(active.files_dir),
            "input": a.task.input.name if a.task.input else "",
            "item": a.task.item or "",
            "results": f"{task_dir}{os.sep}results",  # a join per attempt: no pathlib
        }
        argv = expand(stage.command, values)
        log.debug("%s/%s attempt %d: %s", a.job.id, a.task.id, a.attempt + 1, argv)
        env = dict(self._base_env)
        env.update(stage.env)
        env.update(DRIVEMR_JOB=a.job.id, DRIVEMR_TASK=a.task.id, DRIVEMR_ATTEMPT=str(a.attempt + 1))
        return a.process.run(
            argv,
            cwd=task_dir,
            env=env,
            timeout=stage.timeout,
            stdout=self.out.reset(),
            stderr=self.err.reset(),
        )


def task_base_env(passed: Iterable[str] = ()) -> dict[str, str]:
    """The environment tasks inherit: ours, minus the documented deny-list of secrets
    (drivemr.taskenv), except those passed on purpose (computed once per worker)."""
    return taskenv.task_base_env(os.environ, passed=passed)


def ensure_job_files(shared: Shared, active: ActiveJob) -> Path:
    """The job's shipped files, fetched and verified once for every slot."""
    if active.files_dir is not None:  # set once, never unset: no lock needed to read it
        return active.files_dir
    with active.files_ready:
        if active.files_dir is None:
            files_dir = shared.workdir / active.job.id / "files"
            for f in active.job.files:
                target = safe_join(files_dir, f.name)
                if not target.exists() or sha256_file(target) != f.sha256:
                    fetch(shared, f, target, folder=active.job.folders["files"])
            active.files_dir = files_dir
            files_dir.mkdir(parents=True, exist_ok=True)
        return active.files_dir


def fetch(shared: Shared, f: StoredFile, target: Path, *, folder: str | None = None) -> None:
    """Download a shipped file (in the job's ``folder`` of files), no further than its
    signed size, and check its digest."""
    download_checked(
        shared.store,
        f.id,
        target,
        size=f.size,
        sha256=f.sha256,
        what=f"shipped file {f.name}",
        signed_in="job.json",
        parent=folder,
    )


def is_empty(folder: Path) -> bool:
    """Whether a folder holds nothing (a check; False when it cannot be read)."""
    try:
        with os.scandir(folder) as entries:
            return next(entries, None) is None
    except OSError:
        return False


def clear_folder(folder: Path) -> bool:
    """Remove what an attempt left in its working folder. Never raises (logs instead);
    True when nothing was left behind, so the next attempt need not look."""
    try:
        with os.scandir(folder) as entries:
            leftovers = [Path(e.path) for e in entries]
        if not leftovers:
            return True
        for path in leftovers:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.warning("could not empty %s: %s", folder, exc)
    return False  # something was removed (maybe not everything): look before the next use
