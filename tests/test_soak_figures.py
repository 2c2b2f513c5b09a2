"""The soak's arithmetic (drivemr.testing.soak): slopes, halves and worker lives."""

from __future__ import annotations

import pytest

from drivemr.testing.soak import Sample, slope, trends


def test_slope_is_least_squares() -> None:
    assert slope([0, 1, 2, 3], [1, 3, 5, 7]) == pytest.approx(2.0)
    assert slope([1, 1, 1], [1, 2, 3]) == 0.0
    assert slope([0], [5]) == 0.0


def _samples(worker: str, pid: int, values: list[float], start: float = 0.0) -> list[Sample]:
    return [
        Sample(start + 10 * i, 5 * i, worker, pid, 10 * i, v, 10, 4, 1.0, float(i))
        for i, v in enumerate(values)
    ]


def test_trends_leave_out_the_warm_up_and_split_lives() -> None:
    flat = _samples("w0", 1, [10, 50, 50, 51, 50, 51, 50, 51, 50, 51])
    growing = _samples("w1", 2, [10, 20, 30, 40, 50, 60, 70, 80])
    short = _samples("w1", 3, [1, 2])  # too few samples after warm-up: no trend
    got = {(t.worker, t.pid, t.resource): t for t in trends(flat + growing + short, warmup=10)}
    rss = got[("w0", 1, "rss_mb")]
    assert rss.samples == 9 and rss.first == 50 and rss.second == 51
    assert abs(rss.per_hour) < 0.1 * 3600  # flat: under 0.1 MB per second of samples
    up = got[("w1", 2, "rss_mb")]
    assert up.per_hour == pytest.approx(3600.0)  # 10 MB per 10 s
    assert up.per_1000_jobs == pytest.approx(2000.0)  # 10 MB per 5 jobs
    assert got[("w0", 1, "threads")].per_hour == 0.0
    assert not any(pid == 3 for _, pid, _ in got)
