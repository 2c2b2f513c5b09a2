"""changes.getStartPageToken / changes.list, and batch requests."""

from __future__ import annotations

from typing import Any

import pytest
from googleapiclient.errors import HttpError

from drivemr.testing.fakedrive import FakeDriveServer
from drivemr.testing.fakedrive.helpers import mint


def drain(drive: Any, token: str, **kw: Any) -> tuple[list[dict[str, Any]], str, int]:
    """Every page from ``token``: (changes, newStartPageToken, pages)."""
    changes: list[dict[str, Any]] = []
    pages = 0
    fields = (
        "nextPageToken,newStartPageToken,changes(fileId,removed,time,file(id,name,parents,trashed))"
    )
    while True:
        res = drive.changes().list(pageToken=token, fields=fields, **kw).execute()
        pages += 1
        changes += res["changes"]
        if "nextPageToken" in res:
            assert "newStartPageToken" not in res  # only the last page has it
            token = res["nextPageToken"]
            continue
        return changes, res["newStartPageToken"], pages


def test_changes_feed_pages_and_removals(drive: Any, folder: str) -> None:
    start = drive.changes().getStartPageToken().execute()
    assert start["kind"] == "drive#startPageToken"
    token = start["startPageToken"]
    quiet, token2, _ = drain(drive, token)
    assert quiet == [] and token2 == token
    ids = [
        drive.files().create(body={"name": f"c{n}", "parents": [folder]}).execute()["id"]
        for n in range(5)
    ]
    drive.files().update(fileId=ids[0], body={"name": "renamed"}).execute()
    drive.files().delete(fileId=ids[1]).execute()
    changes, new_token, pages = drain(drive, token, pageSize=2)
    assert pages == 3
    by_id = {c["fileId"]: c for c in changes}
    assert len(by_id) == len(changes) == 5  # one entry per file, in its latest state
    assert by_id[ids[0]]["file"] == {
        "id": ids[0],
        "name": "renamed",
        "parents": [folder],
        "trashed": False,
    }
    assert by_id[ids[1]]["removed"] is True and "file" not in by_id[ids[1]]
    assert all(c["removed"] is False for k, c in by_id.items() if k != ids[1])
    later, _, _ = drain(drive, new_token)
    assert later == []
    kept, _, _ = drain(drive, token, includeRemoved=False)
    assert ids[1] not in {c["fileId"] for c in kept}


def test_changes_default_fields_and_bad_token(drive: Any) -> None:
    token = drive.changes().getStartPageToken().execute()["startPageToken"]
    drive.files().create(body={"name": "x"}).execute()
    res = drive.changes().list(pageToken=token).execute()
    assert set(res) == {"kind", "newStartPageToken", "changes"}
    assert set(res["changes"][0]["file"]) == {"kind", "id", "name", "mimeType"}
    with pytest.raises(HttpError) as ei:
        drive.changes().list(pageToken="not-a-token").execute()
    assert ei.value.status_code == 400


def test_batch_runs_each_part_as_its_own_call(drive: Any, server: FakeDriveServer) -> None:
    a, b = mint(drive, 2)
    drive.files().create(body={"id": b, "name": "taken"}).execute()
    results: dict[str, Any] = {}

    def collect(request_id: str, response: Any, exception: Any) -> None:
        results[request_id] = exception.status_code if exception else response

    server.reset_stats()
    batch = drive.new_batch_http_request(callback=collect)
    batch.add(
        drive.files().create(body={"id": a, "name": "mine"}, fields="id,name"), request_id="ok"
    )
    batch.add(drive.files().create(body={"id": b, "name": "again"}), request_id="dup")
    batch.add(drive.files().get(fileId="1" + "q" * 32), request_id="missing")
    batch.add(drive.files().list(q="name = 'mine'", fields="files(id)"), request_id="list")
    batch.add(drive.files().delete(fileId=b), request_id="delete")
    batch.execute()
    assert results["ok"] == {"id": a, "name": "mine"}
    assert results["dup"] == 409 and results["missing"] == 404
    assert results["list"] == {"files": [{"id": a}]}
    assert results["delete"] == ""
    stats = server.stats()
    assert stats["requests"] == 1 and stats["calls"] == 6
    assert stats["by_endpoint"]["batch"] == 1 and stats["writes"] == 3


def test_batch_of_more_than_100_calls_is_refused(drive: Any) -> None:
    batch = drive.new_batch_http_request()
    for n in range(101):
        batch.add(drive.files().get(fileId="root"), request_id=str(n))
    with pytest.raises(HttpError) as ei:
        batch.execute()
    assert ei.value.status_code == 400
