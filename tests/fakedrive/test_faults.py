"""Injected faults (latency, write quota, random errors, lost acknowledgements, lagging
name queries), the accounting endpoints, and runtime configuration."""

from __future__ import annotations

import http.client
import time
from typing import Any

import pytest
from googleapiclient.errors import HttpError

from drivemr.testing.fakedrive import FakeDriveServer
from drivemr.testing.fakedrive.helpers import control, drive_error, error_reason, mint


def test_latency_is_added_to_every_request(drive: Any, server: FakeDriveServer) -> None:
    server.configure(latency_ms=150)
    began = time.monotonic()
    drive.files().get(fileId="root").execute()
    assert time.monotonic() - began >= 0.15  # a lower bound only: sleep guarantees it


def test_write_quota_answers_403_user_rate_limit(drive: Any, server: FakeDriveServer) -> None:
    server.configure(write_rate=0.05, write_burst=1)
    drive.files().create(body={"name": "first"}).execute()
    with pytest.raises(HttpError) as ei:
        drive.files().create(body={"name": "second"}).execute()
    assert ei.value.status_code == 403
    err = drive_error(ei.value)
    assert err["errors"][0] == {
        **err["errors"][0],
        "reason": "userRateLimitExceeded",
        "domain": "usageLimits",
    }
    drive.files().list().execute()  # reads are not writes
    drive.files().generateIds(count=5).execute()
    stats = server.stats()
    assert stats["rate_limited"] == 1 and stats["faults"] == 1
    server.configure(write_rate=None)
    drive.files().create(body={"name": "third"}).execute()


def test_random_faults_at_the_configured_rate_and_codes(
    drive: Any, server: FakeDriveServer
) -> None:
    server.configure(fault_rate=1.0, fault_codes=(500, 503, 429))
    seen = set()
    for _ in range(30):
        with pytest.raises(HttpError) as ei:
            drive.files().get(fileId="root").execute()
        seen.add(ei.value.status_code)
        drive_error(ei.value)
    assert seen <= {500, 503, 429} and len(seen) > 1
    server.configure(fault_codes=(503,))
    with pytest.raises(HttpError) as ei:
        drive.files().create(body={"name": "never"}).execute()
    assert ei.value.status_code == 503
    server.configure(fault_rate=0.0)
    listed = drive.files().list(q="name = 'never'").execute()["files"]
    assert listed == []  # a faulted call commits nothing
    assert server.stats()["fault_errors"] == 31


def test_lost_ack_commits_then_drops_the_connection(
    drive: Any, server: FakeDriveServer, folder: str
) -> None:
    """httplib2 re-sends a request whose connection died without an answer; with a minted
    id the re-sent create meets the 409 of its own first attempt."""
    (fid,) = mint(drive)
    server.configure(lost_ack_rate=1.0, lost_ack_methods=["files.create"])
    with pytest.raises(HttpError) as ei:
        drive.files().create(body={"id": fid, "name": "claim", "parents": [folder]}).execute()
    assert ei.value.status_code == 409
    assert server.stats()["lost_acks"] == 1
    server.configure(lost_ack_rate=0.0)
    assert drive.files().get(fileId=fid, fields="name").execute() == {"name": "claim"}


def test_lost_ack_without_minted_id_duplicates_the_file(
    drive: Any, server: FakeDriveServer, folder: str
) -> None:
    server.configure(lost_ack_rate=1.0)
    with pytest.raises(http.client.HTTPException):
        drive.files().create(body={"name": "dup", "parents": [folder]}).execute()
    server.configure(lost_ack_rate=0.0)
    listed = drive.files().list(q=f"'{folder}' in parents").execute()["files"]
    assert [f["name"] for f in listed] == ["dup", "dup"]  # the automatic re-send made two


def test_name_queries_lag_while_parent_listing_and_get_do_not(
    drive: Any, server: FakeDriveServer, folder: str
) -> None:
    server.configure(name_query_lag=60.0)
    fid = drive.files().create(body={"name": "fresh", "parents": [folder]}).execute()["id"]
    assert drive.files().list(q="name = 'fresh'").execute()["files"] == []
    q = f"'{folder}' in parents and name contains 'fre'"
    assert drive.files().list(q=q).execute()["files"] == []
    by_parent = drive.files().list(q=f"'{folder}' in parents").execute()["files"]
    assert [f["id"] for f in by_parent] == [fid]
    assert drive.files().get(fileId=fid).execute()["id"] == fid
    server.configure(name_query_lag=0.0)
    assert [f["id"] for f in drive.files().list(q="name = 'fresh'").execute()["files"]] == [fid]


def test_stats_endpoints_count_reads_writes_and_not_themselves(
    drive: Any, server: FakeDriveServer
) -> None:
    status, zero = control(server.url, "/_fake/stats/reset", {})
    assert status == 200 and zero["requests"] == 0
    fid = drive.files().create(body={"name": "s"}).execute()["id"]
    drive.files().get(fileId=fid).execute()
    drive.files().update(fileId=fid, body={"name": "t"}).execute()
    drive.files().list().execute()
    drive.files().generateIds(count=2).execute()
    drive.files().delete(fileId=fid).execute()
    status, stats = control(server.url, "/_fake/stats")
    assert status == 200
    assert stats["requests"] == 6 and stats["writes"] == 3 and stats["reads"] == 3
    assert stats["faults"] == 0
    assert stats["by_endpoint"] == {
        "files.create": 1,
        "files.get": 1,
        "files.update": 1,
        "files.list": 1,
        "files.generateIds": 1,
        "files.delete": 1,
    }
    assert control(server.url, "/_fake/stats")[1]["requests"] == 6  # stats are not counted
    server.reset_stats()
    assert server.stats()["requests"] == 0 and server.stats()["by_endpoint"] == {}


def test_configuration_over_http(drive: Any, server: FakeDriveServer) -> None:
    status, cfg = control(server.url, "/_fake/config", {"fault_rate": 1.0, "fault_codes": [429]})
    assert status == 200 and cfg["fault_rate"] == 1.0
    with pytest.raises(HttpError) as ei:
        drive.files().get(fileId="root").execute()
    assert ei.value.status_code == 429 and error_reason(ei.value) == "rateLimitExceeded"
    assert control(server.url, "/_fake/config", {"fault_rate": 0})[0] == 200
    assert control(server.url, "/_fake/config", {"no_such_knob": 1})[0] == 400
    assert control(server.url, "/_fake/config", {"fault_rate": 2})[0] == 400
    drive.files().get(fileId="root").execute()
    with pytest.raises(ValueError):
        server.configure(no_such_knob=1)


def test_oversize_body_is_400_and_the_server_keeps_serving(
    drive: Any, server: FakeDriveServer
) -> None:
    from googleapiclient.http import MediaInMemoryUpload

    server.configure(max_body_bytes=10_000)
    media = MediaInMemoryUpload(b"x" * 20_000, mimetype="text/plain")
    with pytest.raises(HttpError) as ei:
        drive.files().create(body={"name": "big"}, media_body=media).execute()
    assert ei.value.status_code == 400
    drive_error(ei.value)
    with pytest.raises(HttpError) as ei:  # metadata alone is limited too
        server.configure(max_body_bytes=10 << 20)
        drive.files().create(body={"name": "n", "description": "d" * (2 << 20)}).execute()
    assert ei.value.status_code == 400
    assert drive.files().create(body={"name": "small"}).execute()["name"] == "small"
