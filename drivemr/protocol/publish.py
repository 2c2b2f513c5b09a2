"""Publishing a job: minting its ids, uploading its files, writing job.json last.

Every id a job will ever use (its folders, claim ids, result slots, markers) is minted
before job.json is written, so workers never see half a job and every exclusive step
later is a create at an id the job names.
"""

from __future__ import annotations

import getpass
import math
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from drivemr.archives import Archive
from drivemr.errors import DrivemrError
from drivemr.fileio import sha256_file
from drivemr.protocol.jobdoc import Job, Stage, StoredFile, job_from_doc
from drivemr.protocol.names import FIXED_NAMES_FORMAT, JOB_PREFIX, RESULT_SLOTS, new_job_id
from drivemr.spec import JobSpec, store_name
from drivemr.stores.base import Store


class IdPool:
    """Minted ids fetched in batches: one mint call serves many creates."""

    def __init__(self, store: Store, batch: int = 200) -> None:
        self.store = store
        self.batch = batch
        self._ids: list[str] = []

    def take(self, count: int = 1) -> list[str]:
        while len(self._ids) < count:
            self._ids += self.store.mint_ids(min(1000, max(self.batch, count - len(self._ids))))
        taken, self._ids = self._ids[:count], self._ids[count:]
        return taken

    def one(self) -> str:
        return self.take(1)[0]


def build_job_doc(
    spec: JobSpec,
    job_id: str,
    pool: IdPool,
    file_ids: Mapping[str, StoredFile],
    folders: Mapping[str, str],
    store_identity: str | None = None,
    packs: Sequence[Sequence[int]] | None = None,
    archives: Mapping[str, Archive] | None = None,
    packed_for: int | None = None,
) -> dict[str, Any]:
    """The job document. ``packs``: the item indexes of each task when items are packed
    (docs/packing.md); ``archives``: each pack's input archive, by pack id."""
    archives = archives or {}
    map_stage = Stage.from_spec(spec.map)
    tasks_doc = []
    if packs is not None:
        from drivemr.packing import pack_ids

        for pack_id, indexes in zip(pack_ids(len(packs)), packs, strict=True):
            members = {m.name: m for m in archives[pack_id].members} if pack_id in archives else {}
            items_doc = []
            for i in indexes:
                t = spec.tasks[i]
                item: dict[str, Any] = {"id": t.id}
                if t.item is not None:
                    item["item"] = t.item
                if t.input is not None:
                    m = members[t.input]  # the digest of the bytes that went into the archive
                    item["input"] = {"name": m.name, "sha256": m.sha256, "size": m.size}
                items_doc.append(item)
            packed: dict[str, Any] = {
                "id": pack_id,
                "claims": pool.take(map_stage.max_attempts),
                "results": pool.take(RESULT_SLOTS),
                "items": items_doc,
            }
            if pack_id in archives:
                a = archives[pack_id]
                packed["archive"] = {"name": a.name, "id": a.id, "sha256": a.sha256, "size": a.size}
            tasks_doc.append(packed)
    for task in spec.tasks if packs is None else ():
        entry: dict[str, Any] = {
            "id": task.id,
            "claims": pool.take(map_stage.max_attempts),
            "results": pool.take(RESULT_SLOTS),
        }
        if task.item is not None:
            entry["item"] = task.item
        if task.input is not None:
            f = file_ids[task.input]
            entry["input"] = {"name": f.name, "id": f.id, "sha256": f.sha256, "size": f.size}
        tasks_doc.append(entry)
    reduce_stage = Stage.from_spec(spec.reduce) if spec.reduce else None
    extra: dict[str, Any] = {}
    if packs is not None:
        extra["packing"] = {"slots": packed_for or 0, "fixed": spec.items_per_task}
    return {
        **extra,
        "format": FIXED_NAMES_FORMAT,
        "id": job_id,
        "store": store_identity,
        "name": spec.name,
        "created": time.time(),
        "submitted_by": f"{getpass.getuser()}@{platform.node()}",
        "folders": dict(folders),
        "markers": {"cancel": pool.one(), "finished": pool.one()},
        "files": [
            {"name": f.name, "id": f.id, "sha256": f.sha256, "size": f.size}
            for f in (file_ids[s.name] for s in spec.files)
        ],
        "map": map_stage.to_doc(),
        "tasks": tasks_doc,
        "reduce": reduce_stage.to_doc() if reduce_stage else None,
        "reduce_task": (
            {"claims": pool.take(reduce_stage.max_attempts), "results": pool.take(RESULT_SLOTS)}
            if reduce_stage
            else None
        ),
    }


def submit(
    store: Store,
    spec: JobSpec,
    *,
    sign: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    job_id: str | None = None,
    progress: Callable[[str], None] | None = None,
    slots: int | None = None,
) -> Job:
    """Publish a validated job. job.json is written last, so workers never see half a job;
    if anything fails before that, the job folder is removed again.

    Items are packed into tasks (docs/packing.md) for ``slots`` slots, by default the
    slots the live workers' heartbeats advertise; ``spec.items_per_task`` overrides."""
    from drivemr import archives, packing

    if slots is None and spec.items_per_task is None:
        slots = packing.live_slots(store) or packing.DEFAULT_SLOTS
    sizes = packing.pack_sizes(len(spec.tasks), slots or 1, spec.items_per_task)
    packs = packing.split(spec.tasks, sizes) if len(sizes) < len(spec.tasks) else None
    inputs = [t for t in spec.tasks if t.input and t.input_path]
    uploads: list[tuple[str, Path]] = [(f.name, f.path) for f in spec.files]
    if packs is None:
        uploads += [(t.input, t.input_path) for t in inputs if t.input and t.input_path]
    cost = packing.estimate_writes(
        tasks=len(sizes),
        uploads=len({n for n, _ in uploads})
        + (-(-len(sizes) // archives.archive_groups(len(sizes))) if packs and inputs else 0),
        reduce=spec.reduce is not None,
    )
    if progress and store.url.startswith("drive://") and cost.drive_seconds > packing.WARN_SECONDS:
        progress(
            f"this job costs about {cost.total} Drive writes ({cost.submit} to submit, "
            f"{cost.run} to run): {_minutes(cost.drive_seconds)} at Drive's quota of "
            f"~{packing.DRIVE_WRITES_PER_SECOND:g} writes/s per account"
        )
    job_id = job_id or new_job_id(spec.name)
    pool = IdPool(store, batch=1000)
    folder_id = pool.one()
    job_folder = store.create(store.root_id, JOB_PREFIX + job_id, folder_id, folder=True)
    try:
        folders = {"job": folder_id}
        for sub in ("files", "claims", "results", "outputs", "logs"):
            fid = pool.one()
            store.create(folder_id, sub, fid, folder=True)
            folders[sub] = fid
        stored: dict[str, StoredFile] = {}
        for n, (name, path) in enumerate(uploads):
            if name in stored:
                continue
            fid = pool.one()
            store.create(folders["files"], _store_name(name), fid, source=path)
            stored[name] = StoredFile(name, fid, sha256_file(path), path.stat().st_size)
            if progress and (n + 1) % 100 == 0:
                progress(f"uploaded {n + 1}/{len(uploads)} files")
        packed_inputs: dict[str, archives.Archive] = {}
        if packs is not None and inputs:
            packed_inputs = archives.upload_archives(
                store,
                folders["files"],
                pool.one,
                spec.tasks,
                packs,
                packing.pack_ids(len(packs)),
                progress=progress,
            )
        doc = build_job_doc(
            spec,
            job_id,
            pool,
            stored,
            folders,
            store.identity,
            packs=packs,
            archives=packed_inputs,
            packed_for=slots,
        )
        if sign is not None:
            doc = sign(doc)
        job = job_from_doc(doc, job_folder.id)  # what workers will read, checked first
        from drivemr.jobtrust import job_bytes

        store.create(folder_id, "job.json", pool.one(), job_bytes(doc))
    except BaseException:
        try:
            store.delete(folder_id)
        except DrivemrError:
            pass
        raise
    return job


def _minutes(seconds: float) -> str:
    if seconds < 3600:
        return f"about {math.ceil(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


def _store_name(rel: str) -> str:
    """Shipped files keep their relative path in job.json; in the store a flat name suffices."""
    return store_name(rel)
