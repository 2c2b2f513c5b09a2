"""The value rules of job files that are used beyond the file itself.

Durations (``"1h30m"``), placeholders and their expansion (``{files}``, ``{{``) and the
flat name a shipped file gets in the store are read again by workers, the command line
and rounds; they live here, apart from the loader, so each has one definition and the
same messages wherever it is applied.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath, PureWindowsPath
from typing import NoReturn

from drivemr.errors import JobSpecError, SecurityError
from drivemr.safepaths import check_relative_path

PLACEHOLDERS = frozenset({"input", "item", "task", "files", "results"})
MAX_DURATION = 365 * 86400.0
"""A longer timeout is a typo; leaving ``timeout`` out means no limit."""
_BRACES = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|d|h|m|s))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_DURATION_HINT = 'use e.g. "90s", "10m", "1h30m", "2.5s", "500ms" or a number of seconds'


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
