"""The store contract through the chaos campaign's fault-injecting store: a folder store
whose calls fail transiently (and whose creates lose their answers) at a rate the retry
layer absorbs, under the one retry policy. Every contract item must hold all the same."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from store_contract import StoreContract

from drivemr.errors import AlreadyExists
from drivemr.stores.folder import FolderStore
from drivemr.stores.retry import RetryPolicy
from drivemr.testing.chaos import CountingRetryingStore, FaultyStore

FAULT_RATE = 0.2
LOST_ACK_RATE = 0.2
POLICY = RetryPolicy(max_attempts=12, backoff_base=0.0, sleep=lambda _s: None)
"""12 attempts at a 20% fault rate: giving up has odds of 0.2**12 per operation. No waits."""


class TestFaultyStoreContract(StoreContract):
    @pytest.fixture
    def seeds(self) -> list[int]:
        return [0]

    @pytest.fixture
    def store_factory(
        self, tmp_path: Path, seeds: list[int]
    ) -> Callable[[], CountingRetryingStore]:
        path = tmp_path / "store"
        FolderStore(path, create=True)

        def make() -> CountingRetryingStore:
            seeds[0] += 1
            faulty = FaultyStore(
                FolderStore(path), fault_rate=FAULT_RATE, lost_ack_rate=LOST_ACK_RATE, seed=seeds[0]
            )
            return CountingRetryingStore(faulty, POLICY)

        return make

    @pytest.fixture
    def store(self, store_factory: Callable[[], CountingRetryingStore]) -> CountingRetryingStore:
        return store_factory()

    @pytest.fixture
    def store_url(self, store: CountingRetryingStore) -> str:
        return store.url

    @pytest.fixture
    def store_env(self) -> dict[str, str]:
        return {}

    def test_folder_create_once(self, store: CountingRetryingStore) -> None:  # type: ignore[override]
        """Through faults, a re-create of an id is taken for our own lost answer when name,
        parent and kind all match (that is what the recognition is for: ids are minted per
        use, so only our own earlier try can hold one). So the second create differs."""
        (folder,) = store.mint_ids(1)
        store.create(store.root_id, "f", folder, folder=True)
        with pytest.raises(AlreadyExists):
            store.create(store.root_id, "g", folder, folder=True)
        with pytest.raises(AlreadyExists):
            store.create(store.root_id, "f", folder, b"")  # a file, not a folder

    def test_the_faults_were_real_and_absorbed(self, store: CountingRetryingStore) -> None:
        ids = store.mint_ids(60)
        for n, fid in enumerate(ids):
            store.create(store.root_id, f"f{n}", fid, f"{n}".encode())
        for n, fid in enumerate(ids):
            assert store.read(fid) == f"{n}".encode()
        assert len(store.list(store.root_id)) == 60
        stats = store.retry_stats
        assert (
            store.faults["create-ack"] >= 5
            and stats["recovered_creates"] == store.faults["create-ack"]
        )
        assert stats["retries"] == sum(store.faults.values()) >= 20
        assert stats["gave_up"] == 0
