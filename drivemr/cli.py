"""The `drivemr` command: its group, the options and helpers every command shares, and `main`.

The commands live in modules by group, which add them to `main` when imported: job_cli
(submit, status, reduce, retry, results), worker_cli (worker, init, demo), ops_cli (operator
commands); auth, keys, doctor and clean are imported only when used (LAZY_COMMANDS).

Exit codes: 0 success; 1 an error (message on stderr) or a job that did not succeed;
2 bad usage; 3 a job was cancelled; 4 sign-in required (expired or revoked credentials).
"""

from __future__ import annotations

import logging
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from drivemr import __version__
from drivemr import config as cfg
from drivemr.api import Client
from drivemr.errors import AuthError, DrivemrError, StoreError
from drivemr.safetext import safe_multiline
from drivemr.stores.base import Store
from drivemr.wiring import open_configured_store, signer, verifier

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


def fetch_or_reduce(store: Store, job_id: str, out_dir: Path | None) -> list[Path]:
    """What ``drivemr reduce`` does (:meth:`drivemr.api.Job.reduce`), for tools and tests."""
    return Client(store).job(job_id).reduce(out_dir)


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


# The job and worker commands add themselves to `main` (imported from here) when imported:
# that holds whichever of these modules is imported first.
from drivemr import job_cli, worker_cli  # noqa: E402, F401

_register_optional()

if __name__ == "__main__":
    # `python -m drivemr.cli` runs this file as __main__, a copy of drivemr.cli: the command
    # modules added their commands to the group of drivemr.cli, so run that one.
    from drivemr.cli import main as cli_main

    cli_main()
