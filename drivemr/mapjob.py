"""``Client.map``: a Python function over JSON items, as an ordinary signed job.

The function is never pickled. It must be a top-level function of a module file; that
source file is shipped with the job like any job file's ``files`` (so the job's signature
covers its sha256) and each task runs ``python -m drivemr.mapfn`` (see :mod:`drivemr.mapfn`),
which imports the file and calls the function on one item. Items go to the tasks as JSON
text (``{item}``) and come back as each task's ``result.json``.

Everything is checked before the first write to the store: a lambda, a nested function,
a function of an interactive session, or an item that JSON cannot carry faithfully is
refused with :class:`~drivemr.errors.MapInputError` saying why.
"""

from __future__ import annotations

import ast
import json
import os
import re
import sys
import tempfile
import types
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from drivemr.errors import JobStateError, MapError, MapFailure, MapInputError
from drivemr.mapfn import IN_MAP_TASK, RESULT_FILE
from drivemr.protocol import Job, parse_json
from drivemr.safetext import safe
from drivemr.spec import (
    DEFAULT_MAX_ATTEMPTS,
    MAX_ATTEMPTS,
    MAX_TASKS,
    JobSpec,
    ShippedFile,
    StageSpec,
    TaskSpec,
    parse_duration,
)
from drivemr.status import JobStatus
from drivemr.stores.base import Store

__all__ = ["MAX_ITEM_BYTES", "check_function", "encode_items", "map_job_spec", "map_results"]

MAX_ITEM_BYTES = 16 * 1024
"""An item travels on the task's command line (``{item}``): Windows allows 32 767
characters for all of it. Pass a file name or a key for anything bigger."""
MAX_RESULT_BYTES = 64 * 1024 * 1024
"""The largest ``result.json`` read back from the store."""
MAX_RESULT_ITEMS = 5_000_000
SHOWN_ITEM_CHARS = 200
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WHY = (
    "drivemr ships the function's source file and imports it on the workers (it never pickles code)"
)


def _refuse(fn: object, problem: str) -> MapInputError:
    shown = getattr(fn, "__qualname__", None) or repr(fn)
    return MapInputError(f"map: cannot run {shown}: {problem}; {_WHY}")


def check_function(fn: Callable[..., Any]) -> tuple[Path, str, str]:
    """The source file, module name and function name to ship for ``fn``, or
    :class:`MapInputError` saying why ``fn`` cannot be located by file."""
    if not isinstance(fn, types.FunctionType):
        raise _refuse(
            fn,
            "it is not a plain function defined with `def` (a builtin, a method, a partial or a class?)",
        )
    if fn.__name__ == "<lambda>":
        raise _refuse(fn, "it is a lambda; define it with `def` at the top level of a .py file")
    if "<locals>" in fn.__qualname__ or fn.__qualname__ != fn.__name__:
        raise _refuse(
            fn,
            "it is defined inside another function or a class; move it to the top level of its module",
        )
    module = sys.modules.get(fn.__module__)
    if module is None or getattr(module, fn.__name__, None) is not fn:
        raise _refuse(
            fn, f"it is not reachable as {fn.__module__}.{fn.__name__} (redefined or generated?)"
        )
    file = getattr(module, "__file__", None)
    if not file:
        raise _refuse(
            fn,
            "its module has no source file (an interactive session or `python -c`?); put it in a .py file",
        )
    path = Path(file).resolve()
    if path.suffix != ".py" or not path.is_file():
        raise _refuse(fn, f"its module's file {path} is not a .py source file")
    name = fn.__module__
    if name == "__main__":
        name = path.stem
        _check_main_guard(fn, path)
    return path, name, fn.__name__


def _check_main_guard(fn: Callable[..., Any], path: Path) -> None:
    """A script is imported afresh on each worker: code at its top level (the map call
    itself) must sit under ``if __name__ == "__main__":`` or it would run there too."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError) as exc:
        raise _refuse(fn, f"its script {path} cannot be read back ({exc})") from None
    for node in tree.body:
        if (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name)
            and node.test.left.id == "__name__"
            and any(
                isinstance(c, ast.Constant) and c.value == "__main__" for c in node.test.comparators
            )
        ):
            return
    raise _refuse(
        fn,
        f'it is defined in the script {path.name}, which has no `if __name__ == "__main__":` '
        "block: the workers import the script, so its top-level code (this map call) would run "
        "there again; put that code under such a block",
    )


def _short(text: str) -> str:
    return text if len(text) <= SHOWN_ITEM_CHARS else text[: SHOWN_ITEM_CHARS - 1] + "…"


def encode_items(items: Iterable[Any]) -> list[str]:
    """Each item as compact JSON text, or :class:`MapInputError` for the first item JSON
    cannot carry faithfully (it must read back equal), or that is too big."""
    texts = []
    for index, item in enumerate(items):
        try:
            text = json.dumps(item, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
            same = json.loads(text) == item
        except (TypeError, ValueError, RecursionError) as exc:
            raise MapInputError(
                f"map: item {index} ({_short(repr(item))}) is not JSON: {exc}; items and "
                "return values must be JSON (str, int, float, bool, None, lists, str-keyed dicts)"
            ) from None
        if not same:
            raise MapInputError(
                f"map: item {index} ({_short(repr(item))}) would not read back equal from JSON "
                "(tuples become lists, dict keys become strings); pass lists and str keys"
            )
        size = len(text.encode("utf-8"))
        if size > MAX_ITEM_BYTES:
            raise MapInputError(
                f"map: item {index} is {size} bytes as JSON, over the limit of {MAX_ITEM_BYTES} "
                "(it travels on the task's command line); pass a file name or a key instead"
            )
        texts.append(text)
        if len(texts) > MAX_TASKS:
            raise MapInputError(f"map: more than {MAX_TASKS} items in one job")
    return texts


def _brace(text: str) -> str:
    """Literal text in a command word (``{`` and ``}`` would be placeholders)."""
    return text.replace("{", "{{").replace("}", "}}")


def map_job_spec(
    fn: Callable[..., Any],
    items: Iterable[Any],
    *,
    name: str | None = None,
    timeout: float | str | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    env: Mapping[str, str] | None = None,
    items_per_task: int | None = None,
) -> JobSpec:
    """The job that runs ``fn`` over ``items``: one item each (``t0000``, ... in item
    order), packed into tasks at submit (``items_per_task``, or chosen from the live
    workers' slots when None; docs/packing.md), the function's file shipped,
    ``result.json`` its one output. Refuses with :class:`MapInputError` before anything
    is written."""
    if os.environ.get(IN_MAP_TASK):
        raise MapInputError(
            "map: called from inside a map task (a script whose map call is not under "
            '`if __name__ == "__main__":`?); refused rather than submitting jobs from jobs'
        )
    path, module, function = check_function(fn)
    texts = encode_items(items)
    if not texts:
        raise MapInputError("map: no items")
    job_name = name if name is not None else _SAFE_NAME.sub("_", f"map-{function}")[:64]
    if not job_name or _SAFE_NAME.search(job_name) or len(job_name) > 64 or job_name in (".", ".."):
        raise MapInputError(
            f'map: name {job_name!r} is not a valid job name: letters, digits, ".", "_", "-"; up to 64'
        )
    if (
        isinstance(max_attempts, bool)
        or not isinstance(max_attempts, int)
        or not (1 <= max_attempts <= MAX_ATTEMPTS)
    ):
        raise MapInputError(f"map: max_attempts must be a whole number from 1 to {MAX_ATTEMPTS}")
    if items_per_task is not None and (
        isinstance(items_per_task, bool)
        or not isinstance(items_per_task, int)
        or not (1 <= items_per_task <= MAX_TASKS)
    ):
        raise MapInputError(f"map: items_per_task must be a whole number from 1 to {MAX_TASKS}")
    seconds = None if timeout is None else parse_duration(timeout, key="timeout", path="map()")
    task_env = dict(env or {})
    for key, value in task_env.items():
        if not isinstance(key, str) or not _ENV_NAME.fullmatch(key):
            raise MapInputError(f"map: env: {key!r} is not a valid environment variable name")
        if not isinstance(value, str) or "\x00" in value:
            raise MapInputError(f"map: env: {key} must be a string without NUL characters")
    shipped = path.name
    command = (
        "python",
        "-m",
        "drivemr.mapfn",
        "{files}/" + _brace(shipped),
        _brace(module),
        _brace(function),
        "{item}",
    )
    width = max(4, len(str(len(texts) - 1)))
    return JobSpec(
        path=path,
        base_dir=path.parent,
        name=job_name,
        files=(ShippedFile(shipped, path),),
        map=StageSpec(
            command=command,
            outputs=(RESULT_FILE,),
            timeout=seconds,
            max_attempts=max_attempts,
            env=task_env,
        ),
        tasks=tuple(TaskSpec(id=f"t{i:0{width}d}", item=text) for i, text in enumerate(texts)),
        reduce=None,
        items_per_task=items_per_task,
    )


def map_results(store: Store, job: Job, st: JobStatus) -> list[Any]:
    """The return values of a finished map job in item order; :class:`MapError` naming
    every failed item, or :class:`JobStateError` if the job was cancelled."""
    if st.state == "cancelled":
        raise JobStateError(f"map job {job.id} was cancelled")
    states = {t.task: t.state for t in st.tasks}  # one per item, whatever the packing
    failed = [i.id for i in job.items if states.get(i.id) != "done"]
    if failed:
        raise MapError(job.id, len(job.items), _failures(store, job, failed))
    from drivemr.results import fetch_results, result_folder

    with tempfile.TemporaryDirectory(prefix="drivemr-map-") as tmp:
        fetch_results(store, job.id, Path(tmp))  # the {results} layout, digests checked
        return [_read_result(job, Path(tmp) / result_folder(job, i.id), i.id) for i in job.items]


def _read_result(job: Job, folder: Path, task_id: str) -> Any:
    result = folder / RESULT_FILE
    if not result.is_file():
        raise JobStateError(f"map job {job.id}: task {task_id} has no {RESULT_FILE}")
    size = result.stat().st_size
    if size > MAX_RESULT_BYTES:
        raise JobStateError(
            f"map job {job.id}: the result of {task_id} is {size} bytes, over {MAX_RESULT_BYTES}"
        )
    return parse_json(
        result.read_bytes(),
        f"the result of {task_id}",
        max_bytes=MAX_RESULT_BYTES,
        max_items=MAX_RESULT_ITEMS,
    )


def _failures(store: Store, job: Job, failed: list[str]) -> tuple[MapFailure, ...]:
    from drivemr.report import collect, failure_reason, final_attempts

    record = collect(store, job.id, tasks=failed, logs=False)
    index = {i.id: n for n, i in enumerate(job.items)}
    out = []
    wanted = set(failed)
    latest = {}
    for task, committed, _n in final_attempts(record):  # every task, and each of its rounds
        if task in wanted:
            latest[task] = committed
    for task, committed in latest.items():
        error = "no result"
        if committed is not None:
            lines = [ln.strip() for ln in committed.stderr.splitlines() if ln.strip()]
            if committed.exit_code == 1 and lines:
                error = lines[-1]
            else:
                error = failure_reason(committed, job.map.timeout)
        item = job.item(task)[1].item or ""
        out.append(MapFailure(index[task], task, safe(item), safe(error)))
    return tuple(sorted(out, key=lambda f: f.index))
