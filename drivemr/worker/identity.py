"""Who this worker is across restarts: its id, kept in its working folder.

A worker that restarts (a reboot, an update, a crash) under the id it had takes its
previous life's claims back at once instead of waiting a lease for them (claim.py, "our
own past life's first"). So a worker started without ``--worker-id`` reuses the id stored
in its ``--workdir``, and stores a new one there the first time. Two workers started on one
PC with the same working folder must not share an id (each would take the other's running
claims for its own past life's): the id is held with a lock file for the worker's life, and
a second worker on a held folder gets a fresh id (not stored) and says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from drivemr.errors import DrivemrError
from drivemr.fileio import atomic_write
from drivemr.protocol import check_worker_id, default_worker_id

log = logging.getLogger("drivemr.worker")

ID_FILE = "worker-id"
LOCK_FILE = "worker-id.lock"


@dataclass
class Identity:
    """A worker id and, when it came from the working folder, the lock that holds it."""

    worker_id: str
    lock: FileLock | None = None
    source: str = "given"
    """given (--worker-id), stored (read from the workdir), new (stored now) or temporary."""

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def resolve_identity(workdir: Path, given: str | None) -> Identity:
    """The id to run under: ``given`` if set, else the one stored in ``workdir``."""
    if given:
        return Identity(check_worker_id(given))
    workdir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(workdir / LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        fresh = default_worker_id()
        log.warning(
            "another worker uses the working folder %s (and its worker id): running as %s"
            " for this session; give each worker its own --workdir to keep its id",
            workdir, fresh,
        )  # fmt: skip
        return Identity(fresh, None, "temporary")
    except OSError as exc:
        log.debug("cannot lock %s: %s", workdir / LOCK_FILE, exc)
        return Identity(default_worker_id(), None, "temporary")
    path = workdir / ID_FILE
    try:
        stored = path.read_text(encoding="utf-8").strip()
        return Identity(check_worker_id(stored), lock, "stored")
    except (OSError, UnicodeDecodeError, DrivemrError):
        pass
    fresh = default_worker_id()
    try:
        atomic_write(path, (fresh + "\n").encode())
    except OSError as exc:
        log.debug("cannot store the worker id in %s: %s", path, exc)
    return Identity(fresh, lock, "new")
