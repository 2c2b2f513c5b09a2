"""Following a job live, for ``submit --wait`` and ``status JOB --watch``.

On a terminal: a rich progress bar (done / running / failed / pending, rate, ETA). Anywhere
else (CI logs, pipes, files): one plain line each time the counts change, so a log stays
readable and short. Either way the end is a summary and a documented exit code.
"""

from __future__ import annotations

import collections
import shlex
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from drivemr import config as cfg
from drivemr.durations import format_duration
from drivemr.errors import AuthError, DrivemrError, WaitTimeout
from drivemr.protocol import REDUCE, Job
from drivemr.status import JobStatus, TaskState, job_status
from drivemr.stores.base import FileInfo, Store

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CANCELLED = 3
TERMINAL = ("done", "failed", "cancelled")
SHOWN_FAILURES = 20
"""Failed tasks listed (with why) at the end of a failed job; the rest are counted."""
MAX_STORE_ERRORS = 10
"""Consecutive failed polls tolerated (a network blip must not end a long wait)."""


class Rate:
    """Finished tasks per second over a sliding window, and the ETA it implies."""

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self.samples: collections.deque[tuple[float, int]] = collections.deque()

    def add(self, now: float, finished: int) -> None:
        self.samples.append((now, finished))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window:
            self.samples.popleft()

    def per_second(self) -> float | None:
        if len(self.samples) < 2:
            return None
        (t0, f0), (t1, f1) = self.samples[0], self.samples[-1]
        if t1 - t0 < 0.5 or f1 <= f0:
            return None
        return (f1 - f0) / (t1 - t0)

    def eta(self, remaining: int) -> float | None:
        rate = self.per_second()
        if not remaining:
            return 0.0
        return remaining / rate if rate else None


def fmt_rate(rate: float | None) -> str:
    if rate is None:
        return "-/s"
    return f"{rate:.1f}/s" if rate >= 1 else f"{rate * 60:.1f}/min"


def fmt_eta(eta: float | None) -> str:
    if eta is None:
        return "ETA ?"
    return f"ETA {format_duration(eta)}"


def _totals(st: JobStatus) -> tuple[int, int]:
    """(finished, total) counting the reduce as one more task."""
    c = st.counts
    finished = c["done"] + c["failed"]
    total = len(st.tasks)
    if st.reduce is not None:
        total += 1
        finished += st.reduce.state in ("done", "failed")
    return finished, total


LINE_WIDTH = 80
"""The progress line fits a classic terminal (and a CI log viewer) without wrapping."""
_SHORT = {"running": "run", "pending": "todo", "failed": "fail", "cancelled": "cancel"}


def _parts(st: JobStatus, *, short: bool) -> list[str]:
    c = st.counts

    def word(state: str) -> str:
        return _SHORT.get(state, state) if short else state

    parts = [f"{c['done']}/{len(st.tasks)} done"]
    for state in ("running", "failed", "pending", "lost", "cancelled"):
        if c.get(state) or state in ("running", "failed", "pending"):
            parts.append(f"{c.get(state, 0)} {word(state)}")
    if st.reduce is not None:
        parts.append(f"reduce {st.reduce.state}")
    return parts


def counts_line(st: JobStatus, tail: list[str] | None = None, width: int = LINE_WIDTH) -> str:
    """The task counts (and ``tail``: rate, ETA) in at most ``width`` characters: the words
    get shorter first, then the least useful parts go."""
    tail = tail or []
    for short in (False, True):
        line = ", ".join(_parts(st, short=short) + tail)
        if len(line) <= width:
            return line
    parts = _parts(st, short=True) + tail
    while len(parts) > 1 and len(", ".join(parts)) > width:
        parts.pop(len(parts) - 1 - len(tail) if len(parts) > 1 + len(tail) else -1)
    line = ", ".join(parts)
    return line if len(line) <= width else line[: width - 1] + "…"


def _isatty(out: Any) -> bool:
    try:
        return bool(out.isatty())
    except (AttributeError, ValueError):
        return False


class _Plain:
    """A line per change of the counts: readable in CI logs, never a wall of repeats."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.last = ""

    def __enter__(self) -> _Plain:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, st: JobStatus, rate: Rate) -> None:
        key = counts_line(st, width=10**6)
        if key == self.last:
            return
        if not self.last:
            self.note(f"job {st.job}:")  # once: the id can be longer than a line
        self.last = key
        finished, total = _totals(st)
        tail = []
        if st.state not in TERMINAL and finished:
            tail = [fmt_rate(rate.per_second()), fmt_eta(rate.eta(total - finished))]
        self.note(counts_line(st, tail))

    def note(self, text: str) -> None:
        print(text, file=self.out, flush=True)


class _Bar:
    """A rich progress bar with the counts on a second line (fits an 80-column terminal)."""

    def __init__(self, out: IO[str], job_id: str) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=out, highlight=False)
        self.job_id = job_id
        self.live = Live(console=self.console, auto_refresh=False, transient=False)

    def __enter__(self) -> _Bar:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.refresh()
        self.live.stop()

    def update(self, st: JobStatus, rate: Rate) -> None:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        c = st.counts
        finished, total = _totals(st)
        count = f"{finished}/{total}"
        bar_width = 30
        # job id, bar and count on one line of LINE_WIDTH columns: a long id is cut short.
        id_room = max(8, LINE_WIDTH - bar_width - len(count) - 2)
        head = Table.grid(padding=(0, 1))
        head.add_row(
            Text(self.job_id, style="bold", no_wrap=True, overflow="ellipsis"),
            ProgressBar(
                total=max(total, 1),
                completed=finished,
                width=bar_width,
                complete_style="cyan",
                finished_style="red" if c["failed"] else "green",
            ),
            Text(count, style="green", no_wrap=True),
        )
        head.columns[0].max_width = id_room
        tail = [fmt_rate(rate.per_second()), fmt_eta(rate.eta(total - finished))]
        detail = Text("  " + counts_line(st, tail, LINE_WIDTH - 2), no_wrap=True)
        detail.highlight_words([f"{c['done']}/{len(st.tasks)} done"], "green")
        if c["failed"]:
            detail.highlight_regex(r"\d+ fail(ed)?", "red")
        detail.highlight_regex(r"\d+ run(ning)?", "cyan")
        self.live.update(Group(head, detail), refresh=True)

    def note(self, text: str) -> None:
        self.console.print(text, markup=False)


IDLE_NOTE_AFTER = 15.0
"""Seconds of waiting before checking that some live worker serves the store (at least
three polls)."""


def nobody_working(store: Store, st: JobStatus, lease: float) -> str:
    """Why nothing will run this job, if that is so: no live worker, or every live worker
    rejected it. Empty when some live worker may still run it."""
    from drivemr.status import live_workers

    alive = live_workers(store, lease=lease)
    if not alive:
        return (
            f"no live worker serves {store.url}: nothing runs until one starts; start one "
            f"with: drivemr worker --store {shlex.quote(store.url)}"
        )
    rejecting = [w for w in alive if w in st.rejected_by]
    if len(rejecting) < len(alive):
        return ""
    reasons = "; ".join(f"{w}: {st.rejected_by[w]}" for w in rejecting)
    return (
        f"every live worker rejected job {st.job} ({reasons}). If they do not trust your "
        "signing key: run `drivemr keys show` here, then `drivemr keys trust KEY --name NAME` "
        "on each worker's PC with the line it printed, then restart those workers"
    )


def wait_for_end(
    store: Store,
    folder: FileInfo,
    job: Job,
    *,
    poll: float = 0.5,
    idle_after: float | None = None,
    timeout: float | None = None,
    on_update: Callable[[JobStatus], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
    on_retry: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> JobStatus:
    """Poll a job's status until it ends (done, failed or cancelled) and return it.

    The one wait loop: ``submit --wait``, ``status --watch`` and the Python API's
    ``Job.wait`` all run it. ``on_update`` sees every status read; after ``idle_after``
    seconds (default: 15 s, at least three polls) and as often again, the loop checks that
    some live worker can run the job and passes ``on_notice`` the reason once when none can
    (an exception raised there ends the wait). A store error is retried up to
    MAX_STORE_ERRORS times in a row (``on_retry`` is told), an expired sign-in never.
    ``timeout`` (seconds) raises :class:`~drivemr.errors.WaitTimeout`."""
    lease = float(cfg.value("lease"))
    errors = 0
    started = clock()
    check_every = max(3 * poll, IDLE_NOTE_AFTER) if idle_after is None else idle_after
    next_check = started + check_every
    said = ""
    while True:
        try:
            st = job_status(store, folder, job, lease=lease)
            errors = 0
        except AuthError:
            raise
        except DrivemrError as exc:
            errors += 1
            if errors > MAX_STORE_ERRORS:
                raise
            if on_retry is not None:
                on_retry(f"store error (retrying): {exc}")
            _check_timeout(job, started, timeout, clock)
            sleep(poll * min(2**errors, 20))
            continue
        if on_update is not None:
            on_update(st)
        if st.state in TERMINAL:
            return st
        _check_timeout(job, started, timeout, clock)
        if clock() >= next_check:
            next_check = clock() + check_every
            try:
                note = nobody_working(store, st, lease)
            except AuthError:
                raise
            except DrivemrError:
                note = said  # judged again at the next check
            if note and note != said and on_notice is not None:
                on_notice(note)
            said = note
        sleep(poll)


def _check_timeout(
    job: Job, started: float, timeout: float | None, clock: Callable[[], float]
) -> None:
    if timeout is not None and clock() - started >= timeout:
        raise WaitTimeout(f"job {job.id} did not end within {format_duration(timeout)}")


def display_for(out: IO[str], job_id: str) -> _Bar | _Plain:
    """A progress bar on a terminal, plain lines anywhere else."""
    return _Bar(out, job_id) if _isatty(out) else _Plain(out)


def follow(
    store: Store,
    job_id: str,
    *,
    poll: float = 0.5,
    out: IO[str] | None = None,
    idle_after: float | None = None,
) -> int:
    """Show a job's progress until it ends; 0 all succeeded, 1 failed, 3 cancelled.

    After ``idle_after`` seconds (default: 15 s, at least three polls) and as often again,
    check that some live worker can run the job, and say so once when none can."""
    from drivemr.api import Client

    stream: IO[str] = out if out is not None else sys.stderr
    handle = Client(store).job(job_id)
    st = handle.wait(progress=True, out=stream, poll=poll, idle_after=idle_after)
    return finish(store, st, stream)


def finish(store: Store, st: JobStatus, out: IO[str]) -> int:
    """Print how a job ended (why its first tasks failed too) and return its exit code."""
    reasons: dict[str, str] = {}
    if st.state == "failed":
        reasons = _failure_reasons(store, st, float(cfg.value("lease")))
    return summary(st, out, reasons)


def _failed(st: JobStatus) -> list[TaskState]:
    """The failed tasks, by task id, the reduce last."""
    failed = sorted((t for t in st.tasks if t.state == "failed"), key=lambda t: t.task)
    if st.reduce is not None and st.reduce.state == "failed":
        failed.append(st.reduce)
    return failed


def _failure_reasons(store: Store, st: JobStatus, lease: float) -> dict[str, str]:
    """Why the first SHOWN_FAILURES failed tasks failed (their result manifests); a store
    error leaves them out rather than hiding how the job ended."""
    from drivemr.report import failure_reasons

    try:
        return failure_reasons(
            store, st.job, [t.task for t in _failed(st)[:SHOWN_FAILURES]], lease=lease
        )
    except AuthError:
        raise
    except DrivemrError:
        return {}


def summary(st: JobStatus, out: IO[str], reasons: dict[str, str] | None = None) -> int:
    """Print how the job ended and return its exit code; ``reasons`` says why tasks failed
    (else their exit codes are all that is shown)."""

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    if st.state == "done":
        red = " and the reduce" if st.reduce else ""
        say(f"job {st.job} done: {len(st.tasks)} {st.unit}(s){red} succeeded")
        return EXIT_OK
    if st.state == "cancelled":
        say(f"job {st.job} was cancelled")
        return EXIT_CANCELLED
    failed = _failed(st)
    total = len(st.tasks) + (st.reduce is not None)
    say(f"job {st.job} failed: {len(failed)} of {total} {st.unit}(s) failed")
    for t in failed[:SHOWN_FAILURES]:
        why = (reasons or {}).get(t.task) or (
            "failed" if t.exit_code is None else f"exit code {t.exit_code}"
        )
        label = f"  ({t.item})" if t.item else ""
        say(f"  {t.task:8} {why}{label}")
    if len(failed) > SHOWN_FAILURES:
        say(f"  ... and {len(failed) - SHOWN_FAILURES} more")
    first = failed[0].task if failed else REDUCE
    from drivemr.cli import suggest

    say(
        f"see why: {suggest(f'drivemr logs {st.job} {first}')}"
        f"   (every task: {suggest(f'drivemr status {st.job}')})"
    )
    return EXIT_FAILED
