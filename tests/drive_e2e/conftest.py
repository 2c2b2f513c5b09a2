"""Fixtures for multi-process end-to-end runs on the fake Drive server.

Every drivemr process of a test (init, submit, workers, status, reduce) is a real child
process with its own Drive client, pointed at one fake server by ``DRIVEMR_DRIVE_ENDPOINT``
(set with monkeypatch, so WorkerProcs and run_cli pass it on).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import WorkerProcs, run_cli

from drivemr.testing.fakedrive import FakeDriveServer


@pytest.fixture
def e2e_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDriveServer]:
    """A fake Drive v3 server for this test; every child process of the test talks to it."""
    srv = FakeDriveServer(port=0).start()
    monkeypatch.setenv("DRIVEMR_DRIVE_ENDPOINT", srv.url)
    monkeypatch.delenv("DRIVEMR_SERVICE_ACCOUNT", raising=False)
    monkeypatch.delenv("DRIVEMR_WRITE_RATE", raising=False)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def e2e_drive_url(e2e_fake: FakeDriveServer) -> str:
    """``drive://FOLDER_ID`` of a fresh root, made by ``drivemr init --store drive://``."""
    out = run_cli("init", "--store", "drive://").stdout
    url = out.strip().splitlines()[-1]
    assert url.startswith("drive://") and len(url) > len("drive://")
    return url


@pytest.fixture
def e2e_workers(e2e_drive_url: str, tmp_path: Path) -> Iterator[WorkerProcs]:
    """Worker processes on the fresh Drive root (start them after the job is submitted)."""
    procs = WorkerProcs(e2e_drive_url, tmp_path / "workers")
    procs.workdir.mkdir()
    yield procs
    procs.stop()
