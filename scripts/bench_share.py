#!/usr/bin/env python3
"""Wall time of one small job on a folder store on a share, against the same job on a local
disk, in the same run (issue 19's figures): a 40-task job (each task sleeps 0.15 s and
writes one output) and a reduce, three `drivemr worker --exit-when-idle` processes with two
slots each. With two mounts of one share (``--share A --second-mount B``, e.g. two sshfs
mounts of one export) two workers use A and one uses B, as two PCs would.

    python scripts/bench_share.py --share /mnt/pc1 --second-mount /mnt/pc2 --repeat 3

Also prints the disk probe of bench_core.py (cost per create-once) for each place.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_core

DRIVEMR = [sys.executable, "-m", "drivemr.cli"]
JOB = """
name = "squares"
files = ["square.py"]
[map]
command = ["python", "{files}/square.py", "{item}"]
items = {range = [0, 40]}
outputs = ["square.txt"]
[reduce]
command = ["python", "-c", "import os, sys; print(len(os.listdir(sys.argv[1])))", "{results}"]
"""
SQUARE = "import sys, time\ntime.sleep(0.15)\nopen('square.txt', 'w').write(sys.argv[1])\n"


def run_job(first: Path, second: Path, work: Path) -> float:
    """Seconds from the workers' start to the last worker's exit; checks 40 tasks done."""
    name = f"bench-{secrets.token_hex(4)}"
    a, b = first / name, second / name
    subprocess.run([*DRIVEMR, "init", "--store", str(a)], check=True, capture_output=True)
    job_dir = work / name
    job_dir.mkdir(parents=True)
    (job_dir / "job.toml").write_text(JOB)
    (job_dir / "square.py").write_text(SQUARE)
    out = subprocess.run(
        [*DRIVEMR, "submit", "--store", str(b), str(job_dir / "job.toml")],
        check=True,
        capture_output=True,
        text=True,
    )
    job_id = out.stdout.strip().splitlines()[-1]
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                *DRIVEMR,
                "worker",
                "--store",
                str(store),
                "--slots",
                "2",
                "--exit-when-idle",
                "--poll-interval",
                "0.1",
                "--worker-id",
                f"w{n}",
                "--workdir",
                str(work / name / f"w{n}"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n, store in enumerate((a, a, b))
    ]
    codes = [p.wait() for p in procs]
    elapsed = time.perf_counter() - started
    status = subprocess.run(
        [*DRIVEMR, "status", "--store", str(a), job_id, "--json"],
        check=True,
        capture_output=True,
        text=True,
    )
    done = json.loads(status.stdout)["counts"]["done"]
    if codes != [0, 0, 0] or done != 40:
        raise RuntimeError(f"workers exited {codes}, {done} of 40 tasks done")
    shutil.rmtree(a, ignore_errors=True)
    return elapsed


def probe(parent: Path) -> float:
    bench_core.SCRATCH = Path(tempfile.mkdtemp(prefix="probe-", dir=parent))
    try:
        return bench_core.probe_disk()
    finally:
        shutil.rmtree(bench_core.SCRATCH, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--share", type=Path, required=True, help="a folder on the share")
    parser.add_argument("--second-mount", type=Path, help="the same folder via another mount")
    parser.add_argument("--local", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    second = args.second_mount or args.share
    work = Path(tempfile.mkdtemp(prefix="bench-share-"))
    env_ok = os.environ.get("PYTHONPATH")
    if not env_ok:
        os.environ["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    try:
        local_dir = Path(tempfile.mkdtemp(prefix="bench-local-", dir=args.local))
        times: dict[str, list[float]] = {"local": [], "share": []}
        for _ in range(args.repeat):  # interleaved: drift of the machine hits both alike
            times["local"].append(run_job(local_dir, local_dir, work))
            times["share"].append(run_job(args.share, second, work))
        probes = {"local": probe(local_dir), "share": probe(args.share)}
        for place in ("local", "share"):
            best = min(times[place])
            print(
                f"{place:6} job: best {best:.2f} s of {', '.join(f'{t:.2f}' for t in times[place])}"
                f"; create-once {probes[place]:.0f} us"
            )
        ratio = min(times["share"]) / min(times["local"])
        print(
            f"share / local wall time: {ratio:.2f}x; create-once: "
            f"{probes['share'] / probes['local']:.1f}x"
        )
        shutil.rmtree(local_dir, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
