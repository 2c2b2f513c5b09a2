"""The `drivemr` command.

Exit codes: 0 success; 1 an error (message on stderr) or a job that did not succeed;
2 bad usage; 3 a job was cancelled; 4 sign-in required (expired or revoked credentials).
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from drivemr import __version__
from drivemr import config as cfg
from drivemr.api import Client
from drivemr.errors import AuthError, DrivemrError, StoreError
from drivemr.safetext import safe, safe_multiline
from drivemr.status import STATES, JobStatus
from drivemr.stores import open_store, store_kind
from drivemr.stores.base import Store
from drivemr.wiring import build_worker, open_configured_store, signer, verifier

log = logging.getLogger("drivemr")

EXIT_FAILED = 1
EXIT_CANCELLED = 3
EXIT_AUTH = 4


LAZY_COMMANDS = {
    "auth": ("drivemr.auth_cli", "auth"),
    "keys": ("drivemr.keys_cli", "keys"),
    "fake-drive": ("drivemr.testing.fakedrive.cli", "fake_drive"),
    "doctor": ("drivemr.maint_cli", "doctor"),
    "clean": ("drivemr.maint_cli", "clean"),
}
"""Commands imported only when used: Google's client libraries take a second to import."""


class DrivemrGroup(click.Group):
    """Turns drivemr errors into one clear line and a documented exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            import importlib

            module, attr = LAZY_COMMANDS[cmd_name]
            try:
                command = getattr(importlib.import_module(module), attr)
            except ImportError:
                return None
            self.add_command(command, cmd_name)
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _accept_verbosity(command)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AuthError as exc:
            click.echo(auth_message(exc), err=True)
            sys.exit(EXIT_AUTH)
        except DrivemrError as exc:
            click.echo(f"drivemr: {safe_multiline(exc, max_len=4000)}", err=True)
            sys.exit(EXIT_FAILED)


_VERBOSITY_FLAGS = frozenset({"-v", "--verbose", "-q", "--quiet"})


def _shift_logging(ctx: click.Context, param: click.Parameter, count: int) -> None:
    """-v/-q given after a subcommand: shift the level set up by ``main`` (which ran first)."""
    if not count or ctx.resilient_parsing:
        return
    root = logging.getLogger()
    step = -10 if param.name == "verbose" else 10
    root.setLevel(
        max(logging.DEBUG, min(logging.CRITICAL, root.getEffectiveLevel() + step * count))
    )


def _accept_verbosity(command: click.Command) -> None:
    """Let ``drivemr CMD ... -v`` mean what ``drivemr -v CMD ...`` means, for every
    subcommand (and their subcommands) that does not use those flags itself."""
    if getattr(command, "_drivemr_verbosity", False):
        return
    command._drivemr_verbosity = True  # type: ignore[attr-defined]
    used = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    if not used & _VERBOSITY_FLAGS:
        for name, short, what in (("verbose", "-v", "More"), ("quiet", "-q", "Less")):
            command.params.append(
                click.Option(
                    [short, f"--{name}", name],
                    count=True,
                    expose_value=False,
                    callback=_shift_logging,
                    help=f"{what} log output (repeatable; also before the command).",
                )
            )
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _accept_verbosity(sub)


def auth_message(exc: AuthError) -> str:
    """The error, and how to sign in again unless the error already says it (once is enough)."""
    text = f"drivemr: {exc}"
    if "drivemr auth login" not in text:
        text += "\nSign in again with: drivemr auth login"
    return text


def _setup_logging(verbose: int, quiet: int) -> None:
    level_name = str(cfg.value("log_level")).upper()
    level = getattr(logging, level_name, logging.INFO) + 10 * (quiet - verbose)
    logging.basicConfig(
        level=max(logging.DEBUG, min(logging.CRITICAL, level)),
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


@click.group(cls=DrivemrGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="drivemr")
@click.option("-v", "--verbose", count=True, help="More log output (repeatable).")
@click.option("-q", "--quiet", count=True, help="Less log output (repeatable).")
def main(verbose: int, quiet: int) -> None:
    """drivemr: a few PCs and one shared folder or Google Drive folder as a MapReduce cluster."""
    _setup_logging(verbose, quiet)


def store_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--store",
        "store_url",
        metavar="URL",
        help="Folder path, file:///path, drive://FOLDER_ID or s3://BUCKET/PREFIX (else $DRIVEMR_STORE, else the config file).",
    )(func)


STORE_FLAG = "drivemr.store_flag"
"""Context meta key: the URL of a store given with --store, for the commands we suggest."""


def suggest(command: str) -> str:
    """A command to copy and paste: with ``--store URL`` when this run's store came from
    the --store flag (without it the suggestion would go to another store, or to none)."""
    ctx = click.get_current_context(silent=True)
    url = ctx.meta.get(STORE_FLAG) if ctx is not None else None
    return f"{command} --store {shlex.quote(url)}" if url else command


def _open(store_url: str | None, **options: Any) -> Store:
    store = _open_store(store_url, **options)
    ctx = click.get_current_context(silent=True)
    if store_url and ctx is not None:
        ctx.meta[STORE_FLAG] = store.url
    return store


def _open_store(store_url: str | None, **options: Any) -> Store:
    return open_configured_store(store_url, **options)


def _client(store_url: str | None) -> Client:
    """The API client every job command is a thin layer over."""
    return Client(_open(store_url))


_signer = signer
_verifier = verifier


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


def _check_accounts(store: Store, *, worker: bool) -> None:
    """On Drive, before anything is claimed or submitted: can this account use ids other
    accounts minted (a worker refuses to start when not), and leave this account's
    (see :mod:`drivemr.stores.drive.accounts`)."""
    if not store.url.startswith("drive://"):
        return
    from drivemr.stores.drive import DriveStore
    from drivemr.stores.drive.accounts import check_minted_ids, publish_minted_ids

    if not isinstance(store, DriveStore):
        return
    try:
        if worker:
            check_minted_ids(store)
        else:
            publish_minted_ids(store)
    except AuthError:
        raise
    except StoreError as exc:  # Drive unreachable now: the worker's own loop retries
        log.warning("could not check minted ids between accounts (continuing): %s", exc)


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


def fetch_or_reduce(store: Store, job_id: str, out_dir: Path | None) -> list[Path]:
    """What ``drivemr reduce`` does (:meth:`drivemr.api.Job.reduce`), for tools and tests."""
    return Client(store).job(job_id).reduce(out_dir)


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


def _register_optional() -> None:
    """Commands living in their own modules."""
    import importlib

    for module, attr in [("drivemr.ops_cli", "register")]:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        obj = getattr(mod, attr, None)
        if isinstance(obj, click.Command):
            main.add_command(obj)
        elif callable(obj):
            obj(main)


_register_optional()

if __name__ == "__main__":
    main()
