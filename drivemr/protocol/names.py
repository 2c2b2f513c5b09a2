"""Names in the store, and what they say.

A claim's or result's name is fixed by the role of its id: ``<task>.g<attempt>`` for the
claim of an attempt, ``<task>.r<slot>`` for a result slot. So every legitimate creator of
one id uses one name, which is what lets a store whose create-once holds per key (S3:
``If-None-Match`` on the key, and the key holds the name so that a listing shows it) give
each file one key. The facts a name used to carry (the claim's worker, how a result
ended) come from the sealed bodies instead, which readers open anyway before acting; a
worker learned from a claim's seal is remembered per claim file (:func:`claimer_of`).
Jobs of formats 1 and 2 (posted before) keep their informative names
(``<task>.g<gen>.<worker>``, ``<task>.<state>.g<gen>.x<exit>.d<ms>``): a worker writes
what the job's format says, so it works beside the workers that posted them.

Names are hints, never locks: each parser here is total (a name that does not parse is
None, whatever the store holds), and numbers in names are bounded by the patterns
themselves. The protocol's constants (prefixes, formats, size limits, result slots) live
here too: every other part of the protocol reads them.
"""

from __future__ import annotations

import logging
import platform
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from drivemr.errors import DrivemrError
from drivemr.safetext import safe
from drivemr.sealed import WarnOnce
from drivemr.stores.base import FileInfo

FORMAT = 1
PACKED_FORMAT = 2
"""job.json of a job whose tasks hold several items (docs/packing.md): a worker that
predates packing refuses it instead of running each pack as one empty item."""
FIXED_NAMES_FORMAT = 3
"""job.json of jobs posted now (packed or not): claim and result names are fixed by their
id's role, and a claim's worker is read from its seal. A worker that predates it refuses
the job (reading no worker from a claim's name, it would take live claims over)."""
FORMATS = (FORMAT, PACKED_FORMAT, FIXED_NAMES_FORMAT)
NAMED_FORMATS = (FORMAT, PACKED_FORMAT)
"""Formats whose claim and result names carry the worker and the outcome."""
JOB_PREFIX = "job-"
WORKER_PREFIX = "worker-"
WORKER_SUFFIX = ".json"
REDUCE = "reduce"
ROUND_PREFIX = "round."
MAX_JOB_BYTES = 64 * 1024 * 1024
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_HEARTBEAT_BYTES = 1024 * 1024
MAX_JOB_ITEMS = 20 * 100_000 * 10  # room for 100 000 tasks of ~10 values each, times 2
RESULT_SLOTS = 3
"""Result ids minted per task: a committer creates its result in the first slot that does
not hold a valid (sealed, trusted) result, so a file planted under a known id does not stop
the real result from landing."""
MAX_RESULT_SLOTS = 16
INLINE_OUTPUT_LIMIT = 256 * 1024
"""Outputs up to this many bytes (all together) ride inside the result manifest, so a task
with small outputs costs exactly two writes: its claim and its result."""

_WORKER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Numbers in names are bounded by the patterns themselves: a name with a 5,000-digit
# attempt number or a 400-digit duration simply does not parse (and is skipped), instead
# of raising out of int() or out of a float division.
MAX_GEN_DIGITS = 9
MAX_EXIT_DIGITS = 10
MAX_MS_DIGITS = 15
_RESULT_NAME = re.compile(
    r"(?P<task>[A-Za-z0-9]{1,64})\.(?P<state>done|failed)"
    rf"\.g(?P<gen>\d{{1,{MAX_GEN_DIGITS}}})\.x(?P<exit>-?\d{{1,{MAX_EXIT_DIGITS}}}|n)"
    rf"\.d(?P<ms>\d{{1,{MAX_MS_DIGITS}}})"
)
_CLAIM_NAME = re.compile(
    rf"(?P<task>[A-Za-z0-9]{{1,64}})\.g(?P<gen>\d{{1,{MAX_GEN_DIGITS}}})"
    r"(?:\.(?P<worker>[A-Za-z0-9][A-Za-z0-9._-]{0,63}))?"
)
MAX_SLOT_DIGITS = 2
_SLOT_NAME = re.compile(rf"(?P<task>[A-Za-z0-9]{{1,64}})\.r(?P<slot>\d{{1,{MAX_SLOT_DIGITS}}})")


_skipped = WarnOnce(logging.getLogger("drivemr.store").warning, capacity=1024)
"""Names in a job's folders that do not parse are skipped and reported once each (the
oldest are forgotten first, so a flood of junk names costs bounded memory)."""


def _skip(job: str, folder: str, name: str) -> None:
    _skipped(
        f"{job}/{folder}/{name[:300]}",
        f"job {safe(job)}: skipping {folder}/{safe(name)}: not a name drivemr writes",
    )


def check_worker_id(worker_id: str) -> str:
    if not _WORKER_ID.fullmatch(worker_id):
        raise DrivemrError(
            f"invalid worker id {worker_id!r}: use 1-64 characters from A-Z a-z 0-9 . _ -"
        )
    return worker_id


def default_worker_id() -> str:
    host = re.sub(r"[^A-Za-z0-9._-]", "-", platform.node() or "pc")[:48].strip(".-_") or "pc"
    return f"{host}-{secrets.token_hex(2)}"


def new_job_id(name: str) -> str:
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(2)}"


def claim_name(task: str, gen: int, worker: str | None = None) -> str:
    """The name of the claim of attempt ``gen``: ``<task>.g<gen>``, fixed by the claim id's
    role; with ``worker`` the name of a job of an older format (``<task>.g<gen>.<worker>``)."""
    return f"{task}.g{gen}" if worker is None else f"{task}.g{gen}.{worker}"


def parse_claim_name(name: str) -> tuple[str, int, str] | None:
    """(task, attempt, worker) from a claim's name, the worker "" when the name carries
    none (jobs of format 3); None for any name that does not parse (total: never raises,
    whatever the store holds)."""
    m = _CLAIM_NAME.fullmatch(name) if isinstance(name, str) else None
    return (m["task"], int(m["gen"]), m["worker"] or "") if m else None


def slot_result_name(task: str, slot: int) -> str:
    """The name of a result in slot ``slot`` of ``task`` (jobs of format 3): fixed by the
    slot, so committers racing for one slot create one name."""
    return f"{task}.r{slot}"


def parse_slot_result_name(name: str) -> tuple[str, int] | None:
    """(task, slot) from a result's name of format 3; None when it does not parse."""
    m = _SLOT_NAME.fullmatch(name) if isinstance(name, str) else None
    return (m["task"], int(m["slot"])) if m else None


def result_name(task: str, state: str, gen: int, exit_code: int | None, duration: float) -> str:
    """A result's name in a job of format 1 or 2 (it says how the attempt ended)."""
    code = "n" if exit_code is None else str(exit_code)
    return f"{task}.{state}.g{gen}.x{code}.d{max(0, round(duration * 1000))}"


@dataclass(frozen=True)
class ResultRef:
    """A task's result: from its name (:func:`parse_result`, a hint only) or, in a view,
    from its opened seal (``drivemr.results.ResultReader``)."""

    task: str
    state: str
    gen: int
    exit_code: int | None
    duration: float
    file: FileInfo
    slot: int = 0
    """Index of the result id it was created under in ``Task.result_ids``."""
    worker: str = ""
    """The worker that committed it, as its seal says ("" from a name)."""


def is_result_name(name: str) -> bool:
    """Whether ``name`` is a name drivemr gives results (either form)."""
    return parse_slot_result_name(name) is not None or _RESULT_NAME.fullmatch(name) is not None


def parse_result(info: FileInfo) -> ResultRef | None:
    """What a result's name of format 1 or 2 says; None for any name that does not parse
    (never raises), names of format 3 included: those say nothing but the slot."""
    m = _RESULT_NAME.fullmatch(info.name) if isinstance(info.name, str) else None
    if not m:
        return None
    code = None if m["exit"] == "n" else int(m["exit"])
    return ResultRef(m["task"], m["state"], int(m["gen"]), code, int(m["ms"]) / 1000, info)


@dataclass(frozen=True)
class ClaimRef:
    task: str
    gen: int
    worker: str
    """The claim's worker: from its name (jobs of format 1 and 2), or from its seal once
    opened (:func:`claimer_of`); "" while unknown (a reader opens the claim before acting)."""
    file: FileInfo


class _Claimers:
    """Claim file -> the worker its seal names, for the claims this process opened or made.

    Claims are created once under their id and never updated, so what a seal said stays
    true for that id. A hint for planning and display only: whoever acts on a claim opens
    it. Bounded: the oldest are forgotten."""

    def __init__(self, capacity: int = 200_000) -> None:
        self._lock = threading.Lock()
        self._known: OrderedDict[str, str] = OrderedDict()
        self._capacity = capacity

    def remember(self, info: FileInfo, worker: str) -> None:
        with self._lock:
            self._known[info.id] = worker
            if len(self._known) > self._capacity:
                self._known.popitem(last=False)

    def get(self, info: FileInfo) -> str:
        with self._lock:
            return self._known.get(info.id, "")


_claimers = _Claimers()


def remember_claimer(info: FileInfo, worker: str) -> None:
    """The trusted seal of the claim file ``info`` names ``worker`` (or we made it)."""
    if _WORKER_ID.fullmatch(worker):
        _claimers.remember(info, worker)


def claimer_of(info: FileInfo) -> str:
    """The worker of the claim file ``info`` as its seal said, "" if not opened here yet."""
    return _claimers.get(info)


def heartbeat_name(worker: str) -> str:
    return f"{WORKER_PREFIX}{worker}{WORKER_SUFFIX}"
