"""What a validated job file is: the plain data :func:`drivemr.spec.load_job` returns.

Kept apart from the checks that build it so that everything downstream (submit, the
job document, archives) depends on these few frozen dataclasses only, not on TOML or
on the validation rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

MAX_TASKS = 100_000
"""More tasks than this is almost surely a mistake, and job.json would grow past reason."""
MAX_ATTEMPTS = 100
DEFAULT_MAX_ATTEMPTS = 3


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
    items_per_task: int | None = None
    """Items per task (claim and commit), from the job file; None: chosen at submit."""
