"""The Python API: :class:`Client` and its :class:`Job` handles.

Everything the ``drivemr`` command does with a job (submit, status, wait, cancel, jobs,
workers, reduce, logs) is done here once; the commands in ``cli.py`` and ``ops_cli.py``
only parse flags and print. So a script and a terminal see the same data from the same
code, and the API never prints: progress is shown only when asked (``progress=True``),
failures are exceptions from the :class:`~drivemr.errors.DrivemrError` tree.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from drivemr import protocol
from drivemr.errors import DrivemrError, JobStateError, NoWorkerError, SecurityError
from drivemr.protocol import JOB_PREFIX, REDUCE, find_job, list_jobs, load_view, read_job
from drivemr.spec import JobSpec
from drivemr.status import JobStatus, job_status
from drivemr.stores.base import FileInfo, Store
from drivemr.wiring import build_worker, open_configured_store, signer, verifier
from drivemr.wiring import lease as _lease
from drivemr.workerinfo import WorkerInfo, worker_infos

if TYPE_CHECKING:
    from drivemr.report import AttemptRecord
    from drivemr.rounds import Round
    from drivemr.trust import Trust

__all__ = [
    "Client",
    "Job",
    "JobStatus",
    "UnreadableJobInfo",
    "WorkerInfo",
]

log = logging.getLogger("drivemr")

Notice = Callable[[str], None] | Literal["raise"] | None
"""What ``wait`` does when nothing will run the job: call this, raise
:class:`~drivemr.errors.NoWorkerError` (``"raise"``), or nothing (``None``: only logged)."""


def _suggest(command: str) -> str:
    from drivemr.cli import suggest

    return suggest(command)


# ---------------------------------------------------------------------------- plain data


@dataclass(frozen=True)
class UnreadableJobInfo:
    """A job folder whose job.json cannot be read (as ``jobs()`` lists it)."""

    job: str
    error: str
    created: float
    state: str = "unreadable"

    def to_json(self) -> dict[str, Any]:
        return {"job": self.job, "state": self.state, "error": self.error}


# ---------------------------------------------------------------------------- the client


class Client:
    """A connection to one drivemr store.

    ``store`` is a URL (a folder path, ``file:///path``, ``drive://FOLDER_ID``), an open
    :class:`~drivemr.stores.base.Store`, or ``None`` for ``$DRIVEMR_STORE`` and then the
    config file's ``store`` (as the ``drivemr`` command resolves ``--store``). Used as a
    context manager, it closes a store it opened itself.
    """

    def __init__(self, store: str | os.PathLike[str] | Store | None = None) -> None:
        if isinstance(store, Store):
            self.store: Store = store
            self._owned = False
        else:
            self.store = open_configured_store(None if store is None else os.fspath(store))
            self._owned = True
        self._trust: Trust | None = None

    @property
    def url(self) -> str:
        return self.store.url

    @property
    def trust(self) -> Trust:
        """This PC's key (created on first use, as the first submit does) and the keys it
        trusts: what seals the markers and rounds this client writes."""
        if self._trust is None:
            from drivemr.trust import Trust

            self._trust = Trust.for_this_pc()
        return self._trust

    @property
    def key_id(self) -> str:
        """The id of this PC's key (``drivemr keys show``)."""
        me = self.trust.me
        assert me is not None  # for_this_pc always has a key
        return str(me.key_id)

    def close(self) -> None:
        """Close the store if this client opened it."""
        if self._owned:
            self.store.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    # -- jobs ---------------------------------------------------------------------------

    def submit(
        self,
        path_or_spec: str | os.PathLike[str] | JobSpec,
        *,
        signed: bool = True,
        progress: Callable[[str], None] | None = None,
    ) -> Job:
        """Validate a job file (or take a parsed :class:`~drivemr.spec.JobSpec`), post it
        to the store signed with this PC's key, and return its handle.

        A bad job file raises :class:`~drivemr.errors.JobSpecError` before anything is
        written; ``progress`` is told about long uploads."""
        from drivemr.spec import load_job

        spec = path_or_spec if isinstance(path_or_spec, JobSpec) else load_job(Path(path_or_spec))
        job = protocol.submit(
            self.store, spec, sign=signer() if signed else None, progress=progress
        )
        # By id, not by a listing: a get is the consistent read on every store.
        return Job(self, job.id, job=job, folder=self.store.get(job.folder))

    def job(self, job_id: str) -> Job:
        """The handle of a job by id (or a unique prefix of its id); raises if none."""
        folder, job = find_job(self.store, job_id)
        return Job(self, job.id, job=job, folder=folder)

    def jobs(self) -> list[JobStatus | UnreadableJobInfo]:
        """Every job in the store with its status (without per-task rows), newest first."""
        root = self.store.list(self.store.root_id)
        entries: list[JobStatus | UnreadableJobInfo] = []
        for folder in list_jobs(self.store, root):
            try:
                job = read_job(self.store, folder)
                entries.append(job_status(self.store, folder, job, root=root, lease=_lease()))
            except DrivemrError as exc:
                entries.append(
                    UnreadableJobInfo(folder.name[len(JOB_PREFIX) :], str(exc), folder.created)
                )
        entries.sort(key=lambda e: e.created, reverse=True)
        return entries

    def workers(self) -> list[WorkerInfo]:
        """Every worker seen in the store (its heartbeat), by id."""
        return worker_infos(self.store)

    # -- map ----------------------------------------------------------------------------

    def map(
        self,
        fn: Callable[[Any], Any],
        items: Iterable[Any],
        *,
        name: str | None = None,
        timeout: float | str | None = None,
        max_attempts: int = 3,
        env: Mapping[str, str] | None = None,
        items_per_task: int | None = None,
        wait_timeout: float | None = None,
        progress: bool = False,
        on_notice: Notice = None,
        poll: float = 0.5,
    ) -> list[Any]:
        """Run ``fn(item)`` for every item on the store's workers; the results in item order.

        ``fn`` is a top-level function of a module file; that file is shipped with the job
        (covered by its signature) and imported on the workers, never pickled. Items and
        return values are JSON. ``timeout`` limits each attempt ("90s", "10m" or seconds),
        ``max_attempts`` the attempts per item, ``items_per_task`` the packing (default:
        chosen for the live workers, docs/packing.md); ``wait_timeout``, ``progress``,
        ``on_notice`` as for :meth:`Job.wait`. Raises :class:`~drivemr.errors.MapInputError`
        before submitting when ``fn`` or an item is refused, :class:`MapError` naming each
        failed item."""
        from drivemr import mapjob

        spec = mapjob.map_job_spec(
            fn, items, name=name, timeout=timeout, max_attempts=max_attempts, env=env,
            items_per_task=items_per_task,
        )  # fmt: skip
        handle = self.submit(spec)
        st = handle.wait(wait_timeout, progress, on_notice=on_notice, poll=poll)
        return mapjob.map_results(self.store, handle._job(), st)


class Job:
    """A handle on one job of a store: read its state, wait for it, cancel it, fetch what
    it made. Cheap to create; every method reads the store afresh."""

    def __init__(
        self,
        client: Client,
        job_id: str,
        *,
        job: protocol.Job | None = None,
        folder: FileInfo | None = None,
    ) -> None:
        self.client = client
        self.id = job_id
        self._doc = job
        self._folder = folder

    def __repr__(self) -> str:
        return f"Job({self.id!r}, store={self.client.url!r})"

    @property
    def store(self) -> Store:
        return self.client.store

    def _find(self) -> tuple[FileInfo, protocol.Job]:
        if self._folder is None or self._doc is None:
            self._folder, self._doc = find_job(self.store, self.id)
        return self._folder, self._doc

    def _job(self) -> protocol.Job:
        return self._find()[1]

    @property
    def name(self) -> str:
        return self._job().name

    @property
    def definition(self) -> protocol.Job:
        """The job as its signed job.json defines it: tasks, stages, shipped files."""
        return self._job()

    def status(self) -> JobStatus:
        """The job's state, counts, every task and the reduce (``status --json``)."""
        folder, job = self._find()
        return job_status(self.store, folder, job, lease=_lease())

    def wait(
        self,
        timeout: float | None = None,
        progress: bool = False,
        *,
        on_notice: Notice = None,
        out: IO[str] | None = None,
        poll: float = 0.5,
        idle_after: float | None = None,
    ) -> JobStatus:
        """Wait until the job is done, failed or cancelled, and return its final status.

        ``timeout`` seconds raise :class:`~drivemr.errors.WaitTimeout` (the job goes on).
        ``progress`` shows a progress bar (plain lines when ``out``, default stderr, is
        not a terminal). When nothing will run the job (no live worker serves the store,
        or every live one rejected the job) ``on_notice`` gets the reason, once, after
        ``idle_after`` seconds (default 15): a callable is called, ``"raise"`` raises
        :class:`~drivemr.errors.NoWorkerError`, ``None`` shows it in the progress display
        when ``progress`` and only logs it otherwise."""
        from drivemr.progress import Rate, display_for, wait_for_end

        folder, job = self._find()
        stream: IO[str] = out if out is not None else sys.stderr

        def notice(text: str) -> None:
            if on_notice == "raise":
                raise NoWorkerError(text)
            if callable(on_notice):
                on_notice(text)
            elif display is not None:
                display.note(text)
            else:
                log.info("%s", text)

        def retry(text: str) -> None:
            if display is not None:
                display.note(text)
            else:
                log.info("%s", text)

        display = display_for(stream, job.id) if progress else None
        if display is None:
            return wait_for_end(
                self.store,
                folder,
                job,
                poll=poll,
                idle_after=idle_after,
                timeout=timeout,
                on_notice=notice,
                on_retry=retry,
            )
        rate = Rate()

        def update(st: JobStatus) -> None:
            from drivemr.progress import _totals

            rate.add(time.monotonic(), _totals(st)[0])
            assert display is not None
            display.update(st, rate)

        with display:
            return wait_for_end(
                self.store,
                folder,
                job,
                poll=poll,
                idle_after=idle_after,
                timeout=timeout,
                on_update=update,
                on_notice=notice,
                on_retry=retry,
            )

    def cancel(self) -> bool:
        """Cancel the job: workers stop claiming its tasks and kill its running attempts at
        their next poll (the cancel marker is sealed with this PC's key: workers on PCs that
        do not trust it ignore it). False if it was already cancelled; raises
        :class:`~drivemr.errors.JobStateError` if it already finished, and
        :class:`~drivemr.errors.SecurityError` if a forged file holds the marker's id."""
        import getpass

        _folder, job = self._find()
        trust = self.client.trust
        view = load_view(self.store, job, trust)
        if view.cancelled:
            return False
        if protocol.job_complete(job, view):
            state = "done" if protocol.job_succeeded(job, view) else "failed"
            raise JobStateError(f"job {job.id} already finished ({state}); nothing to cancel")
        if not protocol.mark(self.store, job, "cancel", trust, by=getpass.getuser()):
            raise SecurityError(
                f"job {job.id}: its cancel marker id already holds a file that no trusted"
                " key sealed (forged); workers ignore it, and the job cannot be cancelled through"
                " the store. Stop the workers serving it (or use --job on the others)."
            )
        return True

    def retry(
        self,
        tasks: Sequence[str] | None = None,
        *,
        failed: bool = False,
        reduce_from: str | os.PathLike[str] | None = None,
    ) -> Round:
        """Re-run ``tasks`` (ids; ``"reduce"`` re-runs only the reduce), every failed task
        (``failed``), and/or the reduce with the ``[reduce]`` section and shipped files of
        the job file ``reduce_from`` (its map part must be unchanged), as a new round of
        this finished job signed with this PC's key; every other successful result is kept
        and the reduce runs again. Workers pick the round up by themselves: :meth:`wait`
        follows it. Raises :class:`~drivemr.errors.DrivemrError` when there is nothing to
        retry or the job has not finished (``drivemr retry``)."""
        from drivemr.rounds import retry_job

        rnd = retry_job(
            self.store,
            self.id,
            list(tasks) if tasks is not None else None,
            failed=failed,
            reduce_from=None if reduce_from is None else Path(reduce_from),
            trust=self.client.trust,
        )
        self._folder = self._doc = None  # the job now reads at its new round
        return rnd

    def results(self, out_dir: str | os.PathLike[str], *, task: str | None = None) -> list[Path]:
        """Download every successful map task's outputs (or ``task``'s) into ``out_dir``,
        one folder per task (the ``{results}`` layout a reduce sees), each checked against
        its sealed digest, whatever state the job is in; returns the files written
        (``drivemr results``)."""
        from drivemr.results import fetch_results

        return fetch_results(self.store, self.id, Path(out_dir), task)

    def reduce(
        self, out_dir: str | os.PathLike[str] | None = None, *, insecure: bool = False
    ) -> list[Path]:
        """Download the reduce's outputs into ``out_dir`` (default ``JOB-result``) and
        return their paths; when every map succeeded but no worker ran the reduce, run it
        here first (the job's signature is checked unless ``insecure``). Raises
        :class:`~drivemr.errors.JobStateError` when there is no reduce to fetch."""
        from drivemr.results import default_reader, materialise_outputs

        _folder, job = self._find()
        view = load_view(self.store, job)
        target = Path(out_dir) if out_dir is not None else Path(f"{job.id}-result")
        if job.reduce_task is None:
            raise JobStateError(
                f"job {job.id} has no [reduce]; its results are in "
                f"`{_suggest(f'drivemr status {job.id}')}`"
            )
        if REDUCE not in view.results:
            missing = [t.id for t in job.tasks if t.id not in view.results]
            if missing:
                raise JobStateError(
                    f"job {job.id}: {len(missing)} task(s) have no result yet: "
                    + ", ".join(missing[:20])
                )
            failed = [t for t, r in view.results.items() if r.state != "done"]
            if failed:
                raise JobStateError(
                    f"job {job.id}: task(s) failed, so there is no reduce: {', '.join(failed[:20])}"
                )
            log.info("running the reduce of %s here", job.id)
            w = build_worker(
                self.store,
                slots=1,
                exit_when_idle=True,
                jobs=frozenset({job.id}),
                verify=verifier(insecure),
            )
            w.run()
            view = load_view(self.store, job)
            if REDUCE not in view.results:
                raise JobStateError(f"job {job.id}: the reduce did not produce a result")
        # The reduce's result is opened again (never trusted from the listing) and its
        # outputs are checked against their sealed sizes and digests as they arrive.
        manifest = default_reader().manifest(self.store, job, job.reduce_task, view.results[REDUCE])
        paths = materialise_outputs(self.store, manifest, target, parent=job.folders["outputs"])
        if manifest.state != "done":
            raise JobStateError(
                f"job {job.id}: the reduce failed; see {_suggest(f'drivemr logs {job.id} reduce')}"
            )
        return paths

    def attempts(self, task: str | None = None, *, output: bool = True) -> list[AttemptRecord]:
        """Every attempt of ``task`` (or of every task and the reduce), oldest first, with
        their stdout/stderr tails when ``output``."""
        from drivemr.report import collect

        _folder, job = self._find()
        if task is not None:
            self.max_attempts(task)
        record = collect(
            self.store,
            job.id,
            tasks=None if task is None else [task],
            manifests=output,
            lease=_lease(),
        )
        return list(record.attempts if task is None else record.of(task))

    def logs(self, task: str, attempt: int | None = None) -> AttemptRecord:
        """One attempt of ``task`` (default: its latest) with its stdout and stderr tails
        (workers upload an attempt's output when it ends)."""
        return self.attempt_of(task, attempt)[0]

    def attempt_of(self, task: str, attempt: int | None = None) -> tuple[AttemptRecord, int]:
        """:meth:`logs`, and how many attempts ``task`` has had so far."""
        allowed = self.max_attempts(task)
        if attempt is not None and attempt > allowed:
            raise DrivemrError(f"{self.id} {task} has at most {allowed} attempt(s), not {attempt}")
        attempts = self.attempts(task)
        if attempt is not None:
            chosen = [a for a in attempts if a.attempt == attempt]
            if not chosen:
                raise DrivemrError(
                    f"{self.id} {task} has {len(attempts)} attempt(s), not {attempt}"
                )
            return chosen[-1], len(attempts)
        if not attempts:
            raise DrivemrError(f"{self.id} {task}: no attempt has started yet")
        return attempts[-1], len(attempts)

    def task_ended(self, task: str) -> bool:
        """Whether ``task`` (or ``"reduce"``) has its result, or the job was cancelled."""
        view = load_view(self.store, job := self._job())
        return job.holder_of(task) in view.results or view.cancelled

    def max_attempts(self, task: str) -> int:
        """How many attempts ``task`` may have; raises if the job has no such task."""
        return self._check_task(task)

    def _check_task(self, task: str) -> int:
        """How many attempts ``task`` may have (numbered across the job's rounds); raises
        if the job has no such task."""
        from drivemr.rounds import attempts_allowed

        return attempts_allowed(self._job(), task)
