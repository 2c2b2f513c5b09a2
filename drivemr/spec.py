"""Job files (TOML): parse and validate them into a :class:`JobSpec`.

A job file is checked whole before anything reaches a store, and refused with one
:class:`~drivemr.errors.JobSpecError` naming the file, the dotted key and the problem,
because a job is a command line that will run on every worker: a mistake found on a
worker costs an attempt on each PC, a mistake found here costs nothing.

Schema::

    name = "wordcount"            # default: the job file's stem; [A-Za-z0-9._-], up to 64
    files = ["count.py", "lib"]   # paths or globs relative to the job file; a folder ships
                                  # every file beneath it (recursively, hidden ones too)
    [map]
    command = ["python3", "{files}/count.py", "{input}"]   # an argv list, never a shell
    inputs = ["data/*.txt"]       # one task per matching file (sorted, deduplicated;
                                  # folders are skipped), or instead:
    # items = ["a", "b", 3]       # one task per item, used as {item}; or
    # items = {range = [0, 100]}  # [start, stop] or [start, stop, step], as Python's range
    outputs = ["counts.json"]     # globs relative to the task's working directory
    timeout = "10m"               # per attempt: "90s", "1h30m", "2.5s", "500ms" or seconds
    max_attempts = 3              # 1..100
    env = {LANG = "C"}            # extra environment variables (literal, no placeholders)
    [reduce]                      # optional: command, outputs, timeout, max_attempts, env
    command = ["python3", "{files}/merge.py", "{results}"]

Placeholders in commands: ``{input}`` (map, with inputs), ``{item}`` (map, with items),
``{task}`` and ``{files}`` (map), ``{files}`` and ``{results}`` (reduce); ``{{`` and ``}}``
stand for literal braces. Paths never leave the job file's folder (no ``..``, no absolute
paths or drive letters, no symbolic link pointing outside), and use ``/`` as separator so
that one job file means the same on Windows and POSIX workers.
"""

from __future__ import annotations

import difflib
import glob
import json
import math
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from typing import Any, NoReturn

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from drivemr.errors import JobSpecError, SecurityError
from drivemr.safepaths import check_output_glob, check_relative_path

__all__ = [
    "MAX_TASKS",
    "PLACEHOLDERS",
    "JobSpec",
    "ShippedFile",
    "StageSpec",
    "TaskSpec",
    "expand",
    "load_job",
    "parse_duration",
]

PLACEHOLDERS = frozenset({"input", "item", "task", "files", "results"})
MAX_TASKS = 100_000
"""More tasks than this is almost surely a mistake, and job.json would grow past reason."""
MAX_ATTEMPTS = 100
DEFAULT_MAX_ATTEMPTS = 3
MAX_DURATION = 365 * 86400.0
"""A longer timeout is a typo; leaving ``timeout`` out means no limit."""

_TOP_KEYS = frozenset({"name", "files", "map", "reduce"})
_MAP_KEYS = frozenset({"command", "inputs", "items", "outputs", "timeout", "max_attempts", "env"})
_REDUCE_KEYS = frozenset({"command", "outputs", "timeout", "max_attempts", "env"})
_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BRACES = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_FILES_TAIL = re.compile(r"/([\w./-]+)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|d|h|m|s))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_DURATION_HINT = 'use e.g. "90s", "10m", "1h30m", "2.5s", "500ms" or a number of seconds'


@dataclass(frozen=True)
class ShippedFile:
    """A file shipped to every worker, staged as ``{files}/<name>``."""

    name: str
    """Posix path relative to the job file's folder, e.g. ``count.py`` or ``lib/util.py``."""
    path: Path
    """Absolute local path."""


@dataclass(frozen=True)
class StageSpec:
    """How to run one stage (map or reduce)."""

    command: tuple[str, ...]
    outputs: tuple[str, ...] = ()
    timeout: float | None = None
    """Seconds per attempt; None means no limit."""
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    env: Mapping[str, str] = field(default_factory=dict, hash=False)
    """Extra environment variables for the task (literal values)."""


@dataclass(frozen=True)
class TaskSpec:
    """One map task."""

    id: str
    """``t0000``, ``t0001``, ...: zero padded to max(4, digits of n-1), so names sort."""
    item: str | None = None
    """The item, when the tasks come from ``items``."""
    input: str | None = None
    """Posix path of the input relative to the job folder (staged under the same path)."""
    input_path: Path | None = None
    """Absolute local path of the input."""


@dataclass(frozen=True)
class JobSpec:
    """A validated job file."""

    path: Path
    base_dir: Path
    name: str
    files: tuple[ShippedFile, ...]
    map: StageSpec
    tasks: tuple[TaskSpec, ...]
    reduce: StageSpec | None


def load_job(path: str | Path) -> JobSpec:
    """Read and validate a job file; raise :class:`JobSpecError` on the first problem."""
    shown = os.fspath(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise JobSpecError(shown, "", f"cannot read the job file: {e.strerror or e}") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise JobSpecError(shown, "", f"not UTF-8 text (bad byte at offset {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise JobSpecError(shown, "", f"TOML syntax error: {e}") from None
    except RecursionError:
        raise JobSpecError(shown, "", "TOML syntax error: values nested too deeply") from None
    return _Loader(Path(path), shown).job(doc)


def parse_duration(value: str | int | float, *, key: str = "", path: str = "") -> float:
    """Seconds from "10m", "90s", "1h30m", "2.5s", "500ms" or a plain number of seconds."""

    def bad(problem: str) -> NoReturn:
        raise JobSpecError(path, key, problem)

    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        bad(f"{_show(value)} is not a duration: {_DURATION_HINT}")
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER.fullmatch(text):
            seconds = float(text)
        elif _DURATION.fullmatch(text):
            parts = _DURATION_PART.findall(text)
            ranks = [list(_UNITS).index(unit) for _, unit in parts]
            if ranks != sorted(set(ranks)):
                bad(f'{_show(value)}: give each unit once, largest first (e.g. "1h30m")')
            seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
        else:
            bad(f"{_show(value)} is not a duration: {_DURATION_HINT}")
    else:
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    if math.isnan(seconds) or seconds <= 0:
        bad(f"{_show(value)}: a duration must be more than 0 seconds")
    if seconds > MAX_DURATION:
        bad(f"{_show(value)} is longer than 365 days; leave it out for no limit")
    return seconds


def expand(argv: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """Substitute ``{name}`` placeholders; ``{{`` and ``}}`` are literal braces.

    Raises ValueError on an unmatched brace or a placeholder missing from ``values``
    (load_job has already refused both, so this only fires on hand-built argv lists).
    """

    def one(arg: str) -> str:
        if "{" not in arg and "}" not in arg:
            return arg  # most words: no regex pass (this runs for every attempt)

        def sub(m: re.Match[str]) -> str:
            token = m.group(0)
            if token in ("{{", "}}"):
                return token[0]
            name = m.group(1)
            if name is None:
                raise ValueError(f"unmatched {token!r} in {arg!r}")
            if name not in values:
                raise ValueError(f"no value for placeholder {{{name}}} in {arg!r}")
            return values[name]

        return _BRACES.sub(sub, arg)

    return [one(arg) for arg in argv]


def _show(value: object) -> str:
    """A value as the user wrote it in TOML, near enough, for messages."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def _path_problem(pattern: str, what: str) -> str | None:
    """Why a relative path/glob is unsafe or unportable, or None."""
    if not pattern:
        return "is empty"
    if "\x00" in pattern:
        return "contains a NUL character"
    if "\\" in pattern:
        return 'contains "\\": use "/" as the path separator'
    win = PureWindowsPath(pattern)
    if PurePosixPath(pattern).is_absolute() or win.drive or win.root:
        return f"is an absolute path; {what}"
    if ".." in PurePosixPath(pattern).parts:
        return f"contains '..'; {what}"
    return None


STORE_NAME_BYTES = 200
"""Longest name a shipped file or input may have in the store (UTF-8 bytes, after
:func:`store_name`): the folder store appends ``~`` and a 28-character id to it, and most
file systems stop at 255 bytes."""


def store_name(rel: str) -> str:
    """The flat name a shipped file or input gets in the store's files folder (job.json
    keeps the relative path; the name only has to be one the store can hold)."""
    return rel.replace("/", "__")


def _name_problem(rel: str) -> str | None:
    """Why a shipped file or input named ``rel`` cannot go into the store, or None.

    The same checks every worker applies to job.json (so a job that passes here is never
    rejected for its names), plus the store's own rules for the flat name it keeps."""
    try:
        check_relative_path(rel, what="file")
    except SecurityError as exc:
        return f"{exc}; rename the file"
    flat = store_name(rel)
    if flat.startswith("."):
        return (
            f"file {rel!r}: names starting with '.' cannot be stored at the top of the job "
            "folder; rename the file or move it into a folder"
        )
    size = len(flat.encode("utf-8"))
    if size > STORE_NAME_BYTES:
        return (
            f"file {rel!r}: its name in the store ('/' becomes '__') is {size} bytes long, "
            f"over the limit of {STORE_NAME_BYTES}; shorten it"
        )
    return None


def _is_magic(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


class _Loader:
    """Validation state for one job file: where it is and how to name it in errors."""

    def __init__(self, path: Path, shown: str) -> None:
        self.shown = shown
        self.path = Path(os.path.abspath(path))
        self.base = self.path.parent
        self.real_base = self.base.resolve()
        self.shipped: set[str] = set()

    def fail(self, key: str, problem: str) -> NoReturn:
        raise JobSpecError(self.shown, key, problem)

    # -- the document -----------------------------------------------------------------

    def job(self, doc: dict[str, Any]) -> JobSpec:
        self.known_keys(doc, "", _TOP_KEYS)
        name = self.name(doc.get("name"))
        files = self.files(doc.get("files", []))
        self.shipped = {f.name for f in files}
        if "map" not in doc:
            self.fail("map", "missing: a job needs a [map] table with a command")
        m = self.table(doc["map"], "map")
        self.known_keys(m, "map", _MAP_KEYS)
        if "inputs" in m and "items" in m:
            self.fail("map", "give either inputs or items, not both")
        if "inputs" not in m and "items" not in m:
            self.fail(
                "map",
                'one of inputs or items is required (e.g. inputs = ["data/*.txt"] '
                "or items = {range = [0, 10]})",
            )
        source = "input" if "inputs" in m else "item"
        map_stage = self.stage(m, "map", {"task", "files", source}, source)
        tasks = self.inputs(m["inputs"]) if "inputs" in m else self.items(m["items"])
        reduce = None
        if "reduce" in doc:
            r = self.table(doc["reduce"], "reduce")
            self.known_keys(r, "reduce", _REDUCE_KEYS)
            reduce = self.stage(r, "reduce", {"files", "results"}, None)
        return JobSpec(
            path=self.path,
            base_dir=self.base,
            name=name,
            files=files,
            map=map_stage,
            tasks=tasks,
            reduce=reduce,
        )

    def known_keys(self, table: Mapping[str, Any], prefix: str, allowed: frozenset[str]) -> None:
        for k in table:
            if k not in allowed:
                close = difflib.get_close_matches(k, sorted(allowed), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                dotted = f"{prefix}.{k}" if prefix else k
                self.fail(dotted, f"unknown key{hint}; allowed: {', '.join(sorted(allowed))}")

    def table(self, value: object, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(key, f"must be a table: write [{key}] on a line of its own, then its keys")
        return value

    def str_list(self, value: object, key: str, example: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(key, f"must be a list of strings, e.g. {key.split('.')[-1]} = {example}")
        return value

    def name(self, value: object) -> str:
        if value is None:
            stem = self.path.stem
            if _SAFE_NAME.fullmatch(stem) and len(stem) <= 64 and stem not in (".", ".."):
                return stem
            self.fail(
                "name",
                f"not set, and the job file's name {_show(stem)} is not a valid job name: "
                'set name = "..." (letters, digits, ".", "_", "-"; up to 64 characters)',
            )
        if not isinstance(value, str):
            self.fail("name", f"must be a string, not {_show(value)}")
        if not _SAFE_NAME.fullmatch(value) or value in (".", ".."):
            self.fail(
                "name",
                f'{_show(value)} is not a valid job name: use letters, digits, ".", "_", "-"',
            )
        if len(value) > 64:
            self.fail("name", f"is {len(value)} characters long; at most 64")
        return value

    # -- paths ------------------------------------------------------------------------

    def check_pattern(self, pattern: str, key: str, what: str) -> None:
        problem = _path_problem(pattern, what)
        if problem:
            self.fail(key, f"{_show(pattern)} {problem}")

    def glob(self, pattern: str) -> list[str]:
        """Matches as normalised posix paths relative to the job folder, sorted."""
        hits = glob.glob(pattern, root_dir=self.base, recursive=True)
        return sorted({PurePath(os.path.normpath(h)).as_posix() for h in hits})

    def inside(self, rel: str, key: str) -> Path:
        """The absolute path of ``rel``, refused if it resolves outside the job folder."""
        full = self.base / rel
        try:
            real = full.resolve()
        except (OSError, RuntimeError) as e:
            self.fail(key, f"{_show(rel)}: cannot resolve the path ({e})")
        if not real.is_relative_to(self.real_base):
            self.fail(key, f"{_show(rel)} leads outside the job file's folder (symbolic link)")
        return full

    def walk(self, rel_dir: str) -> Iterator[str]:
        """Every file under a folder, following links inside the job folder, each once."""
        seen: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(self.base / rel_dir, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in seen:  # a link back up the tree
                dirnames.clear()
                continue
            seen.add(real)
            dirnames.sort()
            for f in sorted(filenames):
                yield Path(dirpath, f).relative_to(self.base).as_posix()

    def files(self, value: object) -> tuple[ShippedFile, ...]:
        what = "shipped files must be inside the job file's folder"
        found: dict[str, Path] = {}
        for pattern in self.str_list(value, "files", '["count.py", "lib"]'):
            self.check_pattern(pattern, "files", what)
            matches = self.glob(pattern)
            if not matches:
                self.no_match("files", pattern)
            shipped: list[str] = []
            for rel in matches:
                full = self.inside(rel, "files")
                shipped.extend(self.walk(rel) if full.is_dir() else [rel])
            if not shipped:
                self.fail("files", f"{_show(pattern)} matches only empty folders")
            for rel in sorted(shipped):
                self.storable(rel, "files")
                found.setdefault(rel, self.regular_file(rel, "files"))
        return tuple(ShippedFile(name, path) for name, path in found.items())

    def storable(self, rel: str, key: str) -> None:
        problem = _name_problem(rel)
        if problem:
            self.fail(key, problem)

    def regular_file(self, rel: str, key: str) -> Path:
        full = self.inside(rel, key)
        if not full.is_file():
            self.fail(key, f"{_show(rel)} is not a regular file (a broken link, a device?)")
        return full

    def no_match(self, key: str, pattern: str) -> NoReturn:
        if _is_magic(pattern):
            self.fail(key, f"{_show(pattern)} matches no file")
        self.fail(key, f"{_show(pattern)}: no such file")

    def inputs(self, value: object) -> tuple[TaskSpec, ...]:
        what = "inputs must be inside the job file's folder"
        found: dict[str, Path] = {}
        for pattern in self.str_list(value, "map.inputs", '["data/*.txt"]'):
            self.check_pattern(pattern, "map.inputs", what)
            files = [rel for rel in self.glob(pattern) if not (self.base / rel).is_dir()]
            if not files:
                self.no_match("map.inputs", pattern)
            for rel in files:
                self.storable(rel, "map.inputs")
                found[rel] = self.regular_file(rel, "map.inputs")
            self.check_count("map.inputs", len(found))
        if not found:
            self.fail("map.inputs", "is empty: a job needs at least one task")
        names = sorted(found)
        ids = _task_ids(len(names))
        return tuple(
            TaskSpec(id=i, input=n, input_path=found[n]) for i, n in zip(ids, names, strict=True)
        )

    # -- items ------------------------------------------------------------------------

    def items(self, value: object) -> tuple[TaskSpec, ...]:
        key = "map.items"
        if isinstance(value, dict):
            values = self.range_items(value)
        elif isinstance(value, list):
            if not value:
                self.fail(key, "is empty: a job needs at least one task")
            self.check_count(key, len(value))
            values = [self.item(v) for v in value]
        else:
            self.fail(
                key, "must be a list of strings or numbers, or a range: items = {range = [0, 10]}"
            )
        return tuple(
            TaskSpec(id=i, item=v) for i, v in zip(_task_ids(len(values)), values, strict=True)
        )

    def item(self, value: object) -> str:
        if isinstance(value, str):
            if "\x00" in value:
                self.fail("map.items", f"{_show(value)} contains a NUL character")
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, float) and math.isfinite(value):
            return repr(value)
        self.fail("map.items", f"{_show(value)}: items must be strings or numbers")

    def range_items(self, table: dict[str, Any]) -> list[str]:
        self.known_keys(table, "map.items", frozenset({"range"}))
        key = "map.items.range"
        bounds = table.get("range")
        if not (
            isinstance(bounds, list)
            and len(bounds) in (2, 3)
            and all(isinstance(b, int) and not isinstance(b, bool) for b in bounds)
        ):
            self.fail(key, "must be [start, stop] or [start, stop, step], whole numbers")
        if len(bounds) == 3 and bounds[2] == 0:
            self.fail(key, "step must not be 0")
        start, stop, step = (*bounds, 1)[:3]
        # len(range) overflows past 2**63; TOML integers may reach it
        if step > 0:
            count = max(0, (stop - start + step - 1) // step)
        else:
            count = max(0, (start - stop - step - 1) // -step)
        if count == 0:
            self.fail(key, f"{_show(bounds)} is empty (Python range semantics: stop is excluded)")
        self.check_count(key, count)
        return [str(n) for n in range(start, stop, step)]

    def check_count(self, key: str, count: int) -> None:
        if count > MAX_TASKS:
            self.fail(
                key,
                f"{count} tasks; at most {MAX_TASKS} per job (pack several items per task)",
            )

    # -- stages -----------------------------------------------------------------------

    def stage(
        self, t: dict[str, Any], key: str, allowed: set[str], source: str | None
    ) -> StageSpec:
        if "command" not in t:
            self.fail(
                f"{key}.command",
                'missing: give the argv list to run, e.g. command = ["python3", "run.py"]',
            )
        command = self.command(t["command"], f"{key}.command", allowed, source)
        outputs = self.str_list(t.get("outputs", []), f"{key}.outputs", '["counts.json"]')
        for pattern in outputs:
            self.check_pattern(
                pattern,
                f"{key}.outputs",
                "outputs are globs relative to the task's working directory",
            )
            try:  # what every worker checks in job.json
                check_output_glob(pattern, what="glob")
            except SecurityError as exc:
                self.fail(f"{key}.outputs", str(exc))
        timeout = None
        if "timeout" in t:
            timeout = parse_duration(t["timeout"], key=f"{key}.timeout", path=self.shown)
        attempts = t.get("max_attempts", DEFAULT_MAX_ATTEMPTS)
        if (
            isinstance(attempts, bool)
            or not isinstance(attempts, int)
            or not (1 <= attempts <= MAX_ATTEMPTS)
        ):
            self.fail(
                f"{key}.max_attempts",
                f"must be a whole number from 1 to {MAX_ATTEMPTS}, not {_show(attempts)}",
            )
        return StageSpec(
            command=command,
            outputs=tuple(outputs),
            timeout=timeout,
            max_attempts=attempts,
            env=self.env(t.get("env", {}), f"{key}.env"),
        )

    def command(
        self, value: object, key: str, allowed: set[str], source: str | None
    ) -> tuple[str, ...]:
        if isinstance(value, str):
            self.fail(
                key,
                "must be a list of strings, not one string: drivemr never runs a shell; "
                f"write e.g. {_show(value.split() or ['program'])}",
            )
        if not isinstance(value, list):
            self.fail(
                key, f'must be a list of strings, e.g. ["python3", "run.py"], not {_show(value)}'
            )
        if not value:
            self.fail(key, "is empty: give at least the program to run")
        for n, arg in enumerate(value, 1):
            if not isinstance(arg, str):
                self.fail(key, f"element {n} is {_show(arg)}, not a string: write it in quotes")
            if "\x00" in arg:
                self.fail(key, f"element {n} contains a NUL character")
            for m in _BRACES.finditer(arg):
                name = m.group(1)
                if m.group(0) in ("{{", "}}"):
                    continue
                if name is None:
                    self.fail(
                        key,
                        f"unmatched {m.group(0)!r} in {_show(arg)}; write '{{{{' or '}}}}' "
                        "for a literal brace",
                    )
                if name not in PLACEHOLDERS:
                    known = ", ".join(f"{{{p}}}" for p in sorted(PLACEHOLDERS))
                    self.fail(
                        key, f"unknown placeholder {{{name}}} in {_show(arg)} (known: {known})"
                    )
                if name not in allowed:
                    self.fail(key, _misplaced(name, source))
                if name == "files":
                    self.check_shipped(key, arg, arg[m.end() :])
        if not value[0]:
            self.fail(key, "the program (element 1) is empty")
        return tuple(value)

    def check_shipped(self, key: str, arg: str, after: str) -> None:
        """Catch "{files}/merge.py" when merge.py is not shipped: here, not on every worker."""
        m = _FILES_TAIL.match(after)
        if not m or "{" in m.group(1):
            return
        name = m.group(1).rstrip("/.")
        if (
            name
            and name not in self.shipped
            and not any(s.startswith(name + "/") for s in self.shipped)
        ):
            self.fail(
                key, f'{_show(arg)}: "{name}" is not among the shipped files (add it to files)'
            )

    def env(self, value: object, key: str) -> dict[str, str]:
        if not isinstance(value, dict):
            self.fail(key, 'must be a table of strings, e.g. env = {LANG = "C"}')
        env: dict[str, str] = {}
        for name, v in value.items():
            if not _ENV_NAME.fullmatch(name):
                self.fail(f"{key}.{name}", "is not a valid environment variable name")
            if isinstance(v, bool) or not isinstance(v, (str, int, float)):
                self.fail(f"{key}.{name}", f"must be a string, not {_show(v)}")
            text = str(v)
            if "\x00" in text:
                self.fail(f"{key}.{name}", "contains a NUL character")
            env[name] = text
        return env


def _misplaced(name: str, source: str | None) -> str:
    """Why a known placeholder cannot be used where it is."""
    if source is None:
        return f"{{{name}}} is not available in [reduce] (use {{files}} or {{results}})"
    if name == "results":
        return "{results} is only available in [reduce]"
    if name == "input":
        return "{input} needs map.inputs; these tasks come from map.items: use {item}"
    return "{item} needs map.items; these tasks come from map.inputs: use {input}"


def _task_ids(n: int) -> list[str]:
    width = max(4, len(str(n - 1)))
    return [f"t{i:0{width}d}" for i in range(n)]
