"""Turning verified results back into files: outputs downloaded and checked against their
sealed size and sha256, staged in the ``{results}`` layout (one folder per item) for a
reduce, ``drivemr results`` and ``Client.map``.

Kept apart from :mod:`drivemr.results`, which decides which manifests to believe: this
module only writes what a :class:`~drivemr.results.ResultReader` opened, and checks every
byte it downloads against the seal. It imports that module only when called (and for
types), so each can be imported first; ``drivemr.results`` re-exports these names.
"""

from __future__ import annotations

import errno
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from drivemr.errors import (
    AuthError,
    DrivemrError,
    NotFound,
    PermanentStoreError,
    SecurityError,
    StoreError,
    TooLarge,
    TransientStoreError,
)
from drivemr.fileio import replacing, sha256_file
from drivemr.protocol import REDUCE, Job, ResultRef, Task, find_job, load_view
from drivemr.safepaths import safe_join
from drivemr.safetext import safe
from drivemr.stores.base import Store

if TYPE_CHECKING:
    from drivemr.results import Manifest, ResultReader

READ_IN_MEMORY = 16 * 1024 * 1024
"""Outputs up to this size are read with a byte limit (the store stops at the sealed size);
larger ones are checked against the store's size first, then streamed to disk and hashed."""


def download_checked(
    store: Store,
    file_id: str,
    dest: Path,
    *,
    size: int,
    sha256: str,
    what: str,
    signed_in: str = "its sealed result",
    parent: str | None = None,
) -> None:
    """Fetch a store file that must be exactly ``size`` bytes with digest ``sha256``.

    Never reads or downloads much past ``size`` (``max_bytes`` on ``Store.read`` and
    ``Store.download``: at most one transfer chunk more), then checks size and digest. A
    file that does not match is removed and raises SecurityError. ``parent``: the folder
    the file is in (a hint: :meth:`drivemr.stores.base.Store.get`)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if size <= READ_IN_MEMORY:
        try:
            data = store.read(file_id, max_bytes=size, parent=parent)
        except (NotFound, AuthError, TransientStoreError):
            raise
        except StoreError as exc:  # larger than the limit
            raise SecurityError(
                f"{what}: larger than the size of {size} bytes in {signed_in} ({exc})"
            ) from None
        if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
            raise SecurityError(f"{what} does not match the size and sha256 in {signed_in}")
        try:
            with replacing(dest) as out:
                out.write(data)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:  # as the stores say it: the local disk, not the store's
                raise PermanentStoreError(
                    f"{what}: no space left on the local disk for {dest}"
                ) from exc
            raise
        return
    try:
        # The one download cap (Store.download max_bytes): a file swapped for a bigger one
        # costs at most one transfer chunk past ``size``, never its whole size, before it
        # is refused.
        store.download(file_id, dest, max_bytes=size, parent=parent)
    except TooLarge as exc:
        raise SecurityError(
            f"{what}: larger than the {size} bytes in {signed_in} ({exc})"
        ) from None
    if dest.stat().st_size != size or sha256_file(dest) != sha256:
        dest.unlink(missing_ok=True)
        raise SecurityError(f"{what} does not match the size and sha256 in {signed_in}")


def materialise_outputs(
    store: Store, manifest: Manifest, dest: Path, *, parent: str | None = None
) -> list[Path]:
    """Write a verified manifest's outputs under ``dest`` (never outside it); ``parent``:
    the job's outputs folder (a hint for stores that find files by folder)."""
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for out in manifest.outputs:
        target = safe_join(dest, out.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        what = f"output {safe(out.name)} of {manifest.job}/{manifest.task}"
        if out.data is not None:
            if len(out.data) != out.size or hashlib.sha256(out.data).hexdigest() != out.sha256:
                raise SecurityError(f"{what} does not match its sealed size and sha256")
            target.write_bytes(out.data)
        else:
            assert out.id is not None
            download_checked(
                store, out.id, target, size=out.size, sha256=out.sha256, what=what, parent=parent
            )
        written.append(target)
    return written


# --------------------------------------------------------------------------- drivemr results


def result_folder(job: Job, item: str) -> str:
    """The folder of item ``item``'s outputs in the ``{results}`` layout: one per item,
    named by its id, whatever the packing (an unpacked task is its own one item). The one
    place that knows the layout: reduce staging, `drivemr results` and ``Client.map``."""
    return item


def _stage_task(
    store: Store, job: Job, task: Task, manifest: Manifest, dest: Path, only: str | None
) -> list[Path]:
    """One task's outputs in the layout: a pack's done items (or ``only``), each in its
    own folder; an unpacked task's outputs in its one folder."""
    if not task.packed:
        return materialise_outputs(
            store, manifest, dest / result_folder(job, task.id), parent=job.folders["outputs"]
        )
    written: list[Path] = []
    for entry in manifest.items:
        if entry.state != "done" or (only is not None and entry.id != only):
            continue
        one = replace(manifest, task=entry.id, outputs=entry.outputs)
        written += materialise_outputs(
            store, one, dest / result_folder(job, entry.id), parent=job.folders["outputs"]
        )
    return written


def stage_results(
    store: Store,
    job: Job,
    refs: Mapping[str, ResultRef],
    dest: Path,
    *,
    reader: ResultReader | None = None,
    tasks: Iterable[Task] | None = None,
    skip_missing: bool = False,
    only: str | None = None,
) -> list[Path]:
    """Write the outputs of ``tasks`` (default: every map task) in the ``{results}`` layout
    under ``dest``, each result verified again as it is used. ``skip_missing``: tasks (and
    items of a failed pack) without a successful result are left out; ``only``: of a pack,
    that one item."""
    from drivemr.results import default_reader

    reader = reader or default_reader()
    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for task in job.tasks if tasks is None else tasks:
        ref = refs.get(task.id)
        if ref is not None and ref.state != "done" and task.packed and skip_missing:
            # a failed pack still holds its done items' outputs
            manifest = reader.manifest(store, job, task, ref)
            written += _stage_task(store, job, task, manifest, dest, only)
            continue
        if ref is None or ref.state != "done":
            if skip_missing:
                continue
            raise DrivemrError(f"task {task.id} of {job.id} has no successful result")
        manifest = reader.manifest(store, job, task, ref)
        written += _stage_task(store, job, task, manifest, dest, only)
    return written


def fetch_results(
    store: Store,
    job_id: str,
    out_dir: Path,
    task: str | None = None,
    *,
    reader: ResultReader | None = None,
) -> list[Path]:
    """Download every successful map task's outputs (or ``task``'s) into ``out_dir`` in the
    ``{results}`` layout, each checked against its sealed sha256, whatever state the job is
    in (running, failed, cancelled). Returns the files written."""
    from drivemr.results import default_reader

    reader = reader or default_reader()
    _folder, job = find_job(store, job_id)
    view = load_view(store, job, reader=reader)
    if task is not None:
        if task == REDUCE:
            raise DrivemrError("the reduce's result is fetched with `drivemr reduce --out`")
        try:
            holder, _item = job.item(task)  # an item id of a packed job, or a task id
        except KeyError:
            what = "item" if job.packed else "task"
            raise DrivemrError(f"job {job.id} has no {what} {task!r}") from None
        ref = view.results.get(holder.id)
        done = ref is not None and ref.state == "done"
        if ref is not None and holder.packed:
            entries = {e.id: e for e in reader.manifest(store, job, holder, ref).items}
            done = task in entries and entries[task].state == "done"
        if not done:
            what = "item" if holder.packed else "task"
            raise DrivemrError(f"{what} {task} of {job.id} has no successful result")
        return stage_results(
            store,
            job,
            view.results,
            out_dir,
            reader=reader,
            tasks=[holder],
            skip_missing=holder.packed,
            only=task if holder.packed else None,
        )
    return stage_results(store, job, view.results, out_dir, reader=reader, skip_missing=True)
