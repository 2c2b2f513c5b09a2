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
    items_per_task = 1            # items claimed and committed together (default: chosen
                                  # at submit, see docs/packing.md; 1 = one item per task)
    [reduce]                      # optional: command, outputs, timeout, max_attempts, env
    command = ["python3", "{files}/merge.py", "{results}"]

Placeholders in commands: ``{input}`` (map, with inputs), ``{item}`` (map, with items),
``{task}`` and ``{files}`` (map), ``{files}`` and ``{results}`` (reduce); ``{{`` and ``}}``
stand for literal braces. Paths never leave the job file's folder (no ``..``, no absolute
paths or drive letters, no symbolic link pointing outside), and use ``/`` as separator so
that one job file means the same on Windows and POSIX workers.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from drivemr.errors import JobSpecError
from drivemr.spec_check import JobFileChecker
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
    MAX_DURATION,
    PLACEHOLDERS,
    STORE_NAME_BYTES,
    expand,
    parse_duration,
    store_name,
)

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "MAX_ATTEMPTS",
    "MAX_DURATION",
    "MAX_TASKS",
    "PLACEHOLDERS",
    "STORE_NAME_BYTES",
    "JobSpec",
    "ShippedFile",
    "StageSpec",
    "TaskSpec",
    "expand",
    "load_job",
    "parse_duration",
    "store_name",
]


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
    return JobFileChecker(Path(path), shown).job(doc)
