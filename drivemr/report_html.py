"""The one-page HTML timeline of a job's attempts (``drivemr report``).

The page is self-contained (inline CSS, SVG and a few lines of JS): it can be mailed or
opened offline, and it fetches nothing from the network. Every text from the store is made
visible and escaped (:func:`_h`) before it reaches the page.
"""

from __future__ import annotations

import html
import json
import math
import time
from typing import Any

from drivemr.durations import format_duration
from drivemr.report import COLOURS, OUTCOMES, AttemptRecord, JobRecord, lanes, summarize
from drivemr.safetext import safe_multiline


def _h(text: object, quote: bool = True) -> str:
    """Store text for the HTML page: control and escape characters made visible, then
    HTML-escaped."""
    return html.escape(safe_multiline(text), quote=quote)


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
