"""The promises the repository makes about itself: CI runs the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_quick_start_has_the_two_commands() -> None:
    demo, tests = quick_start_commands()
    assert demo.endswith("drivemr demo")
    assert '".[test]"' in tests and tests.endswith("python -m pytest")


def test_ci_runs_the_readme_test_command_exactly() -> None:
    _, tests = quick_start_commands()
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert tests in ci_lines


def test_every_setting_is_documented() -> None:
    from drivemr.config import SETTINGS

    documented = (ROOT / "config" / "drivemr.toml").read_text(encoding="utf-8")
    for name in SETTINGS:
        assert re.search(rf"^#?\s*{name}\s*=", documented, re.M), name
