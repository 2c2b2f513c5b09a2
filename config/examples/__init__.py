"""Example jobs shipped with drivemr (installed as the ``drivemr.examples`` package)."""

from __future__ import annotations

from pathlib import Path


def example_dir(name: str) -> Path:
    """The folder of a bundled example job, e.g. ``example_dir("wordcount") / "job.toml"``."""
    path = Path(__file__).parent / name
    if not (path / "job.toml").is_file():
        raise FileNotFoundError(f"no bundled example named {name!r}")
    return path
