"""Results: sealed manifests, who believes them, and turning them back into files.

A result manifest says how a task ended and what it produced (each output's name, size and
sha256, inline or by store id). Anyone who can write the shared folder could plant a file
under a task's minted result id, or edit a committed one in place, and so hand a reduce or
``drivemr reduce --out`` numbers of their choosing. So a manifest is *sealed* (see
drivemr.sealed) by the committing PC's key and bound to its job, task, round and result
slot; a reader believes it only once the seal opens against its trusted keys. Outputs
referenced by id are checked against the sealed size and sha256: a download stops at the
sealed size, and hashing streams.

Every reader (the worker's view, reduce staging, ``status``, ``joblog``, ``report``,
``drivemr reduce``, ``drivemr results``) goes through :class:`ResultReader`, which reports
each refused file once and caches what it verified by (file id, size, modified time), so a
worker opens each result once for planning; files are opened afresh before any output of
theirs is used.

Turning verified manifests back into files (checked downloads, the ``{results}`` layout) is
:mod:`drivemr.results_fetch`; its functions are re-exported here.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from drivemr.errors import (
    AuthError,
    DrivemrError,
    NotFound,
    StoreError,
    TransientStoreError,
)
from drivemr.limits import finite_number
from drivemr.protocol import (
    MAX_MANIFEST_BYTES,
    Job,
    ResultRef,
    Task,
)
from drivemr.results_fetch import (
    download_checked,
    fetch_results,
    materialise_outputs,
    result_folder,
    stage_results,
)
from drivemr.safetext import safe
from drivemr.sealed import Sealer, UntrustedFile, WarnOnce, open_sealed
from drivemr.signing import PublicKeyInfo
from drivemr.stores.base import FileInfo, Store
from drivemr.trust import Trust

__all__ = [
    "Manifest",
    "OutputEntry",
    "ResultReader",
    "default_reader",
    "download_checked",
    "fetch_results",
    "materialise_outputs",
    "read_manifest",
    "reader_for",
    "result_folder",
    "seal_result",
    "stage_results",
]

log = logging.getLogger("drivemr.results")

FORMAT = 2
"""Manifest format: 2 is sealed, with sha256 per output (format 1 was plain JSON with md5)."""
MAX_OUTPUTS = 100_000
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_READERS = 8


@dataclass(frozen=True)
class OutputEntry:
    """One output of a result: inline ``data``, or a store file ``id``."""

    name: str
    size: int
    sha256: str
    data: bytes | None = None
    id: str | None = None


@dataclass(frozen=True)
class ItemEntry:
    """How one item of a packed task ended, as its pack's sealed result says."""

    id: str
    state: str
    attempts: int
    exit_code: int | None
    duration: float
    outputs: tuple[OutputEntry, ...]
    error: str | None = None


@dataclass(frozen=True)
class Manifest:
    """A result whose seal opened: how the attempt ended and what it produced."""

    job: str
    task: str
    slot: str
    round: int
    state: str
    attempt: int
    """1-based."""
    worker: str
    exit_code: int | None
    duration: float
    outputs: tuple[OutputEntry, ...]
    body: Mapping[str, Any]
    """The whole sealed body (times, host, error, output tails)."""
    signer: str
    items: tuple[ItemEntry, ...] = ()
    """A packed task's entry per item, in item order (docs/packing.md); empty otherwise."""

    def ref(self, info: FileInfo, slot: int) -> ResultRef:
        return ResultRef(
            self.task,
            self.state,
            self.attempt - 1,
            self.exit_code,
            self.duration,
            info,
            slot,
            self.worker,
        )


def seal_result(sealer: Trust | Sealer, body: Mapping[str, Any]) -> bytes:
    """The bytes of a sealed result; ``body`` must hold job, task, slot, round and attempt."""
    for key in ("job", "task", "slot", "round", "attempt", "state"):
        if key not in body:
            raise ValueError(f"a result body needs {key!r}")
    return sealer.seal("result", {"format": FORMAT, **body})


def _int(value: Any, what: str, *, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UntrustedFile(f"{what}: not a number from {low} to {high}")
    return value


def _output(doc: Any, what: str) -> OutputEntry:
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
        raise UntrustedFile(f"{what}: malformed output entry")
    name = doc["name"]
    size = _int(doc.get("size"), f"{what}: size of {safe(name)}", low=0, high=2**50)
    digest = doc.get("sha256")
    if not isinstance(digest, str) or not _SHA256.match(digest):
        raise UntrustedFile(f"{what}: output {safe(name)} has no sha256")
    if "data" in doc:
        if not isinstance(doc["data"], str):
            raise UntrustedFile(f"{what}: output {safe(name)} has malformed data")
        try:
            data = base64.b64decode(doc["data"], validate=True)
        except (binascii.Error, ValueError):
            raise UntrustedFile(f"{what}: output {safe(name)} has malformed data") from None
        return OutputEntry(name, size, digest, data=data)
    if not isinstance(doc.get("id"), str) or not 0 < len(doc["id"]) <= 200:
        raise UntrustedFile(f"{what}: output {safe(name)} has neither data nor an id")
    return OutputEntry(name, size, digest, id=doc["id"])


def open_result(
    data: bytes,
    trusted: Mapping[str, PublicKeyInfo],
    *,
    job_id: str,
    task: Task,
    slot_id: str,
    what: str = "result",
) -> Manifest:
    """Open a result file found under ``slot_id`` of ``task``, or raise UntrustedFile."""
    sealed = open_sealed(
        data,
        "result",
        trusted,
        expect={"job": job_id, "task": task.id, "slot": slot_id, "round": task.round},
        what=what,
        max_bytes=MAX_MANIFEST_BYTES,
        max_items=4 * MAX_OUTPUTS + 100,
    )
    return manifest_from_body(
        sealed.body, job_id=job_id, task=task, slot_id=slot_id, signer=sealed.signer.name, what=what
    )


def manifest_from_body(
    body: Mapping[str, Any],
    *,
    job_id: str,
    task: Task,
    slot_id: str,
    signer: str,
    what: str = "result",
) -> Manifest:
    """The checked contents of a result body whose seal opened (or that this PC sealed)."""
    state = body.get("state")
    if state not in ("done", "failed"):
        raise UntrustedFile(f"{what}: unknown state")
    attempt = _int(body.get("attempt"), f"{what}: attempt", low=1, high=len(task.claim_ids))
    code = body.get("exit_code")
    exit_code = None if code is None else _int(code, f"{what}: exit code", low=-(2**31), high=2**32)
    duration = _duration(body.get("duration", 0.0), what)
    raw = body.get("outputs", [])
    if not isinstance(raw, list) or len(raw) > MAX_OUTPUTS:
        raise UntrustedFile(f"{what}: malformed outputs")
    outputs = tuple(_output(o, what) for o in raw)
    items = _item_entries(body, task, state, what) if task.packed else ()
    worker = body.get("worker")
    return Manifest(
        job_id,
        task.id,
        slot_id,
        task.round,
        state,
        attempt,
        worker if isinstance(worker, str) else "",
        exit_code,
        duration,
        outputs,
        body,
        signer,
        items,
    )


MAX_ITEM_ATTEMPTS = 1000


def _duration(value: Any, what: str) -> float:
    duration = finite_number(value)
    if duration is None or not 0 <= duration < 10**9:
        raise UntrustedFile(f"{what}: malformed duration")
    return duration


def _item_entries(
    body: Mapping[str, Any], task: Task, state: str, what: str
) -> tuple[ItemEntry, ...]:
    """A packed task's item entries: exactly its items, in item order, each ended; a
    ``done`` pack has every item done. A pack that failed as a whole (its inputs did not
    fetch, its worker failed it) has none: every item shares its failure."""
    raw = body.get("items")
    if state == "failed" and raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) != len(task.pack):
        raise UntrustedFile(f"{what}: a packed result without one entry per item")
    entries = []
    for item, doc in zip(task.pack, raw, strict=True):
        if not isinstance(doc, dict) or doc.get("id") != item.id:
            raise UntrustedFile(f"{what}: item entries out of item order")
        where = f"{what}, item {item.id}"
        if doc.get("state") not in ("done", "failed"):
            raise UntrustedFile(f"{where}: unknown state")
        code = doc.get("exit_code")
        outs = doc.get("outputs", [])
        if not isinstance(outs, list) or len(outs) > MAX_OUTPUTS:
            raise UntrustedFile(f"{where}: malformed outputs")
        error = doc.get("error")
        entries.append(
            ItemEntry(
                item.id,
                doc["state"],
                _int(doc.get("attempts"), f"{where}: attempts", low=0, high=MAX_ITEM_ATTEMPTS),
                None
                if code is None
                else _int(code, f"{where}: exit code", low=-(2**31), high=2**32),
                _duration(doc.get("duration", 0.0), where),
                tuple(_output(o, where) for o in outs),
                error if isinstance(error, str) else None,
            )
        )
    if state == "done" and any(e.state != "done" for e in entries):
        raise UntrustedFile(f"{what}: a done pack with an item not done")
    return tuple(entries)


_SEEN = WarnOnce(lambda _message: None)
"""Refused results already reported in this process (bounded), whichever reader met them."""


class ResultReader:
    """Opens result files against a :class:`~drivemr.trust.Trust` (its trusted keys, re-read
    when they change, and its once-only reports); remembers what it verified by (id, size,
    modified, trust generation), so planning opens each result once and a newly trusted key
    makes a refused result count.

    Results keep their own manifest cache (bounded, ``capacity``) rather than the Trust's
    sealed-file cache: a manifest is larger than a liveness file (its own byte and item
    limits) and is kept parsed and checked against its task.

    Thread-safe. ``trust`` may be a fixed key list (tests, tools): a key-less Trust over it."""

    def __init__(
        self,
        trust: Trust | Mapping[str, PublicKeyInfo],
        *,
        capacity: int = 200_000,
    ) -> None:
        self.trust = trust if isinstance(trust, Trust) else Trust(None, trusted=trust)
        self._capacity = capacity
        self._good: OrderedDict[tuple[str, int | None, float, int], Manifest] = OrderedDict()
        self._bad: OrderedDict[tuple[str, int | None, float, int], None] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def trusted(self) -> Mapping[str, PublicKeyInfo]:
        """The keys believed now (the Trust's list, re-read when it changes)."""
        return self.trust.keys()

    def warn(self, key: str, message: str) -> bool:
        """Report a refused result through the Trust, once per process: a worker and a
        command in one process (``drivemr reduce`` runs a worker) hold different Trusts."""
        return _SEEN(key, message) and self.trust.warn(key, message)

    # -- planning: cached --

    def check(
        self, store: Store, job: Job, task: Task, slot: int, info: FileInfo
    ) -> ResultRef | None:
        """The result in ``info`` (slot ``slot`` of ``task``) if its seal opens, else None."""
        m = self._cached(store, job, task, info)
        return None if m is None else m.ref(info, slot)

    def check_many(
        self, store: Store, job: Job, entries: Iterable[tuple[Task, int, FileInfo]]
    ) -> dict[str, ResultRef]:
        """:meth:`check` for many files at once (uncached ones read in parallel), by file id."""
        entries = list(entries)
        cold = [e for e in entries if not self._known(e[2])]
        if len(cold) > 2:
            with ThreadPoolExecutor(min(_READERS, len(cold))) as pool:
                list(pool.map(lambda e: self._cached(store, job, e[0], e[2]), cold))
        out = {}
        for task, slot, info in entries:
            ref = self.check(store, job, task, slot, info)
            if ref is not None:
                out[info.id] = ref
        return out

    def known_many(self, entries: Iterable[tuple[int, FileInfo]]) -> dict[str, ResultRef | None]:
        """By file id, without a read: the result of each file opened (or sealed) here,
        None for one that did not open; files never opened are left out."""
        out: dict[str, ResultRef | None] = {}
        for slot, info in entries:
            key = self._key(info)
            with self._lock:
                m = self._good.get(key)
                if m is not None:
                    self._good.move_to_end(key)
                    out[info.id] = m.ref(info, slot)
                elif key in self._bad:
                    out[info.id] = None
        return out

    def verified(self, store: Store, job: Job, task: Task, info: FileInfo) -> Manifest | None:
        """The manifest in ``info`` if its seal opens (cached like :meth:`check`): for
        reports, which show facts; outputs are used only through :meth:`manifest`."""
        return self._cached(store, job, task, info)

    def remember(self, manifest: Manifest, info: FileInfo) -> None:
        """A result this PC sealed and created itself: no need to read it back."""
        self._store_good(self._key(info), manifest)

    def _key(self, info: FileInfo) -> tuple[str, int | None, float, int]:
        self.trust.keys()  # re-read the trusted list if due: a change bumps the generation
        return (info.id, info.size, info.modified, self.trust.generation)

    def _known(self, info: FileInfo) -> bool:
        key = self._key(info)
        with self._lock:
            return key in self._good or key in self._bad

    def _store_good(self, key: tuple[str, int | None, float, int], m: Manifest) -> None:
        with self._lock:
            self._good[key] = m
            if len(self._good) > self._capacity:
                self._good.popitem(last=False)

    def _cached(self, store: Store, job: Job, task: Task, info: FileInfo) -> Manifest | None:
        key = self._key(info)
        with self._lock:
            if key in self._good:
                self._good.move_to_end(key)
                return self._good[key]
            if key in self._bad:
                return None
        try:
            m = self.open(store, job, task, info)
        except UntrustedFile:
            with self._lock:
                self._bad[key] = None
                if len(self._bad) > self._capacity:
                    self._bad.popitem(last=False)
            return None
        except NotFound:
            return None
        self._store_good(key, m)
        return m

    # -- using a result: always opened afresh --

    def open(self, store: Store, job: Job, task: Task, info: FileInfo) -> Manifest:
        """Read and open the result file ``info`` of ``task`` now; UntrustedFile (reported
        once) if it does not open. Store errors other than an oversize file propagate."""
        what = f"result {safe(info.name)} ({safe(info.id, max_len=40)}) of {job.id}/{task.id}"
        try:
            if info.size is not None and info.size > MAX_MANIFEST_BYTES:
                raise UntrustedFile(f"{what}: {info.size} bytes, over the limit")
            try:
                data = store.read(info.id, max_bytes=MAX_MANIFEST_BYTES, parent=info.parent)
            except (NotFound, AuthError, TransientStoreError):
                raise
            except StoreError as exc:  # larger than the limit
                raise UntrustedFile(f"{what}: {exc}") from None
            return open_result(
                data, self.trusted, job_id=job.id, task=task, slot_id=info.id, what=what
            )
        except UntrustedFile as exc:
            self.warn(f"result:{info.id}:{info.size}:{info.modified}", f"ignoring {exc}")
            raise

    def manifest(self, store: Store, job: Job, task: Task, ref: ResultRef) -> Manifest:
        """The manifest of a result a view holds, read and verified again (before using its
        outputs: the file may have been edited since the view was made)."""
        info = store.get(ref.file.id, parent=ref.file.parent)
        return self.open(store, job, task, info)

    def first_valid(self, store: Store, job: Job, task: Task) -> tuple[Manifest, FileInfo] | None:
        """The task's result by get-by-id (a consistent read): the first slot that opens."""
        for slot_id in task.result_ids:
            try:
                info = store.get(slot_id, parent=job.folders["results"])
                return self.open(store, job, task, info), info
            except (NotFound, UntrustedFile):
                continue
        return None


_BY_TRUST: dict[int, tuple[Trust, ResultReader]] = {}
_BY_TRUST_LOCK = threading.Lock()


def reader_for(trust: Trust) -> ResultReader:
    """The one ResultReader of ``trust`` (one per Trust object and process), so results
    share that Trust's keys and reports and each result is opened once for planning."""
    with _BY_TRUST_LOCK:
        hit = _BY_TRUST.get(id(trust))
        if hit is None or hit[0] is not trust:
            if len(_BY_TRUST) > 64:
                _BY_TRUST.clear()
            hit = _BY_TRUST[id(trust)] = (trust, ResultReader(trust))
        return hit[1]


def default_reader() -> ResultReader:
    """The reader of this PC's reader Trust (:meth:`Trust.reader`: its trusted keys plus
    its own key, re-read when they change)."""
    return reader_for(Trust.reader())


def read_manifest(
    store: Store, task: Task, job: Job | None = None, reader: ResultReader | None = None
) -> dict[str, Any]:
    """The sealed body of ``task``'s result (its first valid slot), for tools and tests.
    Without ``job``, the job id is taken from the file (the seal still has to open)."""
    from drivemr.limits import load_json_limited

    reader = reader or default_reader()
    for slot_id in task.result_ids:
        try:
            parent = None if job is None else job.folders["results"]
            data = store.read(slot_id, max_bytes=MAX_MANIFEST_BYTES, parent=parent)
            if job is not None:
                job_id = job.id
            else:
                doc = load_json_limited(data, max_bytes=MAX_MANIFEST_BYTES, what="result")
                job_id = str(doc["body"]["job"])
            m = open_result(data, reader.trusted, job_id=job_id, task=task, slot_id=slot_id)
        except (DrivemrError, KeyError, TypeError):
            continue
        return dict(m.body)
    raise NotFound(f"task {task.id} has no valid result")
