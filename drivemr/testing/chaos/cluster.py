"""A cluster for chaos tests: one store (a folder, a fresh root on a fake Drive, or a fresh
prefix on a loopback S3 server) and real worker processes on it, plus in-process workers in
threads, and their logs.
"""

from __future__ import annotations

import collections
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivemr.protocol import Job, find_job, submit
from drivemr.spec import load_job
from drivemr.stores.base import Store
from drivemr.testing.chaos.ledger import reap


def run_in_threads(workers: Sequence[Any], timeout: float = 300) -> list[int]:
    """Run in-process workers (exit_when_idle) to the end; returns their exit codes."""
    codes: list[int] = []
    threads = [
        threading.Thread(target=lambda w=w: codes.append(w.run()), daemon=True) for w in workers
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    for w in workers:
        if any(t.is_alive() for t in threads):
            w.request_stop()
            w.request_stop()
    return codes


def exit_codes(procs: list[WorkerProc], deadline: float) -> dict[str, int]:
    """Wait for worker processes until the deadline (at least 5 s each); -999: still running."""
    codes = {}
    for p in procs:
        try:
            codes[p.worker_id] = p.popen.wait(timeout=max(5.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            codes[p.worker_id] = -999
    return codes


@dataclass
class WorkerProc:
    name: str
    worker_id: str
    popen: subprocess.Popen[bytes]
    log: Path
    started: float

    @property
    def pid(self) -> int:
        return self.popen.pid

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


class Cluster:
    """One store (a folder, a fresh root on a fake Drive, or a fresh prefix on a loopback S3
    server) and worker processes on it.

    The caller provides ``DRIVEMR_CONFIG_DIR`` (an isolated one: the signing key lives there)."""

    def __init__(
        self,
        kind: str,
        base: Path,
        *,
        lease: float = 3.0,
        poll: float = 0.2,
        fake: Any = None,
        fake_settings: dict[str, Any] | None = None,
    ) -> None:
        self.kind = kind
        self.base = base
        self.lease = lease
        self.poll = poll
        self.sidefx = base / "sidefx"
        self.sidefx.mkdir(parents=True, exist_ok=True)
        self.workdir = base / "workers"
        self.workdir.mkdir(exist_ok=True)
        self.procs: list[WorkerProc] = []
        self.env = dict(os.environ)
        self.env["PYTHONUNBUFFERED"] = "1"
        self._own_fake = False
        self.fake = fake
        if kind == "folder":
            from drivemr.stores.folder import FolderStore

            self.store: Store = FolderStore(base / "store", create=True)
            self.url = self.store.url
        elif kind == "drive":
            from drivemr.stores.drive import DriveStore

            if self.fake is None:
                from drivemr.testing.fakedrive import FakeDriveServer

                self.fake = FakeDriveServer(port=0, **(fake_settings or {})).start()
                self._own_fake = True
                # A killed worker's connections end in resets: expected here, not news.
                self.fake._httpd.handle_error = lambda request, client_address: None
            self.env["DRIVEMR_DRIVE_ENDPOINT"] = self.fake.url
            bare = DriveStore.from_url("drive://", endpoint=self.fake.url, write_rate=None)
            with bare:
                self.url = bare.create_root(name=f"chaos-{base.name}")
            self.store = self.drive_client()
        elif kind == "s3":  # moto's S3 server on loopback (fake: a running LoopbackS3)
            from drivemr.testing.s3server import LoopbackS3

            if self.fake is None:
                # A bucket of its own: moto's state is per process, and its listings cost
                # time in proportion to the whole bucket, whatever the prefix.
                self.fake = LoopbackS3(f"drivemr-chaos-{secrets.token_hex(4)}").start()
                self._own_fake = True
            self.env.update(self.fake.env)
            self.url = f"s3://{self.fake.bucket}/chaos-{base.name}-{os.getpid()}"
            self.store = self.client()
        else:
            raise ValueError(f"unknown store kind {kind!r}")

    def drive_client(self, cls: Any = None, **options: Any) -> Any:
        from drivemr.stores.drive import DriveStore

        options.setdefault("write_rate", None)
        options.setdefault("endpoint", self.fake.url)
        return (cls or DriveStore).from_url(self.url, **options)

    def client(self) -> Store:
        """A fresh store client of this cluster (for in-process workers)."""
        if self.kind == "folder":
            from drivemr.stores.folder import FolderStore

            return FolderStore(self.base / "store")
        if self.kind == "s3":
            return self.s3_client()
        return self.drive_client()

    def s3_prefix(self) -> str:
        """The S3 cluster's key prefix in the loopback server's bucket."""
        return self.url.split("/", 3)[3]

    def s3_client(self, **options: Any) -> Any:
        """A client of the S3 cluster's store, retries included (``options``: of
        :class:`~drivemr.stores.s3.RetryingS3Store`, e.g. ``policy``, ``observe``)."""
        return self.fake.store(self.s3_prefix(), **options)

    # -- jobs --

    def submit(self, job_file: Path) -> Job:
        from drivemr import signing

        key, _ = signing.load_or_create_signing_key(signing.config_dir())
        return submit(
            self.store, load_job(job_file), sign=lambda doc: signing.sign_document(doc, key)
        )

    def job(self, job_id: str) -> Job:
        return find_job(self.store, job_id)[1]

    def results(self, job: Job) -> int:
        return len(self.store.list(job.folders["results"]))

    # -- workers --

    def worker_cmd(
        self, worker_id: str, slots: int, *extra: str, lease: float | None = None
    ) -> list[str]:
        return [
            sys.executable,
            "-m",
            "drivemr.cli",
            "worker",
            "--store",
            self.url,
            "--slots",
            str(slots),
            "--lease",
            str(lease or self.lease),
            "--worker-id",
            worker_id,
            "--workdir",
            str(self.workdir / worker_id),
            "--poll-interval",
            str(self.poll),
            "--write-rate",
            "0",
            *extra,
        ]

    def start(
        self,
        name: str,
        *extra: str,
        slots: int = 2,
        worker_id: str | None = None,
        lease: float | None = None,
        prefix: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> WorkerProc:
        worker_id = worker_id or name
        log = self.workdir / f"{name}.log"
        with open(log, "ab") as fh:
            fh.write(f"--- start {worker_id} at {time.time():.3f}\n".encode())
            fh.flush()
            popen = subprocess.Popen(
                [*prefix, *self.worker_cmd(worker_id, slots, *extra, lease=lease)],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env={**self.env, **(env or {})},
            )
        proc = WorkerProc(name, worker_id, popen, log, time.time())
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for p in self.procs:
            if p.popen.poll() is None:
                with contextlib.suppress(OSError):
                    p.popen.send_signal(signal.SIGCONT)
                p.popen.kill()
                p.popen.wait()
        reap(self.sidefx)
        with contextlib.suppress(Exception):
            self.store.close()
        if self._own_fake:
            self.fake.stop()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def worker_logs(procs: Sequence[WorkerProc]) -> dict[str, str]:
    logs: dict[str, str] = collections.defaultdict(str)
    for p in procs:
        logs[p.worker_id] += p.text()
    return logs


@contextlib.contextmanager
def captured_logs() -> Iterator[dict[str, str]]:
    """The log of in-process workers while the block runs: every worker's lines together,
    under any worker id (they share the process's logger)."""
    import logging

    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Keep(level=logging.INFO)
    logger = logging.getLogger("drivemr")
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    text: dict[str, str] = collections.defaultdict(lambda: "\n".join(lines))
    try:
        yield text
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


def alive(pid: int) -> bool:
    try:
        import psutil

        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except Exception:
        return False
