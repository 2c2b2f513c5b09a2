"""The job document: what a job is (its stages, tasks, items and shipped files) and how
job.json, in formats 1 and 2 (packed, docs/packing.md), is read back from the store.

job.json is untrusted input like everything else in the store: it is parsed totally
(anything malformed is a :class:`JobFormatError`), its size and item count are bounded,
and a job is only read from the folder and store it names (a copy is refused).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from drivemr.errors import (
    AlreadyExists,
    AuthError,
    DrivemrError,
    NotFound,
    PermanentStoreError,
    SecurityError,
    UnreadableJob,
)
from drivemr.limits import finite_number, load_json_limited
from drivemr.protocol.names import (
    FORMAT,
    FORMATS,
    JOB_PREFIX,
    MAX_JOB_BYTES,
    MAX_JOB_ITEMS,
    MAX_MANIFEST_BYTES,
    MAX_RESULT_SLOTS,
    NAMED_FORMATS,
    REDUCE,
    ROUND_PREFIX,
    claim_name,
    result_name,
    slot_result_name,
)
from drivemr.safepaths import check_output_glob, check_relative_path
from drivemr.safetext import safe
from drivemr.spec import StageSpec
from drivemr.stores.base import FileInfo, Store
from drivemr.trust import Trust


class JobNotPublished(NotFound):
    """A job folder without its job.json yet: normal while its submitter uploads."""


class JobFormatError(DrivemrError):
    """A job.json or manifest in the store is not what drivemr wrote; the job is skipped."""


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
    def named(self) -> bool:
        """Whether its claim and result names carry the worker and the outcome (a job
        posted in format 1 or 2, before names were fixed by their id's role)."""
        return self.doc.get("format") in NAMED_FORMATS

    def claim_name(self, task: str, gen: int, worker: str) -> str:
        """The name a claim of attempt ``gen`` gets in this job."""
        return claim_name(task, gen, worker if self.named else None)

    def result_name(
        self, task: str, slot: int, state: str, gen: int, exit_code: int | None, duration: float
    ) -> str:
        """The name a result in slot ``slot`` gets in this job."""
        if self.named:
            return result_name(task, state, gen, exit_code, duration)
        return slot_result_name(task, slot)

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
                if doc.get("format") == FORMAT:
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
        data = store.read(spec.id, max_bytes=MAX_JOB_BYTES, parent=spec.parent)
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
