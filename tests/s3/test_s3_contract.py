"""The store contract suite against the S3 store on a real S3 API server (moto)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from store_contract import StoreContract


class TestS3StoreContract(StoreContract):
    race_count = 100
    """Three processes race for each id; every race is checked. 100 races (not the default
    200) keep all three processes contending for the whole run at half the cost: more
    races against one loopback server only repeat the same contention."""

    @pytest.fixture
    def store(self, make_s3_store: Callable[..., Any]) -> Any:
        return make_s3_store()

    @pytest.fixture
    def store_factory(self, make_s3_store: Callable[..., Any]) -> Callable[[], Any]:
        return make_s3_store

    @pytest.fixture
    def store_url(self, s3_url: str) -> str:
        return s3_url

    @pytest.fixture
    def store_env(self, s3_server: dict[str, str]) -> dict[str, str]:
        return s3_server

    @pytest.mark.slow  # about 12 s: three processes' requests through one loopback server
    def test_exclusive_create_race_across_processes(
        self, store: Any, store_url: str, store_env: dict[str, str]
    ) -> None:
        super().test_exclusive_create_race_across_processes(store, store_url, store_env)
