"""``drivemr fake-drive``: run the fake Google Drive as a standalone server.

The first output line is exactly ``fake Google Drive v3 listening at http://HOST:PORT/``
(flushed at once) so that scripts and other processes can start it on port 0 and read the
URL back. It serves until SIGINT or SIGTERM, then saves ``--state`` and exits 0.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

import click

from drivemr.testing.fakedrive.server import FakeDriveServer


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
    )
    srv.start()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    click.echo(f"fake Google Drive v3 listening at {srv.url}")
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        srv.stop()
