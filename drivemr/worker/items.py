"""Running a packed task: its items one by one in the slot, each retried on its own.

A pack (docs/packing.md) is claimed and committed as one task, but the command runs once
per item exactly as in an unpacked job: the same placeholders (``{task}`` is the item id),
the same fresh working folder, the same ``{input}`` staged at its relative path, the same
outputs. An item that fails is retried at once (after the worker's backoff), up to the
stage's ``max_attempts`` for that item, and the items that succeeded are never run again.
When every item has ended the pack commits one result whose manifest holds one entry per
item (state, attempts, exit code, outputs, the tails of its output): ``done`` when every
item is done, ``failed`` otherwise, with the failed items named in it.

A pack that is abandoned (cancelled, claim lost, shutdown) stops between two items and
commits nothing; its next claimer runs it whole again (see docs/packing.md on why there
is no mid-pack checkpoint).
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivemr.archives import Member, PackInputs
from drivemr.errors import DrivemrError
from drivemr.fileio import sha256_file
from drivemr.protocol import INLINE_OUTPUT_LIMIT, Item
from drivemr.runner import TAIL_BYTES, AttemptOutcome, CommandPaths
from drivemr.spec import expand
from drivemr.worker.commit import is_within
from drivemr.worker.state import ActiveJob, Assignment

if TYPE_CHECKING:
    from drivemr.worker.slot import Slot

log = logging.getLogger("drivemr.worker")

LOG_BUDGET = 4 * 1024 * 1024
"""Bytes of stdout/stderr tails a pack's manifest keeps for its done items together
(a failed item keeps the full tail, as an unpacked task does)."""
MIN_TAIL = 1024
MAX_BACKOFF = 30.0


@dataclass
class ItemResult:
    """How one item of a pack ended, as its manifest entry says."""

    item: Item
    state: str = "pending"
    attempts: int = 0
    outcome: AttemptOutcome | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    failures: list[dict[str, Any]] = field(default_factory=list)

    def to_doc(self) -> dict[str, Any]:
        o = self.outcome
        return {
            "id": self.item.id,
            "state": self.state,
            "attempts": self.attempts,
            "exit_code": o.exit_code if o else None,
            "timed_out": o.timed_out if o else False,
            "started": o.started if o else None,
            "ended": o.ended if o else None,
            "duration": o.duration if o else 0.0,
            "error": self.error,
            "outputs": self.outputs,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "failures": self.failures,
        }


class PackRun:
    """One attempt of a packed task in one slot: stage, run and collect each item."""

    def __init__(self, slot: Slot, a: Assignment, active: ActiveJob) -> None:
        self.slot = slot
        self.shared = slot.shared
        self.a = a
        self.active = active
        self.stage = a.job.map
        self.inline_left = INLINE_OUTPUT_LIMIT
        n = len(a.task.pack)
        self.tail = max(MIN_TAIL, min(TAIL_BYTES, LOG_BUDGET // (2 * n)))
        self.env = dict(slot.base_env)  # built once per pack: items change two variables
        self.env.update(self.stage.env)
        self.env.update(DRIVEMR_JOB=a.job.id, DRIVEMR_PACK=a.task.id)
        self.paths = CommandPaths()  # the command's program, looked up on PATH once per pack

    def run(self) -> None:
        """Every item to its end, then one commit (nothing when abandoned)."""
        a, shared = self.a, self.shared
        inputs = self._open_inputs()
        results = [ItemResult(item) for item in a.task.pack]
        try:
            for r in results:
                self._run_item(r)
                if a.abandon or a.process.killed or shared.stopping.is_set():
                    log.info(
                        "%s/%s attempt %d stopped after %d of %d item(s): %s",
                        a.job.id, a.task.id, a.attempt + 1,
                        sum(x.state != "pending" for x in results), len(results),
                        a.abandon or "stopping",
                    )  # fmt: skip
                    return
        finally:
            if inputs is not None:
                inputs.close()
        self._commit(results)

    # -- inputs --

    def _open_inputs(self) -> PackInputs | None:
        from drivemr.worker.slot import fetch

        archive = self.a.task.archive
        if archive is None:
            self._inputs = None
            return None
        path = self.shared.workdir / f".{self.slot.name}.pack.zip"
        path.unlink(missing_ok=True)
        # checked against its digest in job.json
        fetch(self.shared, archive, path, folder=self.a.job.folders["files"])
        members = [  # the archive may hold the inputs of a few consecutive packs
            Member(i.input.name, i.input.sha256, i.input.size)
            for i in self.a.job.items
            if i.input is not None and i.input.id == archive.id
        ]
        self._inputs = PackInputs(path, members)
        return self._inputs

    # -- one item --

    def _run_item(self, r: ItemResult) -> None:
        a, shared = self.a, self.shared
        while r.state == "pending":
            if a.abandon or a.process.killed or shared.stopping.is_set():
                return
            folder = self._folder(r)
            r.attempts += 1
            r.outcome = None
            try:
                outcome, error = self._attempt(r, folder)
                r.outcome = outcome
                if error is None:
                    r.outputs = self._collect_outputs(r, folder)
                    r.state = "done"
                    r.stdout, r.stderr = (
                        self.slot.out.tail(self.tail),
                        self.slot.err.tail(self.tail),
                    )
                    continue
            except (OSError, DrivemrError) as exc:
                error = f"outputs: {exc}" if r.outcome else str(exc)
            finally:
                self._release(folder)
            if a.abandon or a.process.killed:
                return
            self._failed(r, error)

    def _failed(self, r: ItemResult, error: str) -> None:
        shared = self.shared
        with shared.lock:
            shared.stats["failed_attempts"] += 1
        stdout, stderr = self.slot.out.tail(), self.slot.err.tail()
        log.warning(
            "%s/%s item %s attempt %d failed: %s",
            self.a.job.id, self.a.task.id, r.item.id, r.attempts, error,
        )  # fmt: skip
        if r.attempts >= self.stage.max_attempts:
            r.state, r.error, r.stdout, r.stderr = "failed", error, stdout, stderr
            return
        o = r.outcome
        r.failures.append(
            {
                "attempt": r.attempts,
                "exit_code": o.exit_code if o else None,
                "duration": o.duration if o else 0.0,
                "error": error,
                "stderr": stderr[-MIN_TAIL:],
            }
        )
        delay = min(MAX_BACKOFF, shared.config.retry_backoff * 2 ** (r.attempts - 1))
        shared.stopping.wait(delay)

    def _attempt(self, r: ItemResult, folder: Path) -> tuple[AttemptOutcome, str | None]:
        item, a = r.item, self.a
        if item.input is not None:
            assert self._inputs is not None
            self._inputs.stage(item.input.name, folder)
        values = {
            "task": item.id,
            "files": str(self.active.files_dir),
            "input": item.input.name if item.input else "",
            "item": item.item or "",
            "results": "",
        }
        env = self.env  # copied by the process start: items run one after another
        env["DRIVEMR_TASK"], env["DRIVEMR_ATTEMPT"] = item.id, str(r.attempts)
        outcome = a.process.run(
            expand(self.stage.command, values),
            cwd=folder,
            env=env,
            timeout=self.stage.timeout,
            stdout=self.slot.out.reset(),
            stderr=self.slot.err.reset(),
            paths=self.paths,
        )
        return outcome, None if outcome.ok else outcome.describe()

    def _folder(self, r: ItemResult) -> Path:
        """The item's working folder: the slot's own when empty, else a fresh one."""
        return self.slot.folder_for(self.a.job.id, f"{r.item.id}.g{self.a.attempt}.i{r.attempts}")

    def _release(self, folder: Path) -> None:
        self.slot.release_folder(folder)

    def _collect_outputs(self, r: ItemResult, folder: Path) -> list[dict[str, Any]]:
        """The item's declared outputs, inline while the pack's budget lasts, else uploaded."""
        if not self.stage.outputs:
            return []
        files: dict[str, Path] = {}
        for pattern in self.stage.outputs:
            matched = sorted(
                p for p in folder.glob(pattern) if p.is_file() and is_within(folder, p)
            )
            if not matched:
                raise DrivemrError(f"declared output {pattern!r} was not produced")
            for p in matched:
                files[p.relative_to(folder).as_posix()] = p
        total = sum(p.stat().st_size for p in files.values())
        inline = total <= self.inline_left
        if inline:
            self.inline_left -= total
        outputs = []
        for k, (name, path) in enumerate(sorted(files.items())):
            entry: dict[str, Any] = {
                "name": name,
                "size": path.stat().st_size,
                "sha256": sha256_file(path),  # streams: outputs may be large
            }
            if inline:
                entry["data"] = base64.b64encode(path.read_bytes()).decode()
            else:
                info = self.shared.store.create(
                    self.a.job.folders["outputs"],
                    f"{r.item.id}.g{self.a.attempt}.i{r.attempts}.o{k}",
                    self.shared.pool.one(),
                    source=path,
                )
                entry["id"] = info.id
            outputs.append(entry)
        return outputs

    # -- the pack's one result --

    def _commit(self, results: list[ItemResult]) -> None:
        a = self.a
        failed = [r for r in results if r.state != "done"]
        outcomes = [r.outcome for r in results if r.outcome is not None]
        now = self.shared.clock.time()
        first_bad = failed[0].outcome if failed and failed[0].outcome else None
        outcome = AttemptOutcome(
            exit_code=(first_bad.exit_code if first_bad else None) if failed else 0,
            started=min((o.started for o in outcomes), default=now),
            ended=max((o.ended for o in outcomes), default=now),
        )
        error = None
        if failed:
            names = ", ".join(r.item.id for r in failed[:10])
            more = f" and {len(failed) - 10} more" if len(failed) > 10 else ""
            error = f"{len(failed)} of {len(results)} item(s) failed: {names}{more}"
        self.slot.committer.commit(
            a,
            self.active,
            "failed" if failed else "done",
            outcome,
            [],
            "",
            "",
            error,
            items=[r.to_doc() for r in results],
        )
