"""Failing fast on an unreachable store (issue 18.4): retries are shown as they happen once
they make someone wait, and an endpoint that never answered is given up on after the
start-up budget, not the whole budget meant for a 503 mid-run. Clocks and sleeps are
injected (nothing waits), except in the end-to-end test, which counts attempts."""

from __future__ import annotations

import errno
import logging
import os
import socket
import subprocess
import sys
from typing import Any

import pytest
from helpers import drivemr_cmd

from drivemr.errors import TransientStoreError
from drivemr.stores.retry import RetryPolicy, is_unreachable


class FakeTime:
    """A clock that the injected sleep advances."""

    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def clock(self) -> float:
        return self.now


def drive_like(t: FakeTime, **kw: Any) -> RetryPolicy:
    """The Drive store's budget: 8 attempts, 1 s doubling to 32 s, 300 s at most."""
    kw.setdefault("rand", lambda: 1.0)
    return RetryPolicy(
        max_attempts=8, max_delay=300.0, backoff_base=1.0, backoff_max=32.0,
        sleep=t.sleep, clock=t.clock, **kw,
    )  # fmt: skip


def refused(what: str = "list root") -> TransientStoreError:
    try:
        raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    except ConnectionRefusedError as exc:
        try:
            raise TransientStoreError(f"{what}: network error: {exc!r}") from exc
        except TransientStoreError as translated:
            return translated


def always(exc_factory: Any) -> tuple[Any, list[int]]:
    calls = [0]

    def attempt() -> Any:
        calls[0] += 1
        raise exc_factory()

    return attempt, calls


def test_what_counts_as_unreachable() -> None:
    assert is_unreachable(refused())
    assert is_unreachable(socket.gaierror(-2, "Name or service not known"))
    assert is_unreachable(OSError(errno.EHOSTUNREACH, "No route to host"))
    assert not is_unreachable(TransientStoreError("HTTP 503"))
    assert not is_unreachable(ConnectionResetError(errno.ECONNRESET, "reset"))
    assert not is_unreachable(TimeoutError("timed out"))


def test_refused_at_start_up_gives_up_after_the_start_up_budget() -> None:
    t = FakeTime()
    p = drive_like(t)
    attempt, calls = always(refused)
    with pytest.raises(TransientStoreError, match="Connection refused"):
        p.run(attempt)
    assert t.now == pytest.approx(p.startup_max_delay)  # 1 + 2 + 4 + (8 capped to 1)
    assert calls[0] == 5


def test_a_503_at_start_up_and_a_refusal_mid_run_get_the_full_budget() -> None:
    t = FakeTime()
    p = drive_like(t)
    attempt, calls = always(lambda: TransientStoreError("HTTP 503"))
    with pytest.raises(TransientStoreError):
        p.run(attempt)
    assert calls[0] == 8 and t.now == 1 + 2 + 4 + 8 + 16 + 32 + 32

    t2 = FakeTime()
    p2 = drive_like(t2)
    assert p2.run(lambda: "answered") == "answered"
    attempt, calls = always(refused)
    with pytest.raises(TransientStoreError):
        p2.run(attempt)
    assert calls[0] == 8  # once the store answered, a refusal is an outage like any other


def test_retries_are_shown_once_they_make_someone_wait(caplog: pytest.LogCaptureFixture) -> None:
    t = FakeTime()
    p = drive_like(t, notice_after=3.0)
    caplog.set_level(logging.DEBUG, logger="drivemr.stores.retry")
    attempt, _ = always(refused)
    with pytest.raises(TransientStoreError):
        p.run(attempt)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    # waits 1, 2, 4, 1: the total reaches 3 s with the second retry's wait
    assert [level for level, _ in lines] == [logging.DEBUG] + [logging.WARNING] * 3
    assert "retrying in 2 s (attempt 3 of 8, 1 s so far)" in lines[1][1]
    assert all("Connection refused" in text for _, text in lines)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(sys.platform == "win32", reason="refusal timing differs on Windows")
def test_status_on_an_unreachable_drive_endpoint_fails_fast_and_says_so() -> None:
    env = {**os.environ, "DRIVEMR_DRIVE_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"}
    proc = subprocess.run(
        drivemr_cmd("status", "--store", "drive://abc"),
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "Connection refused" in proc.stderr.splitlines()[-1], proc.stderr
    shown = [
        line for line in proc.stderr.splitlines() if "WARNING" in line and "retrying in" in line
    ]
    assert shown, proc.stderr  # the retries were shown as they happened
    assert "attempt 8 of 8" not in proc.stderr  # gave up before the mid-run budget
