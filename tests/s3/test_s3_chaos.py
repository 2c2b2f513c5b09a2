"""The fault-injection campaign's kill -9 item on S3: real `drivemr worker` processes on a
loopback S3 server, one of four killed ten times during the job (drivemr.testing.chaos does
the work; `python scripts/chaos_campaign.py --store s3` prints the same figures)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from drivemr.testing import chaos as cc

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
    pytest.mark.timeout(600),
]


def test_kill9_one_of_four_workers_ten_times_on_s3(tmp_path: Path, isolated_config: Path) -> None:
    """Every task committed once, none lost, nothing unexpected, duplicate executions no
    more than the claims the kills orphaned, and every worker that was not killed exits 0."""
    pytest.importorskip("moto.server")
    del isolated_config  # the cluster's processes inherit DRIVEMR_CONFIG_DIR
    # S3 timestamps have a resolution of one second: a 5 s lease (not the 3 s of the folder
    # and Drive campaigns) keeps a heartbeat late on a loaded 2-core machine from counting.
    with cc.Cluster("s3", tmp_path / "cluster", lease=5.0, poll=0.2) as cluster:
        r = cc.kill_campaign(cluster, tasks=200, kills=10, task_seconds=0.4)
    print("\n".join(r.lines()))
    acc = r.account
    assert len(r.kills) >= 10, r.lines()
    assert (acc.committed, acc.done, acc.lost, acc.unexpected) == (200, 200, 0, 0), acc.problems
    assert acc.attempted == 200
    assert 1 <= r.orphaned_claims <= len(r.kills), r.lines()
    assert not r.unexplained_takeovers, r.unexplained_takeovers
    assert acc.duplicated <= r.orphaned_claims + r.lapsed_claims, r.lines()
    assert set(r.exit_codes.values()) == {0}, r.exit_codes


def test_a_storm_of_s3_faults_under_in_process_workers(
    tmp_path: Path, isolated_config: Path
) -> None:
    """The campaign's storm item on S3: the proxy answers 503/500/409 or loses the answer
    on 30% of the requests; the job completes, every task committed once, and no operation
    makes more attempts than the retry policy's cap."""
    pytest.importorskip("moto.server")
    del isolated_config
    with cc.Cluster("s3", tmp_path / "cluster", lease=5.0, poll=0.2) as cluster:
        # 20 tasks are a few hundred S3 requests: at 30% faults, dozens injected and
        # operations retried 3 times and more, as with the campaign's 40.
        r = cc.storm_campaign(cluster, tasks=20, fault_rate=0.3)
    print("\n".join(r.lines()))
    acc = r.account
    assert r.job_state == "done", acc.problems
    assert (acc.committed, acc.done, acc.lost, acc.unexpected) == (20, 20, 0, 0), acc.problems
    assert r.faults_injected >= 20  # the storm really blew
    assert max(r.attempts_histogram) >= 3  # operations were retried...
    assert r.max_attempts_seen <= r.cap  # ...never beyond the cap
    assert r.attempts <= r.server_requests  # an S3 operation is one request or more
