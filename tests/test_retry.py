"""The one retry policy (drivemr.stores.retry): what is retried, how long it waits, how
often it tries, and the recognition of our own create after a lost answer. Sleeps are
injected and recorded: nothing here waits."""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drivemr.errors import AlreadyExists, NotFound, PermanentStoreError, TransientStoreError
from drivemr.stores.base import FileInfo, Store
from drivemr.stores.folder import FolderStore
from drivemr.stores.retry import (
    RetryingStore,
    RetryPolicy,
    content_digest,
    is_what_we_sent,
    parse_retry_after,
)
from drivemr.testing.chaos import FaultyStore


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def policy(sleeps: Sleeps, **kw: Any) -> RetryPolicy:
    kw.setdefault("rand", lambda: 1.0)  # the top of each jitter window
    return RetryPolicy(sleep=sleeps, **kw)


def failing(errors: list[BaseException], result: Any = "ok") -> tuple[Callable[[], Any], list[int]]:
    """An attempt that raises ``errors`` one by one, then returns ``result``."""
    calls = [0]

    def attempt() -> Any:
        calls[0] += 1
        if errors:
            raise errors.pop(0)
        return result

    return attempt, calls


# -- the policy --


def test_full_jitter_backoff_doubles_up_to_its_ceiling() -> None:
    sleeps = Sleeps()
    p = policy(sleeps, max_attempts=7, backoff_base=0.5, backoff_max=3.0)
    attempt, calls = failing([TransientStoreError("x") for _ in range(6)])
    assert p.run(attempt) == "ok"
    assert calls[0] == 7
    assert sleeps.calls == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    low = RetryPolicy(rand=lambda: 0.25, backoff_base=1.0, backoff_max=8.0)
    assert [low.wait_seconds(n) for n in (1, 2, 3, 4, 5)] == [0.25, 0.5, 1.0, 2.0, 2.0]


def test_retry_after_is_honoured_up_to_the_longest_backoff() -> None:
    sleeps = Sleeps()
    p = policy(sleeps, rand=lambda: 0.0, backoff_base=0.1, backoff_max=10.0)
    attempt, _ = failing(
        [TransientStoreError("slow down", retry_after=7.0), TransientStoreError("again", 60.0)]
    )
    assert p.run(attempt) == "ok"
    assert sleeps.calls == [7.0, 10.0]  # the hint, then the hint capped at backoff_max


def test_retry_after_values() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("") is None
    assert parse_retry_after("soon") is None
    when = email.utils.formatdate(1_000_030.0, usegmt=True)
    assert parse_retry_after(when, now=lambda: 1_000_000.0) == 30.0
    assert parse_retry_after(when, now=lambda: 2_000_000.0) == 0.0  # already past


@pytest.mark.parametrize(
    "error",
    [NotFound("gone"), AlreadyExists("taken"), PermanentStoreError("denied"), ValueError("bug")],
)
def test_only_transient_errors_are_retried(error: Exception) -> None:
    sleeps = Sleeps()
    attempt, calls = failing([error])
    with pytest.raises(type(error)):
        policy(sleeps).run(attempt)
    assert calls[0] == 1 and sleeps.calls == []


def test_attempts_are_bounded_and_the_last_error_surfaces() -> None:
    sleeps = Sleeps()
    gave_up: list[BaseException] = []
    retried: list[int] = []
    attempt, calls = failing([TransientStoreError(f"try {n}") for n in range(1, 50)])
    with pytest.raises(TransientStoreError, match="try 4"):
        policy(sleeps, max_attempts=4).run(
            attempt, on_retry=lambda n, _exc: retried.append(n), on_give_up=gave_up.append
        )
    assert calls[0] == 4 and len(sleeps.calls) == 3 and retried == [1, 2, 3]
    assert len(gave_up) == 1


# -- lost answers --


def test_is_what_we_sent_compares_name_parent_kind_and_content() -> None:
    md5, size = content_digest(b"hello", None)
    info = FileInfo("f", "a", "p", size=5, md5=md5)
    assert is_what_we_sent(info, "a", "p", False, md5, size)
    assert not is_what_we_sent(info, "b", "p", False, md5, size)
    assert not is_what_we_sent(info, "a", "q", False, md5, size)
    assert not is_what_we_sent(info, "a", "p", True, None, None)
    assert not is_what_we_sent(info, "a", "p", False, content_digest(b"hellO", None)[0], size)
    assert not is_what_we_sent(FileInfo("f", "a", "p", size=5), "a", "p", False, md5, size)
    assert is_what_we_sent(FileInfo("d", "a", "p", is_folder=True), "a", "p", True, None, None)


def retrying_faulty(path: Path, sleeps: Sleeps, **faults: Any) -> tuple[RetryingStore, FaultyStore]:
    faulty = FaultyStore(FolderStore(path, create=True), seed=1, **faults)
    return RetryingStore(faulty, policy(sleeps, max_attempts=6)), faulty


def test_a_create_whose_answer_was_lost_is_recognised_as_ours(tmp_path: Path) -> None:
    sleeps = Sleeps()
    store, faulty = retrying_faulty(tmp_path, sleeps, lost_ack_rate=1.0)
    fid, folder = faulty.inner.mint_ids(2)
    src = tmp_path / "src.bin"
    src.write_bytes(b"from a file")
    info = store.create(store.root_id, "a.txt", fid, source=src)
    made = store.create(store.root_id, "jobs", folder, folder=True)
    assert info.id == fid and info.size == len(b"from a file") and made.is_folder
    assert faulty.faults["create-ack"] == 2 and len(sleeps.calls) == 2
    assert store.retry_stats["recovered_creates"] == 2
    assert sorted(i.id for i in faulty.inner.list(store.root_id)) == sorted([fid, folder])


def test_someone_elses_file_under_our_id_stays_already_exists(tmp_path: Path) -> None:
    sleeps = Sleeps()
    store, faulty = retrying_faulty(tmp_path, sleeps)
    (fid,) = faulty.inner.mint_ids(1)
    faulty.inner.create(store.root_id, "claim", fid, b"theirs")
    faulty.fault_rate = 1.0  # our first try never reaches the store...

    def heal(seconds: float) -> None:  # ...the retry does, and meets their file
        sleeps(seconds)
        faulty.fault_rate = 0.0

    store.policy = RetryPolicy(max_attempts=6, sleep=heal)
    with pytest.raises(AlreadyExists):
        store.create(store.root_id, "claim", fid, b"mine!!")
    assert len(sleeps.calls) == 1 and store.retry_stats["recovered_creates"] == 0


def test_a_first_try_conflict_is_never_taken_for_ours(tmp_path: Path) -> None:
    store, faulty = retrying_faulty(tmp_path, Sleeps())
    (fid,) = faulty.inner.mint_ids(1)
    store.create(store.root_id, "same", fid, b"same")
    gets = faulty.calls["get"]
    with pytest.raises(AlreadyExists):
        store.create(store.root_id, "same", fid, b"same")  # identical, but not a retry
    assert faulty.calls["get"] == gets  # nothing was looked up


# -- the wrapper --


def test_the_wrapper_counts_and_reports_attempts(tmp_path: Path) -> None:
    sleeps = Sleeps()
    seen: list[tuple[str, int]] = []
    faulty = FaultyStore(FolderStore(tmp_path, create=True), fault_rate=0.5, seed=3)
    store: Store = RetryingStore(
        faulty, policy(sleeps, max_attempts=30), observe=lambda what, n: seen.append((what, n))
    )
    assert isinstance(store, RetryingStore)
    ids = store.mint_ids(20)
    for n, fid in enumerate(ids):
        store.create(store.root_id, f"f{n}", fid, str(n).encode())
    assert sorted(i.name for i in store.list(store.root_id)) == sorted(f"f{n}" for n in range(20))
    stats = store.retry_stats
    assert stats["calls"] == len(seen) == 22
    assert stats["attempts"] == sum(n for _, n in seen) == sum(faulty.calls.values())
    assert stats["retries"] == sum(faulty.faults.values()) == len(sleeps.calls) > 5
    assert stats["gave_up"] == 0 and max(n for _, n in seen) <= 30
