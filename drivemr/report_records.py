"""The records a job report is made of, and how one attempt is rebuilt from one file.

An :class:`AttemptRecord` comes from the result manifest (the attempt that committed), an
attempt log (an earlier attempt that failed) or a claim alone (running, lost or
cancelled); a packed task's committed manifest gives each of its items' attempts. Kept
apart from :mod:`drivemr.report`, which lists the store and walks the rounds, so that what
every store document may hold is parsed totally in one place.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from drivemr.protocol import (
    REDUCE,
    ClaimRef,
    Job,
    JobView,
    ResultRef,
    Task,
)
from drivemr.stores.base import FileInfo

OUTCOMES = ("done", "failed", "timed out", "lost", "running", "cancelled")
COLOURS = {
    "done": "#2e9e44",
    "failed": "#d62728",
    "timed out": "#ff7f0e",
    "lost": "#8c8c8c",
    "running": "#1f77b4",
    "cancelled": "#c7c7c7",
}
FINAL = frozenset({"done", "failed", "timed out", "lost", "cancelled"})
LOST_COMMIT = "no attempt left"
"""Start of the error a worker commits for a task whose every attempt's worker died."""


@dataclass
class AttemptRecord:
    """One execution (or lost execution) of a task."""

    task: str
    attempt: int
    """1-based, as DRIVEMR_ATTEMPT."""
    worker: str
    host: str
    outcome: str
    """One of OUTCOMES."""
    start: float | None
    end: float | None
    exit_code: int | None = None
    timed_out: bool = False
    error: str | None = None
    stdout: str = ""
    stderr: str = ""
    source: str = "claim"
    """Where the facts come from: "result" (its manifest), "name" (only its result's name),
    "log" (an attempt log) or "claim" (nothing but the claim)."""
    round: int = 0
    """The round of the job the attempt belongs to (0: as submitted; see drivemr.rounds).
    ``attempt`` counts the task's attempts across every round."""

    @property
    def duration(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return max(0.0, self.end - self.start)

    @property
    def final(self) -> bool:
        return self.outcome in FINAL

    def to_json(self, *, output: bool = False) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "task": self.task,
            "attempt": self.attempt,
            "worker": self.worker,
            "host": self.host,
            "outcome": self.outcome,
            "start": self.start,
            "end": self.end,
            "duration": self.duration,
            "exit_code": self.exit_code,
            "error": self.error,
            "round": self.round,
        }
        if output:
            doc["stdout"] = self.stdout
            doc["stderr"] = self.stderr
        return doc


@dataclass
class JobRecord:
    """A job and everything known about its attempts, read at ``now`` (store clock)."""

    job: Job
    view: JobView
    attempts: list[AttemptRecord]
    hosts: dict[str, str]
    now: float
    cancelled_at: float | None = None
    unreadable: list[str] = field(default_factory=list)

    @property
    def task_ids(self) -> list[str]:
        """Map items (the tasks of an unpacked job) in order, then the reduce."""
        return [i.id for i in self.job.items] + ([REDUCE] if self.job.reduce_task else [])

    def of(self, task: str) -> list[AttemptRecord]:
        return [a for a in self.attempts if a.task == task]


def _num(value: Any) -> float | None:
    """A finite number from a store document, else None (total: a 400-digit integer would
    overflow float(), and times that large are not times)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) and abs(number) < 1e12 else None


def _int(value: Any) -> int | None:
    """A plain integer of sane size (an exit code, an attempt number), else None."""
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) >= 2**63:
        return None
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def item_attempts(
    task: Task,
    attempts: list[AttemptRecord],
    view: JobView,
    docs: dict[str, dict[str, Any] | None],
) -> list[AttemptRecord]:
    """A packed task's attempts as its items' (docs/packing.md): the committed attempt's
    manifest gives each item's own attempts; any other attempt of the pack (lost,
    running, cancelled, or a result that cannot be read) stands for each of its items."""
    result = view.results.get(task.id)
    doc = docs.get(result.file.id) if result is not None else None
    raw = doc.get("items") if isinstance(doc, dict) else None
    # the body of a result whose seal opened and whose item entries were checked
    entries = {
        str(e["id"]): e for e in (raw if isinstance(raw, list) else []) if isinstance(e, dict)
    }
    out: list[AttemptRecord] = []
    for item in task.items:
        for a in attempts:
            entry = entries.get(item.id)
            if a.source == "result" and entry is not None:
                out += _from_item(item.id, a, entry)
            else:
                out.append(dataclasses.replace(a, task=item.id))
    return out


def _from_item(item: str, pack: AttemptRecord, e: dict[str, Any]) -> list[AttemptRecord]:
    """One item's attempts inside a committed pack: its earlier failures, then its end."""
    out = []
    failures = e.get("failures")
    for k, f in enumerate(failures if isinstance(failures, list) else []):
        if not isinstance(f, dict):
            continue
        error = f.get("error") if isinstance(f.get("error"), str) else None
        out.append(
            AttemptRecord(
                item,
                k + 1,
                pack.worker,
                pack.host,
                "failed",
                None,
                None,
                exit_code=_int(f.get("exit_code")),
                error=error,
                stderr=_text(f.get("stderr")),
                source="item",
            )
        )
    error = e.get("error") if isinstance(e.get("error"), str) else None
    timed_out = bool(e.get("timed_out"))
    state = e.get("state")
    outcome = "done" if state == "done" else ("timed out" if timed_out else "failed")
    out.append(
        AttemptRecord(
            item,
            len(out) + 1,
            pack.worker,
            pack.host,
            outcome,
            _num(e.get("started")),
            _num(e.get("ended")),
            exit_code=_int(e.get("exit_code")),
            timed_out=timed_out,
            error=error,
            stdout=_text(e.get("stdout")),
            stderr=_text(e.get("stderr")),
            source="result",
        )
    )
    return out


def task_attempts(
    task: str,
    view: JobView,
    log_files: dict[tuple[str, int], FileInfo],
    docs: dict[str, dict[str, Any] | None],
    log_docs: dict[str, dict[str, Any] | None],
    hosts: dict[str, str],
    alive: Any,
    last_sign: Any,
    record: JobRecord,
) -> list[AttemptRecord]:
    claims = view.claims.get(task, {})
    result = view.results.get(task)
    gens = set(claims) | {g for (t, g) in log_files if t == task}
    if result is not None:
        gens.add(result.gen)
    top = max(claims) if claims else -1
    out: list[AttemptRecord] = []
    for gen in sorted(gens):
        claim = claims.get(gen)
        claimed_at = claim.file.modified if claim else None
        later = [claims[g].file.modified for g in claims if g > gen]
        if result is not None and result.gen == gen:
            out.append(
                _from_result(
                    task, gen, result, docs.get(result.file.id), claim, hosts, record, docs
                )
            )
        elif (task, gen) in log_files and log_files[(task, gen)].id in log_docs:
            doc = log_docs[log_files[(task, gen)].id]
            if doc is None:
                record.unreadable.append(f"{task} attempt {gen + 1}: log")
                doc = {}
            out.append(_from_log(task, gen, doc, claim, hosts))
        elif claim is not None:
            worker = claim.worker
            if result is None and gen == top and not view.cancelled and alive(claim):
                outcome, end = "running", None
            elif view.cancelled and result is None and gen == top:
                outcome, end = "cancelled", record.cancelled_at or record.now
            else:
                end = min(later) if later else (result.file.modified if result else record.now)
                end = min(end, last_sign(claim))
                outcome = "lost"
            out.append(
                AttemptRecord(
                    task, gen + 1, worker, hosts.get(worker, ""), outcome, claimed_at, end
                )
            )
    return out


def _from_result(
    task: str,
    gen: int,
    ref: ResultRef,
    doc: dict[str, Any] | None,
    claim: ClaimRef | None,
    hosts: dict[str, str],
    record: JobRecord,
    docs_read: Collection[str],
) -> AttemptRecord:
    worker = claim.worker if claim else ""
    if doc is None:
        if ref.file.id in docs_read:
            record.unreadable.append(f"{task} attempt {gen + 1}: result manifest")
        # Facts from the result's name alone.
        committed = ref.file.modified
        return AttemptRecord(
            task,
            gen + 1,
            worker,
            hosts.get(worker, ""),
            ref.state,
            committed - ref.duration,
            committed,
            exit_code=ref.exit_code,
            source="name",
        )
    error = doc.get("error")
    error = error if isinstance(error, str) else None
    timed_out = bool(doc.get("timed_out"))
    start, end = _num(doc.get("started")), _num(doc.get("ended"))
    if doc.get("state") == "done":
        outcome = "done"
    elif error and error.startswith(LOST_COMMIT):
        # Committed on behalf of a dead worker: the attempt itself ran from its claim on.
        outcome = "lost"
        start = claim.file.modified if claim else start
    elif timed_out:
        outcome = "timed out"
    else:
        outcome = "failed"
    if outcome != "lost":
        worker = _text(doc.get("worker")) or worker
    host = _text(doc.get("host")) if outcome != "lost" else ""
    return AttemptRecord(
        task,
        gen + 1,
        worker,
        host or hosts.get(worker, ""),
        outcome,
        start,
        end,
        exit_code=_int(doc.get("exit_code")),
        timed_out=timed_out,
        error=error,
        stdout=_text(doc.get("stdout")),
        stderr=_text(doc.get("stderr")),
        source="result",
    )


def _from_log(
    task: str, gen: int, doc: dict[str, Any], claim: ClaimRef | None, hosts: dict[str, str]
) -> AttemptRecord:
    worker = _text(doc.get("worker")) or (claim.worker if claim else "")
    error = doc.get("error")
    error = error if isinstance(error, str) else None
    start = _num(doc.get("started"))
    if start is None and claim is not None:
        start = claim.file.modified
    end = _num(doc.get("ended"))
    return AttemptRecord(
        task,
        gen + 1,
        worker,
        hosts.get(worker, ""),
        "timed out" if error == "timed out" else "failed",
        start,
        end if end is not None else start,
        exit_code=_int(doc.get("exit_code")),
        timed_out=error == "timed out",
        error=error,
        stdout=_text(doc.get("stdout")),
        stderr=_text(doc.get("stderr")),
        source="log",
    )
