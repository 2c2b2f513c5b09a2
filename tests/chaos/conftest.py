"""Fixtures of the fault-injection campaign (issue 5): a store of either kind with real
worker processes on it, and the side-effect folder where every task execution is recorded.

The campaign's machinery lives in drivemr.testing.chaos (scripts/chaos_campaign.py, the
script that prints the figures of the README, uses the same code)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from drivemr.testing import chaos as cc

LEASE = 3.0
"""Short leases keep the campaign fast; every bound below is stated in terms of them."""
POLL = 0.2


@pytest.fixture(params=["folder", "drive"])
def chaos_kind(request: pytest.FixtureRequest) -> str:
    """Each campaign item runs on the folder store and on the fake Google Drive."""
    return str(request.param)


@pytest.fixture
def chaos_cluster(chaos_kind: str, tmp_path: Path, isolated_config: Path) -> Iterator[cc.Cluster]:
    """A fresh store (a folder, or a new root on its own fake Drive) for worker processes."""
    del isolated_config  # DRIVEMR_CONFIG_DIR is set: the cluster's processes inherit it
    with cc.Cluster(chaos_kind, tmp_path / "cluster", lease=LEASE, poll=POLL) as cluster:
        yield cluster


@pytest.fixture
def chaos_logs(chaos_cluster: cc.Cluster) -> Callable[[], str]:
    """Every worker log of the cluster, for assertion messages."""

    def logs() -> str:
        return "\n".join(
            f"===== {p.worker_id} (pid {p.pid})\n{p.text()[-4000:]}" for p in chaos_cluster.procs
        )

    return logs
