"""Several Google accounts on a shared-drive root, end to end with real processes: three
workers signed in as three accounts (bearer tokens on the fake), under both of the fake's
minted-id policies. Where Drive lets another account use the submitter's minted ids, the
job runs on all three; where it does not, the other accounts' workers refuse to start,
before claiming anything, with one line saying which set-up works, and the submitter's
account runs the job alone."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import WorkerProcs, run_cli, wait_for

from drivemr.errors import NotFound
from drivemr.protocol import find_job
from drivemr.stores.drive import DriveStore
from drivemr.testing.fakedrive import FakeDriveServer

from drive_e2e.test_drive_e2e import (  # isort: skip
    WORDCOUNT_JOB,
    check_one_result_per_task_and_no_duplicates,
    wordcount_files,
)

pytestmark = pytest.mark.timeout(240)

ACCOUNTS = ("alice", "bob", "carol")


def _team_root(srv: FakeDriveServer) -> str:
    drive_id = srv.create_drive(
        "team", organizer="alice", members={"bob": "writer", "carol": "writer"}
    )
    out = run_cli(
        "init",
        "--store",
        "drive://",
        "--shared-drive",
        drive_id,
        env={"DRIVEMR_DRIVE_TOKEN": "alice"},
    ).stdout
    url = out.strip().splitlines()[-1]
    assert url.startswith("drive://") and len(url) > len("drive://")
    return url


def _submit_as(account: str, url: str, job_file: Path) -> str:
    proc = run_cli("submit", str(job_file), "--store", url, env={"DRIVEMR_DRIVE_TOKEN": account})
    return proc.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("policy", ["anyone", "account"])
def test_three_accounts_on_a_shared_drive(
    policy: str,
    e2e_fake: FakeDriveServer,
    write_job: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRIVEMR_WRITE_RATE", "0")
    e2e_fake.configure(minted_ids=policy)
    url = _team_root(e2e_fake)
    files, expected = wordcount_files(12)
    job_id = _submit_as("alice", url, write_job(WORDCOUNT_JOB, files))

    workers = WorkerProcs(url, tmp_path / "workers")
    workers.workdir.mkdir()
    try:
        if policy == "account":
            # bob's and carol's workers ask before they claim: they refuse, one line each.
            for name in ("bob", "carol"):
                workers.start(name, "--exit-when-idle", env={"DRIVEMR_DRIVE_TOKEN": name})
            codes = workers.wait_all(timeout=120)
            for name in ("bob", "carol"):
                assert codes[name] != 0, workers.log(name)
                refusal = [
                    ln for ln in workers.log(name).splitlines() if "same Google account" in ln
                ]
                assert len(refusal) == 1, workers.log(name)
            monkeypatch.setenv("DRIVEMR_DRIVE_TOKEN", "alice")
            with DriveStore.from_url(url, write_rate=None) as look:
                _, job = find_job(look, job_id)
                assert look.list(job.folders["claims"]) == []  # nothing was claimed
            monkeypatch.delenv("DRIVEMR_DRIVE_TOKEN")
            workers = WorkerProcs(url, tmp_path / "workers2")
            workers.workdir.mkdir()
            runners: tuple[str, ...] = ("alice",)
        else:
            runners = ACCOUNTS
        for name in runners:
            workers.start(
                name, "--exit-when-idle", slots=2, lease=30, env={"DRIVEMR_DRIVE_TOKEN": name}
            )
        codes = workers.wait_all(timeout=180)
        assert set(codes.values()) == {0}, {n: workers.log(n) for n in codes}
    finally:
        workers.stop()

    proc = run_cli(
        "reduce",
        job_id,
        "--store",
        url,
        "--out",
        str(tmp_path / "out"),
        env={"DRIVEMR_DRIVE_TOKEN": "carol"},
    )
    total = json.loads((tmp_path / "out" / "total.json").read_text(encoding="utf-8"))
    assert total["counts"] == expected, proc.stdout
    monkeypatch.setenv("DRIVEMR_DRIVE_TOKEN", "alice")
    with DriveStore.from_url(url, write_rate=None) as look:
        _, job = find_job(look, job_id)
        check_one_result_per_task_and_no_duplicates(look, job)
        if policy == "anyone":
            claims = look.list(job.folders["claims"])
            assert len(claims) >= len(job.tasks) + 1  # every task (or pack) and the reduce
            for name in ACCOUNTS:  # every account's worker took part
                assert "claimed" in workers.log(name) or "done" in workers.log(name)


def test_idle_workers_hear_of_a_job_and_its_results_from_the_shared_drive_log(
    e2e_fake: FakeDriveServer,
    write_job: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With full re-listings an hour apart, idle workers on a shared-drive root can only
    learn of a new job (and of the last result, for the reduce) from the drive's own
    change log: the job finishing at all proves they read it."""
    monkeypatch.setenv("DRIVEMR_WRITE_RATE", "0")
    monkeypatch.setenv("DRIVEMR_RECONCILE_INTERVAL", "3600")
    e2e_fake.configure(minted_ids="anyone")
    url = _team_root(e2e_fake)
    workers = WorkerProcs(url, tmp_path / "workers")
    workers.workdir.mkdir()
    try:
        e2e_fake.reset_stats()
        for name in ("bob", "carol"):
            workers.start(name, slots=1, lease=30, env={"DRIVEMR_DRIVE_TOKEN": name}, poll="0.2")
        # both are idle and reading the drive's change log before the job exists
        wait_for(
            lambda: e2e_fake.stats()["by_endpoint"].get("changes.list", 0) >= 4,
            what="idle workers polling the change feed",
        )
        files, expected = wordcount_files(4)
        job_id = _submit_as("alice", url, write_job(WORDCOUNT_JOB, files))
        monkeypatch.setenv("DRIVEMR_DRIVE_TOKEN", "alice")
        with DriveStore.from_url(url, write_rate=None) as look:
            _, job = find_job(look, job_id)
            reduce_id = job.reduce_task.result_id if job.reduce_task else None
            assert reduce_id is not None

            def reduced() -> bool:
                try:
                    look.get(reduce_id)
                except NotFound:
                    return False
                return True

            wait_for(reduced, timeout=180, what="the reduce's result")
    finally:
        workers.stop()
    out = run_cli(
        "reduce",
        job_id,
        "--store",
        url,
        "--out",
        str(tmp_path / "out"),
        env={"DRIVEMR_DRIVE_TOKEN": "bob"},
    )
    total = json.loads((tmp_path / "out" / "total.json").read_text(encoding="utf-8"))
    assert total["counts"] == expected, out.stdout


def test_a_worker_started_before_another_accounts_first_job_leaves_that_job_once(
    e2e_fake: FakeDriveServer,
    write_job: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """bob's worker starts while nobody else has left minted ids to try, so it cannot know
    yet; when alice's job comes, Drive refuses bob's claim at alice's id: bob says so once,
    leaves that job, keeps serving, and claims nothing; alice's own worker runs it."""
    monkeypatch.setenv("DRIVEMR_WRITE_RATE", "0")
    url = _team_root(e2e_fake)  # minted_ids=account, the fake's default
    workers = WorkerProcs(url, tmp_path / "workers")
    workers.workdir.mkdir()
    try:
        workers.start("bob", slots=1, env={"DRIVEMR_DRIVE_TOKEN": "bob"}, poll="0.2")
        wait_for(
            lambda: e2e_fake.stats()["by_endpoint"].get("changes.list", 0) >= 2,
            what="bob's worker polling",
        )
        files, expected = wordcount_files(3)
        job_id = _submit_as("alice", url, write_job(WORDCOUNT_JOB, files))
        wait_for(
            lambda: "cannot be served by this sign-in" in workers.log("bob"),
            what="bob's worker leaving the job",
            timeout=120,
        )
        workers.start("alice", slots=2, env={"DRIVEMR_DRIVE_TOKEN": "alice"}, poll="0.2")
        monkeypatch.setenv("DRIVEMR_DRIVE_TOKEN", "alice")
        with DriveStore.from_url(url, write_rate=None) as look:
            _, job = find_job(look, job_id)
            reduce_id = job.reduce_task.result_id if job.reduce_task else ""

            def reduced() -> bool:
                try:
                    look.get(reduce_id)
                except NotFound:
                    return False
                return True

            wait_for(reduced, timeout=180, what="the reduce's result")
            claims = look.list(job.folders["claims"])
            assert claims and all("bob" not in c.name for c in claims), [c.name for c in claims]
        assert workers.procs["bob"].poll() is None  # still serving
        log = workers.log("bob")
        assert log.count("cannot be served by this sign-in") == 1, log
        assert "Traceback" not in log
    finally:
        workers.stop()
    out = tmp_path / "out"
    run_cli(
        "reduce", job_id, "--store", url, "--out", str(out), env={"DRIVEMR_DRIVE_TOKEN": "alice"}
    )
    total = json.loads((out / "total.json").read_text(encoding="utf-8"))
    assert total["counts"] == expected
