"""The store contract against MemoryStore, plus what only an in-memory store can show."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from store_contract import StoreContract

from drivemr.errors import AlreadyExists, NotFound
from drivemr.testing import MemoryStore


class FixedClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


class TestMemoryStoreContract(StoreContract):
    @pytest.fixture
    def store(self) -> MemoryStore:
        return MemoryStore()

    @pytest.fixture
    def store_factory(self, store: MemoryStore) -> Callable[[], MemoryStore]:
        return lambda: store  # one object is the shared folder of every client in the process

    def test_exclusive_create_race_across_processes(self, store: MemoryStore) -> None:  # type: ignore[override]
        """In-process only: threads race instead of processes, one winner per id."""
        (folder,) = store.mint_ids(1)
        store.create(store.root_id, "races", folder, folder=True)
        ids = store.mint_ids(self.race_count)
        won: list[list[str]] = [[] for _ in range(4)]
        start = threading.Barrier(4)

        def contend(who: int) -> None:
            start.wait()
            for fid in ids:
                try:
                    store.create(folder, f"claim-by-{who}", fid, str(who).encode())
                    won[who].append(fid)
                except AlreadyExists:
                    pass

        threads = [threading.Thread(target=contend, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(fid for w in won for fid in w) == sorted(ids)
        assert {i.id for i in store.list(folder)} == set(ids)


def test_timestamps_come_from_the_store_clock() -> None:
    clock = FixedClock(1000.0)
    store = MemoryStore(clock)
    (fid,) = store.mint_ids(1)
    assert store.create(store.root_id, "hb", fid, b"1").modified == 1000.0
    clock.now = 1300.0
    assert store.update(fid, b"2").modified == 1300.0
    assert store.get(fid).modified == 1300.0 and store.get(fid).created == 1000.0


def test_change_feed_names_the_folder_of_an_update_and_a_delete() -> None:
    store = MemoryStore()
    folder, fid = store.mint_ids(2)
    store.create(store.root_id, "f", folder, folder=True)
    store.create(folder, "x", fid, b"1")
    cursor = store.changes_cursor()
    assert store.poll_changes(cursor).folders == frozenset()
    cursor = store.changes_cursor()
    store.update(fid, b"2")
    changes = store.poll_changes(cursor)
    assert changes.folders == frozenset({folder})
    store.delete(fid)
    assert store.poll_changes(changes.cursor).folders == frozenset({folder})


def test_deleting_a_folder_removes_what_is_under_it() -> None:
    store = MemoryStore()
    outer, inner, fid = store.mint_ids(3)
    store.create(store.root_id, "o", outer, folder=True)
    store.create(outer, "i", inner, folder=True)
    store.create(inner, "x", fid, b"1")
    store.delete(outer)
    for gone in (outer, inner, fid):
        with pytest.raises(NotFound):
            store.get(gone)
