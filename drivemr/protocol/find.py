"""Finding jobs in a store by id, telling a genuine job from copies of its folder.

Anyone who can write the store can make a folder named ``job-<id>``: several of them are
told apart by what they hold (signed by a trusted key, bound to this store and folder),
at a bounded cost however many copies there are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from drivemr.errors import DrivemrError
from drivemr.protocol.jobdoc import Job, read_job
from drivemr.protocol.names import JOB_PREFIX
from drivemr.safetext import safe
from drivemr.stores.base import FileInfo, Store


def list_jobs(store: Store, root: Iterable[FileInfo] | None = None) -> list[FileInfo]:
    entries = store.list(store.root_id) if root is None else root
    return sorted(
        (e for e in entries if e.is_folder and e.name.startswith(JOB_PREFIX)),
        key=lambda e: (e.created, e.name),
    )


def find_job(
    store: Store, job_id: str, *, verify: Callable[[Job], None] | None = None
) -> tuple[FileInfo, Job]:
    """Find a job by id (or unique prefix of its id).

    Several folders named ``job-<id>`` (anyone who can write the store can make one) are
    told apart by what they hold: copies, unreadable and unsigned or untrusted ones are
    skipped (and reported), and the one job that remains is the answer. ``verify`` is the
    signature check (default: this user's trusted keys)."""
    folders = list_jobs(store)
    exact = [f for f in folders if f.name == JOB_PREFIX + job_id]
    if len(exact) > 1:
        return _pick_genuine(store, job_id, exact, verify)
    matches = exact or [f for f in folders if f.name.startswith(JOB_PREFIX + job_id)]
    if not matches:
        raise DrivemrError(f"no job {safe(job_id)!r} in {store.url}")
    if len(matches) > 1:
        names = ", ".join(m.name[len(JOB_PREFIX) :] for m in matches[:5])
        raise DrivemrError(f"job id {job_id!r} is ambiguous: {names}")
    return matches[0], read_job(store, matches[0])


def _pick_genuine(
    store: Store, job_id: str, folders: list[FileInfo], verify: Callable[[Job], None] | None
) -> tuple[FileInfo, Job]:
    if verify is None:
        from drivemr.jobtrust import SignatureVerifier

        verify = SignatureVerifier()
    genuine: list[tuple[FileInfo, Job]] = []
    skipped: list[str] = []
    for folder in folders[:MAX_DUPLICATE_FOLDERS]:
        try:
            job = read_job(store, folder, precheck=getattr(verify, "precheck", None))
            verify(job)
        except (DrivemrError, ValueError) as exc:
            skipped.append(f"folder {safe(folder.id)}: {safe(exc, max_len=160)}")
            continue
        genuine.append((folder, job))
    for line in skipped[:10]:
        logging.getLogger("drivemr").warning("job %s: ignoring a copy in %s", safe(job_id), line)
    if len(genuine) == 1:
        return genuine[0]
    if not genuine:
        raise DrivemrError(
            f"job {safe(job_id)!r}: none of its {len(folders)} folders holds a job signed by a"
            f" key you trust ({'; '.join(skipped[:3])})"
        )
    ids = ", ".join(safe(f.id) for f, _ in genuine[:5])
    raise DrivemrError(f"job {safe(job_id)!r} is in several folders, each signed: {ids}")


MAX_DUPLICATE_FOLDERS = 20
"""Folders of one job id examined (a flood of copies costs a bounded number of reads)."""
