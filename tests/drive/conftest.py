"""Fixtures for the Drive store tests: a fake Drive server and fresh stores on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def fake_drive() -> Iterator[Any]:
    """A fresh fake Drive v3 server on a free port (no latency, no faults, no quota)."""
    fakedrive = pytest.importorskip("drivemr.testing.fakedrive")
    srv = fakedrive.FakeDriveServer(port=0).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def drive_env(fake_drive: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """Point every DriveStore of this process (and of child processes given this env) at
    the fake, with an empty config dir so no real sign-in is ever used."""
    env = {
        "DRIVEMR_DRIVE_ENDPOINT": fake_drive.url,
        "DRIVEMR_CONFIG_DIR": str(tmp_path / "config"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DRIVEMR_SERVICE_ACCOUNT", raising=False)
    return env


@pytest.fixture
def drive_root(drive_env: dict[str, str]) -> str:
    """``drive://FOLDER_ID`` of a fresh root folder on the fake."""
    from drivemr.stores.drive import DriveStore

    bare = DriveStore.from_url("drive://", write_rate=None)
    with bare:
        return bare.create_root(name="drivemr-test")


@pytest.fixture
def make_drive_store(drive_root: str) -> Iterator[Callable[..., Any]]:
    """Factory of independent DriveStore clients of the fresh root (unpaced by default)."""
    from drivemr.stores.drive import DriveStore

    opened: list[DriveStore] = []

    def make(**options: Any) -> DriveStore:
        options.setdefault("write_rate", None)
        store = DriveStore.from_url(drive_root, **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def drive_store(make_drive_store: Callable[..., Any]) -> Any:
    return make_drive_store()
