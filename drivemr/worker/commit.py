"""Commit: conclude a finished attempt, retry it, or record the task's one result.

A finished attempt creates the task's result, sealed with this PC's key, in the first of
its minted result slots that does not hold a valid result (a file planted under a slot id
is skipped, so the real result still lands): the first valid slot is the task's one result,
however many attempts ran. Outputs up to INLINE_OUTPUT_LIMIT ride
inside the manifest (a task costs two writes: claim and result); larger ones are uploaded
first and referenced by id. Before committing, a worker whose heartbeat is late renews it
and checks its claim survived (the lease re-check): a result must never land for a claim
the others already judged dead and took over. A failed attempt is retried by the same
worker at the next attempt after a backoff; with none left, the failure is the result.

A slot's committer *holds* the result instead (``hold=True``): the slot claims its next
task first and hands the held commit to worker/trail.py, which makes it while the slot
runs on; on Drive a commit and a claim each wait a second or two for the write quota.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drivemr.errors import AlreadyExists, DrivemrError
from drivemr.fileio import sha256_file
from drivemr.protocol import (
    INLINE_OUTPUT_LIMIT,
    REDUCE,
    ClaimRef,
    ResultRef,
    Task,
)
from drivemr.results import manifest_from_body, seal_result
from drivemr.runner import AttemptOutcome, OutputFile
from drivemr.stores.base import FileInfo
from drivemr.worker.config import QUIET_TASK_SECONDS
from drivemr.worker.liveness import Lease
from drivemr.worker.state import ActiveJob, Assignment, Retry, Shared

log = logging.getLogger("drivemr.worker")


class Committer:
    """Turns finished attempts into results or retries; any thread, shared data under its lock."""

    def __init__(self, shared: Shared, lease: Lease, *, hold: bool = False) -> None:
        """``hold``: :meth:`commit` keeps the commit for :meth:`take_held` instead of
        making it (one slot's committer: the slot runs one attempt at a time)."""
        self.shared = shared
        self.lease = lease
        self._host = platform.node()
        self._hold = hold
        self._held: Callable[[], None] | None = None

    @property
    def holds(self) -> bool:
        return self._hold

    def take_held(self) -> Callable[[], None] | None:
        """The commit :meth:`commit` held since the last call, if any (it makes the
        commit, with every check :meth:`commit` makes, when called)."""
        held, self._held = self._held, None
        return held

    def conclude(
        self,
        a: Assignment,
        active: ActiveJob,
        task_dir: Path,
        outcome: AttemptOutcome,
        out: OutputFile,
        err: OutputFile,
    ) -> None:
        """An attempt's process ended: commit its result, or handle its failure."""
        if a.abandon or outcome.killed:
            log.info(
                "%s/%s attempt %d not committed: %s",
                a.job.id, a.task.id, a.attempt + 1, a.abandon or "killed",
            )  # fmt: skip
            return
        stdout, stderr = out.tail(), err.tail()
        error = None if outcome.ok else outcome.describe()
        outputs: list[dict[str, Any]] = []
        if error is None:
            try:
                outputs = self._collect_outputs(a, task_dir)
            except (OSError, DrivemrError) as exc:
                error = f"outputs: {exc}"
        if error is None:
            self.commit(a, active, "done", outcome, outputs, stdout, stderr, None)
        else:
            with self.shared.lock:
                self.shared.stats["failed_attempts"] += 1
            log.warning("%s/%s attempt %d failed: %s", a.job.id, a.task.id, a.attempt + 1, error)
            self.after_failure(a, active, outcome, error, stdout, stderr)

    def after_failure(
        self,
        a: Assignment,
        active: ActiveJob,
        outcome: AttemptOutcome | None,
        error: str,
        stdout: str = "",
        stderr: str = "",
    ) -> None:
        """Retry at the next attempt after a backoff, or commit the failure if none is left."""
        if a.abandon:
            return
        shared = self.shared
        last = a.attempt + 1 >= len(a.task.claim_ids)
        try:
            if not last and not shared.stopping.is_set():
                self._write_attempt_log(a, outcome, error, stdout, stderr)
                due = shared.clock.monotonic() + shared.config.retry_backoff * (2**a.attempt)
                with shared.lock:
                    active.retries[a.task.id] = Retry(a.attempt + 1, due)
            elif last:
                now = shared.clock.time()
                outcome = outcome or AttemptOutcome(None, now, now, error=error)
                self.commit(a, active, "failed", outcome, [], stdout, stderr, error)
        except DrivemrError as exc:
            log.warning("%s/%s: could not record the failure: %s", a.job.id, a.task.id, exc)

    def commit_lost(self, active: ActiveJob, task: Task, top: ClaimRef) -> None:
        """Every attempt's worker died: the task is committed as failed, once."""
        now = self.shared.clock.time()
        outcome = AttemptOutcome(
            None, now, now, error="no attempt left: every worker running it died"
        )
        a = Assignment(active.job, task, top.gen, top.file)
        try:
            self.commit(a, active, "failed", outcome, [], "", "", outcome.error)
        except DrivemrError as exc:
            log.warning("%s/%s: could not commit the failure: %s", active.job.id, task.id, exc)

    def _write_attempt_log(
        self, a: Assignment, outcome: AttemptOutcome | None, error: str, stdout: str, stderr: str
    ) -> None:
        doc = {
            "task": a.task.id,
            "attempt": a.attempt + 1,
            "worker": self.shared.id,
            "exit_code": outcome.exit_code if outcome else None,
            "started": outcome.started if outcome else None,
            "ended": outcome.ended if outcome else None,
            "error": error,
            "stdout": stdout,
            "stderr": stderr,
        }
        rnd = f".r{a.task.round}" if a.task.round else ""
        self.shared.store.create(
            a.job.folders["logs"],
            f"{a.task.id}{rnd}.g{a.attempt}.log",
            self.shared.pool.one(),
            json.dumps(doc).encode(),
        )

    def _collect_outputs(self, a: Assignment, task_dir: Path) -> list[dict[str, Any]]:
        stage = a.job.stage_of(a.task)
        if not stage.outputs:
            return []
        files: dict[str, Path] = {}
        for pattern in stage.outputs:
            matched = sorted(
                p for p in task_dir.glob(pattern) if p.is_file() and is_within(task_dir, p)
            )
            if not matched:
                raise DrivemrError(f"declared output {pattern!r} was not produced")
            for p in matched:
                files[p.relative_to(task_dir).as_posix()] = p
        total = sum(p.stat().st_size for p in files.values())
        outputs = []
        for k, (name, path) in enumerate(sorted(files.items())):
            data = path.read_bytes() if total <= INLINE_OUTPUT_LIMIT else None
            size = path.stat().st_size
            digest = sha256_file(path)  # streams: outputs may be large
            entry: dict[str, Any] = {"name": name, "size": size, "sha256": digest}
            if data is not None:
                entry["data"] = base64.b64encode(data).decode()
            else:
                info = self.shared.store.create(
                    a.job.folders["outputs"],
                    f"{a.task.id}.g{a.attempt}.o{k}",
                    self.shared.pool.one(),
                    source=path,
                )
                entry["id"] = info.id
            outputs.append(entry)
        return outputs

    def _claim_survived(self, a: Assignment) -> bool:
        """The lease re-check. A heartbeat older than half the lease is late (they come
        every lease/3): renew it before committing, so the claim is still young when the
        result lands, and give up if the others may have judged it dead meanwhile."""
        lease = self.shared.config.lease
        if not self.lease.at_risk and self.lease.silent_for() <= lease * 0.5:
            return True
        self.lease.beat()  # still alive to the others? (a lapse abandons our attempts)
        silent = self.lease.silent_for() > lease
        return not (a.abandon or silent or self.lease.superseded(a))

    def commit(
        self,
        a: Assignment,
        active: ActiveJob,
        state: str,
        outcome: AttemptOutcome,
        outputs: list[dict[str, Any]],
        stdout: str,
        stderr: str,
        error: str | None,
        *,
        items: list[dict[str, Any]] | None = None,
    ) -> None:
        """Create the task's one result (or learn that another attempt's came first).
        ``items``: a pack's entry per item (worker/items.py). Held instead with ``hold``."""
        make = functools.partial(
            self._commit, a, active, state, outcome, outputs, stdout, stderr, error, items=items
        )
        if self._hold:
            self._held = make
        else:
            make()

    def _commit(
        self,
        a: Assignment,
        active: ActiveJob,
        state: str,
        outcome: AttemptOutcome,
        outputs: list[dict[str, Any]],
        stdout: str,
        stderr: str,
        error: str | None,
        *,
        items: list[dict[str, Any]] | None = None,
    ) -> None:
        shared = self.shared
        if a.abandon:
            log.info(
                "%s/%s attempt %d not committed: %s", a.job.id, a.task.id, a.attempt + 1, a.abandon
            )
            return
        if not self._claim_survived(a):
            log.warning("%s/%s: claim lapsed while running; result discarded", a.job.id, a.task.id)
            a.abandon = a.abandon or "claim lapsed"
            return
        manifest = {
            "job": a.job.id,
            "task": a.task.id,
            "round": a.task.round,
            "state": state,
            "attempt": a.attempt + 1,
            "worker": shared.id,
            "host": self._host,
            "exit_code": outcome.exit_code,
            "timed_out": outcome.timed_out,
            "started": outcome.started,
            "ended": outcome.ended,
            "duration": outcome.duration,
            "error": error,
            "outputs": outputs,
            "stdout": stdout,
            "stderr": stderr,
        }
        if items is not None:
            manifest["items"] = items

        def name(slot: int) -> str:
            return a.job.result_name(
                a.task.id, slot, state, a.attempt, outcome.exit_code, outcome.duration
            )

        committed = self._create_result(a, active, name, manifest)
        if committed is None:
            return
        ref, info = committed
        quiet = state == "done" and outcome.duration < QUIET_TASK_SECONDS
        with shared.lock:  # slots commit at once: counters too under the lock
            shared.stats["commits"] += 1
            shared.stats["quiet_done"] += quiet
            if ref is not None:
                active.view.set_result(a.task.id, ref)
                active.committed.add(info.id)
            settled = len(active.view.results) + len(active.view.hints)
            everything = settled >= len(active.job.tasks)
        # Near the end, relist to learn the other workers' results (the reduce barrier).
        if everything or a.task.id == REDUCE:
            shared.dirty.reload.add(a.job.id)
        else:
            shared.dirty.stale.add(a.job.id)
        if quiet:
            # Thousands of quick tasks would flood the log (and a line costs as much as a
            # quarter of a `true` task): they are counted, and summed up now and then.
            log.debug(
                "%s/%s done (attempt %d, %s)",
                a.job.id, a.task.id, a.attempt + 1, outcome.describe(),
            )  # fmt: skip
        else:
            log.info(
                "%s/%s %s (attempt %d, %s)",
                a.job.id, a.task.id, state, a.attempt + 1, outcome.describe(),
            )  # fmt: skip

    def _create_result(
        self,
        a: Assignment,
        active: ActiveJob,
        name: Callable[[int], str],
        manifest: dict[str, Any],
    ) -> tuple[ResultRef, FileInfo] | None:
        """Create the sealed result in the first slot without a valid result: (ref, file),
        or None when another attempt's valid result came first (or no slot is left)."""
        shared = self.shared
        for k, slot_id in enumerate(a.task.result_ids):
            data = seal_result(shared.trust, {**manifest, "slot": slot_id})
            try:
                info = shared.store.create(a.job.folders["results"], name(k), slot_id, data)
            except AlreadyExists:
                found = self._valid_at(a, slot_id)
                if found is None:
                    continue  # a planted or damaged file: on to the next slot
                log.info(
                    "%s/%s: another attempt committed first; ours is discarded",
                    a.job.id, a.task.id,
                )  # fmt: skip
                with shared.lock:
                    shared.stats["commits_lost"] += 1
                    active.view.set_result(a.task.id, found)
                shared.dirty.reload.add(a.job.id)
                return None
            # Sealed here a moment ago: read back from the body, without a signature check.
            body = {**manifest, "slot": slot_id}
            m = manifest_from_body(
                body, job_id=a.job.id, task=a.task, slot_id=slot_id, signer="self"
            )
            shared.results.remember(m, info)
            return m.ref(info, k), info
        log.error(
            "%s/%s: every result slot holds a file that is not a valid result; giving up on it",
            a.job.id, a.task.id,
        )  # fmt: skip
        with shared.lock:
            active.given_up.add(a.task.id)
        shared.dirty.reload.add(a.job.id)
        return None

    def _valid_at(self, a: Assignment, slot_id: str) -> ResultRef | None:
        """The valid result in ``slot_id`` (get-by-id: a consistent read), or None."""
        shared = self.shared
        for k, sid in enumerate(a.task.result_ids):
            if sid != slot_id:
                continue
            try:
                info = shared.store.get(slot_id, parent=a.job.folders["results"])
            except DrivemrError:
                return None
            return shared.results.check(shared.store, a.job, a.task, k, info)
        return None


def is_within(base: Path, path: Path) -> bool:
    """Whether ``path`` resolves to somewhere inside ``base`` (a check; nothing is made)."""
    try:
        path.resolve().relative_to(base.resolve())
    except ValueError:
        return False
    return True
