"""``drivemr fake-drive``: run the fake Google Drive as a standalone server.

The first output line is exactly ``fake Google Drive v3 listening at http://HOST:PORT/``
(flushed at once) so that scripts and other processes can start it on port 0 and read the
URL back; then one line ``shared drive NAME: ID`` per ``--shared-drive``. It serves until
SIGINT or SIGTERM, then saves ``--state`` and exits 0. The knobs are described in
``docs/fakedrive.md``.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

import click

from drivemr.testing.fakedrive.config import MINTED_ID_POLICIES, MISBEHAVIOURS
from drivemr.testing.fakedrive.server import FakeDriveServer


def parse_shared_drive(spec: str) -> tuple[str, str, dict[str, str]]:
    """``NAME[=ORGANIZER[,ACCOUNT:ROLE...]]`` -> (name, organizer, members)."""
    name, _, rest = spec.partition("=")
    if not name:
        raise click.BadParameter(f"{spec!r}: the shared drive needs a name")
    organizer = "default"
    members: dict[str, str] = {}
    for i, item in enumerate(p for p in rest.split(",") if p):
        account, sep, role = item.partition(":")
        if i == 0 and not sep:
            organizer = account
        elif sep and account and role:
            members[account] = role
        else:
            raise click.BadParameter(f"{item!r}: expected ACCOUNT:ROLE")
    return name, organizer, members


@click.command("fake-drive")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=0, type=int, show_default=True, help="Port; 0 picks a free one.")
@click.option("--latency-ms", default=0.0, type=float, help="Delay added to every API request.")
@click.option(
    "--write-rate",
    default=None,
    type=float,
    help="Sustained writes/s for the account (403 userRateLimitExceeded beyond); default none.",
)
@click.option("--fault-rate", default=0.0, type=float, help="Probability of a random 500/503/429.")
@click.option(
    "--lost-ack-rate",
    default=0.0,
    type=float,
    help="Probability that a files.create commits but its answer is lost.",
)
@click.option(
    "--name-query-lag",
    default=0.0,
    type=float,
    help="Seconds during which name queries do not see a new file.",
)
@click.option("--seed", default=None, type=int, help="Seed for the fault dice.")
@click.option(
    "--minted-ids",
    type=click.Choice(MINTED_ID_POLICIES),
    default="account",
    show_default=True,
    help="Who may create with a minted id: only the minting account, or anyone.",
)
@click.option(
    "--misbehave",
    type=click.Choice(sorted(MISBEHAVIOURS)),
    multiple=True,
    help="Break one assumption on purpose (repeatable): create-once accepts a reused id "
    "and overwrites; listing hides new files from by-parent listings for a few seconds; "
    "changes answers an empty change feed.",
)
@click.option(
    "--misbehave-listing-seconds",
    default=5.0,
    type=float,
    show_default=True,
    help="How long --misbehave listing hides a new file.",
)
@click.option(
    "--drive-item-limit",
    default=400_000,
    type=int,
    show_default=True,
    help="Items a shared drive may hold (403 teamDriveFileLimitExceeded beyond).",
)
@click.option(
    "--shared-drive",
    "shared_drives",
    multiple=True,
    metavar="NAME[=ORGANIZER[,ACCOUNT:ROLE...]]",
    help="Create a shared drive at start (repeatable); accounts are bearer tokens, the "
    "organizer defaults to the default account.",
)
@click.option(
    "--state",
    "state_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="JSON file that keeps the Drive's content across restarts.",
)
def fake_drive(
    host: str,
    port: int,
    latency_ms: float,
    write_rate: float | None,
    fault_rate: float,
    lost_ack_rate: float,
    name_query_lag: float,
    seed: int | None,
    minted_ids: str,
    misbehave: tuple[str, ...],
    misbehave_listing_seconds: float,
    drive_item_limit: int,
    shared_drives: tuple[str, ...],
    state_file: str | None,
) -> None:
    """Serve a local Google Drive v3 (for tests, benchmarks and offline trials)."""
    srv = FakeDriveServer(
        host=host,
        port=port,
        latency_ms=latency_ms,
        write_rate=write_rate,
        fault_rate=fault_rate,
        state_file=state_file,
        lost_ack_rate=lost_ack_rate,
        name_query_lag=name_query_lag,
        seed=seed,
        minted_ids=minted_ids,
        misbehave=misbehave,
        misbehave_listing_seconds=misbehave_listing_seconds,
        drive_item_limit=drive_item_limit,
    )
    specs = [parse_shared_drive(spec) for spec in shared_drives]
    srv.start()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    click.echo(f"fake Google Drive v3 listening at {srv.url}")
    for name, organizer, members in specs:
        click.echo(f"shared drive {name}: {srv.create_drive(name, organizer, members)}")
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        srv.stop()
