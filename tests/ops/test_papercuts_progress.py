"""Issue 18 point 11: the progress line fits in 80 columns, with a long job id and big
counts, on a terminal (rich) and in a log (plain lines)."""

from __future__ import annotations

import io
import re

import pytest

from drivemr.progress import LINE_WIDTH, Rate, _Bar, _Plain, counts_line
from drivemr.status import JobStatus, TaskState

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _status(done: int, running: int, failed: int, pending: int, lost: int = 0) -> JobStatus:
    job = "a-rather-long-job-name-for-the-monthly-crawl-20261130-021824-38f8"
    tasks = [
        TaskState(f"t{i:05d}", state, 1, "w", None, None, f"in/{i}.txt")
        for i, state in enumerate(
            ["done"] * done
            + ["running"] * running
            + ["failed"] * failed
            + ["pending"] * pending
            + ["lost"] * lost
        )
    ]
    counts = {"pending": pending, "running": running, "done": done, "failed": failed}
    counts |= {"lost": lost, "cancelled": 0}
    reduce = TaskState("reduce", "pending", 0, None, None, None)
    return JobStatus(job, "crawl", 0.0, "running", counts, tasks, reduce, {})


def _rate() -> Rate:
    rate = Rate()
    rate.add(0.0, 0)
    rate.add(100.0, 1234)
    return rate


@pytest.mark.parametrize(
    "st", [_status(1234, 12, 3, 541), _status(12345, 120, 30, 5410, lost=2), _status(0, 0, 0, 3)]
)
def test_plain_lines_fit_80_columns(st: JobStatus) -> None:
    out = io.StringIO()
    _Plain(out).update(st, _rate())
    lines = out.getvalue().splitlines()
    assert lines[0] == f"job {st.job}:"
    assert all(len(line) <= LINE_WIDTH for line in lines), lines
    assert f"{st.counts['done']}/{len(st.tasks)} done" in lines[1]
    assert "ETA" in lines[1] or st.counts["done"] == 0


def test_the_common_case_keeps_every_fact() -> None:
    line = counts_line(_status(1234, 12, 3, 541), ["12.3/s", "ETA 0:01:23"])
    assert line == "1234/1790 done, 12 run, 3 fail, 541 todo, reduce pending, 12.3/s, ETA 0:01:23"
    assert (
        counts_line(_status(2, 1, 0, 3))
        == "2/6 done, 1 running, 0 failed, 3 pending, reduce pending"
    )


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_fits_80_columns() -> None:
    out = _Terminal()
    with _Bar(out, _status(12345, 120, 30, 5410).job) as bar:
        bar.update(_status(12345, 120, 30, 5410, lost=2), _rate())
    text = ANSI.sub("", out.getvalue()).replace("\r", "\n")
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines and all(len(line) <= LINE_WIDTH for line in lines), lines
    assert any("12345/17907 done" in line and "ETA" in line for line in lines)
    assert any("━" in line and "12375/17908" in line for line in lines)  # done + failed
