"""Shared fixtures: an isolated config dir (keys, tokens), job files, worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drivemr.stores.folder import FolderStore


@pytest.fixture(autouse=True)
def isolated_config(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
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


def drivemr_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "drivemr.cli", *args]


def run_cli(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(drivemr_cmd(*args), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"drivemr {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


class WorkerProcs:
    """Worker daemons as real processes, each its own store client."""

    def __init__(self, store_url: str, workdir: Path) -> None:
        self.store_url = store_url
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.logs: dict[str, Path] = {}

    def start(self, name: str, *extra: str, slots: int = 2, lease: float = 3.0) -> subprocess.Popen[str]:
        log = self.workdir / f"{name}.log"
        self.logs[name] = log
        fh = open(log, "a", encoding="utf-8")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            drivemr_cmd(
                "-v", "worker", "--store", self.store_url, "--slots", str(slots), "--lease", str(lease),
                "--worker-id", name, "--workdir", str(self.workdir / name), "--poll-interval", "0.1", *extra,
            ),
            stdout=fh,
            stderr=subprocess.STDOUT,
            text=True,
        )
        fh.close()
        self.procs[name] = proc
        return proc

    def wait_all(self, timeout: float = 180) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        codes = {}
        for name, proc in self.procs.items():
            codes[name] = proc.wait(timeout=max(1, deadline - time.monotonic()))
        return codes

    def log(self, name: str) -> str:
        return self.logs[name].read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def workers(folder_store: FolderStore, tmp_path: Path) -> Iterator[WorkerProcs]:
    procs = WorkerProcs(folder_store.url, tmp_path / "workers")
    procs.workdir.mkdir()
    yield procs
    procs.stop()


def wait_for(predicate: Callable[[], object], timeout: float = 60, interval: float = 0.05) -> object:
    """Poll a condition with short sleeps; never a fixed wait."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


os.environ.setdefault("PYTHONUNBUFFERED", "1")
