"""Store upkeep commands: ``drivemr doctor`` (check the store's assumptions) and
``drivemr clean`` (remove finished jobs). Imported only when used."""

from __future__ import annotations

import sys

import click

from drivemr import config as cfg
from drivemr.cli import EXIT_FAILED, _open, store_option
from drivemr.durations import format_duration
from drivemr.errors import DrivemrError
from drivemr.safetext import safe


@click.command()
@store_option
@click.option(
    "--second-account",
    metavar="SIGN-IN",
    help="Also check another sign-in on the same root: a folder holding it "
    "(`DRIVEMR_CONFIG_DIR=FOLDER drivemr auth login`), or a bearer token with "
    "DRIVEMR_DRIVE_ENDPOINT.",
)
def doctor(store_url: str | None, second_account: str | None) -> None:
    """Check, on this store, every assumption drivemr makes, and print a table.

    It creates a scratch folder in the root (a few dozen small files) and removes it.
    Exits 1 when an assumption does not hold."""
    from drivemr.doctor import Probe, render, run_checks, second_store

    store = _open(store_url, write_rate=0)  # the quota check measures the store, unpaced
    second = None
    if second_account:
        if not store.url.startswith("drive://"):
            raise DrivemrError("--second-account applies to a drive:// store only")
        second = second_store(store.url, second_account)
    try:
        rows = run_checks(Probe(store, second))
    finally:
        if second is not None:
            second.close()
        store.close()
    render(rows)
    if any(r.failed for r in rows):
        sys.exit(EXIT_FAILED)


@click.command()
@click.argument("jobs", nargs=-1, metavar="[JOB]...")
@store_option
@click.option(
    "--older-than",
    metavar="AGE",
    help="Remove every finished job whose last change is older than AGE (30d, 12h, 90m).",
)
@click.option(
    "--dry-run", is_flag=True, help="List what would go and what it costs; change nothing."
)
def clean(
    jobs: tuple[str, ...], store_url: str | None, older_than: str | None, dry_run: bool
) -> None:
    """Remove finished jobs (done, failed or cancelled): the named JOBs, or every one older
    than --older-than. A job with a running attempt is never touched."""
    from drivemr.clean import find_candidates, remove
    from drivemr.spec import parse_duration

    if not jobs and older_than is None:
        raise DrivemrError("name the jobs to remove, or give --older-than AGE (e.g. 30d)")
    age: float | None = None
    if older_than is not None:
        text = older_than.strip()
        # 0 (any unit) means "every finished job"; parse_duration wants a positive one.
        zero = text.rstrip("dhms") in ("0", "0.0") and text != ""
        age = 0.0 if zero else parse_duration(text, key="--older-than")
    store = _open(store_url)
    lease = float(cfg.value("lease"))
    with store:
        found = find_candidates(store, older_than=age, named=jobs, lease=lease)
        going = [c for c in found if c.removable]
        for c in found:
            if c.removable:
                what = "would remove" if dry_run else "removing"
                click.echo(
                    f"{what} {safe(c.job)}  {c.state}, last change "
                    f"{format_duration(c.age)} ago, {c.files} file(s)"
                )
            elif jobs or c.state in ("done", "failed", "cancelled", "unreadable"):
                click.echo(f"keeping {safe(c.job)}: {safe(c.why)}")
        cost = len(going)
        drive = store.url.startswith("drive://")
        unit = "delete request(s)" if drive else "folder removal(s)"
        files = sum(c.files for c in going)
        if dry_run:
            click.echo(
                f"{len(going)} job(s), {files} file(s): {cost} {unit} "
                f"(one per job{', paced like every Drive write' if drive else ''})"
            )
            return
        outcomes = remove(store, going)
    failed = [o for o in outcomes if not o.removed]
    for o in failed:
        click.echo(
            f"drivemr: could not remove {safe(o.job)}: {safe(o.message, max_len=1000)}", err=True
        )
    click.echo(f"removed {len(outcomes) - len(failed)} job(s)")
    if failed or (jobs and len(going) < len(jobs)):
        sys.exit(EXIT_FAILED)
