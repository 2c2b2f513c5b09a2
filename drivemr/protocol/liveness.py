"""Heartbeats and dead claims: the liveness rules every worker applies alike.

Each worker rewrites ``worker-<id>.json`` every lease/3; a claim is dead when its
worker's last sign of life is older than the lease on the store's clock, or the worker
said it stopped. Kept apart from the job document because it reads the root listing,
not a job's folders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from drivemr.protocol.names import _WORKER_ID, WORKER_PREFIX, WORKER_SUFFIX, ClaimRef
from drivemr.stores.base import FileInfo


@dataclass(frozen=True)
class Heartbeat:
    worker: str
    file: FileInfo


def heartbeat_files(entries: Iterable[FileInfo]) -> list[Heartbeat]:
    """Every heartbeat-named file of a root listing (a worker may have several: old lives,
    or files planted beside its own, which readers open and judge one by one)."""
    out = []
    for e in entries:
        if e.is_folder or not (e.name.startswith(WORKER_PREFIX) and e.name.endswith(WORKER_SUFFIX)):
            continue
        out.append(Heartbeat(e.name[len(WORKER_PREFIX) : -len(WORKER_SUFFIX)], e))
    return out


def heartbeats(entries: Iterable[FileInfo]) -> dict[str, Heartbeat]:
    """The newest heartbeat file of each worker in a root listing."""
    found: dict[str, Heartbeat] = {}
    for e in entries:
        if e.is_folder or not (e.name.startswith(WORKER_PREFIX) and e.name.endswith(WORKER_SUFFIX)):
            continue
        worker = e.name[len(WORKER_PREFIX) : -len(WORKER_SUFFIX)]
        if not _WORKER_ID.fullmatch(worker):
            continue  # not a name a worker writes (e.g. escape sequences): never shown
        if worker not in found or e.modified > found[worker].file.modified:
            found[worker] = Heartbeat(worker, e)
    return found


def claim_is_dead(
    claim: ClaimRef,
    beats: Mapping[str, Heartbeat],
    server_now: float,
    lease: float,
    stopped: Callable[[Heartbeat], bool] = lambda hb: False,
) -> bool:
    """A claim is dead when its worker's last sign of life — its heartbeat, or the claim
    itself when newer (a heartbeat seen in an older listing) — is older than the lease on
    the store's clock, or the worker said it stopped (after making the claim)."""
    beat = beats.get(claim.worker)
    if beat is None:
        return server_now - claim.file.modified > lease
    if server_now - max(beat.file.modified, claim.file.modified) > lease:
        return True
    return beat.file.modified >= claim.file.modified and stopped(beat)
