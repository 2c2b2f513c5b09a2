"""Workers as their heartbeats show them (``drivemr workers``, ``Client.workers``)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from drivemr.errors import DrivemrError
from drivemr.protocol import MAX_HEARTBEAT_BYTES, heartbeats, parse_json
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


def worker_infos(store: Store) -> list[WorkerInfo]:
    """Every worker that wrote a heartbeat, by id, judged alive or not on the store's clock."""
    beats = heartbeats(store.list(store.root_id))
    now = max([time.time(), *(b.file.modified for b in beats.values())])
    out = []
    for worker, beat in sorted(beats.items()):
        age = round(max(0.0, now - beat.file.modified), 3)
        try:
            doc = parse_json(store.read(beat.file.id, max_bytes=MAX_HEARTBEAT_BYTES), "heartbeat")
        except DrivemrError as exc:
            out.append(WorkerInfo(worker, beat.file.modified, age, False, error=str(exc)))
            continue
        if not isinstance(doc, dict):
            out.append(WorkerInfo(worker, beat.file.modified, age, False))
            continue
        running = doc.get("running")
        declared = doc.get("lease")
        lease = float(declared) if isinstance(declared, (int, float)) else configured_lease()
        out.append(
            WorkerInfo(
                worker,
                beat.file.modified,
                age,
                age <= lease and doc.get("state") != "stopped",
                host=doc.get("host"),
                pid=doc.get("pid"),
                slots=doc.get("slots"),
                lease=declared if isinstance(declared, (int, float)) else None,
                state=doc.get("state"),
                running=tuple(r for r in running if isinstance(r, dict))
                if isinstance(running, list)
                else (),
                version=doc.get("version"),
            )
        )
    return out
