"""Helpers for tests that drive drivemr as real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from drivemr.testing.wait import wait_for as wait_for  # the one wait_for, for the tests


def drivemr_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "drivemr.cli", *args]


def run_cli(
    *args: str, check: bool = True, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``drivemr ARGS`` as a process; ``env`` adds to (overrides) this process's environment."""
    proc = subprocess.run(
        drivemr_cmd(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env} if env else None,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"drivemr {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


class WorkerProcs:
    """Worker daemons as real processes, each its own store client."""

    def __init__(self, store_url: str, workdir: Path) -> None:
        self.store_url = store_url
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.logs: dict[str, Path] = {}

    def start(
        self,
        name: str,
        *extra: str,
        slots: int = 2,
        lease: float = 3.0,
        env: dict[str, str] | None = None,
        poll: str = "0.1",
    ) -> subprocess.Popen[str]:
        log = self.workdir / f"{name}.log"
        self.logs[name] = log
        fh = open(log, "a", encoding="utf-8")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            drivemr_cmd(
                "-v",
                "worker",
                "--store",
                self.store_url,
                "--slots",
                str(slots),
                "--lease",
                str(lease),
                "--worker-id",
                name,
                "--workdir",
                str(self.workdir / name),
                "--poll-interval",
                poll,
                *extra,
            ),
            env={**os.environ, **env} if env else None,
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
