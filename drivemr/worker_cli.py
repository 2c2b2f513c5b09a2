"""The commands that run work on this PC: worker, init (create the shared root) and demo.

Kept apart from the job commands: they build workers (:mod:`drivemr.wiring`), install
signal handlers and create stores, which submitting or following a job never does.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from drivemr import config as cfg
from drivemr.api import Client
from drivemr.cli import (
    EXIT_FAILED,
    _check_accounts,
    _open,
    _verifier,
    auth_message,
    main,
    store_option,
)
from drivemr.errors import AuthError, DrivemrError
from drivemr.stores import open_store, store_kind
from drivemr.wiring import build_worker

log = logging.getLogger("drivemr")

# ---------------------------------------------------------------------------- worker


@main.command()
@store_option
@click.option("--slots", type=int, help="Task slots (default: CPU count).")
@click.option(
    "--workdir", type=click.Path(file_okay=False, path_type=Path), help="Where tasks run."
)
@click.option(
    "--worker-id",
    help="Name of this worker (default: the one kept in --workdir, made from the host name"
    " the first time).",
)
@click.option(
    "--lease", type=float, help="Seconds without a heartbeat before claims are reclaimed (300)."
)
@click.option("--poll-interval", type=float, help="Seconds between change polls when idle.")
@click.option("--write-rate", type=float, help="Drive writes per second for this account (3).")
@click.option(
    "--exit-when-idle",
    is_flag=True,
    help="Exit once every job in the store is finished or cancelled (status 5 if some job "
    "cannot be read; see docs/operating.md).",
)
@click.option(
    "--when-idle",
    is_flag=True,
    help="Claim tasks only while the PC's other processes leave the CPU idle.",
)
@click.option(
    "--idle-threshold",
    type=float,
    help="With --when-idle: share of the whole CPU others may use (0.25).",
)
@click.option(
    "--keep-workdirs", is_flag=True, help="Keep each attempt's working folder (debugging)."
)
@click.option("--job", "jobs", multiple=True, help="Serve only this job (repeatable).")
@click.option(
    "--no-reduce",
    is_flag=True,
    help="Never run reduces on this PC (another worker or `drivemr reduce` will).",
)
@click.option(
    "--insecure-accept-unsigned",
    is_flag=True,
    help="Run jobs without checking signatures. Dangerous.",
)
@click.option(
    "--pass-env",
    "pass_env",
    multiple=True,
    metavar="NAME",
    help="Give tasks this variable although it is on the secrets deny-list (repeatable).",
)
def worker(
    store_url: str | None,
    slots: int | None,
    workdir: Path | None,
    worker_id: str | None,
    lease: float | None,
    poll_interval: float | None,
    write_rate: float | None,
    exit_when_idle: bool,
    when_idle: bool,
    idle_threshold: float | None,
    keep_workdirs: bool,
    jobs: tuple[str, ...],
    no_reduce: bool,
    insecure_accept_unsigned: bool,
    pass_env: tuple[str, ...],
) -> None:
    """Claim and run tasks from the store until stopped.

    Ctrl-C or SIGTERM drains (running tasks finish); a second one, or a closed terminal
    (SIGHUP), kills the running tasks and releases their claims at once (exit 130 / 129).
    To outlive the terminal, run it as a service or with nohup (docs/operating.md)."""
    store = _open(store_url, write_rate=write_rate)
    _check_accounts(store, worker=True)
    w = build_worker(
        store,
        slots=slots,
        workdir=workdir,
        worker_id=worker_id,
        lease=lease,
        poll_interval=poll_interval,
        exit_when_idle=exit_when_idle,
        when_idle=when_idle,
        idle_threshold=idle_threshold,
        keep_workdirs=keep_workdirs,
        jobs=frozenset(jobs) or None,
        run_reduce=not no_reduce,
        verify=_verifier(insecure_accept_unsigned),
        pass_env=pass_env,
        keep_id=True,
    )
    from drivemr.worker.signals import install as install_signal_handlers

    install_signal_handlers(w)
    log.info("worker %s serving %s with %d slot(s)", w.id, store.url, w.config.slots)
    _log_trust(w.shared.trust)
    code = w.run()
    if isinstance(w.fatal, AuthError):
        click.echo(auth_message(w.fatal), err=True)
    sys.exit(code)


def _log_trust(trust: Any) -> None:
    """Say at start-up which key seals this worker's files and which keys it believes."""
    others = [k for k in trust.keys().values() if k.key_id != trust.me.key_id]
    log.info(
        "this PC's key %s seals this worker's claims, heartbeats and markers; it believes %s",
        trust.me.key_id,
        "only itself (one PC: nothing to set up)"
        if not others
        else f"itself and {len(others)} trusted key(s): {', '.join(k.name for k in others)}",
    )
    log.info(
        "for a cluster, every PC must trust every other PC's key, once: run `drivemr keys show`"
        " here and `drivemr keys trust <that line> --name NAME` on each other PC (and the"
        " reverse); workers re-read the trusted list without a restart"
    )


# ---------------------------------------------------------------------------- init and demo


@main.command()
@store_option
@click.option("--shared-drive", help="Create the folder in this shared drive (Drive only).")
@click.option(
    "--name",
    default="drivemr",
    show_default=True,
    help="Name of the folder to create (Drive only).",
)
@click.option(
    "--allow-synced-folder",
    is_flag=True,
    help="Make a store inside a Dropbox/OneDrive/Google Drive/iCloud/Syncthing folder anyway "
    "(unsafe with several PCs; also DRIVEMR_ALLOW_SYNCED_FOLDER=1).",
)
def init(
    store_url: str | None, shared_drive: str | None, name: str, allow_synced_folder: bool
) -> None:
    """Create the shared root (a folder, or a Drive folder; on S3, check the bucket) and print
    its store URL (last line)."""
    url = cfg.value("store", store_url)
    if not url:
        raise DrivemrError("pass --store PATH, --store drive:// or --store s3://BUCKET/PREFIX")
    if store_kind(url) == "drive":
        from drivemr.stores.drive import DriveStore

        parent = url[len("drive://") :] or "root"
        click.echo(DriveStore.create_root(name=name, parent=parent, shared_drive=shared_drive))
        return
    if store_kind(url) == "s3":
        from drivemr.stores.s3_probe import check_bucket

        for line in check_bucket(url):
            click.echo(line)
        click.echo(url.rstrip("/"))
        return
    store = open_store(url, create=True, allow_synced=allow_synced_folder or None)
    click.echo(store.url)


@main.command()
@click.option("--slots", type=int, default=2, show_default=True)
@click.option("--keep", is_flag=True, help="Keep the temporary store and print where it is.")
def demo(slots: int, keep: bool) -> None:
    """Run the word-count example end to end on a temporary folder store."""
    from drivemr.example_jobs import example_dir

    tmp = Path(tempfile.mkdtemp(prefix="drivemr-demo-"))
    try:
        store = open_store(str(tmp / "store"), create=True)
        handle = Client(store).submit(example_dir("wordcount") / "job.toml")
        job = handle.definition
        click.echo(
            f"submitted {job.id}: {len(job.tasks)} map task(s) and a reduce, store {store.url}"
        )
        w = build_worker(
            store,
            slots=slots,
            workdir=tmp / "work",
            exit_when_idle=True,
            lease=30.0,
            verify=_verifier(False),
        )
        started = time.monotonic()
        w.run()
        elapsed = time.monotonic() - started
        paths = handle.reduce(tmp / "result")
        for p in paths:
            click.echo(f"\n== {p.name} ==")
            click.echo(p.read_text(encoding="utf-8").rstrip())
        st = handle.status()
        c = st.counts
        click.echo(
            f"\njob {st.job}: {st.state}; {c['done']} done, {c['failed']} failed; "
            f"reduce {st.reduce.state if st.reduce else 'none'}; {elapsed:.2f} s with {slots} slot(s)"
        )
        if st.state != "done":
            sys.exit(EXIT_FAILED)
    finally:
        if keep:
            click.echo(f"store kept at {tmp / 'store'}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
