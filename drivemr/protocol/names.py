"""Names in the store, and what they say.

A claim's or result's name carries facts (which task, which attempt, which worker, how it
ended, how long it took) so one by-parent listing answers "what is the state of this job"
without downloading anything. Names are hints, never locks: each parser here is total (a
name that does not parse is None, whatever the store holds), and numbers in names are
bounded by the patterns themselves. The protocol's constants (prefixes, formats, size
limits, result slots) live here too: every other part of the protocol reads them.
"""

from __future__ import annotations

import logging
import platform
import re
import secrets
import time
from dataclasses import dataclass

from drivemr.errors import DrivemrError
from drivemr.safetext import safe
from drivemr.sealed import WarnOnce
from drivemr.stores.base import FileInfo

FORMAT = 1
PACKED_FORMAT = 2
"""job.json of a job whose tasks hold several items (docs/packing.md): a worker that
predates packing refuses it instead of running each pack as one empty item."""
FORMATS = (FORMAT, PACKED_FORMAT)
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
    r"\.(?P<worker>[A-Za-z0-9][A-Za-z0-9._-]{0,63})"
)


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


def claim_name(task: str, gen: int, worker: str) -> str:
    return f"{task}.g{gen}.{worker}"


def parse_claim_name(name: str) -> tuple[str, int, str] | None:
    """(task, attempt, worker) from a claim's name; None for any name that does not parse
    (total: never raises, whatever the store holds)."""
    m = _CLAIM_NAME.fullmatch(name) if isinstance(name, str) else None
    return (m["task"], int(m["gen"]), m["worker"]) if m else None


def result_name(task: str, state: str, gen: int, exit_code: int | None, duration: float) -> str:
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


def parse_result(info: FileInfo) -> ResultRef | None:
    """What a result's name says; None for any name that does not parse (never raises)."""
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
    file: FileInfo


def heartbeat_name(worker: str) -> str:
    return f"{WORKER_PREFIX}{worker}{WORKER_SUFFIX}"
