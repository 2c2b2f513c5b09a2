"""Workers as their heartbeats show them (``drivemr workers``, ``Client.workers``)."""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from drivemr.errors import DrivemrError
from drivemr.protocol import heartbeat_files
from drivemr.safetext import safe
from drivemr.stores.base import Store
from drivemr.wiring import lease as configured_lease

__all__ = ["WorkerInfo", "worker_infos"]


@dataclass(frozen=True)
class WorkerInfo:
    """One worker as its latest heartbeat shows it (``drivemr workers``)."""

    worker: str
    last_seen: float
    """When its heartbeat was last written (store clock, seconds since the epoch)."""
    age: float
    """Seconds since then."""
    alive: bool
    """Its heartbeat is fresh within its lease and it did not say it stopped."""
    host: str | None = None
    pid: int | None = None
    slots: int | None = None
    lease: float | None = None
    state: str | None = None
    running: tuple[Mapping[str, Any], ...] = field(default=())
    """The attempts it runs: ``{"job", "task", "gen"}`` each, as it wrote them."""
    version: str | None = None
    error: str | None = None
    """Why its heartbeat could not be read, if so."""

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "worker": self.worker,
            "host": self.host,
            "pid": self.pid,
            "slots": self.slots,
            "lease": self.lease,
            "state": self.state,
            "running": [dict(r) for r in self.running],
            "version": self.version,
            "last_seen": self.last_seen,
            "age": self.age,
            "alive": self.alive,
        }
        if self.error is not None:
            doc["error"] = self.error
        return doc


def _shown(doc: Mapping[str, Any], key: str) -> Any:
    """A heartbeat's value, a string made safe to show."""
    value = doc.get(key)
    return safe(value, max_len=64) if isinstance(value, str) else value


def worker_infos(store: Store) -> list[WorkerInfo]:
    """Every heartbeat in the store, opened and judged: alive = sealed by a trusted key,
    not older than the lease it declares (times never later than our clock), not stopped.
    A heartbeat that does not open is shown as untrusted, with nothing it claims."""
    from drivemr.trust import Trust, declared_lease, open_heartbeat

    trust = Trust.reader()
    now = time.time()
    out = []
    for beat in sorted(heartbeat_files(store.list(store.root_id)), key=lambda b: b.worker):
        modified = min(beat.file.modified, now)
        age = round(max(0.0, now - modified), 3)
        worker = safe(beat.worker, max_len=64)
        try:
            sealed = open_heartbeat(trust, store, beat.worker, beat.file)
        except DrivemrError as exc:
            out.append(WorkerInfo(worker, modified, age, False, error=str(exc)))
            continue
        if sealed is None:
            out.append(
                WorkerInfo(
                    worker, modified, age, False, error="untrusted: not sealed by a trusted key"
                )
            )
            continue
        doc = sealed.body
        text = functools.partial(_shown, doc)

        running = doc.get("running")
        lease = declared_lease(doc.get("lease"), configured_lease())
        out.append(
            WorkerInfo(
                worker,
                modified,
                age,
                age <= lease and doc.get("state") != "stopped",
                host=text("host"),
                pid=text("pid"),
                slots=text("slots"),
                lease=text("lease"),
                state=text("state"),
                running=tuple(r for r in running if isinstance(r, dict))
                if isinstance(running, list)
                else (),
                version=text("version"),
            )
        )
    return out
