"""The job commands: submit, status, reduce, retry, results.

Each is a thin layer over :class:`drivemr.api.Client` (the API tools use), kept apart from
the worker commands so what a user types to run and follow jobs reads in one place.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from drivemr.cli import _check_accounts, _client, main, store_option, suggest
from drivemr.safetext import safe
from drivemr.status import STATES, JobStatus
from drivemr.stores.base import Store

# ---------------------------------------------------------------------------- submit


@main.command()
@click.argument("jobfile", type=click.Path(dir_okay=False, path_type=Path))
@store_option
@click.option(
    "--wait", is_flag=True, help="Follow the job until it ends; exit 0 only if it all succeeded."
)
@click.option("--unsigned", is_flag=True, hidden=True, help="Do not sign the job (tests).")
def submit(jobfile: Path, store_url: str | None, wait: bool, unsigned: bool) -> None:
    """Validate JOBFILE, post it to the store and print the job id (last line)."""
    from drivemr.spec import load_job

    spec = load_job(jobfile)  # every check happens before the first write
    client = _client(store_url)
    _check_accounts(client.store, worker=False)
    handle = client.submit(spec, signed=not unsigned, progress=lambda m: click.echo(m, err=True))
    job = handle.definition
    click.echo(
        f"submitted {len(job.items)} item(s) in {len(job.tasks)} task(s)"
        f"{' and a reduce' if job.reduce else ''} to {client.url}",
        err=True,
    )
    click.echo(job.id)
    if wait:
        sys.exit(_wait(client.store, job.id))


def _wait(store: Store, job_id: str, poll: float = 0.5) -> int:
    """Follow the job live (a progress bar on a terminal, plain lines otherwise)."""
    from drivemr.progress import follow

    return follow(store, job_id, poll=poll, out=sys.stderr)


# ---------------------------------------------------------------------------- status


@main.command()
@click.argument("job_id", required=False)
@store_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--watch",
    is_flag=True,
    help="Follow JOB live until it ends (exit 0 done, 1 failed, 3 cancelled).",
)
@click.option("--failed", is_flag=True, help="With JOB: list only its failed tasks.")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(STATES),
    help="With JOB: list only tasks in this state (repeatable).",
)
def status(
    job_id: str | None,
    store_url: str | None,
    as_json: bool,
    watch: bool,
    failed: bool,
    states: tuple[str, ...],
) -> None:
    """Show every job with counts, or one job's tasks and reduce."""
    from dataclasses import replace

    if watch and (not job_id or as_json):
        raise click.UsageError("--watch follows one JOB and cannot be combined with --json")
    wanted = set(states) | ({"failed"} if failed else set())
    if wanted and not job_id:
        raise click.UsageError("--failed and --state filter the tasks of one JOB")
    client = _client(store_url)
    if watch:
        from drivemr.progress import follow

        sys.exit(follow(client.store, str(job_id), out=sys.stdout))
    if job_id:
        st = client.job(job_id).status()
        total = len(st.tasks) + (st.reduce is not None)
        if wanted:
            st = replace(
                st,
                tasks=[t for t in st.tasks if t.state in wanted],
                reduce=st.reduce if st.reduce and st.reduce.state in wanted else None,
            )
        if as_json:
            click.echo(json.dumps(st.to_json(), indent=2))
            return
        _print_job(st, detail=True)
        if wanted:
            shown = len(st.tasks) + (st.reduce is not None)
            click.echo(f"  ({shown} of {total} {st.unit}(s) {' or '.join(sorted(wanted))})")
        return
    statuses = client.jobs()
    if as_json:
        click.echo(
            json.dumps(
                [
                    s.to_json(with_tasks=False) if isinstance(s, JobStatus) else s.to_json()
                    for s in statuses
                ],
                indent=2,
            )
        )
        return
    if not statuses:
        click.echo(f"no jobs in {client.url}")
    for s in statuses:
        if isinstance(s, JobStatus):
            _print_job(s, detail=False)
        else:
            click.echo(f"{safe(s.job)}: unreadable ({safe(s.error, max_len=500)})")


def _clip(text: str, width: int) -> str:
    """One line of at most ``width`` characters, the end kept (file names differ there)."""
    text = safe(text.replace("\n", " ").replace("\t", " "), max_len=4 * width)
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def _print_job(st: Any, *, detail: bool) -> None:
    c = st.counts
    red = f", reduce {st.reduce.state}" if st.reduce else ""
    rnd = f", round {st.round}" if st.round else ""
    extra = "".join(f", {c[k]} {k}" for k in ("lost", "cancelled", "blocked") if c.get(k))
    packs = f" (items, in {st.packs} tasks)" if st.packs else ""
    click.echo(
        f"{safe(st.job)}  {st.state:9}  {c['done']} done, {c['running']} running, {c['failed']} failed, {c['pending']} pending{extra}{red}{rnd}{packs}"
    )
    if c.get("blocked"):
        click.echo(
            f"  {c['blocked']} task(s) blocked by untrusted files: every claim id of each holds a"
            " file no trusted key sealed (forged, or a PC this one does not trust: see"
            " docs/security.md, 'Who can forge what')"
        )
    for worker_id, reason in st.rejected_by.items():
        click.echo(f"  rejected by {safe(worker_id)}: {safe(reason, max_len=300)}")
    if not detail:
        return
    for r in st.rounds:
        what = ", ".join(safe(t, max_len=40) for t in r["tasks"][:10])
        what += " ..." if len(r["tasks"]) > 10 else ""
        new_reduce = " with a new reduce" if r["new_reduce"] else ""
        click.echo(
            f"  round {r['round']}: re-ran {len(r['tasks'])} task(s){new_reduce}"
            f"{': ' + what if what else ''} (by {safe(r['by'])})"
        )
    rows = [*st.tasks, *([st.reduce] if st.reduce else [])]
    width = min(30, max([5, *(len(t.item or "") for t in rows)]))
    unit, pack = st.unit, ("pack     " if st.packs else "")
    rcol = f" {'round':>5}" if st.round else ""
    click.echo(
        f"  {unit:8} {pack}{'state':9} {'tries':>5} {'exit':>5} {'secs':>8}{rcol}  {'input':{width}}  worker"
    )
    for t in rows:
        code = "" if t.exit_code is None else str(t.exit_code)
        dur = "" if t.duration is None else f"{t.duration:.2f}"
        item = _clip(t.item or "", width)
        in_pack = f"{t.pack or '':8} " if st.packs else ""
        rv = f" {t.round:>5}" if st.round else ""
        click.echo(
            f"  {safe(t.task):8} {safe(in_pack)}{t.state:9} {t.attempts:>5} {code:>5} {dur:>8}{rv}  "
            f"{item:{width}}  {safe(t.worker or '')}"
        )
    if st.failed_tasks:
        click.echo(
            f"  failed: {safe(', '.join(st.failed_tasks[:20]), max_len=400)}  (see: {suggest(f'drivemr logs {st.job} {unit.upper()}')})"
        )


# ---------------------------------------------------------------------------- reduce


@main.command()
@click.argument("job_id")
@store_option
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to put the result.",
)
@click.option(
    "--insecure-accept-unsigned", is_flag=True, help="Run the reduce of an unsigned job. Dangerous."
)
def reduce(
    job_id: str, store_url: str | None, out_dir: Path | None, insecure_accept_unsigned: bool
) -> None:
    """Fetch the job's reduced result, or run the reduce here if every task is done."""
    handle = _client(store_url).job(job_id)
    for p in handle.reduce(out_dir, insecure=insecure_accept_unsigned):
        click.echo(str(p))


# ---------------------------------------------------------------------------- recovering


@main.command()
@click.argument("job_id")
@click.argument("tasks", nargs=-1)
@store_option
@click.option("--failed", is_flag=True, help="Re-run every task that failed.")
@click.option(
    "--reduce-from",
    "reduce_from",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    metavar="JOBFILE",
    help="Re-run the reduce with the [reduce] section and shipped files of JOBFILE "
    "(its map part must be unchanged).",
)
@click.option(
    "--wait", is_flag=True, help="Follow the job until it ends; exit 0 only if it all succeeded."
)
def retry(
    job_id: str,
    tasks: tuple[str, ...],
    store_url: str | None,
    failed: bool,
    reduce_from: Path | None,
    wait: bool,
) -> None:
    """Re-run TASKS (or every --failed one, or the reduce --reduce-from an edited job file)
    of a finished job as a new signed round, keeping every successful result; the reduce
    runs again. Workers pick the round up by themselves."""
    if not (tasks or failed or reduce_from):
        raise click.UsageError("name the TASKS to retry, or pass --failed or --reduce-from")
    handle = _client(store_url).job(job_id)
    rnd = handle.retry(list(tasks), failed=failed, reduce_from=reduce_from)
    what = f"{len(rnd.tasks)} task(s)" if rnd.tasks else "no map task"
    red = (" and a new reduce" if rnd.reduce else " and the reduce") if rnd.reduce_task else ""
    click.echo(f"round {rnd.number} of {safe(rnd.job)}: re-running {what}{red}", err=True)
    if wait:
        sys.exit(_wait(handle.store, rnd.job))


@main.command()
@click.argument("job_id")
@store_option
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to put the outputs (default: JOB-results).",
)
@click.option("--task", help="Only this task's outputs.")
def results(job_id: str, store_url: str | None, out_dir: Path | None, task: str | None) -> None:
    """Download every successful task's outputs (one folder per task, the {results} layout
    a reduce sees), sha256-checked, whatever state the job is in."""
    handle = _client(store_url).job(job_id)
    target = out_dir or Path(f"{job_id}-results")
    paths = handle.results(target, task=task)
    for p in paths:
        click.echo(str(p))
    click.echo(f"{len(paths)} file(s) in {target}", err=True)
