"""The folder store on a real network file system: one folder exported over SSH and mounted
twice with sshfs, as two PCs would mount one share (issue 19.4). sshfs reports
``st_nlink = 1`` for every file, which broke the first layout of the store entirely."""

from __future__ import annotations

import multiprocessing
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import WorkerProcs, run_cli, wait_for
from sshfs_mount import SshfsPair
from store_contract import StoreContract, _race_worker

from drivemr.protocol import find_job
from drivemr.results import read_manifest
from drivemr.status import status_of
from drivemr.stores.folder import FolderStore

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="sshfs: Linux and macOS")


class TestSshfsContract(StoreContract):
    """The whole contract on each mount, the second client on the other mount."""

    race_count = 100
    coarse_change_times = True  # SFTP carries whole seconds

    @pytest.fixture(params=[0, 1], ids=["pc1", "pc2"])
    def side(self, request: pytest.FixtureRequest) -> int:
        return int(request.param)

    @pytest.fixture
    def store(self, sshfs_pair: SshfsPair, side: int) -> FolderStore:
        return FolderStore(sshfs_pair.mounts[side] / f"s-{secrets.token_hex(4)}", create=True)

    @pytest.fixture
    def store_factory(
        self, store: FolderStore, sshfs_pair: SshfsPair, side: int
    ) -> Callable[[], FolderStore]:
        other = sshfs_pair.mounts[1 - side] / store.path.name
        return lambda: FolderStore(other)

    @pytest.fixture
    def store_url(self, store: FolderStore) -> str:
        return store.url

    @pytest.fixture
    def store_env(self) -> dict[str, str]:
        return {}


def test_link_counts_are_not_trusted_here(sshfs_pair: SshfsPair) -> None:
    """Why the store must not depend on st_nlink: on this mount a file with two names says 1."""
    probe = sshfs_pair.export / f"nlink-{secrets.token_hex(4)}"
    probe.write_bytes(b"x")
    os.link(probe, probe.with_suffix(".2"))
    mounted = sshfs_pair.mounts[0] / probe.name
    assert os.stat(probe).st_nlink == 2
    if os.stat(mounted).st_nlink != 1:
        pytest.skip("this sshfs reports link counts; the point below is moot here")
    store = FolderStore(sshfs_pair.mounts[0] / f"s-{secrets.token_hex(4)}", create=True)
    (fid,) = store.mint_ids(1)
    store.create(store.root_id, "a", fid, b"published")
    assert FolderStore(sshfs_pair.mounts[1] / store.path.name).read(fid) == b"published"


def test_create_once_race_across_the_two_mounts(sshfs_pair: SshfsPair) -> None:
    name = f"race-{secrets.token_hex(4)}"
    store = FolderStore(sshfs_pair.mounts[0] / name, create=True)
    (folder,) = store.mint_ids(1)
    store.create(store.root_id, "races", folder, folder=True)
    ids = store.mint_ids(150)
    urls = [(m / name).as_uri() for m in (*sshfs_pair.mounts, sshfs_pair.mounts[0])]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(len(urls)) as pool:
        results = pool.map(
            _race_worker, [(url, {}, folder, ids, n, True) for n, url in enumerate(urls)]
        )
    assert [sum(r[i] for r in results) for i in range(len(ids))] == [1] * len(ids)
    other = FolderStore(sshfs_pair.mounts[1] / name)
    assert {i.id for i in other.list(folder)} == set(ids)
    for fid, won in zip(ids[:20], zip(*results, strict=True), strict=False):
        assert other.read(fid) == str(won.index(True)).encode()


SQUARE = """
import os, sys, time
n = int(sys.argv[1])
time.sleep(0.15)
open("square.txt", "w").write("%d %d" % (n, n * n))
"""

TOTAL = """
import os, sys
lines = [open(os.path.join(sys.argv[1], d, "square.txt")).read() for d in sorted(os.listdir(sys.argv[1]))]
total = sum(int(line.split()[1]) for line in lines)
order = ",".join(line.split()[0] for line in lines)
open("total.txt", "w").write("%d\\n%s\\n" % (total, order))
"""

JOB = """
name = "squares"
files = ["square.py", "total.py"]
[map]
command = ["python", "{files}/square.py", "{item}"]
items = {range = [0, 40]}
items_per_task = 1   # one task per item: the kill -9 accounting below counts tasks
outputs = ["square.txt"]
[reduce]
command = ["python", "{files}/total.py", "{results}"]
outputs = ["total.txt"]
"""


@pytest.fixture
def share_workers(tmp_path: Path) -> Iterator[list[WorkerProcs]]:
    procs: list[WorkerProcs] = []
    yield procs
    for p in procs:
        p.stop()


def test_three_workers_on_two_mounts_one_killed(
    sshfs_pair: SshfsPair,
    write_job: Callable[..., Path],
    tmp_path: Path,
    share_workers: list[WorkerProcs],
) -> None:
    """A 40-task job, three worker processes spread over the two mounts, one killed with
    SIGKILL mid-job: every task is committed exactly once and the reduce is right."""
    name = f"e2e-{secrets.token_hex(4)}"
    pc1, pc2 = (m / name for m in sshfs_pair.mounts)
    run_cli("init", "--store", str(pc1))
    job_file = write_job(JOB, {"square.py": SQUARE, "total.py": TOTAL})
    job_id = run_cli("submit", "--store", str(pc2), str(job_file)).stdout.strip().splitlines()[-1]
    work = tmp_path / "workers"
    work.mkdir()
    on_pc1, on_pc2 = WorkerProcs(pc1.as_uri(), work), WorkerProcs(pc2.as_uri(), work)
    share_workers += [on_pc1, on_pc2]
    started = time.monotonic()
    victim = on_pc1.start("victim", slots=2, lease=3.0)
    on_pc1.start("pc1", "--exit-when-idle", slots=2, lease=3.0)
    on_pc2.start("pc2", "--exit-when-idle", slots=2, lease=3.0)
    store = FolderStore(pc2)
    _, job = find_job(store, job_id)
    results = job.folders["results"]
    wait_for(lambda: len(store.list(results)) >= 8, timeout=240)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    for procs, who in ((on_pc1, "pc1"), (on_pc2, "pc2")):
        try:
            code = procs.procs[who].wait(timeout=200)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{who} did not finish:\n{on_pc1.log('pc1')}\n{on_pc2.log('pc2')}")
        assert code == 0, procs.log(who)
    elapsed = time.monotonic() - started
    out = tmp_path / "out"
    run_cli("reduce", job_id, "--store", str(pc1), "--out", str(out))
    total, order = (out / "total.txt").read_text().split("\n")[:2]
    assert int(total) == sum(n * n for n in range(40))
    assert order == ",".join(str(n) for n in range(40))
    st = status_of(FolderStore(pc1), job_id)
    assert st.counts == {
        "pending": 0,
        "running": 0,
        "done": 40,
        "failed": 0,
        "lost": 0,
        "cancelled": 0,
        "blocked": 0,
    }
    assert len(FolderStore(pc1).list(results)) == 41  # one result per task, plus the reduce
    by = {read_manifest(store, task)["worker"] for task in job.tasks}
    assert "victim" in by and by - {"victim"}, by  # the victim worked, and others went on
    print(f"\nsshfs end-to-end: 40 tasks, 3 workers (one killed) in {elapsed:.1f} s")
