"""`drivemr doctor` as a process: every assumption holds on a well-behaved fake Drive and
on a local folder (exit 0); on a fake that breaks one assumption it exits 1 and names it;
`--second-account` tells the two minted-id policies apart; nothing is left behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import run_cli

from drivemr.stores.drive import DriveStore
from drivemr.testing.fakedrive import FakeDriveServer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeDriveServer]:
    srv = FakeDriveServer(port=0).start()
    monkeypatch.setenv("DRIVEMR_DRIVE_ENDPOINT", srv.url)
    monkeypatch.setenv("DRIVEMR_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("DRIVEMR_DRIVE_TOKEN", raising=False)
    monkeypatch.delenv("DRIVEMR_SERVICE_ACCOUNT", raising=False)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def root(fake: FakeDriveServer) -> str:
    out = run_cli("init", "--store", "drive://").stdout
    return out.strip().splitlines()[-1]


def _row(out: str, check: str) -> str:
    rows = [line for line in out.splitlines() if f" {check} " in line]
    assert rows, out
    return rows[0]


def _left_behind(url: str) -> list[str]:
    with DriveStore.from_url(url, write_rate=None) as store:
        return [e.name for e in store.list("root") if e.name.startswith("drivemr-doctor")]


def test_a_well_behaved_drive_passes_every_check(root: str) -> None:
    proc = run_cli("doctor", "--store", root)
    for check in ("minted ids", "create once", "unminted id", "visible at once", "change feed"):
        assert "ok" in _row(proc.stdout, check), proc.stdout
    assert "writes in" in _row(proc.stdout, "write quota")
    assert "skew" in proc.stdout and "every assumption" in proc.stdout
    assert _left_behind(root) == []


@pytest.mark.parametrize(
    ("misbehave", "check"),
    [("create-once", "create once"), ("listing", "visible at once"), ("changes", "change feed")],
)
def test_each_broken_assumption_fails_by_name(
    fake: FakeDriveServer, root: str, misbehave: str, check: str
) -> None:
    fake.configure(misbehave=(misbehave,))
    proc = run_cli("doctor", "--store", root, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL" in _row(proc.stdout, check), proc.stdout
    assert f"FAILED: {check}" in proc.stdout
    others = [c for c in ("create once", "visible at once", "change feed") if c != check]
    for other in others:
        assert "FAIL" not in _row(proc.stdout, other), proc.stdout
    fake.configure(misbehave=())
    assert _left_behind(root) == []


def test_second_account_under_both_minted_id_policies(fake: FakeDriveServer) -> None:
    drive_id = fake.create_drive("team", organizer="alice", members={"bob": "writer"})
    as_alice = {"DRIVEMR_DRIVE_TOKEN": "alice"}
    url = run_cli("init", "--store", "drive://", "--shared-drive", drive_id, env=as_alice)
    root_url = url.stdout.strip().splitlines()[-1]
    proc = run_cli(
        "doctor", "--store", root_url, "--second-account", "bob", env=as_alice, check=False
    )
    assert proc.returncode == 1
    assert "FAIL" in _row(proc.stdout, "second account"), proc.stdout
    assert "shared drive's change log" in _row(proc.stdout, "change feed")
    fake.configure(minted_ids="anyone")
    proc = run_cli("doctor", "--store", root_url, "--second-account", "bob", env=as_alice)
    assert "ok" in _row(proc.stdout, "second account"), proc.stdout


def test_a_local_folder_passes(tmp_path: Path) -> None:
    store = tmp_path / "store"
    run_cli("init", "--store", str(store))
    proc = run_cli("doctor", "--store", str(store))
    assert "ok" in _row(proc.stdout, "create once")
    assert "ok" in _row(proc.stdout, "atomic publish")
    assert "ok" in _row(proc.stdout, "file-system probe")
    assert "file system" in proc.stdout
    assert [p.name for p in store.iterdir() if p.name.startswith("drivemr-doctor")] == []
