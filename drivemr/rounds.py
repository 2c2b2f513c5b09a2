"""Rounds: re-running part of a finished job without breaking create-once.

A task's claims and results are created once, under ids job.json minted, so a failed task
cannot simply run again. A *retry* is a new round of the job: a small document
``round.<n>`` in the job folder, sealed (kind "round") by a key the workers trust (like
job.json's signature), that mints fresh claim and result ids for the tasks it re-runs, a
fresh reduce, a fresh ``finished`` marker and, for ``--reduce-from``, a new reduce stage
and shipped files. Every reader applies the rounds in order (:func:`apply_rounds`, called
by ``read_job``), so it takes each task's ids, and so its result, from its latest round;
the results of tasks a round does not name are kept. The old ``finished`` marker no longer
counts (each round has its own), so workers that saw the job finish take it up again.

A round that does not open (forged, edited, for another job) is ignored, reported once,
and so are the rounds after it. Two retries posted at once both write ``round.<n>``; the
earliest (created time, then id) wins everywhere, and the other one's poster is told.
"""

from __future__ import annotations

import dataclasses
import getpass
import logging
import platform
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivemr.errors import AuthError, DrivemrError, NotFound, StoreError, TransientStoreError
from drivemr.fileio import sha256_file
from drivemr.limits import finite_number
from drivemr.protocol import (
    MAX_JOB_BYTES,
    MAX_JOB_ITEMS,
    REDUCE,
    RESULT_SLOTS,
    ROUND_PREFIX,
    IdPool,
    Job,
    Stage,
    StoredFile,
    find_job,
    id_list,
    job_complete,
    load_view,
)
from drivemr.protocol.jobdoc import _stage, _stored_file
from drivemr.protocol.publish import _store_name
from drivemr.results import ResultReader, reader_for
from drivemr.safetext import safe
from drivemr.sealed import UntrustedFile, WarnOnce, open_sealed
from drivemr.signing import PublicKeyInfo
from drivemr.spec import JobSpec, load_job
from drivemr.stores.base import FileInfo, Store
from drivemr.trust import Trust

__all__ = ["Round", "apply_rounds", "check_map_unchanged", "read_rounds", "retry_job"]

log = logging.getLogger("drivemr.rounds")

_ROUND_NAME = re.compile(r"^round\.(?P<n>[1-9][0-9]{0,5})$")
MAX_ROUNDS = 1000


@dataclass(frozen=True)
class TaskIds:
    claims: tuple[str, ...]
    results: tuple[str, ...]


@dataclass(frozen=True)
class Round:
    """One retry of a job, as its sealed document says."""

    number: int
    job: str
    created: float
    by: str
    tasks: Mapping[str, TaskIds]
    """Map tasks re-run in this round, with their fresh ids."""
    reduce_task: TaskIds | None
    """Fresh ids for the reduce (every round re-runs it, when the job has one)."""
    reduce: Stage | None
    """A new reduce stage (``--reduce-from``), or None to keep the current one."""
    files: tuple[StoredFile, ...] | None
    """New shipped files (``--reduce-from``), or None to keep the current ones."""
    finished: str
    """The minted id of this round's ``finished`` marker."""
    signer: str = ""

    def to_body(self) -> dict[str, Any]:
        def ids(t: TaskIds) -> dict[str, list[str]]:
            return {"claims": list(t.claims), "results": list(t.results)}

        return {
            "job": self.job,
            "round": self.number,
            "created": self.created,
            "by": self.by,
            "tasks": {tid: ids(t) for tid, t in self.tasks.items()},
            "reduce_task": ids(self.reduce_task) if self.reduce_task else None,
            "reduce": self.reduce.to_doc() if self.reduce else None,
            "files": None
            if self.files is None
            else [
                {"name": f.name, "id": f.id, "sha256": f.sha256, "size": f.size} for f in self.files
            ],
            "markers": {"finished": self.finished},
        }

    def summary(self) -> dict[str, Any]:
        """What `status --json` shows of a round."""
        return {
            "round": self.number,
            "created": self.created,
            "by": self.by,
            "signer": self.signer,
            "tasks": sorted(self.tasks),
            "new_reduce": self.reduce is not None,
        }


def _task_ids(doc: Any, what: str) -> TaskIds:
    if not isinstance(doc, dict):
        raise ValueError(f"{what}: not an object")
    return TaskIds(
        id_list(doc.get("claims"), f"{what} claims", limit=100),
        id_list(doc.get("results"), f"{what} results", limit=16),
    )


def parse_round(body: Mapping[str, Any], job: Job, number: int, signer: str = "") -> Round:
    """A round's body, checked against the job it extends; ValueError saying what is wrong."""
    tasks_doc = body.get("tasks")
    if not isinstance(tasks_doc, dict):
        raise ValueError("tasks: not an object")
    tasks: dict[str, TaskIds] = {}
    for tid, ids in tasks_doc.items():
        try:
            job.task(tid)
        except KeyError:
            raise ValueError(f"names task {safe(tid, max_len=40)}, which the job has not") from None
        if tid == REDUCE:
            raise ValueError("names the reduce among the map tasks")
        tasks[tid] = _task_ids(ids, f"task {tid}")
    reduce = None
    if body.get("reduce") is not None:
        try:
            reduce = _stage(body["reduce"], "reduce")
        except DrivemrError as exc:
            raise ValueError(str(exc)) from None
    reduce_task = None
    if body.get("reduce_task") is not None:
        reduce_task = _task_ids(body["reduce_task"], "reduce")
    if (job.reduce or reduce) is not None and reduce_task is None:
        raise ValueError("no reduce ids for a job with a reduce")
    files = None
    if body.get("files") is not None:
        if not isinstance(body["files"], list):
            raise ValueError("files: not a list")
        try:
            files = tuple(_stored_file(f, "files") for f in body["files"])
        except DrivemrError as exc:
            raise ValueError(str(exc)) from None
    markers = body.get("markers")
    finished = markers.get("finished") if isinstance(markers, dict) else None
    if not isinstance(finished, str) or not finished:
        raise ValueError("no finished marker id")
    created = body.get("created")
    by = body.get("by")
    return Round(
        number,
        job.id,
        finite_number(created) or 0.0,
        by if isinstance(by, str) else "",
        tasks,
        reduce_task,
        reduce,
        files,
        finished,
        signer,
    )


def apply_round(job: Job, rnd: Round) -> Job:
    """The job as it stands after ``rnd``."""
    tasks = list(job.tasks)
    for tid, ids in rnd.tasks.items():
        t = job.task(tid)
        tasks[t.index] = dataclasses.replace(
            t, claim_ids=ids.claims, result_ids=ids.results, round=rnd.number
        )
    reduce_task = job.reduce_task
    if rnd.reduce_task is not None:
        base = reduce_task or job.tasks[0]
        reduce_task = dataclasses.replace(
            base,
            index=len(tasks),
            id=REDUCE,
            claim_ids=rnd.reduce_task.claims,
            result_ids=rnd.reduce_task.results,
            item=None,
            input=None,
            round=rnd.number,
        )
    return dataclasses.replace(
        job,
        tasks=tuple(tasks),
        reduce=rnd.reduce or job.reduce,
        reduce_task=reduce_task,
        files=job.files if rnd.files is None else rnd.files,
        markers={**job.markers, "finished": rnd.finished},
        round=rnd.number,
        rounds=(*job.rounds, rnd),
        base=job.base or job,
    )


_WARN = WarnOnce(log.warning)


def read_rounds(
    store: Store,
    job: Job,
    entries: Iterable[FileInfo],
    trusted: Trust | Mapping[str, PublicKeyInfo] | None = None,
    *,
    warn: WarnOnce | None = None,
) -> list[Round]:
    """The valid rounds among a job folder's ``entries``, in order (1, 2, ...): stops at
    the first number with no round that opens. ``trusted``: a Trust (its keys and its
    once-only reports; by default this PC's reader Trust) or a fixed key list."""
    if trusted is None:
        trusted = Trust.reader()
    if isinstance(trusted, Trust):
        warn = warn or trusted.warn
        trusted = trusted.keys()
    warn = warn or _WARN
    by_number: dict[int, list[FileInfo]] = {}
    for e in entries:
        m = _ROUND_NAME.match(e.name)
        if m and not e.is_folder:
            by_number.setdefault(int(m["n"]), []).append(e)
    rounds: list[Round] = []
    current = job
    for number in range(1, min(MAX_ROUNDS, len(by_number)) + 1):
        found = None
        for info in sorted(by_number.get(number, []), key=lambda e: (e.created, e.id)):
            what = f"round {number} of {job.id} ({safe(info.id, max_len=40)})"
            try:
                if info.size is not None and info.size > MAX_JOB_BYTES:
                    raise UntrustedFile(f"{what}: {info.size} bytes, over the limit")
                try:
                    data = store.read(info.id, max_bytes=MAX_JOB_BYTES, parent=info.parent)
                except NotFound:
                    continue  # deleted since the listing
                except (AuthError, TransientStoreError):
                    raise
                except StoreError as exc:  # larger than the limit
                    raise UntrustedFile(f"{what}: {exc}") from None
                sealed = open_sealed(
                    data,
                    "round",
                    trusted,
                    expect={"job": job.id, "round": number},
                    what=what,
                    max_bytes=MAX_JOB_BYTES,
                    max_items=MAX_JOB_ITEMS,
                )
                try:
                    found = parse_round(sealed.body, current, number, sealed.signer.name)
                except (ValueError, TypeError) as exc:
                    raise UntrustedFile(f"{what}: {exc}") from None
                break
            except UntrustedFile as exc:
                warn(f"round:{info.id}:{info.size}:{info.modified}", f"ignoring {exc}")
        if found is None:
            break
        rounds.append(found)
        current = apply_round(current, found)
    return rounds


def apply_rounds(
    store: Store,
    job: Job,
    entries: Iterable[FileInfo],
    trusted: Trust | Mapping[str, PublicKeyInfo] | None = None,
) -> Job:
    """``job`` (as job.json says) with the valid rounds among ``entries`` applied."""
    for rnd in read_rounds(store, job, entries, trusted):
        job = apply_round(job, rnd)
    return job


def job_at_round(job: Job, number: int) -> Job:
    """The job as it stood after round ``number`` (0: as submitted)."""
    base = job.base or job
    for rnd in job.rounds[:number]:
        base = apply_round(base, rnd)
    return base


def attempts_allowed(job: Job, task: str) -> int:
    """How many attempts ``task`` may have, numbered across the job's rounds (an item of a
    packed job: ``max_attempts`` of its own in each run of its pack); DrivemrError if the
    job has no such task or item."""
    try:
        if job.packed and task != REDUCE:
            job.item(task)
            return job.map.max_attempts * (job.round + 1)
        return sum(len(job_at_round(job, n).task(task).claim_ids) for n in range(job.round + 1))
    except KeyError:
        what = "item" if job.packed else "task"
        raise DrivemrError(f"job {job.id} has no {what} {task!r}") from None


def round_names(entries: Iterable[FileInfo]) -> int:
    """The highest round number named among a job folder's entries (0: none)."""
    best = 0
    for e in entries:
        m = _ROUND_NAME.match(e.name)
        if m:
            best = max(best, int(m["n"]))
    return best


# --------------------------------------------------------------------------- retry


def check_map_unchanged(job: Job, spec: JobSpec) -> None:
    """Refuse a job file whose map part differs from the job's (command, outputs,
    environment, items and inputs by digest): only its reduce may change."""
    problems = []
    new_map = Stage.from_spec(spec.map)
    base = job.base or job
    for what in ("command", "outputs", "env"):
        if getattr(new_map, what) != getattr(base.map, what):
            problems.append(f"the map's {what}")
    if len(spec.tasks) != len(base.tasks):
        problems.append(f"the number of items ({len(spec.tasks)}, the job has {len(base.tasks)})")
    else:
        for ts, t in zip(spec.tasks, base.tasks, strict=True):
            if ts.id != t.id or ts.item != t.item:
                problems.append(f"the item of {t.id}")
                break
            if (ts.input is None) != (t.input is None):
                problems.append(f"the input of {t.id}")
                break
            if ts.input is not None and t.input is not None:
                path = ts.input_path
                if ts.input != t.input.name or path is None or sha256_file(path) != t.input.sha256:
                    problems.append(f"the input of {t.id} ({ts.input})")
                    break
    if spec.reduce is None:
        problems.append("its [reduce] section (there is none)")
    if problems:
        raise DrivemrError(
            f"{spec.path} does not match job {job.id}: "
            + "; ".join(problems[:5])
            + " changed. --reduce-from changes only the [reduce] section and shipped files."
        )


def _upload_files(store: Store, job: Job, spec: JobSpec, pool: IdPool) -> tuple[StoredFile, ...]:
    known = {(f.name, f.sha256): f for f in job.files}
    out = []
    for f in spec.files:
        digest = sha256_file(f.path)
        existing = known.get((f.name, digest))
        if existing is None:
            fid = pool.one()
            store.create(job.folders["files"], _store_name(f.name), fid, source=f.path)
            existing = StoredFile(f.name, fid, digest, f.path.stat().st_size)
        out.append(existing)
    return tuple(out)


def retry_job(
    store: Store,
    job_id: str,
    tasks: Sequence[str] | None = None,
    *,
    failed: bool = False,
    reduce_from: Path | str | None = None,
    trust: Trust | None = None,
    reader: ResultReader | None = None,
) -> Round:
    """Post a new round of a finished job: re-run ``tasks`` (ids; ``"reduce"`` re-runs only
    the reduce), every failed task (``failed``), and/or the reduce with the ``[reduce]``
    section and shipped files of the job file ``reduce_from`` (whose map part must be
    unchanged). The reduce runs again whenever the job has one; every successful result of
    a task not named is kept. Returns the round posted; workers pick it up by themselves.
    Raises DrivemrError when there is nothing to retry or the job is not finished."""
    trust = trust or Trust.for_this_pc()
    reader = reader or reader_for(trust)
    folder, job = find_job(store, job_id)
    view = load_view(store, job, trust, reader=reader)
    if view.cancelled:
        raise DrivemrError(f"job {job.id} was cancelled; it cannot be retried")
    if not job_complete(job, view):
        raise DrivemrError(f"job {job.id} is still running; retry it once it has finished")
    spec = None
    if reduce_from is not None:
        spec = load_job(reduce_from)
        check_map_unchanged(job, spec)
    chosen: list[str] = []
    rerun_reduce = spec is not None
    for tid in tasks or ():
        if tid == REDUCE:
            if job.reduce_task is None:
                raise DrivemrError(f"job {job.id} has no reduce")
            rerun_reduce = True
            continue
        try:
            # an item of a packed job re-runs its whole pack (docs/recovering.md)
            tid = job.holder_of(tid)
        except KeyError:
            raise DrivemrError(f"job {job.id} has no task {tid!r}") from None
        if tid not in chosen:
            chosen.append(tid)
    if failed:
        for t in job.tasks:
            r = view.results.get(t.id)
            if r is not None and r.state != "done" and t.id not in chosen:
                chosen.append(t.id)
        reduce_ref = view.results.get(REDUCE)
        if not chosen and reduce_ref is not None and reduce_ref.state != "done":
            rerun_reduce = True  # only the reduce failed: run it again
    if not chosen and not rerun_reduce:
        if failed:
            raise DrivemrError(f"job {job.id} has no failed task: nothing to retry")
        raise DrivemrError("name the tasks to retry, or pass --failed or --reduce-from")
    if spec is not None and not chosen:
        not_done = [t.id for t in job.tasks if view.results.get(t.id, None) is None
                    or view.results[t.id].state != "done"]  # fmt: skip
        if not_done:
            raise DrivemrError(
                f"job {job.id}: task(s) {', '.join(not_done[:10])} did not succeed, so the reduce "
                "cannot run: add --failed to re-run them in the same round"
            )
    pool = IdPool(store, batch=200)
    new_ids = {
        tid: TaskIds(tuple(pool.take(job.map.max_attempts)), tuple(pool.take(RESULT_SLOTS)))
        for tid in chosen
    }
    reduce_stage = Stage.from_spec(spec.reduce) if spec is not None and spec.reduce else None
    has_reduce = (reduce_stage or job.reduce) is not None
    reduce_ids = None
    if has_reduce:
        attempts = (reduce_stage or job.reduce).max_attempts  # type: ignore[union-attr]
        reduce_ids = TaskIds(tuple(pool.take(attempts)), tuple(pool.take(RESULT_SLOTS)))
    files = _upload_files(store, job, spec, pool) if spec is not None else None
    number = job.round + 1
    rnd = Round(
        number,
        job.id,
        time.time(),
        f"{getpass.getuser()}@{platform.node()}",
        new_ids,
        reduce_ids,
        reduce_stage,
        files,
        pool.one(),
    )
    data = trust.seal("round", rnd.to_body())
    store.create(folder.id, f"{ROUND_PREFIX}{number}", pool.one(), data)
    # Two retries posted at once: the earliest round file wins for every reader.
    _folder, after = find_job(store, job.id)
    if after.round < number or after.rounds[number - 1].finished != rnd.finished:
        raise DrivemrError(
            f"another retry of job {job.id} was posted at the same time and won; see: "
            f"drivemr status {job.id}"
        )
    return after.rounds[number - 1]
