"""Every attempt of a job, and a one-page HTML timeline of them.

Attempts are rebuilt from what the store keeps: the result manifest (the attempt that
committed), the attempt logs (earlier attempts that failed) and the claims (an attempt that
left neither is still running, or was lost: its worker died, was superseded or the job was
cancelled). ``drivemr logs``, ``drivemr joblog`` and ``drivemr report`` all read them from here.

The page is self-contained (inline CSS, SVG and a few lines of JS): it can be mailed or
opened offline, and it fetches nothing from the network.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import re
import time
from collections.abc import Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from drivemr.durations import format_duration
from drivemr.errors import DrivemrError
from drivemr.protocol import (
    MAX_MANIFEST_BYTES,
    REDUCE,
    ClaimRef,
    Job,
    JobView,
    ResultRef,
    Task,
    claim_is_dead,
    find_job,
    heartbeat_files,
    load_view,
    parse_json,
)
from drivemr.results import reader_for
from drivemr.rounds import job_at_round
from drivemr.safetext import safe_multiline
from drivemr.status import last_sign_of_life
from drivemr.stores.base import FileInfo, Store
from drivemr.trust import open_claim, open_heartbeat

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


def _h(text: object, quote: bool = True) -> str:
    """Store text for the HTML page: control and escape characters made visible, then
    HTML-escaped."""
    return html.escape(safe_multiline(text), quote=quote)


_LOG_NAME = re.compile(
    r"(?P<task>[A-Za-z0-9]{1,64})(?:\.r(?P<round>\d{1,6}))?\.g(?P<gen>\d{1,6})\.log"
)
_READERS = 8


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


# ---------------------------------------------------------------------------- collecting


def _read_json(store: Store, file_id: str, limit: int, what: str) -> dict[str, Any] | None:
    try:
        doc = parse_json(store.read(file_id, max_bytes=limit), what)
    except DrivemrError:
        return None
    return doc if isinstance(doc, dict) else None


def _read_all(
    store: Store, ids: list[str], limit: int, what: str
) -> dict[str, dict[str, Any] | None]:
    """Read many small JSON files; in parallel, because on Drive each read is a round trip."""
    if not ids:
        return {}
    with ThreadPoolExecutor(max_workers=min(_READERS, len(ids))) as pool:
        docs = pool.map(lambda fid: _read_json(store, fid, limit, what), ids)
        return dict(zip(ids, docs, strict=True))


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

    def alive(claim: ClaimRef) -> bool:
        worker_lease = leases.get(claim.worker, lease)
        clamped = replace(claim, file=replace(claim.file, modified=min(claim.file.modified, now)))
        if claim_is_dead(clamped, beats, now, worker_lease, lambda hb: hb.worker in stopped):
            return False
        # Shown as running only when the claim opens (a forged claim runs nothing).
        opened = open_claim(trust, store, job.id, claim.task, claim.gen, claim.worker, claim.file)
        return opened is not None

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
            found = _task_attempts(
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
                found = _item_attempts(old.task(task), found, v, docs)
                if chosen is not None:
                    found = [a for a in found if a.task in chosen]
            before = dict(done)
            for a in found:
                a.round = number
                a.attempt += before.get(a.task, 0)
                done[a.task] = done.get(a.task, 0) + 1
            record.attempts += found
    return record


def _item_attempts(
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


def _task_attempts(
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


# ---------------------------------------------------------------------------- HTML


def _clock(ts: float | None) -> str:
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1000):03d}"


def _tick_step(span: float, target: int = 8) -> float:
    raw = max(span, 1e-3) / target
    steps = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400)
    if raw < 1:
        exp = 10 ** math.floor(math.log10(raw))
        for m in (1, 2, 5, 10):
            if m * exp >= raw:
                return float(m * exp)
    for s in steps:
        if s >= raw:
            return float(s)
    return float(math.ceil(raw / 86400) * 86400)


def _tick_label(t: float, step: float) -> str:
    if step < 1:
        return f"{t:.{max(0, -math.floor(math.log10(step)))}f}s"
    if step < 60:
        return f"{t:.0f}s"
    if step < 3600:
        return f"{int(t // 60)}m{int(t % 60):02d}" if t % 60 else f"{int(t // 60)}m"
    return f"{int(t // 3600)}h{int(t % 3600 // 60):02d}"


def _tip(a: AttemptRecord) -> str:
    lines = [
        f"{a.task}  attempt {a.attempt}: {a.outcome}",
        f"worker {a.worker}" + (f" on {a.host}" if a.host else ""),
        f"start {_clock(a.start)}",
        f"end   {_clock(a.end) if a.end is not None else '(running)'}",
        f"took  {format_duration(a.duration)}",
        f"exit code {a.exit_code if a.exit_code is not None else '-'}",
    ]
    if a.error and a.outcome != "done":
        lines.append(f"error {a.error[:200]}")
    return "\n".join(lines)


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222;
background:#fff}
h1{font-size:20px;margin:0 0 4px}
.sub{color:#666;margin-bottom:16px}
.sum{display:grid;grid-template-columns:repeat(6,minmax(120px,1fr));gap:8px;margin:12px 0 18px;
max-width:1100px}
.sum div{background:#f4f5f7;border-radius:6px;padding:6px 10px}
.sum b{display:block;font-size:18px}
.sum span{color:#555;font-size:12px}
.legend span{display:inline-block;margin-right:14px}
.legend i{display:inline-block;width:12px;height:12px;margin-right:5px;vertical-align:-1px;
border-radius:2px}
svg{display:block;margin-top:8px}
svg text{font:12px system-ui,sans-serif;fill:#333}
svg .grid{stroke:#e5e5e5}
svg .lane{fill:#f7f7f7}
svg rect.attempt{stroke:#fff;stroke-width:0.5}
svg rect.attempt:hover{stroke:#000;stroke-width:1.5}
#tip{position:fixed;display:none;white-space:pre;background:#222;color:#fff;padding:6px 8px;
border-radius:4px;font:12px ui-monospace,Menlo,Consolas,monospace;pointer-events:none;z-index:9}
table.fail{border-collapse:collapse;margin-top:8px}
table.fail td,table.fail th{border-bottom:1px solid #eee;padding:3px 10px 3px 0;text-align:left;
vertical-align:top}
table.fail code{white-space:pre-wrap}
"""

_JS = """
const tip=document.getElementById('tip');
document.querySelectorAll('rect.attempt').forEach(r=>{
 r.addEventListener('mousemove',e=>{tip.textContent=r.dataset.tip;tip.style.display='block';
  tip.style.left=(e.clientX+14)+'px';tip.style.top=(e.clientY+14)+'px';});
 r.addEventListener('mouseleave',()=>{tip.style.display='none';});
});
"""


def _svg(record: JobRecord, width: int = 1100) -> str:
    rows = lanes(record)
    label_w, row_h, bar_h, top = 210, 24, 16, 28
    plot_w = width - label_w - 20
    attempts = [a for _w, _i, lane in rows for a in lane]
    if not attempts:
        return '<p class="sub">No attempt has started yet.</p>'
    t0 = min(a.start for a in attempts if a.start is not None)
    t1 = max((a.end if a.end is not None else record.now) for a in attempts)
    span = max(t1 - t0, 1e-3)
    height = top + len(rows) * row_h + 8

    def x(t: float) -> float:
        return label_w + (t - t0) / span * plot_w

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="timeline of attempts">'
    ]
    for i, (worker, lane, _a) in enumerate(rows):
        y = top + i * row_h
        if i % 2 == 0:
            parts.append(
                f'<rect class="lane" x="{label_w}" y="{y}" width="{plot_w}" height="{row_h}"/>'
            )
        label = _h(f"{worker} · slot {lane + 1}")
        ty = y + row_h / 2 + 4
        parts.append(f'<text x="{label_w - 8}" y="{ty}" text-anchor="end">{label}</text>')
    step = _tick_step(span)
    k = 0
    while k * step <= span + 1e-9:
        xt = x(t0 + k * step)
        parts.append(
            f'<line class="grid" x1="{xt:.1f}" y1="{top - 4}" x2="{xt:.1f}" y2="{height - 8}"/>'
        )
        tick = _tick_label(k * step, step)
        parts.append(f'<text x="{xt:.1f}" y="{top - 10}" text-anchor="middle">{tick}</text>')
        k += 1
    for i, (_worker, _lane, lane_attempts) in enumerate(rows):
        bar_y = top + i * row_h + (row_h - bar_h) / 2
        for a in lane_attempts:
            assert a.start is not None
            end = a.end if a.end is not None else record.now
            x0 = x(a.start)
            w = max(2.0, x(end) - x0)
            cls = "attempt " + a.outcome.replace(" ", "-")
            tip = _h(_tip(a), quote=True)
            parts.append(
                f'<rect class="{cls}" x="{x0:.2f}" y="{bar_y:.1f}" width="{w:.2f}" '
                f'height="{bar_h}" rx="2" fill="{COLOURS[a.outcome]}" '
                f'data-task="{_h(a.task)}" data-attempt="{a.attempt}" '
                f'data-tip="{tip}"><title>{tip}</title></rect>'
            )
    parts.append("</svg>")
    return "\n".join(parts)


def render_html(record: JobRecord, summary: dict[str, Any] | None = None) -> str:
    """The whole page as one string."""
    from drivemr.cli import suggest

    s = summary or summarize(record)
    job = record.job
    if s["cancelled"]:
        state = "cancelled"
    elif s["failed"] or s["reduce"] == "failed":
        state = "failed"
    elif not s["unfinished"] and s["reduce"] in (None, "done"):
        state = "done"
    else:
        state = "running"
    speedup = "-" if s["speedup"] is None else f"{s['speedup']:.2f} x"
    unit = "items" if s.get("packs") else "tasks"
    rows = [
        (
            "tasks",
            unit if not s.get("packs") else f"items (in {s['packs']} tasks)",
            f"{s['tasks']}",
        ),
        ("done", "done", f"{s['done']}"),
        ("failed", "failed", f"{s['failed']}"),
        ("unfinished", "unfinished", f"{s['unfinished']}"),
        ("reduce", "reduce", s["reduce"] or "none"),
        ("attempts", "attempts", f"{s['attempts']}"),
        ("retries", "retries (after a failure)", f"{s['retries']}"),
        ("duplicates", "duplicates (after a lost worker)", f"{s['duplicates']}"),
        ("workers", "workers", f"{s['workers']}"),
        (
            "attempt_seconds",
            "attempt time (wall time of every attempt, summed)",
            format_duration(s["attempt_seconds"]),
        ),
        ("wall_seconds", "wall time", format_duration(s["wall_seconds"])),
        ("speedup", "speed-up over one slot", speedup),
    ]
    summary_rows = "\n".join(
        f'<div><b data-key="{key}">{_h(val)}</b><span>{_h(label)}</span></div>'
        for key, label, val in rows
    )
    legend = "".join(
        f'<span><i style="background:{COLOURS[o]}"></i>{o}</span>'
        for o in OUTCOMES
        if any(a.outcome == o for a in record.attempts) or o in ("done", "failed")
    )
    failed = [a for a in record.attempts if a.source in ("result", "name") and a.outcome != "done"]
    fail_html = ""
    if failed:
        items = "\n".join(
            f"<tr><td>{_h(a.task)}</td><td>{a.attempt}</td><td>{_h(a.outcome)}</td>"
            f"<td>{'' if a.exit_code is None else a.exit_code}</td>"
            f"<td><code>{_h((a.error or '')[:300])}\n"
            f"{_h(a.stderr[-400:])}</code></td></tr>"
            for a in failed[:200]
        )
        fail_html = (
            f"<h2>Failed {unit}</h2>"
            f'<p class="sub">Full output: <code>{_h(suggest(f"drivemr logs {job.id} TASK"))}</code></p>'
            f'<table class="fail"><tr><th>{unit[:-1]}</th><th>attempts</th><th>outcome</th><th>exit</th>'
            f"<th>error / end of stderr</th></tr>\n{items}</table>"
        )
    data = json.dumps(s).replace("</", "<\\/")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>drivemr {_h(job.id)}</title>
<style>{_CSS}</style></head>
<body>
<h1>drivemr job {_h(job.id)}</h1>
<div class="sub">{_h(job.name)} · {state} · submitted {_clock(job.created)}
 · report of {_clock(record.now)}</div>
<div class="sum">
{summary_rows}
</div>
<div class="legend">{legend}<span class="sub">one row per worker slot, one bar per attempt;
 hover a bar for details</span></div>
{_svg(record)}
{fail_html}
<div id="tip"></div>
<script type="application/json" id="summary">{data}</script>
<script>{_JS}</script>
</body></html>
"""


def write_report(store: Store, job_id: str, path: Any, *, lease: float = 300.0) -> dict[str, Any]:
    """Write the page for ``job_id`` to ``path``; returns the summary."""
    from pathlib import Path

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
