"""What the store says about one job, and the rules read off it.

A :class:`JobView` comes from three by-parent listings (claims, results, the job folder)
and counts only files at ids the job minted; the reduce barrier and completion rules
(``reduce_due``, ``nothing_left``, ``job_complete``, ``job_succeeded``) are pure
functions of a job and its view. Markers (cancel, finished) are created once, sealed.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from drivemr.errors import AlreadyExists
from drivemr.protocol.jobdoc import Job
from drivemr.protocol.names import (
    REDUCE,
    ClaimRef,
    ResultRef,
    _skip,
    claimer_of,
    is_result_name,
    parse_claim_name,
)
from drivemr.stores.base import FileInfo, Store
from drivemr.trust import Trust

if TYPE_CHECKING:
    from drivemr.results import ResultReader


@dataclass
class JobView:
    """What the store says about one job, from three by-parent listings."""

    claims: dict[str, dict[int, ClaimRef]] = field(default_factory=dict)
    results: dict[str, ResultRef] = field(default_factory=dict)
    """Each task's result whose seal opened: the first valid one in slot order."""
    hints: dict[str, list[tuple[int, FileInfo]]] = field(default_factory=dict)
    """Tasks without an opened result but with files listed at their result slots that
    were not opened yet (a view loaded with ``verify=False``): (slot, file) in slot order,
    from the first slot not known to be invalid. A hint says "committed, unverified": it
    keeps the task out of a worker's claim plan and takeovers, and never counts as done."""
    found: dict[str, list[tuple[int, FileInfo]]] = field(default_factory=dict)
    """Every file the listing showed at a minted result slot, by task, in slot order."""
    cancelled: bool = False
    finished: bool = False

    def settled(self, task: str) -> bool:
        """The task has a result, opened or only listed (a hint): nothing to claim."""
        return task in self.results or task in self.hints

    def learn(self, older: JobView) -> None:
        """Keep what an older view of the job knew: claims and opened results are never
        removed (this view's listing may predate them)."""
        for gens in older.claims.values():
            for ref in gens.values():
                self.claims.setdefault(ref.task, {}).setdefault(ref.gen, ref)
        for tid, result in older.results.items():
            if tid not in self.results:
                self.set_result(tid, result)

    def set_result(self, task: str, ref: ResultRef) -> None:
        """An opened result of ``task`` (it replaces a hint)."""
        self.results[task] = ref
        self.hints.pop(task, None)

    def top_claim(self, task: str) -> ClaimRef | None:
        gens = self.claims.get(task)
        return gens[max(gens)] if gens else None

    def add_claim(self, ref: ClaimRef) -> None:
        self.claims.setdefault(ref.task, {})[ref.gen] = ref

    @property
    def map_results(self) -> int:
        return sum(1 for t in self.results if t != REDUCE)


def load_view(
    store: Store,
    job: Job,
    trust: Trust | None = None,
    *,
    reader: ResultReader | None = None,
    verify: bool = True,
) -> JobView:
    """Claims, results and markers of ``job`` (at its latest round), from three listings.

    Only files created under the ids the job (or its round) minted count (a claim at its
    claim id, a result at one of its result slots), so the claims and results of earlier
    rounds, stray names and junk never change what a task looks like; a claim's attempt
    comes from its id, its worker from its name in jobs of format 1 and 2 (checked against
    the sealed body when a reader acts on the claim) and from its seal in later ones (known
    once a reader here opened it: "" before; readers open a claim before acting on it). A result counts only once its seal opens (``reader``; by
    default one built on ``trust``, or on this PC's reader Trust): the task's result is the
    first valid one in slot order. With ``verify=False`` (a worker planning) only results
    the reader already opened are opened; the others are :attr:`JobView.hints` until
    :func:`verify_hints` opens them. With ``trust``, a cancel or finished marker counts only
    when it opens (sealed by a trusted key, for this job and round); without it (callers
    that only display) its presence does."""
    if reader is None:
        from drivemr.results import default_reader, reader_for

        reader = default_reader() if trust is None else reader_for(trust)
    view = JobView()
    for info in store.list(job.folders["claims"]):
        slot = job.claim_slot(info.id)
        parsed = parse_claim_name(info.name)
        if parsed is None:
            _skip(job.id, "claims", info.name)
        if slot is None or info.is_folder:
            continue
        if job.named:
            worker = parsed[2] if parsed and parsed[:2] == slot and parsed[2] else "?"
        else:
            worker = claimer_of(info)  # "" until a reader here opened it
        view.add_claim(ClaimRef(slot[0], slot[1], worker, info))
    by_slot = {rid: (t, k) for t in job.all_tasks for k, rid in enumerate(t.result_ids)}
    found: dict[str, list[tuple[int, FileInfo]]] = {}
    for info in store.list(job.folders["results"]):
        hit = by_slot.get(info.id)
        if not is_result_name(info.name):
            _skip(job.id, "results", info.name)
        if hit is not None and not info.is_folder:
            found.setdefault(hit[0].id, []).append((hit[1], info))
    for entries in found.values():
        entries.sort(key=lambda e: e[0])
    view.found = found
    if verify:
        verify_hints(store, job, view, reader, found)
    else:
        for tid, entries in found.items():
            _settle(view, tid, entries, reader.known_many(entries))
    markers = {info.id: info for info in store.list(job.folder)}
    for marker in ("cancel", "finished"):
        found_marker = markers.get(job.markers.get(marker, ""))
        present = found_marker is not None and (
            trust is None or open_marker(trust, store, job, found_marker)
        )
        setattr(view, "cancelled" if marker == "cancel" else "finished", present)
    return view


def verify_hints(
    store: Store,
    job: Job,
    view: JobView,
    reader: ResultReader,
    tasks: Mapping[str, list[tuple[int, FileInfo]]] | None = None,
) -> None:
    """Open the files at the result slots of ``tasks`` (task -> (slot, file) in slot
    order; by default every hint of ``view``): each task's first valid one becomes its
    result, and a task none of whose files opens is no longer settled (claimable again;
    its committer uses the first slot without a valid result). Results already opened
    are not read again (the reader caches them)."""
    tasks = dict(view.hints) if tasks is None else tasks
    entries = [(job.task(t), k, info) for t, found in tasks.items() for k, info in found]
    checked: dict[str, ResultRef | None] = dict.fromkeys((e[2].id for e in entries), None)
    checked.update(reader.check_many(store, job, entries))
    for tid, found in tasks.items():
        view.hints.pop(tid, None)
        _settle(view, tid, found, checked)


def _settle(
    view: JobView,
    tid: str,
    entries: list[tuple[int, FileInfo]],
    checked: Mapping[str, ResultRef | None],
) -> None:
    """Put ``tid`` in the view from its slot files in slot order: the first valid one is
    its result, unless a file before it is not opened yet (``checked`` lacks it: not
    known to be invalid), which makes the task a hint from there on."""
    for n, (_k, info) in enumerate(entries):
        if info.id not in checked:
            view.hints[tid] = entries[n:]
            return
        ref = checked[info.id]
        if ref is not None:
            view.set_result(tid, ref)
            return


def open_marker(trust: Trust, store: Store, job: Job, info: FileInfo) -> bool:
    """Whether a marker file is a trusted seal of that marker for this job."""
    for marker, mid in job.markers.items():
        if mid == info.id:
            sealed = trust.read(
                store,
                info,
                "marker",
                expect=_marker_binding(job, marker),
                what=f"{marker} marker of job {job.id}",
            )
            return sealed is not None
    return False


def job_complete(job: Job, view: JobView) -> bool:
    """Every task has a result and, if the job has a reduce and every task succeeded, it has one too."""
    if view.map_results < len(job.tasks):
        return False
    if job.reduce_task is None:
        return True
    if any(r.state != "done" for t, r in view.results.items() if t != REDUCE):
        return True  # a failed map task: the reduce does not run
    return REDUCE in view.results


def job_succeeded(job: Job, view: JobView) -> bool:
    return (
        job_complete(job, view)
        and all(r.state == "done" for r in view.results.values())
        and (job.reduce_task is None or REDUCE in view.results)
    )


# --------------------------------------------------------------------------- reduce barrier


def reduce_due(job: Job, view: JobView, given_up: Collection[str] = ()) -> bool:
    """The reduce barrier: every map task succeeded and the reduce has no result yet."""
    return (
        job.reduce_task is not None
        and not view.settled(REDUCE)
        and REDUCE not in given_up
        and view.map_results == len(job.tasks)
        and all(r.state == "done" for t, r in view.results.items() if t != REDUCE)
    )


def nothing_left(
    job: Job, view: JobView, given_up: Collection[str] = (), *, run_reduce: bool = True
) -> bool:
    """Nothing a worker could still do for the job, now or later: it is complete or
    cancelled, or every open task is given up and the reduce will never be due here."""
    if job_complete(job, view) or view.cancelled:
        return True
    if any(t.id not in view.results and t.id not in given_up for t in job.tasks):
        return False
    if job.reduce_task is None or not run_reduce:
        return True
    return REDUCE in given_up or any(
        r.state != "done" for t, r in view.results.items() if t != REDUCE
    )


def _marker_binding(job: Job, marker: str) -> dict[str, Any]:
    """What a marker is bound to: its job and kind, and (for a round's own ``finished``
    marker) the round, so a sealed marker of an earlier round copied to a later round's id
    does not open there. A cancel marker is the job's, whatever the round."""
    body: dict[str, Any] = {"job": job.id, "marker": marker}
    if marker == "finished" and job.round > 0:
        body["round"] = job.round
    return body


def mark(store: Store, job: Job, marker: str, trust: Trust, *, by: str = "") -> bool:
    """Create a marker once, sealed with this PC's key; False if it already existed."""
    body = {**_marker_binding(job, marker), "by": by, "at": time.time()}
    try:
        store.create(job.folder, marker, job.markers[marker], trust.seal("marker", body))
    except AlreadyExists:
        return False
    return True
