"""Run a Python function over 1,000 items with drivemr.Client.map, on a folder store served
by two worker processes started here.

    python config/examples/map_squares.py                 # a temporary folder store
    python config/examples/map_squares.py --store DIR     # a folder store of yours
    python -m drivemr.examples.map_squares --items 100    # the installed copy

drivemr ships this file (signed with this PC's key) to the workers, which import it and call
``square`` on each item: that is why ``square`` is a top-level function and the code that
submits sits under ``if __name__ == "__main__":``. On a real cluster the workers are
``drivemr worker --store ...`` on the other PCs that share the folder (after
``drivemr keys trust`` there); here they are two processes on this PC.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def square(x: int) -> int:
    """The function run on the workers: one JSON item in, one JSON value out."""
    return x * x


def start_workers(store: str, workdir: Path, count: int) -> list[subprocess.Popen[bytes]]:
    procs = []
    for n in range(1, count + 1):
        log = open(workdir / f"worker-{n}.log", "wb")  # noqa: SIM115 - the process holds it
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "drivemr",
                    "worker",
                    "--store",
                    store,
                    "--slots",
                    "2",
                    "--worker-id",
                    f"example-{n}",
                    "--workdir",
                    str(workdir / f"worker-{n}"),
                    "--poll-interval",
                    "0.2",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        log.close()
    return procs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="a folder store (default: a temporary one)")
    parser.add_argument("--items", type=int, default=1000, help="how many items (1000)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    args = parser.parse_args(argv)

    import drivemr
    from drivemr.stores import open_store

    with tempfile.TemporaryDirectory(prefix="drivemr-map-example-") as tmp:
        store_path = args.store or str(Path(tmp) / "store")
        url = open_store(store_path, create=True).url
        procs = start_workers(url, Path(tmp), args.workers)
        try:
            items = list(range(args.items))
            started = time.monotonic()
            with drivemr.Client(url) as client:
                results = client.map(square, items, progress=True)
            elapsed = time.monotonic() - started
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait()
    if results != [square(x) for x in items]:
        print("the results differ from a local run", file=sys.stderr)
        return 1
    print(
        f"{len(results)} squares computed by {args.workers} workers in {elapsed:.1f} s; "
        f"the sum is {sum(results)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
