"""Fixtures for the fake Google Drive tests: a fresh server per test, a real client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from drivemr.testing.fakedrive import FakeDriveServer, build_client
from drivemr.testing.fakedrive.helpers import FOLDER_MIME


@pytest.fixture
def server() -> Iterator[FakeDriveServer]:
    with FakeDriveServer() as srv:
        yield srv


@pytest.fixture
def drive(server: FakeDriveServer) -> Any:
    return build_client(server.url)


@pytest.fixture
def alice(server: FakeDriveServer) -> Any:
    """A client acting as the account "alice" (the bearer token names the account)."""
    return build_client(server.url, token="alice")


@pytest.fixture
def bob(server: FakeDriveServer) -> Any:
    """A client acting as the account "bob"."""
    return build_client(server.url, token="bob")


@pytest.fixture
def folder(drive: Any) -> str:
    """A fresh folder under the root, to keep each test's listing small."""
    body = {"name": "work", "mimeType": FOLDER_MIME}
    return str(drive.files().create(body=body, fields="id").execute()["id"])
