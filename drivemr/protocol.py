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
locks: every exclusive step is a create with a minted id.
"""

from __future__ import annotations

import getpass
import json
import logging
import platform
import re
import secrets
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
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
from drivemr.fileio import sha256_file
from drivemr.limits import load_json_limited
from drivemr.safepaths import check_output_glob, check_relative_path
from drivemr.safetext import safe
from drivemr.sealed import WarnOnce
from drivemr.spec import JobSpec, StageSpec, store_name
from drivemr.stores.base import FileInfo, Store

FORMAT = 1
JOB_PREFIX = "job-"
WORKER_PREFIX = "worker-"
WORKER_SUFFIX = ".json"
REDUCE = "reduce"
MAX_JOB_BYTES = 64 * 1024 * 1024
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_HEARTBEAT_BYTES = 1024 * 1024
MAX_JOB_ITEMS = 20 * 100_000 * 10  # room for 100 000 tasks of ~10 values each, times 2
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
    """What a result's name tells without downloading it."""

    task: str
    state: str
    gen: int
    exit_code: int | None
    duration: float
    file: FileInfo


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
class Task:
    index: int
    id: str
    claim_ids: tuple[str, ...]
    result_id: str
    item: str | None = None
    input: StoredFile | None = None


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

    def stage_of(self, task: Task) -> Stage:
        if task.id == REDUCE:
            assert self.reduce is not None
            return self.reduce
        return self.map

    def task(self, task_id: str) -> Task:
        if task_id == REDUCE and self.reduce_task is not None:
            return self.reduce_task
        index = self._index.get(task_id)
        if index is None:
            raise KeyError(task_id)
        return self.tasks[index]

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


def job_from_doc(doc: Mapping[str, Any], folder: str) -> Job:
    """Turn a job.json document into a :class:`Job`, refusing anything malformed."""
    try:
        if doc.get("format") != FORMAT:
            raise JobFormatError(f"unsupported job format {doc.get('format')!r}")
        tasks = []
        for index, t in enumerate(doc["tasks"]):
            claims = tuple(str(c) for c in t["claims"])
            if not claims:
                raise ValueError("task without claim ids")
            tasks.append(
                Task(
                    index=index,
                    id=str(t["id"]),
                    claim_ids=claims,
                    result_id=str(t["result"]),
                    item=None if t.get("item") is None else str(t["item"]),
                    input=None if t.get("input") is None else _stored_file(t["input"], "input"),
                )
            )
        reduce_doc = doc.get("reduce")
        reduce_task = None
        if reduce_doc is not None:
            rt = doc["reduce_task"]
            reduce_task = Task(
                len(tasks), REDUCE, tuple(str(c) for c in rt["claims"]), str(rt["result"])
            )
        folders = {str(k): str(v) for k, v in doc["folders"].items()}
        for needed in ("files", "claims", "results", "outputs", "logs"):
            if needed not in folders:
                raise ValueError(f"folder {needed!r} missing")
        return Job(
            id=str(doc["id"]),
            name=str(doc["name"]),
            created=float(doc["created"]),
            folder=folder,
            folders=folders,
            files=tuple(_stored_file(f, "files") for f in doc.get("files", [])),
            map=_stage(doc["map"], "map"),
            tasks=tuple(tasks),
            reduce=None if reduce_doc is None else _stage(reduce_doc, "reduce"),
            reduce_task=reduce_task,
            markers={str(k): str(v) for k, v in doc["markers"].items()},
            doc=doc,
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
    store: Store, job_folder: FileInfo, *, precheck: Callable[[bytes], None] | None = None
) -> Job:
    """Load and parse the job.json in ``job_folder``. NotFound if the job is not published
    yet (no job.json listed); UnreadableJob if job.json is listed but cannot be read.
    ``precheck`` sees the raw bytes before they are parsed (a worker's signature check,
    drivemr.jobtrust: an unsigned 64 MiB job.json is refused unparsed)."""
    children = store.list(job_folder.id)
    specs = [c for c in children if c.name == "job.json" and not c.is_folder]
    if not specs:
        raise NotFound(f"{job_folder.name}: no job.json yet")
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
) -> dict[str, Any]:
    map_stage = Stage.from_spec(spec.map)
    tasks_doc = []
    for task in spec.tasks:
        entry: dict[str, Any] = {
            "id": task.id,
            "claims": pool.take(map_stage.max_attempts),
            "result": pool.one(),
        }
        if task.item is not None:
            entry["item"] = task.item
        if task.input is not None:
            f = file_ids[task.input]
            entry["input"] = {"name": f.name, "id": f.id, "sha256": f.sha256, "size": f.size}
        tasks_doc.append(entry)
    reduce_stage = Stage.from_spec(spec.reduce) if spec.reduce else None
    return {
        "format": FORMAT,
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
            {"claims": pool.take(reduce_stage.max_attempts), "result": pool.one()}
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
) -> Job:
    """Publish a validated job. job.json is written last, so workers never see half a job;
    if anything fails before that, the job folder is removed again."""
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
        uploads: list[tuple[str, Path, str]] = [(f.name, f.path, "file") for f in spec.files]
        uploads += [
            (t.input, t.input_path, "input") for t in spec.tasks if t.input and t.input_path
        ]
        for n, (name, path, _kind) in enumerate(uploads):
            if name in stored:
                continue
            fid = pool.one()
            store.create(folders["files"], _store_name(name), fid, source=path)
            stored[name] = StoredFile(name, fid, sha256_file(path), path.stat().st_size)
            if progress and (n + 1) % 100 == 0:
                progress(f"uploaded {n + 1}/{len(uploads)} files")
        doc = build_job_doc(spec, job_id, pool, stored, folders, store.identity)
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


def load_view(store: Store, job: Job) -> JobView:
    view = JobView()
    for info in store.list(job.folders["claims"]):
        parsed = parse_claim_name(info.name)
        if parsed:
            view.add_claim(ClaimRef(parsed[0], parsed[1], parsed[2], info))
        else:
            _skip(job.id, "claims", info.name)
    valid_results = {t.result_id: t.id for t in job.tasks}
    if job.reduce_task:
        valid_results[job.reduce_task.result_id] = REDUCE
    for info in store.list(job.folders["results"]):
        ref = parse_result(info)
        if ref is None:
            _skip(job.id, "results", info.name)
        # Only a file created under the task's minted result id counts: it is the single
        # commit point, so a stray or forged name never finishes a task.
        if ref and valid_results.get(info.id) == ref.task:
            view.results[ref.task] = ref
    markers = {info.id for info in store.list(job.folder)}
    view.cancelled = job.markers.get("cancel") in markers
    view.finished = job.markers.get("finished") in markers
    return view


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


def mark(store: Store, job: Job, marker: str) -> bool:
    """Create a marker once; False if it already existed."""
    try:
        store.create(
            job.folder, marker, job.markers[marker], json.dumps({"at": time.time()}).encode()
        )
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
