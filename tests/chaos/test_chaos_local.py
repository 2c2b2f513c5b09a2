"""Campaign items about one PC's own condition (issue 5): a wrong clock, a full or
unwritable disk, an expired or revoked sign-in."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drivemr.errors import AuthError
from drivemr.protocol import find_job
from drivemr.results import read_manifest
from drivemr.status import status_of
from drivemr.testing import chaos as cc
from drivemr.worker import Worker, WorkerConfig

pytestmark = pytest.mark.slow


class SkewedClock:
    """A PC whose wall clock is ``offset`` seconds off (its monotonic clock is fine)."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time() + self.offset


def _config(c: cc.Cluster, name: str, slots: int) -> WorkerConfig:
    return WorkerConfig(
        name,
        slots=slots,
        workdir=c.workdir / name,
        lease=c.lease,
        poll_interval=0.1,
        retry_backoff=0.1,
        exit_when_idle=True,
    )


def test_clock_skew_of_ten_minutes_reclaims_no_live_claim(chaos_cluster: cc.Cluster) -> None:
    """Item 7: the worker holding the claims runs 10 minutes slow, the idle one 10 minutes
    fast; tasks outlive the lease several times over. Nobody reclaims a live claim."""
    c = chaos_cluster
    job = c.submit(
        cc.write_job(c.base / "job", c.sidefx, name="skew", tasks=3, opts=f"sleep={c.lease * 2.5}")
    )
    holder = Worker(c.client(), _config(c, "holder", 3), clock=SkewedClock(-600))
    observer = Worker(c.client(), _config(c, "observer", 3), clock=SkewedClock(+600))
    codes: list[int] = []
    t = threading.Thread(target=lambda: codes.append(holder.run()))
    t.start()
    try:
        cc.wait_for(lambda: len(cc.executions(c.sidefx)) == 3, 60, "the holder to run every task")
        beat = next(e for e in c.store.list(c.store.root_id) if e.name == "worker-holder.json")
        assert (
            abs(json.loads(c.store.read(beat.id))["body"]["time"] - (time.time() - 600)) < 60
        )  # the skew is real
        codes += cc.run_in_threads([observer], timeout=120)
    finally:
        t.join(120)
    assert codes == [0, 0]
    assert observer.stats["reclaims"] == 0 and observer.stats["claims"] == 0
    acc = cc.account(c.store, job, c.sidefx)
    assert (acc.committed, acc.done, acc.duplicated, acc.lost) == (3, 3, 0, 0)
    assert acc.results_by_worker == {"holder": 3}


# --------------------------------------------------------------------------- local disk


def _can_mount_tmpfs() -> bool:
    """A user namespace lets an unprivileged test mount a tiny tmpfs (not on every CI box)."""
    if sys.platform != "linux" or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", 'd=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs "$d"'],
        capture_output=True,
        timeout=30,
    )
    return probe.returncode == 0


CAN_MOUNT = not os.environ.get("CHAOS_NO_USERNS") and _can_mount_tmpfs()
MOUNT_SCRIPT = (
    'mount -t tmpfs -o size=1m tmpfs "$0" && mkdir "$0/$1" && mount -t tmpfs -o ro,size=64k tmpfs "$0/$1"'
    ' && shift && exec "$@"'
)


def test_full_disk_and_unwritable_job_folder(
    chaos_cluster: cc.Cluster, chaos_logs: Callable[[], str]
) -> None:
    """Item 11: the worker's working folder is a 1 MiB disk: one job's input does not fit
    (disk full), another job's folder is read-only. Each fails with a clear error, nothing
    is committed as done, and the worker goes on serving the third job."""
    c = chaos_cluster
    big = c.submit(
        cc.write_job(
            c.base / "big",
            c.sidefx,
            name="big",
            tasks=1,
            max_attempts=2,
            inputs={"big.bin": b"x" * (3 << 20)},
        )
    )
    ro = c.submit(cc.write_job(c.base / "ro", c.sidefx, name="ro", tasks=2, max_attempts=2))
    fine = c.submit(
        cc.write_job(c.base / "fine", c.sidefx, name="fine", tasks=3, opts="sleep=0.05")
    )
    env = {"DRIVEMR_RETRY_BACKOFF": "0.1"}
    if CAN_MOUNT:
        disk = c.workdir / "disk"
        disk.mkdir()
        w = c.start(
            "disk",
            "--exit-when-idle",
            slots=1,
            env=env,
            prefix=["unshare", "-rm", "sh", "-c", MOUNT_SCRIPT, str(disk), ro.id],
        )
        assert w.popen.wait(timeout=120) == 0, chaos_logs()
    else:  # no user namespaces: the same failures, raised where the file system would raise them
        _simulated_disk_worker(c, big.id, ro.id)
    for job in (big, ro):
        st = status_of(c.store, job.id)
        assert st.state == "failed" and st.counts["done"] == 0
        for task in job.tasks:
            manifest = read_manifest(c.store, task)
            assert manifest["state"] == "failed" and manifest["attempt"] == 2
    big_error = read_manifest(c.store, big.tasks[0])["error"]
    assert "no space left on the local disk" in big_error, big_error
    ro_error = read_manifest(c.store, ro.tasks[0])["error"]
    assert "read-only file system" in ro_error.lower(), ro_error
    assert status_of(c.store, fine.id).state == "done"
    acc = cc.account(c.store, fine, c.sidefx)
    assert (acc.committed, acc.done, acc.duplicated) == (3, 3, 0)


def _simulated_disk_worker(c: cc.Cluster, big_id: str, ro_id: str) -> None:
    import errno

    from drivemr.errors import PermanentStoreError

    class LocalDiskFaults(cc.FaultyStore):
        def download(
            self,
            file_id: str,
            dest: Path,
            *,
            max_bytes: int | None = None,
            parent: str | None = None,
        ) -> None:
            if big_id in str(dest) or dest.name == "big.bin":
                raise PermanentStoreError(
                    f"download {file_id}: no space left on the local disk for {dest}"
                )
            if ro_id in str(dest):
                raise OSError(errno.EROFS, "Read-only file system", str(dest))
            super().download(file_id, dest, max_bytes=max_bytes, parent=parent)

    w = Worker(LocalDiskFaults(c.client()), _config(c, "disk", 1))
    assert cc.run_in_threads([w], timeout=120) == [0]


@pytest.mark.skipif(not CAN_MOUNT, reason="needs a user namespace to mount a read-only tmpfs")
def test_unwritable_working_folder_refuses_to_start(chaos_cluster: cc.Cluster) -> None:
    """Item 11, the whole working folder read-only: the worker says so and exits 1 before
    it claims anything (it would fail every attempt it took)."""
    c = chaos_cluster
    job = c.submit(cc.write_job(c.base / "job", c.sidefx, name="ok", tasks=2))
    disk = c.workdir / "rodisk"
    disk.mkdir()
    script = 'mount -t tmpfs -o ro,size=64k tmpfs "$0" && exec "$@"'
    w = c.start("rodisk", slots=1, prefix=["unshare", "-rm", "sh", "-c", script, str(disk)])
    assert w.popen.wait(timeout=60) == 1
    last = w.text().strip().splitlines()[-1]
    assert (
        f"drivemr: the working folder {disk}" in last
        and "not writable" in last
        and "--workdir" in last
    )
    assert c.store.list(job.folders["claims"]) == []
    assert not [e for e in c.store.list(c.store.root_id) if e.name.startswith("worker-")]


# --------------------------------------------------------------------------- sign-in


def test_expired_or_revoked_sign_in(
    chaos_cluster: cc.Cluster, chaos_kind: str, chaos_logs: Callable[[], str]
) -> None:
    """Item 12: once the store answers 401 (Drive) / the sign-in error (any store), the
    worker stops claiming, kills its attempts (no result could be committed), and exits
    with code 4 and a message saying how to sign in again."""
    c = chaos_cluster
    job = c.submit(cc.write_job(c.base / "job", c.sidefx, name="auth", tasks=6, opts="sleep=60"))

    def two_running() -> bool:
        return len([e for e in cc.executions(c.sidefx) if e.end is None]) == 2

    if chaos_kind == "drive":
        w = c.start("w", slots=2)
        cc.wait_for(two_running, 60, "two attempts to run")
        c.fake.configure(auth_error=True)
        signed_out = time.time()
        try:
            code = w.popen.wait(timeout=60)
        finally:
            c.fake.configure(auth_error=False)
        text = w.text()
        assert code == 4, chaos_logs()
        assert "HTTP 401" in text and "sign in again with `drivemr auth login`" in text
        assert "Sign in again with" not in text  # said once, not twice
    else:
        store = cc.FaultyStore(c.client())
        worker = Worker(store, _config(c, "w", 2))
        codes: list[int] = []
        t = threading.Thread(target=lambda: codes.append(worker.run()))
        t.start()
        cc.wait_for(two_running, 60, "two attempts to run")
        store.auth_error = True
        signed_out = time.time()
        t.join(60)
        assert codes == [4]
        assert isinstance(worker.fatal, AuthError) and "drivemr auth login" in str(worker.fatal)
    claims = cc.claims_of(c.store, job)
    assert len(claims) == 2 and all(info.created < signed_out for _, info in claims.values())
    assert c.store.list(job.folders["results"]) == []
    runs = cc.executions(c.sidefx)
    assert len(runs) == 2 and all(e.end is None and not cc.alive(e.pid) for e in runs)


@pytest.mark.parametrize("chaos_kind", ["drive"])
def test_revoked_grant_mid_run_exits_4_from_the_command_line(
    chaos_cluster: cc.Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 12 with real Google credentials: the grant is revoked and the access token
    expires mid-run, so its refresh at the fake's token endpoint answers invalid_grant.
    `drivemr worker` exits 4 telling how to sign in again."""
    from datetime import datetime, timedelta, timezone

    from click.testing import CliRunner
    from google.oauth2.credentials import Credentials

    from drivemr.cli import main
    from drivemr.stores.drive import DriveStore

    c = chaos_cluster
    job = c.submit(cc.write_job(c.base / "job", c.sidefx, name="grant", tasks=4, opts="sleep=60"))
    assert c.fake is not None
    grant = c.fake.issue_grant()  # the account that made the cluster's folders
    creds = Credentials(
        token=grant.access_token,
        refresh_token=grant.refresh_token,
        token_uri=c.fake.token_url,
        client_id="cid",
        client_secret="secret",
        expiry=datetime.now(timezone.utc).replace(tzinfo=None) + timedelta(hours=1),
    )
    opened = DriveStore.from_url.__func__  # type: ignore[attr-defined]

    def with_credentials(cls: type, url: str, **options: Any) -> DriveStore:
        return opened(cls, url, **{**options, "credentials": creds, "endpoint": c.fake.url})

    monkeypatch.setattr(DriveStore, "from_url", classmethod(with_credentials))
    monkeypatch.delenv("DRIVEMR_DRIVE_ENDPOINT", raising=False)

    worker_args = [
        "worker",
        "--store",
        c.url,
        "--slots",
        "2",
        "--lease",
        str(c.lease),
        "--worker-id",
        "w",
        "--workdir",
        str(c.workdir / "w"),
        "--poll-interval",
        "0.1",
        "--write-rate",
        "0",
    ]
    ended = threading.Event()

    def revoke_when_busy() -> None:
        cc.wait_for(
            lambda: ended.is_set() or len(cc.executions(c.sidefx)) == 2, 60, "two attempts to run"
        )
        if not ended.is_set():
            c.fake.revoke_grant(grant.refresh_token)
            creds.expiry = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(seconds=1)

    revoker = threading.Thread(target=revoke_when_busy, daemon=True)
    revoker.start()
    try:
        result = CliRunner().invoke(main, worker_args, catch_exceptions=False)
    finally:
        ended.set()  # a failed run must not leave this thread to fail a later test
        revoker.join()
    assert result.exit_code == 4, result.output
    assert "sign-in expired or revoked; run `drivemr auth login` again" in result.stderr
    assert result.stderr.count("drivemr auth login") == 1  # said once, not twice
    assert len(cc.claims_of(c.store, find_job(c.store, job.id)[1])) == 2  # it stopped claiming
    assert all(e.end is None and not cc.alive(e.pid) for e in cc.executions(c.sidefx))
