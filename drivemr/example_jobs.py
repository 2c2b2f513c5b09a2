"""Where the bundled example jobs are.

Installed, they are the package ``drivemr.examples`` (built from ``config/examples``); in a
source checkout (tests run from the repository root import drivemr from the tree) they are
``config/examples`` itself.
"""

from __future__ import annotations

from pathlib import Path


def example_dir(name: str) -> Path:
    """The folder of a bundled example job, e.g. ``example_dir("wordcount") / "job.toml"``."""
    here = Path(__file__).resolve().parent
    for base in (here / "examples", here.parent / "config" / "examples"):
        if (base / name / "job.toml").is_file():
            return base / name
    raise FileNotFoundError(f"no bundled example named {name!r}")
