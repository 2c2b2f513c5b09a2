"""Checking a job file, key by key, into a :class:`~drivemr.spec_data.JobSpec`.

Every key is validated where it is read, and the first problem is raised as one
:class:`~drivemr.errors.JobSpecError` naming the file, the dotted key and the fix; paths
and globs are resolved against the job file's folder and refused if they leave it.
"""

from __future__ import annotations

import difflib
import glob
import math
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePath
from typing import Any, NoReturn

from drivemr.errors import JobSpecError, SecurityError
from drivemr.safepaths import check_output_glob
from drivemr.spec_data import (
    DEFAULT_MAX_ATTEMPTS,
    MAX_ATTEMPTS,
    MAX_TASKS,
    JobSpec,
    ShippedFile,
    StageSpec,
    TaskSpec,
)
from drivemr.spec_values import (
    _BRACES,
    PLACEHOLDERS,
    _is_magic,
    _name_problem,
    _path_problem,
    _show,
    parse_duration,
)

_TOP_KEYS = frozenset({"name", "files", "map", "reduce"})
_MAP_KEYS = frozenset(
    {"command", "inputs", "items", "outputs", "timeout", "max_attempts", "env", "items_per_task"}
)
_REDUCE_KEYS = frozenset({"command", "outputs", "timeout", "max_attempts", "env"})
_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FILES_TAIL = re.compile(r"/([\w./-]+)")


class JobFileChecker:
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
        per_task = self.items_per_task(m["items_per_task"]) if "items_per_task" in m else None
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
            items_per_task=per_task,
        )

    def items_per_task(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TASKS:
            self.fail(
                "map.items_per_task",
                f"must be a whole number from 1 to {MAX_TASKS}, not {_show(value)} "
                "(1 runs one item per task; leave it out to let drivemr choose)",
            )
        return value

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
