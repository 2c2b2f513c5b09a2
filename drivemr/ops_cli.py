"""Operator commands: cancel, logs, workers, jobs, joblog, report, config show.

They only read the store (cancel writes one marker): everything they show was written by
workers as part of the protocol, so they work from any PC that can see the shared folder.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any

import click

from drivemr import config as cfg
from drivemr.api import Client
from drivemr.cli import _client, _open, store_option, suggest
from drivemr.durations import format_duration
from drivemr.errors import DrivemrError
from drivemr.protocol import (
    REDUCE,
    Job,
)
from drivemr.safetext import safe, safe_multiline
from drivemr.status import JobStatus
from drivemr.stores.base import Store

JOBLOG_HEADER = (
    "Task",
    "Host",
    "Worker",
    "Starttime",
    "JobRuntime",
    "Exitval",
    "Signal",
    "Attempts",
    "Command",
)
TIMEOUT_SIGNAL = 9
"""A timed-out attempt's process tree is killed with SIGKILL (TerminateProcess on Windows)."""


def _lease() -> float:
    return float(cfg.value("lease"))


def _when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _dump(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=False))


# ---------------------------------------------------------------------------- cancel


@click.command()
@click.argument("job_id", metavar="JOB")
@store_option
def cancel(job_id: str, store_url: str | None) -> None:
    """Cancel JOB: workers stop claiming its tasks and kill its running attempts."""
    client = _client(store_url)
    handle = client.job(job_id)
    if not handle.cancel():
        click.echo(f"job {safe(handle.id)} was already cancelled")
        return
    click.echo(
        f"job {safe(handle.id)} cancelled: workers stop claiming its tasks and kill its running "
        "attempts at their next poll"
    )
    click.echo(
        f"(the cancel is sealed with this PC's key {client.key_id}: workers on PCs that do"
        " not trust it ignore it; see `drivemr keys`)",
        err=True,
    )


# ---------------------------------------------------------------------------- logs


def _print_attempt(job: Job, a: Any, of: int | None, only: str | None) -> None:
    if only == "stdout":
        click.echo(safe_multiline(a.stdout or ""), nl=False)
        return
    if only == "stderr":
        click.echo(safe_multiline(a.stderr or ""), nl=False)
        return
    code = "-" if a.exit_code is None else str(a.exit_code)
    where = safe(a.worker or "") + (f" on {safe(a.host)}" if a.host else "")
    total = "" if of is None else f" of {of}"
    rnd = f" (round {a.round})" if a.round else ""
    click.echo(
        f"== {safe(job.id)} {safe(a.task)} attempt {a.attempt}{total}{rnd}: {safe(a.outcome)}"
        f" (exit code {code})"
    )
    took = "" if a.duration is None else f", took {a.duration:.2f} s"
    click.echo(f"   worker {where or '?'}, started {_when(a.start)}{took}")
    if a.error and a.outcome != "done":
        click.echo(f"   error: {safe(a.error, max_len=500)}")
    if a.source == "claim":
        if a.outcome == "running":
            click.echo("   still running: its output is uploaded when the attempt ends")
        else:
            click.echo(f"   no output: the attempt was {a.outcome} before it could report")
        return
    if a.source == "name":
        click.echo("   (the result manifest could not be read: no output)")
        return
    for label, text in (("stdout", a.stdout), ("stderr", a.stderr)):
        click.echo(f"--- {label} ---")
        if text:
            text = safe_multiline(text)
            click.echo(text, nl=not text.endswith("\n"))
    click.echo("")


def _attempt_index(job: Job, attempts: list[Any]) -> None:
    rounds = job.round > 0
    rcol = f" {'round':>5}" if rounds else ""
    click.echo(f"{'task':8} {'try':>3}{rcol} {'outcome':9} {'exit':>5} {'secs':>8}  worker")
    for a in attempts:
        code = "" if a.exit_code is None else str(a.exit_code)
        secs = "" if a.duration is None else f"{a.duration:.2f}"
        rv = f" {a.round:>5}" if rounds else ""
        click.echo(
            f"{safe(a.task):8} {a.attempt:>3}{rv} {safe(a.outcome):9} {code:>5} {secs:>8}  "
            f"{safe(a.worker or '')}"
        )
    if not attempts:
        click.echo("(no attempt has started yet)")
    else:
        click.echo(f"output of one: {suggest(f'drivemr logs {job.id} TASK')} [--attempt N]")


@click.command()
@click.argument("job_id", metavar="JOB")
@click.argument("task", required=False)
@store_option
@click.option(
    "--attempt", "attempt_no", type=click.IntRange(min=1), help="Attempt number (1-based)."
)
@click.option(
    "-f",
    "--follow",
    is_flag=True,
    help="Wait for attempts to end and print each (output arrives when an attempt ends).",
)
@click.option(
    "--only",
    type=click.Choice(["stdout", "stderr"]),
    help="Print just that stream (for pipes; control characters escaped, as everywhere).",
)
@click.option("--poll", type=float, default=1.0, show_default=True, hidden=True)
def logs(
    job_id: str,
    task: str | None,
    store_url: str | None,
    attempt_no: int | None,
    follow: bool,
    only: str | None,
    poll: float,
) -> None:
    """Print a task attempt's stdout and stderr (default: its latest attempt).

    Without TASK, list every attempt of JOB. Workers upload an attempt's output when it
    ends, so --follow waits for the task's attempts to end and prints each as it lands.
    """
    if follow and not task:
        raise click.UsageError("--follow needs a TASK")
    handle = _client(store_url).job(job_id)
    job = handle.definition
    if not task:
        _attempt_index(job, handle.attempts(output=False))
        return
    if not follow:
        one, count = handle.attempt_of(task, attempt_no)
        _print_attempt(job, one, count, only)
        return
    allowed = handle.max_attempts(task)
    if attempt_no is not None and attempt_no > allowed:
        raise DrivemrError(f"{job.id} {task} has at most {allowed} attempt(s), not {attempt_no}")
    printed: set[int] = set()
    announced: set[int] = set()
    while True:
        ended = handle.task_ended(task)  # before the attempts: a result then is in them
        attempts = handle.attempts(task)
        chosen = [a for a in attempts if attempt_no is None or a.attempt == attempt_no]
        for a in chosen:
            if a.final and a.attempt not in printed:
                _print_attempt(job, a, None, only)  # more attempts may follow
                printed.add(a.attempt)
            elif a.outcome == "running" and a.attempt not in announced:
                announced.add(a.attempt)
                click.echo(
                    f"{task} attempt {a.attempt} is running on {a.worker}: workers upload an "
                    "attempt's output when it ends, so it is printed then (not line by line)",
                    err=True,
                )
        if ended or (attempt_no is not None and attempt_no in printed):
            return
        time.sleep(poll)


# ---------------------------------------------------------------------------- workers


def worker_rows(store: Store) -> list[dict[str, Any]]:
    """Every heartbeat in the store, opened and judged (see Client.workers)."""
    return [w.to_json() for w in Client(store).workers()]


@click.command()
@store_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def workers(store_url: str | None, as_json: bool) -> None:
    """List every worker seen in the store: host, slots, running tasks, last heartbeat."""
    client = _client(store_url)
    rows = [w.to_json() for w in client.workers()]
    if as_json:
        _dump(rows)
        return
    if not rows:
        click.echo(f"no workers have been seen in {client.url}")
        return
    click.echo(f"{'WORKER':24} {'HOST':20} {'SLOTS':>5} {'RUN':>4} {'SEEN':>9}  STATUS")
    for r in rows:
        if r["alive"]:
            status = "alive" if r["state"] in (None, "running") else f"alive ({safe(r['state'])})"
        elif r["state"] == "stopped":
            status = "stopped"
        else:
            status = safe(r.get("error", "lost (no heartbeat within its lease)"), max_len=200)
        slots = "" if r["slots"] is None else safe(r["slots"], max_len=8)
        click.echo(
            f"{safe(r['worker']):24} {safe(r['host'] or ''):20} {safe(slots):>5} {len(r['running']):>4} "
            f"{format_duration(r['age']) + ' ago':>9}  {status}"
        )
        if r["alive"]:
            for run in r["running"]:
                gen = run.get("gen")
                attempt = f" attempt {gen + 1}" if isinstance(gen, int) else ""
                click.echo(f"    {safe(run.get('job'))} {safe(run.get('task'))}{attempt}")


# ---------------------------------------------------------------------------- jobs


@click.command()
@store_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (as status --json).")
def jobs(store_url: str | None, as_json: bool) -> None:
    """List jobs, newest first, with their task counts."""
    client = _client(store_url)
    docs = [
        s.to_json(with_tasks=False) | {"total": len(s.tasks)}  # items, when packed
        if isinstance(s, JobStatus)
        else s.to_json()
        for s in client.jobs()
    ]
    if as_json:
        _dump(docs)
        return
    if not docs:
        click.echo(f"no jobs in {client.url}")
        return
    click.echo(
        f"{'JOB':40} {'STATE':9} {'DONE':>5} {'RUN':>4} {'FAIL':>4} {'PEND':>5} {'TOTAL':>5}"
        f"  {'REDUCE':8} SUBMITTED"
    )
    for doc in docs:
        if "error" in doc:
            click.echo(f"{safe(doc['job']):40} unreadable: {safe(doc['error'], max_len=500)}")
            continue
        c = doc["counts"]
        red = doc["reduce"]["state"] if doc["reduce"] else "-"
        click.echo(
            f"{safe(doc['job']):40} {doc['state']:9} {c['done']:>5} {c['running']:>4} {c['failed']:>4} "
            f"{c['pending']:>5} {doc['total']:>5}  {red:8} {_when(doc['created'])}"
        )


# ---------------------------------------------------------------------------- joblog


def _command(job: Job, task_id: str) -> str:
    from drivemr.spec import expand

    if task_id == REDUCE:
        stage, item = job.stage_of(job.task(task_id)), None
    else:
        stage, item = job.map, job.item(task_id)[1]
    values = {
        "task": task_id,
        "item": (item.item if item else None) or "",
        "input": item.input.name if item and item.input else "",
        "files": "{files}",
        "results": "{results}",
    }
    try:
        argv = expand(stage.command, values)
    except ValueError:
        argv = list(stage.command)
    return " ".join(shlex.quote(a) for a in argv).replace("\t", " ").replace("\n", " ")


def joblog_rows(store: Store, job_id: str) -> list[tuple[str, ...]]:
    """One row per task (and the reduce), as GNU parallel's --joblog would write it."""
    from drivemr.report import collect, final_attempts

    record = collect(store, job_id, logs=False, lease=_lease())
    rows: list[tuple[str, ...]] = []
    for task, a, attempts in final_attempts(record):
        cmd = _command(record.job, task)
        if a is None:
            rows.append((task, "", "", "", "", "", "", str(attempts), cmd))
            continue
        if a.exit_code is not None and a.exit_code >= 0:
            exitval, signal = a.exit_code, 0
        else:
            exitval = -1
            signal = (
                -a.exit_code if a.exit_code is not None else (TIMEOUT_SIGNAL if a.timed_out else 0)
            )
        rows.append(
            (
                task,
                safe(a.host, max_len=64),
                safe(a.worker, max_len=64),
                "" if a.start is None else f"{a.start:.3f}",
                "" if a.duration is None else f"{a.duration:.3f}",
                str(exitval),
                str(signal),
                str(attempts),
                cmd,
            )
        )
    return rows


@click.command()
@click.argument("job_id", metavar="JOB")
@store_option
def joblog(job_id: str, store_url: str | None) -> None:
    """Print a TSV in the spirit of GNU parallel's --joblog, one row per task.

    Starttime is seconds since the epoch, JobRuntime seconds; Exitval is -1 when the
    process did not exit by itself (Signal then names the signal, 9 for a timeout);
    tasks without a result have empty fields.
    """
    store = _open(store_url)
    rows = joblog_rows(store, job_id)
    click.echo("\t".join(JOBLOG_HEADER))
    for row in rows:
        click.echo("\t".join(safe(field, max_len=1000) for field in row))


# ---------------------------------------------------------------------------- report


@click.command()
@click.argument("job_id", metavar="JOB")
@store_option
@click.option(
    "--html",
    "html_file",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the page here.",
)
def report(job_id: str, store_url: str | None, html_file: Path) -> None:
    """Write a self-contained HTML page: a timeline of every attempt, and a summary."""
    from drivemr.report import write_report

    store = _open(store_url)
    s = write_report(store, job_id, html_file, lease=_lease())
    speedup = "-" if s["speedup"] is None else f"{s['speedup']:.2f}x"
    click.echo(
        f"{safe(s['job'])}: {s['tasks']} {'item' if s.get('packs') else 'task'}(s), {s['failed']} failed, {s['retries']} retries, "
        f"{s['duplicates']} duplicates; attempt time {format_duration(s['attempt_seconds'])}, "
        f"wall {format_duration(s['wall_seconds'])}, speed-up {speedup}",
        err=True,
    )
    click.echo(str(html_file))


# ---------------------------------------------------------------------------- config


@click.group("config")
def config_group() -> None:
    """Settings and where each comes from (flags > DRIVEMR_* > config file > defaults)."""


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def config_show(as_json: bool) -> None:
    """Print the effective value of every setting and where it came from."""
    path = cfg.config_file()
    effective = cfg.effective()
    if as_json:
        _dump(
            {
                "config_file": str(path),
                "config_file_exists": path.exists(),
                "settings": {
                    name: {
                        "value": value,
                        "source": source,
                        "env": cfg.SETTINGS[name].env,
                        "default": cfg.SETTINGS[name].default,
                        "auto": cfg.auto_value(name, value),
                        "help": cfg.SETTINGS[name].help,
                    }
                    for name, value, source in effective
                },
                "default_workdir": str(cfg.default_workdir()),
            }
        )
        return
    click.echo(f"config file: {path}{'' if path.exists() else '  (not created yet)'}")
    click.echo(f"default workdir: {cfg.default_workdir()}")
    click.echo(f"{'SETTING':20} {'VALUE':30} SOURCE")
    for name, value, source in effective:
        auto = cfg.auto_value(name, value)
        shown = json.dumps(value) if isinstance(value, str) else str(value)
        where = f"{source} ({cfg.SETTINGS[name].env})" if source == "environment" else source
        if auto is not None:
            shown, where = "auto", f"{where}: {auto}"
        click.echo(f"{name:20} {safe(shown, max_len=300):30} {safe(where, max_len=300)}")


def register(main: click.Group) -> None:
    """Add the operator commands to the ``drivemr`` group."""
    for command in (cancel, logs, workers, jobs, joblog, report, config_group):
        main.add_command(command)


__all__ = ["joblog_rows", "register", "worker_rows"]
