"""Every attempt of a job, read from the store, and the numbers an operator asks first.

Attempts are rebuilt from what the store keeps: the result manifest (the attempt that
committed), the attempt logs (earlier attempts that failed) and the claims (an attempt that
left neither is still running, or was lost: its worker died, was superseded or the job was
cancelled). ``drivemr logs``, ``drivemr joblog`` and ``drivemr report`` all read them from here.
The records and the parsing of each file are in :mod:`drivemr.report_records`; the HTML
page in :mod:`drivemr.report_html`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from drivemr.errors import DrivemrError
from drivemr.protocol import (
    MAX_MANIFEST_BYTES,
    REDUCE,
    ClaimRef,
    Job,
    JobView,
    claim_is_dead,
    find_job,
    heartbeat_files,
    load_view,
    parse_json,
)
from drivemr.report_records import (
    COLOURS,
    FINAL,
    LOST_COMMIT,
    OUTCOMES,
    AttemptRecord,
    JobRecord,
    _text,
    item_attempts,
    task_attempts,
)
from drivemr.results import reader_for
from drivemr.rounds import job_at_round
from drivemr.status import last_sign_of_life
from drivemr.stores.base import FileInfo, Store
from drivemr.trust import Trust, claim_worker, open_claim, open_heartbeat

_LOG_NAME = re.compile(
    r"(?P<task>[A-Za-z0-9]{1,64})(?:\.r(?P<round>\d{1,6}))?\.g(?P<gen>\d{1,6})\.log"
)
_READERS = 8


# ---------------------------------------------------------------------------- collecting


def _read_json(store: Store, file_id: str, limit: int, what: str) -> dict[str, Any] | None:
    try:
        doc = parse_json(store.read(file_id, max_bytes=limit), what)
    except DrivemrError:
        return None
    return doc if isinstance(doc, dict) else None


def _claim_workers(
    store: Store,
    trust: Trust,
    job: Job,
    view: JobView,
    wanted: list[str],
    docs: dict[str, dict[str, Any] | None],
) -> None:
    """The workers of the claims whose names say none (jobs of format 3), from their seals:
    for the attempts a report shows from their claims (a result's own seal names its
    worker, unless it was committed for a dead one)."""
    for t in wanted:
        result = view.results.get(t)
        for gen, ref in list(view.claims.get(t, {}).items()):
            if ref.worker:
                continue
            if result is not None and result.gen == gen:
                doc = docs.get(result.file.id) or {}
                if not str(doc.get("error") or "").startswith(LOST_COMMIT) and result.worker:
                    continue
            sealed = open_claim(trust, store, job.id, t, gen, "", ref.file)
            if sealed is not None:
                view.claims[t][gen] = replace(ref, worker=claim_worker(sealed))


def _read_all(
    store: Store, ids: list[str], limit: int, what: str
) -> dict[str, dict[str, Any] | None]:
    """Read many small JSON files; in parallel, because on Drive each read is a round trip."""
    if not ids:
        return {}
    with ThreadPoolExecutor(max_workers=min(_READERS, len(ids))) as pool:
        docs = pool.map(lambda fid: _read_json(store, fid, limit, what), ids)
        return dict(zip(ids, docs, strict=True))


def collect(
    store: Store,
    job_id: str,
    *,
    tasks: Collection[str] | None = None,
    lease: float = 300.0,
    manifests: bool = True,
    logs: bool = True,
) -> JobRecord:
    """Every attempt of a job (or of ``tasks``), oldest first per task.

    ``manifests=False`` takes a committed attempt's facts from its result's name (state, exit
    code, duration; no times or output) and costs no reads; ``logs=False`` skips the logs of
    earlier failed attempts (they then count as lost)."""
    from drivemr.status import trusted_beats
    from drivemr.trust import Trust

    trust = Trust.reader()
    _folder, job = find_job(store, job_id)
    root = store.list(store.root_id)
    now = time.time()
    beats, leases, stopped = trusted_beats(store, trust, root, now, lease)
    reader = reader_for(trust)
    view = load_view(store, job, trust, reader=reader)
    wanted = [t.id for t in job.tasks] + ([REDUCE] if job.reduce_task else [])
    chosen: set[str] | None = None
    if tasks is not None:
        chosen = set(tasks)
        # an item of a packed job is read through the task (pack) that holds it
        packs = {t.id for t in job.tasks if t.packed and any(i.id in chosen for i in t.items)}
        wanted = [t for t in wanted if t in chosen or t in packs]

    log_files: dict[tuple[str, int, int], FileInfo] = {}
    if logs:
        for info in store.list(job.folders["logs"]):
            m = _LOG_NAME.fullmatch(info.name)
            if not m or info.is_folder:
                continue
            key = (m["task"], int(m["round"] or 0), int(m["gen"]))
            if key not in log_files or info.created < log_files[key].created:
                log_files[key] = info
    # Earlier rounds: each task's attempts in every round that ran it (drivemr.rounds).
    history: list[tuple[int, Job, JobView]] = []
    for number in range(job.round):
        old = job_at_round(job, number)
        history.append((number, old, load_view(store, old, trust, reader=reader)))
    history.append((job.round, job, view))
    cancelled_at = None
    if view.cancelled:
        for info in store.list(job.folder):
            if info.id == job.markers.get("cancel"):
                cancelled_at = min(info.modified, now)

    # The host each worker's (trusted) heartbeat names: the PC's host name, equal for
    # workers on one PC (the Worker column tells them apart).
    hosts: dict[str, str] = {}
    for beat in heartbeat_files(root):
        if beat.worker in beats:
            sealed = open_heartbeat(trust, store, beat.worker, beat.file)
            if sealed is not None:
                hosts[beat.worker] = _text(sealed.body.get("host"))

    docs: dict[str, dict[str, Any] | None] = {}
    if manifests:  # opened by the views already (cached); only sealed results are shown
        for _n, old, v in history:
            for t in wanted:
                ref = v.results.get(t)
                if ref is not None:
                    manifest = reader.verified(store, old, old.task(t), ref.file)
                    docs[ref.file.id] = None if manifest is None else dict(manifest.body)
    wanted_set = set(wanted)
    log_docs = _read_all(
        store,
        [f.id for (t, _r, _g), f in log_files.items() if t in wanted_set],
        MAX_MANIFEST_BYTES,
        "attempt log",
    )

    for _n, old, v in history:
        _claim_workers(store, trust, old, v, wanted, docs)

    def alive(claim: ClaimRef) -> bool:
        # Shown as running only when the claim opens (a forged claim runs nothing); its
        # seal says whose it is.
        opened = open_claim(trust, store, job.id, claim.task, claim.gen, claim.worker, claim.file)
        if opened is None:
            return False
        claim = replace(claim, worker=claim_worker(opened))
        worker_lease = leases.get(claim.worker, lease)
        clamped = replace(claim, file=replace(claim.file, modified=min(claim.file.modified, now)))
        return not claim_is_dead(clamped, beats, now, worker_lease, lambda hb: hb.worker in stopped)

    def last_sign(claim: ClaimRef) -> float:
        return last_sign_of_life(claim, beats, now)

    def superseded(claim: ClaimRef) -> bool:
        return False  # an earlier round's attempt without a result is over

    record = JobRecord(job, view, [], hosts, now, cancelled_at)
    for task in wanted:
        done: dict[str, int] = {}
        for number, old, v in history:
            if old.task(task).round != number:
                continue  # not run in this round: its result was kept
            logs_here = {(t, g): f for (t, r, g), f in log_files.items() if r == number}
            latest = number == job.round
            found = task_attempts(
                task,
                v,
                logs_here,
                docs,
                log_docs,
                hosts,
                alive if latest else superseded,
                last_sign,
                record,
            )
            if task != REDUCE and old.task(task).packed:
                found = item_attempts(old.task(task), found, v, docs)
                if chosen is not None:
                    found = [a for a in found if a.task in chosen]
            before = dict(done)
            for a in found:
                a.round = number
                a.attempt += before.get(a.task, 0)
                done[a.task] = done.get(a.task, 0) + 1
            record.attempts += found
    return record


# ---------------------------------------------------------------------------- summary


def summarize(record: JobRecord) -> dict[str, Any]:
    """The numbers an operator asks first: how much failed, how much ran twice, was it worth it."""
    job, view = record.job, record.view
    finals = {t: a for t, a, _n in final_attempts(record) if t != REDUCE}
    retries = duplicates = 0
    for task in record.task_ids:
        attempts = record.of(task)
        for a in attempts[:-1]:
            if a.outcome in ("failed", "timed out"):
                retries += 1
            elif a.outcome == "lost":
                duplicates += 1
    ran = [a for a in record.attempts if a.outcome in ("done", "failed", "timed out", "running")]
    # Summed wall time of the attempts (slot time), not CPU time: nothing measures CPU.
    slot_time = sum(
        (a.end if a.end is not None else record.now) - a.start for a in ran if a.start is not None
    )
    starts = [a.start for a in record.attempts if a.start is not None]
    ends = [
        a.end if a.end is not None else record.now for a in record.attempts if a.start is not None
    ]
    wall = (max(ends) - min(starts)) if starts else 0.0
    reduce_ref = view.results.get(REDUCE)
    return {
        "job": job.id,
        "name": job.name,
        "tasks": len(job.items),
        "packs": len(job.tasks) if job.packed else 0,
        "done": sum(1 for a in finals.values() if a is not None and a.outcome == "done"),
        "failed": sum(1 for a in finals.values() if a is not None and a.outcome != "done"),
        "unfinished": sum(1 for a in finals.values() if a is None),
        "reduce": None
        if job.reduce_task is None
        else (reduce_ref.state if reduce_ref else "pending"),
        "attempts": len(record.attempts),
        "retries": retries,
        "duplicates": duplicates,
        "lost": sum(1 for a in record.attempts if a.outcome == "lost"),
        "workers": len({a.worker for a in record.attempts}),
        "attempt_seconds": round(max(0.0, slot_time), 3),
        "wall_seconds": round(max(0.0, wall), 3),
        "speedup": round(slot_time / wall, 2) if wall > 0 else None,
        "cancelled": view.cancelled,
    }


def lanes(record: JobRecord) -> list[tuple[str, int, list[AttemptRecord]]]:
    """Rows of the timeline: per worker, attempts packed greedily into as few lanes (slots)
    as never overlap. A worker's lane count is a lower bound of the slots it used."""
    rows: list[tuple[str, int, list[AttemptRecord]]] = []
    by_worker: dict[str, list[AttemptRecord]] = {}
    for a in record.attempts:
        if a.start is not None:
            by_worker.setdefault(a.worker, []).append(a)
    for worker in sorted(by_worker):
        ends: list[float] = []
        packed: list[list[AttemptRecord]] = []
        for a in sorted(by_worker[worker], key=lambda a: (a.start or 0.0, a.task)):
            assert a.start is not None
            end = a.end if a.end is not None else record.now
            for i, lane_end in enumerate(ends):
                if lane_end <= a.start + 1e-6:
                    ends[i] = end
                    packed[i].append(a)
                    break
            else:
                ends.append(end)
                packed.append([a])
        rows += [(worker, i, lane) for i, lane in enumerate(packed)]
    return rows


def write_report(store: Store, job_id: str, path: Any, *, lease: float = 300.0) -> dict[str, Any]:
    """Write the page for ``job_id`` to ``path``; returns the summary."""
    from pathlib import Path

    from drivemr.report_html import render_html

    record = collect(store, job_id, lease=lease)
    summary = summarize(record)
    Path(path).write_text(render_html(record, summary), encoding="utf-8")
    return summary


def final_attempts(record: JobRecord) -> Iterable[tuple[str, AttemptRecord | None, int]]:
    """Per task and round that ran it (oldest first, as GNU parallel appends a line per
    re-run): its committed attempt (or None) and how many attempts it had."""
    for task in record.task_ids:
        attempts = record.of(task)
        rounds = sorted({a.round for a in attempts}) or [0]
        for number in rounds:
            here = [a for a in attempts if a.round == number]
            committed = next((a for a in here if a.source in ("result", "name")), None)
            yield task, committed, len(here)


def failure_reason(a: AttemptRecord, timeout: float | None = None) -> str:
    """Why an attempt failed, in a few words: timed out, exit code, signal, or its error."""
    if a.outcome == "timed out" or a.timed_out:
        return "timed out" + ("" if timeout is None else f" after {timeout:g} s")
    if a.outcome == "lost":
        return "lost: " + (a.error or "its worker stopped or went silent")
    if a.error and not a.error.startswith(("exit code", "killed by signal")):
        first = a.error.strip().splitlines()[0] if a.error.strip() else a.error
        return first if len(first) <= 100 else first[:99] + "…"
    if a.exit_code is not None:
        return f"killed by signal {-a.exit_code}" if a.exit_code < 0 else f"exit code {a.exit_code}"
    return a.error or a.outcome


def failure_reasons(
    store: Store, job_id: str, tasks: Collection[str], *, lease: float = 300.0
) -> dict[str, str]:
    """Why each of ``tasks`` failed, from its committed result (one read per task, so
    callers pass a bounded list)."""
    if not tasks:
        return {}
    record = collect(store, job_id, tasks=tasks, lease=lease, logs=False)
    latest: dict[str, AttemptRecord | None] = {}
    for task, committed, _n in final_attempts(record):
        latest[task] = committed  # rounds come oldest first: the last one counts
    out: dict[str, str] = {}
    for task, committed in latest.items():
        if committed is not None and committed.outcome != "done":
            job = record.job
            timeout = (job.reduce if task == REDUCE and job.reduce else job.map).timeout
            out[task] = failure_reason(committed, timeout)
    return out


__all__ = [
    "COLOURS",
    "FINAL",
    "LOST_COMMIT",
    "OUTCOMES",
    "AttemptRecord",
    "JobRecord",
    "collect",
    "failure_reason",
    "failure_reasons",
    "final_attempts",
    "lanes",
    "summarize",
    "write_report",
]
