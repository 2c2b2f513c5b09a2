"""Fixtures for the S3 store tests: a real S3 API server (moto's server mode) on loopback.

One server per test session; every test gets its own key prefix in one bucket, so tests
never see each other's objects. The server's address and dummy credentials are put in the
environment (``AWS_ENDPOINT_URL`` etc.), where boto3's standard chain finds them, in this
process and in every child process a test starts (workers, the CLI).
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from drivemr.testing.s3proxy import S3Proxy
from drivemr.testing.s3server import BUCKET, LoopbackS3

_TESTS = Path(__file__).resolve().parents[1]
if str(_TESTS) not in sys.path:  # for `from store_contract import StoreContract`
    sys.path.insert(0, str(_TESTS))


@pytest.fixture(scope="session")
def s3_session() -> Iterator[tuple[dict[str, str], S3Proxy]]:
    """moto's S3 server on a free loopback port, behind the counting, fault-injecting proxy;
    yields the environment that points boto3 at the proxy, and the proxy."""
    pytest.importorskip("boto3")
    pytest.importorskip("moto.server")
    server = LoopbackS3(BUCKET).start()
    assert server.proxy is not None
    saved = {k: os.environ.get(k) for k in [*server.env, "AWS_PROFILE", "AWS_ENDPOINT_URL_S3"]}
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_ENDPOINT_URL_S3", None)
    os.environ.update(server.env)
    try:
        yield server.env, server.proxy
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def s3_server(s3_session: tuple[dict[str, str], S3Proxy]) -> dict[str, str]:
    """The environment pointing boto3 (here and in child processes) at the test server."""
    return s3_session[0]


@pytest.fixture
def s3_proxy(s3_session: tuple[dict[str, str], S3Proxy]) -> Iterator[S3Proxy]:
    """The proxy in front of the server, its counts and faults cleared before and after."""
    proxy = s3_session[1]
    proxy.reset()
    yield proxy
    proxy.reset()


@pytest.fixture
def s3_url(s3_server: dict[str, str]) -> str:
    """A fresh, empty store: its own prefix in the test bucket."""
    return f"s3://{BUCKET}/t-{secrets.token_hex(6)}"


@pytest.fixture
def make_s3_store(s3_url: str) -> Iterator[Callable[..., Any]]:
    """Factory of independent clients of the fresh store (as ``open_store`` opens them)."""
    from drivemr.stores import open_store

    opened: list[Any] = []

    def make() -> Any:
        store = open_store(s3_url)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
