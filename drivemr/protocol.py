"""The drivemr protocol, written once on top of the store primitives.

Layout in the store's root folder::

    job-<job id>/             one folder per job (created once, with a minted id)
        job.json              the immutable spec: every task, command and minted id
        files/                code and inputs shipped with the job
        claims/<task>.g<gen>.<worker>        create-once with claim id [task][gen]
        results/<task>.<state>.g<gen>.x<exit>.d<ms>   create-once with result id [task]
        outputs/              outputs too large to ride inside a result manifest
        logs/<task>.g<gen>.log  stdout/stderr of attempts that failed
        cancel, finished      markers, created once with their minted ids
    worker-<worker id>.json   each worker's heartbeat, rewritten every lease/3

Names carry facts (who claimed, how a task ended) so one by-parent listing answers
"what is the state of this job" without downloading anything; names are never used as
locks: every exclusive step is a create with a minted id. Only files at minted ids count,
and what a reader acts on (a claim it would wait for or take over, a heartbeat, a marker,
a rejection note) is opened first: sealed by a trusted key (see drivemr.trust).
"""

from __future__ import annotations

import getpass
import logging
import math
import platform
import re
import secrets
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivemr.archives import Archive
from drivemr.errors import (
    AlreadyExists,
    AuthError,
    DrivemrError,
    NotFound,
    PermanentStoreError,
    SecurityError,
    UnreadableJob,
)
from drivemr.fileio import sha256_file
from drivemr.limits import finite_number, load_json_limited
from drivemr.safepaths import check_output_glob, check_relative_path
from drivemr.safetext import safe
from drivemr.sealed import WarnOnce
from drivemr.spec import JobSpec, StageSpec, store_name
from drivemr.stores.base import FileInfo, Store
from drivemr.trust import Trust

if TYPE_CHECKING:
    from drivemr.results import ResultReader

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


class JobNotPublished(NotFound):
    """A job folder without its job.json yet: normal while its submitter uploads."""


class JobFormatError(DrivemrError):
    """A job.json or manifest in the store is not what drivemr wrote; the job is skipped."""


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


# --------------------------------------------------------------------------- names


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


# --------------------------------------------------------------------------- job document


@dataclass(frozen=True)
class Stage:
    command: tuple[str, ...]
    outputs: tuple[str, ...]
    timeout: float | None
    max_attempts: int
    env: Mapping[str, str]

    @staticmethod
    def from_spec(spec: StageSpec) -> Stage:
        return Stage(spec.command, spec.outputs, spec.timeout, spec.max_attempts, dict(spec.env))

    def to_doc(self) -> dict[str, Any]:
        return {
            "command": list(self.command),
            "outputs": list(self.outputs),
            "timeout": self.timeout,
            "max_attempts": self.max_attempts,
            "env": dict(self.env),
        }


@dataclass(frozen=True)
class StoredFile:
    """A file shipped with the job (code or an input), with its digest for verification."""

    name: str
    id: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Item:
    """One execution of the map command: the unit of work, whatever the packing.

    ``id`` is today's task id (``t0000``...) by global item index; ``{task}`` is it."""

    index: int
    id: str
    item: str | None = None
    input: StoredFile | None = None
    """For a packed task: a member of the task's archive (its ``id`` is the archive's)."""


@dataclass(frozen=True)
class Task:
    """The unit of claim and commit: one item (``t0000``) or a pack of items (``p0000``)."""

    index: int
    id: str
    claim_ids: tuple[str, ...]
    result_ids: tuple[str, ...]
    """The task's result slots, in order (format-1 jobs: one)."""
    item: str | None = None
    input: StoredFile | None = None
    pack: tuple[Item, ...] = ()
    """The items of a packed task, in item order; empty for a one-item task."""
    archive: StoredFile | None = None
    """A packed task's inputs, as one zip archive (docs/packing.md)."""
    round: int = 0
    """The round of the job that issued these ids (0: job.json; see drivemr.rounds)."""

    @property
    def result_id(self) -> str:
        """The first result slot."""
        return self.result_ids[0]

    @property
    def packed(self) -> bool:
        return bool(self.pack)

    @property
    def items(self) -> tuple[Item, ...]:
        """The items this task runs: its pack, or itself as one item."""
        if self.pack:
            return self.pack
        return (Item(self.index, self.id, self.item, self.input),)


@dataclass(frozen=True)
class Job:
    id: str
    name: str
    created: float
    folder: str
    folders: Mapping[str, str]
    files: tuple[StoredFile, ...]
    map: Stage
    tasks: tuple[Task, ...]
    reduce: Stage | None
    reduce_task: Task | None
    markers: Mapping[str, str]
    doc: Mapping[str, Any] = field(repr=False, compare=False)
    packed_for: int = 0
    """The slots a packed job's task sizes were chosen for (0: not packed that way)."""
    round: int = 0
    """The latest round applied (0: the job as submitted)."""
    rounds: tuple[Any, ...] = field(default=(), repr=False, compare=False)
    """The rounds applied, oldest first (``drivemr.rounds.Round``)."""
    base: Job | None = field(default=None, repr=False, compare=False)
    """The job as job.json says, before any round (None: this is it)."""

    @property
    def all_tasks(self) -> tuple[Task, ...]:
        """The map tasks, then the reduce task if any."""
        return self.tasks + ((self.reduce_task,) if self.reduce_task else ())

    def stage_of(self, task: Task) -> Stage:
        if task.id == REDUCE:
            assert self.reduce is not None
            return self.reduce
        return self.map

    @property
    def packed(self) -> bool:
        return any(t.pack for t in self.tasks)

    @property
    def items(self) -> tuple[Item, ...]:
        """Every map item, in item order (the tasks themselves when nothing is packed)."""
        cached: tuple[Item, ...] | None = self.__dict__.get("_items_cache")
        if cached is None:
            cached = tuple(i for t in self.tasks for i in t.items)
            object.__setattr__(self, "_items_cache", cached)
        return cached

    def item(self, item_id: str) -> tuple[Task, Item]:
        """The task that holds an item, and the item. KeyError if there is none."""
        cached: dict[str, tuple[Task, Item]] | None = self.__dict__.get("_item_index")
        if cached is None:
            cached = {i.id: (t, i) for t in self.tasks for i in t.items}
            object.__setattr__(self, "_item_index", cached)
        return cached[item_id]

    def holder_of(self, task_or_item: str) -> str:
        """The id of the task named, or of the task (pack) holding the item named;
        KeyError if there is neither."""
        try:
            return self.task(task_or_item).id
        except KeyError:
            return self.item(task_or_item)[0].id

    def task(self, task_id: str) -> Task:
        if task_id == REDUCE and self.reduce_task is not None:
            return self.reduce_task
        index = self._index.get(task_id)
        if index is None:
            raise KeyError(task_id)
        return self.tasks[index]

    def claim_slot(self, file_id: str) -> tuple[str, int] | None:
        """(task id, attempt) whose minted claim id ``file_id`` is, or None."""
        cached: dict[str, tuple[str, int]] | None = self.__dict__.get("_claim_cache")
        if cached is None:
            cached = {}
            for t in (*self.tasks, *((self.reduce_task,) if self.reduce_task else ())):
                for gen, cid in enumerate(t.claim_ids):
                    cached.setdefault(cid, (t.id, gen))
            object.__setattr__(self, "_claim_cache", cached)
        return cached.get(file_id)

    @property
    def _index(self) -> dict[str, int]:
        cached: dict[str, int] | None = self.__dict__.get("_index_cache")
        if cached is None:
            cached = {t.id: t.index for t in self.tasks}
            object.__setattr__(self, "_index_cache", cached)
        return cached


def _stored_file(doc: Any, where: str) -> StoredFile:
    try:
        name = check_relative_path(str(doc["name"]), what=f"{where} name")
        return StoredFile(name, str(doc["id"]), str(doc["sha256"]), int(doc["size"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise JobFormatError(f"{where}: malformed file entry ({exc})") from exc


def id_list(value: Any, what: str, *, limit: int) -> tuple[str, ...]:
    """A non-empty, bounded list of ids from a job or round document."""
    if not isinstance(value, list) or not 1 <= len(value) <= limit:
        raise ValueError(f"{what} must be a list of 1 to {limit} ids")
    if not all(isinstance(v, str) and 0 < len(v) <= 200 for v in value):
        raise ValueError(f"{what} must hold ids (strings)")
    return tuple(value)


def result_slots(doc: Mapping[str, Any], what: str) -> tuple[str, ...]:
    """``results: [...]``, or a format-1 ``result`` as one slot."""
    if "results" in doc:
        return id_list(doc["results"], f"{what} results", limit=MAX_RESULT_SLOTS)
    return (str(doc["result"]),)


def _stage(doc: Any, where: str) -> Stage:
    try:
        command = tuple(doc["command"])
        if not command or not all(isinstance(a, str) for a in command):
            raise ValueError("command must be a non-empty list of strings")
        timeout = doc.get("timeout")
        env = doc.get("env") or {}
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            raise ValueError("env must map strings to strings")
        return Stage(
            command=command,
            outputs=tuple(check_output_glob(str(o)) for o in doc.get("outputs", [])),
            timeout=None if timeout is None else float(timeout),
            max_attempts=max(1, int(doc["max_attempts"])),
            env=dict(env),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise JobFormatError(f"{where}: malformed stage ({exc})") from exc


def _item(doc: Any, index: int, archive: StoredFile | None) -> Item:
    """One entry of a packed task's ``items``: {"id", "item"} or {"id", "input"}."""
    if not isinstance(doc, dict):
        raise ValueError("an item entry is not an object")
    item_id = str(doc["id"])
    if not re.fullmatch(r"[A-Za-z0-9]+", item_id):
        raise ValueError(f"bad item id {item_id!r}")
    member = None
    if doc.get("input") is not None:
        if archive is None:
            raise ValueError(f"item {item_id} has an input but its task no archive")
        entry = doc["input"]
        if not isinstance(entry, dict):
            raise ValueError(f"item {item_id}: malformed input")
        member = _stored_file({**entry, "id": archive.id}, "input")
    item = None if doc.get("item") is None else str(doc["item"])
    return Item(index, item_id, item, member)


def _packed_for(doc: Any) -> int:
    """``{"slots": N}``: how a packed job was sized (advice for claim order only)."""
    slots = doc.get("slots") if isinstance(doc, dict) else None
    return slots if isinstance(slots, int) and not isinstance(slots, bool) and slots > 0 else 0


def _created(value: object) -> float:
    number = finite_number(value)
    if number is None:
        raise ValueError("created: not a finite number")
    return number


def job_from_doc(doc: Mapping[str, Any], folder: str) -> Job:
    """Turn a job.json document into a :class:`Job`, refusing anything malformed."""
    try:
        if doc.get("format") not in FORMATS:
            raise JobFormatError(f"unsupported job format {doc.get('format')!r}")
        tasks = []
        item_count = 0
        for index, t in enumerate(doc["tasks"]):
            claims = tuple(str(c) for c in t["claims"])
            if not claims:
                raise ValueError("task without claim ids")
            pack: tuple[Item, ...] = ()
            archive = None
            if t.get("items") is not None:
                if doc.get("format") != PACKED_FORMAT:
                    raise ValueError("a packed task in a job of format 1")
                archive = (
                    None if t.get("archive") is None else _stored_file(t["archive"], "archive")
                )
                pack = tuple(_item(i, item_count + k, archive) for k, i in enumerate(t["items"]))
                if not pack:
                    raise ValueError(f"task {t['id']!r} packs no item")
            task = Task(
                index=index,
                id=str(t["id"]),
                claim_ids=claims,
                result_ids=result_slots(t, f"task {t.get('id')}"),
                item=None if t.get("item") is None else str(t["item"]),
                input=None if t.get("input") is None else _stored_file(t["input"], "input"),
                pack=pack,
                archive=archive,
            )
            item_count += len(task.items)
            tasks.append(task)
        ids = [i.id for t in tasks for i in t.items] + [t.id for t in tasks if t.pack]
        if len(set(ids)) != len(ids) or REDUCE in ids:
            raise ValueError("task and item ids must be unique")
        reduce_doc = doc.get("reduce")
        reduce_task = None
        if reduce_doc is not None:
            rt = doc["reduce_task"]
            reduce_task = Task(
                len(tasks), REDUCE, tuple(str(c) for c in rt["claims"]), result_slots(rt, REDUCE)
            )
        folders = {str(k): str(v) for k, v in doc["folders"].items()}
        for needed in ("files", "claims", "results", "outputs", "logs"):
            if needed not in folders:
                raise ValueError(f"folder {needed!r} missing")
        return Job(
            id=str(doc["id"]),
            name=str(doc["name"]),
            created=_created(doc["created"]),
            folder=folder,
            folders=folders,
            files=tuple(_stored_file(f, "files") for f in doc.get("files", [])),
            map=_stage(doc["map"], "map"),
            tasks=tuple(tasks),
            reduce=None if reduce_doc is None else _stage(reduce_doc, "reduce"),
            reduce_task=reduce_task,
            markers={str(k): str(v) for k, v in doc["markers"].items()},
            doc=doc,
            packed_for=_packed_for(doc.get("packing")),
        )
    except JobFormatError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise JobFormatError(f"malformed job.json: {exc}") from exc


def parse_json(
    data: bytes, what: str, *, max_bytes: int = MAX_MANIFEST_BYTES, max_items: int = 200_000
) -> Any:
    """Untrusted JSON from the store: size, depth and item count capped; data only."""
    try:
        return load_json_limited(data, max_bytes=max_bytes, max_items=max_items, what=what)
    except SecurityError as exc:
        raise JobFormatError(str(exc)) from exc


def read_job(
    store: Store,
    job_folder: FileInfo,
    *,
    rounds: bool = True,
    trusted: Trust | Mapping[str, Any] | None = None,
    precheck: Callable[[bytes], None] | None = None,
) -> Job:
    """Load and parse the job.json in ``job_folder``, with its signed rounds applied
    (``rounds=False``: as submitted). NotFound if the job is not published yet (no
    job.json listed); UnreadableJob if job.json is listed but cannot be read.
    ``precheck`` sees job.json's raw bytes before they are parsed (a worker's signature
    check, drivemr.jobtrust: an unsigned 64 MiB job.json is refused unparsed); rounds are
    separate signed documents, opened after it by ``apply_rounds`` with ``trusted``."""
    children = store.list(job_folder.id)
    specs = [c for c in children if c.name == "job.json" and not c.is_folder]
    if not specs:
        raise JobNotPublished(f"{job_folder.name}: no job.json yet")
    spec = min(specs, key=lambda c: (c.created, c.id))
    if spec.size is not None and spec.size > MAX_JOB_BYTES:
        raise JobFormatError(f"{job_folder.name}: job.json is {spec.size} bytes, over the limit")
    try:
        data = store.read(spec.id, max_bytes=MAX_JOB_BYTES)
    except (NotFound, PermanentStoreError) as exc:
        if isinstance(exc, (AlreadyExists, AuthError)):
            raise
        # Listed, so posted: a read that fails now is a store fault, not "not posted yet".
        raise UnreadableJob(
            f"{job_folder.name}: job.json (id {spec.id}) is listed but cannot be read: {exc}"
        ) from exc
    if precheck is not None:
        precheck(data)
    doc = parse_json(
        data,
        "job.json",
        max_bytes=MAX_JOB_BYTES,
        max_items=MAX_JOB_ITEMS,
    )
    if not isinstance(doc, dict):
        raise JobFormatError("job.json is not an object")
    job = job_from_doc(doc, job_folder.id)
    check_store_binding(doc, store)
    if job.folders.get("job", job_folder.id) != job_folder.id:
        raise SecurityError(
            f"job.json of job {safe(job.id)} belongs to folder {safe(job.folders['job'])}, not to"
            f" {safe(job_folder.id)}: a copy of the job folder, never run"
        )
    if job_folder.name != JOB_PREFIX + job.id:
        raise SecurityError(
            f"job.json names job {job.id!r} but sits in folder {job_folder.name!r} (a copied or replayed job)"
        )
    if rounds and any(c.name.startswith(ROUND_PREFIX) for c in children):
        from drivemr.rounds import apply_rounds

        job = apply_rounds(store, job, children, trusted)
    return job


def check_store_binding(doc: Mapping[str, Any], store: Store) -> None:
    """A job names (and signs) the store it was posted to: in any other store it is a copy,
    refused. Jobs posted before stores had an identity carry none and are read as before
    (the workers' memory of finished jobs still keeps them from running twice)."""
    bound = doc.get("store")
    if bound is None:
        return
    if not isinstance(bound, str) or bound != store.identity:
        raise SecurityError(
            f"job {safe(doc.get('id'))} was posted to another store ({safe(bound, max_len=80)},"
            f" this one is {store.identity}); a signed job copied into another store is never run"
        )


# --------------------------------------------------------------------------- submit


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
        "format": FORMAT if packs is None else PACKED_FORMAT,
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


# --------------------------------------------------------------------------- views


@dataclass
class JobView:
    """What the store says about one job, from three by-parent listings."""

    claims: dict[str, dict[int, ClaimRef]] = field(default_factory=dict)
    results: dict[str, ResultRef] = field(default_factory=dict)
    cancelled: bool = False
    finished: bool = False

    def top_claim(self, task: str) -> ClaimRef | None:
        gens = self.claims.get(task)
        return gens[max(gens)] if gens else None

    def add_claim(self, ref: ClaimRef) -> None:
        self.claims.setdefault(ref.task, {})[ref.gen] = ref

    @property
    def map_results(self) -> int:
        return sum(1 for t in self.results if t != REDUCE)


def load_view(
    store: Store, job: Job, trust: Trust | None = None, *, reader: ResultReader | None = None
) -> JobView:
    """Claims, results and markers of ``job`` (at its latest round), from three listings.

    Only files created under the ids the job (or its round) minted count (a claim at its
    claim id, a result at one of its result slots), so the claims and results of earlier
    rounds, stray names and junk never change what a task looks like; a claim's attempt
    comes from its id, its worker from its name (checked against the sealed body when a
    reader acts on the claim). A result counts only once its seal opens (``reader``; by
    default one built on ``trust``, or on this PC's reader Trust): the task's result is the
    first valid one in slot order. With ``trust``, a cancel or finished marker counts only
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
        worker = parsed[2] if parsed and parsed[:2] == slot else "?"
        view.add_claim(ClaimRef(slot[0], slot[1], worker, info))
    by_slot = {rid: (t, k) for t in job.all_tasks for k, rid in enumerate(t.result_ids)}
    found: dict[str, list[tuple[int, FileInfo]]] = {}
    for info in store.list(job.folders["results"]):
        hit = by_slot.get(info.id)
        if parse_result(info) is None:
            _skip(job.id, "results", info.name)
        if hit is not None and not info.is_folder:
            found.setdefault(hit[0].id, []).append((hit[1], info))
    checked = reader.check_many(
        store, job, [(job.task(t), k, info) for t, entries in found.items() for k, info in entries]
    )
    for tid, entries in found.items():
        for _k, info in sorted(entries, key=lambda e: e[0]):
            ref = checked.get(info.id)
            if ref is not None:
                view.results[tid] = ref
                break
    markers = {info.id: info for info in store.list(job.folder)}
    for marker in ("cancel", "finished"):
        found_marker = markers.get(job.markers.get(marker, ""))
        present = found_marker is not None and (
            trust is None or open_marker(trust, store, job, found_marker)
        )
        setattr(view, "cancelled" if marker == "cancel" else "finished", present)
    return view


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
        and REDUCE not in view.results
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


# --------------------------------------------------------------------------- liveness


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
