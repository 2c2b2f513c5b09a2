"""A worker that dies (SIGKILL: no cleanup, no last heartbeat) right after it uploaded an
output too large to ride inside the result manifest, before it creates the result: the
window of campaign item 10. Production code has no hook for this; the store is wrapped here.

    python crashing_worker.py STORE_URL WORKDIR WORKER_ID LEASE
"""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

from drivemr.stores import open_store
from drivemr.stores.base import FileInfo
from drivemr.testing import chaos as cc
from drivemr.worker import Worker, WorkerConfig

OUTPUT_NAME = re.compile(r"^t\d+\.g\d+\.o\d+$")  # outputs/<task>.g<gen>.o<k>


def die_after_an_output(parent: str, info: FileInfo) -> None:
    if OUTPUT_NAME.match(info.name):
        print(f"uploaded {info.name} ({info.id}); dying before the commit", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)


def main() -> int:
    url, workdir, worker_id, lease = sys.argv[1:5]
    store = cc.FaultyStore(open_store(url, write_rate=None), after_create=die_after_an_output)
    config = WorkerConfig(
        worker_id, slots=1, workdir=Path(workdir), lease=float(lease), poll_interval=0.2
    )
    return Worker(store, config).run()


if __name__ == "__main__":
    sys.exit(main())
