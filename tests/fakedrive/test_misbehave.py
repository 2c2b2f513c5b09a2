"""Deliberate misbehaviour (for ``drivemr doctor``'s tests), batch media, and the CLI knobs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from googleapiclient.errors import HttpError
from googleapiclient.http import MediaInMemoryUpload

from drivemr.testing.fakedrive import FakeDriveServer, build_client
from drivemr.testing.fakedrive.helpers import control, mint

ROOT = Path(__file__).resolve().parents[2]


def test_create_once_misbehaviour_overwrites_a_used_id(
    drive: Any, server: FakeDriveServer, folder: str
) -> None:
    (fid,) = mint(drive)
    drive.files().create(body={"id": fid, "name": "first", "parents": [folder]}).execute()
    with pytest.raises(HttpError) as ei:
        drive.files().create(body={"id": fid, "name": "second", "parents": [folder]}).execute()
    assert ei.value.status_code == 409
    server.configure(misbehave=["create-once"])
    drive.files().create(body={"id": fid, "name": "second", "parents": [folder]}).execute()
    assert drive.files().get(fileId=fid, fields="name").execute() == {"name": "second"}
    listed = drive.files().list(q=f"'{folder}' in parents", fields="files(id)").execute()
    assert listed["files"] == [{"id": fid}]
    with pytest.raises(HttpError) as ei:  # an unminted id is still refused
        drive.files().create(body={"id": "1" + "z" * 32, "name": "x"}).execute()
    assert ei.value.status_code == 400


def test_listing_misbehaviour_hides_new_files_from_by_parent_listings(
    drive: Any, server: FakeDriveServer, folder: str
) -> None:
    server.configure(misbehave=["listing"], misbehave_listing_seconds=3600)
    fid = drive.files().create(body={"name": "new", "parents": [folder]}).execute()["id"]
    listed = drive.files().list(q=f"'{folder}' in parents", fields="files(id)").execute()
    assert listed["files"] == []
    assert drive.files().get(fileId=fid, fields="id").execute() == {"id": fid}
    server.configure(misbehave_listing_seconds=0)
    listed = drive.files().list(q=f"'{folder}' in parents", fields="files(id)").execute()
    assert listed["files"] == [{"id": fid}]


def test_changes_misbehaviour_answers_an_empty_feed(drive: Any, server: FakeDriveServer) -> None:
    server.configure(misbehave=["changes"])
    token = drive.changes().getStartPageToken().execute()["startPageToken"]
    drive.files().create(body={"name": "unseen"}).execute()
    got = drive.changes().list(pageToken=token, fields="changes,newStartPageToken").execute()
    assert got["changes"] == [] and int(got["newStartPageToken"]) > int(token)
    server.configure(misbehave=[])
    got = drive.changes().list(pageToken=token, fields="changes(fileId)").execute()
    assert len(got["changes"]) == 1


def test_unknown_misbehaviour_is_refused(server: FakeDriveServer) -> None:
    with pytest.raises(ValueError, match="unknown misbehaviour"):
        server.configure(misbehave=["everything"])
    status, cfg = control(server.url, "/_fake/config", {"misbehave": ["listing", "changes"]})
    assert status == 200 and cfg["misbehave"] == ["listing", "changes"]


def test_media_in_a_batch_is_a_redirect_per_part(drive: Any) -> None:
    media = MediaInMemoryUpload(b"payload", mimetype="text/plain")
    fid = drive.files().create(body={"name": "m.txt"}, media_body=media).execute()["id"]
    answers: dict[str, Any] = {}

    def collect(request_id: str, response: Any, exception: Any) -> None:
        answers[request_id] = exception

    batch = drive.new_batch_http_request(callback=collect)
    batch.add(drive.files().get_media(fileId=fid), request_id="media")
    batch.add(drive.files().get(fileId=fid, fields="name"), request_id="meta")
    batch.execute()
    assert answers["meta"] is None
    exc = answers["media"]
    assert isinstance(exc, HttpError) and exc.status_code == 302
    with urllib.request.urlopen(exc.resp["location"]) as resp:  # the direct download
        assert resp.read() == b"payload"


def test_fake_drive_command_knobs() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    cmd = [
        sys.executable,
        "-c",
        "from drivemr.testing.fakedrive.cli import fake_drive; fake_drive()",
        "--port=0",
        "--minted-ids=anyone",
        "--misbehave=changes",
        "--misbehave=listing",
        "--misbehave-listing-seconds=2.5",
        "--drive-item-limit=7",
        "--shared-drive=team=alice,bob:writer",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert proc.stdout is not None
        m = re.fullmatch(r"fake Google Drive v3 listening at (\S+)\n", proc.stdout.readline())
        assert m
        url = m.group(1)
        d = re.fullmatch(r"shared drive team: (\S+)\n", proc.stdout.readline())
        assert d
        with urllib.request.urlopen(url + "_fake/config") as resp:
            cfg = json.loads(resp.read())
        assert cfg["minted_ids"] == "anyone" and cfg["drive_item_limit"] == 7
        assert sorted(cfg["misbehave"]) == ["changes", "listing"]
        assert cfg["misbehave_listing_seconds"] == 2.5
        bob = build_client(url, token="bob")
        assert bob.drives().get(driveId=d.group(1), fields="name").execute() == {"name": "team"}
        (fid,) = mint(build_client(url, token="alice"))
        bob.files().create(body={"id": fid, "name": "anyone may use it"}).execute()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
