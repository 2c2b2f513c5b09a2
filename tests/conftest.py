"""Shared fixtures: an isolated config dir (keys, tokens), job files, worker processes."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import WorkerProcs

from drivemr.stores.folder import FolderStore


@pytest.fixture(autouse=True)
def isolated_config(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Keys, tokens and settings of the test user never touch the real user's config."""
    path = tmp_path_factory.getbasetemp() / "config"
    path.mkdir(exist_ok=True, mode=0o700)
    monkeypatch.setenv("DRIVEMR_CONFIG_DIR", str(path))
    for var in ("DRIVEMR_STORE", "DRIVEMR_SLOTS", "DRIVEMR_LEASE", "DRIVEMR_WORKDIR"):
        monkeypatch.delenv(var, raising=False)
    return path


@pytest.fixture
def folder_store(tmp_path: Path) -> FolderStore:
    return FolderStore(tmp_path / "store", create=True)


@pytest.fixture
def write_job(tmp_path: Path) -> Callable[..., Path]:
    """Write a job folder: ``write_job(toml_text, files={"name": "content"})`` -> job.toml path."""

    def write(text: str, files: dict[str, str] | None = None, name: str = "job") -> Path:
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        for rel, content in (files or {}).items():
            target = folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(textwrap.dedent(content), encoding="utf-8")
        job = folder / "job.toml"
        job.write_text(textwrap.dedent(text), encoding="utf-8")
        return job

    return write


@pytest.fixture
def workers(folder_store: FolderStore, tmp_path: Path) -> Iterator[WorkerProcs]:
    procs = WorkerProcs(folder_store.url, tmp_path / "workers")
    procs.workdir.mkdir()
    yield procs
    procs.stop()


os.environ.setdefault("PYTHONUNBUFFERED", "1")
