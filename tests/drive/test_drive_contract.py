"""The store contract suite against the Drive store on the fake Drive server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from store_contract import StoreContract


class TestDriveStoreContract(StoreContract):
    @pytest.fixture
    def store(self, make_drive_store: Callable[..., Any]) -> Any:
        return make_drive_store()

    @pytest.fixture
    def store_factory(self, make_drive_store: Callable[..., Any]) -> Callable[[], Any]:
        return make_drive_store

    @pytest.fixture
    def store_url(self, drive_root: str) -> str:
        return drive_root

    @pytest.fixture
    def store_env(self, drive_env: dict[str, str]) -> dict[str, str]:
        return drive_env
