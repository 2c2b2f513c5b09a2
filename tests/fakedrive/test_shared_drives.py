"""Shared drives: drives.create/list/get, membership, supportsAllDrives, corpora=drive,
the per-drive change log, the item cap and organizer-only deletes."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from googleapiclient.errors import HttpError
from googleapiclient.http import MediaInMemoryUpload

from drivemr.testing.fakedrive import FakeDriveServer, build_client
from drivemr.testing.fakedrive.helpers import FOLDER_MIME, control, error_reason


@pytest.fixture
def team(alice: Any) -> str:
    """A shared drive organized by alice."""
    made = alice.drives().create(requestId=uuid.uuid4().hex, body={"name": "team"}).execute()
    assert made["kind"] == "drive#drive" and made["name"] == "team"
    return str(made["id"])


def _join(alice: Any, drive_id: str, account: str, role: str) -> dict[str, Any]:
    body = {"type": "user", "role": role, "emailAddress": f"{account}@example.com"}
    req = alice.permissions().create(
        fileId=drive_id, body=body, supportsAllDrives=True, fields="role,emailAddress"
    )
    return dict(req.execute())


def _in_drive(client: Any, drive_id: str, **extra: Any) -> list[str]:
    got = (
        client.files()
        .list(
            corpora="drive",
            driveId=drive_id,
            includeItemsFromAllDrives=True,
            supportsAllDrives=True,
            fields="files(name)",
            **extra,
        )
        .execute()
    )
    return sorted(f["name"] for f in got["files"])


def test_drives_are_seen_by_members_only(alice: Any, bob: Any, team: str) -> None:
    assert [d["id"] for d in alice.drives().list().execute()["drives"]] == [team]
    assert bob.drives().list().execute()["drives"] == []
    with pytest.raises(HttpError) as ei:
        bob.drives().get(driveId=team).execute()
    assert ei.value.status_code == 404 and error_reason(ei.value) == "notFound"
    assert _join(alice, team, "bob", "writer") == {
        "role": "writer",
        "emailAddress": "bob@example.com",
    }
    got = bob.drives().get(driveId=team, fields="id,name,capabilities(canManageMembers)")
    assert got.execute() == {
        "id": team,
        "name": "team",
        "capabilities": {"canManageMembers": False},
    }
    with pytest.raises(HttpError) as ei:  # only an organizer adds members
        _join(bob, team, "carol", "reader")
    assert ei.value.status_code == 403


def test_a_repeated_request_id_is_a_409(alice: Any) -> None:
    rid = uuid.uuid4().hex
    alice.drives().create(requestId=rid, body={"name": "once"}).execute()
    with pytest.raises(HttpError) as ei:
        alice.drives().create(requestId=rid, body={"name": "once"}).execute()
    assert ei.value.status_code == 409


def test_shared_drive_items_need_supports_all_drives(alice: Any, team: str) -> None:
    with pytest.raises(HttpError) as ei:  # the drive as a parent, without the flag: 404
        alice.files().create(body={"name": "x", "parents": [team]}).execute()
    assert ei.value.status_code == 404
    made = (
        alice.files()
        .create(
            body={"name": "x", "parents": [team]},
            supportsAllDrives=True,
            fields="id,driveId,parents",
        )
        .execute()
    )
    assert made["driveId"] == team and made["parents"] == [team]
    with pytest.raises(HttpError) as ei:
        alice.files().get(fileId=made["id"]).execute()
    assert ei.value.status_code == 404 and error_reason(ei.value) == "notFound"
    got = alice.files().get(fileId=made["id"], supportsAllDrives=True, fields="driveId")
    assert got.execute() == {"driveId": team}
    top = alice.files().get(fileId=team, supportsAllDrives=True, fields="name,mimeType")
    assert top.execute() == {"name": "team", "mimeType": FOLDER_MIME}


def test_listing_a_shared_drive(alice: Any, bob: Any, team: str) -> None:
    alice.files().create(
        body={"name": "in-drive", "parents": [team]}, supportsAllDrives=True
    ).execute()
    alice.files().create(body={"name": "in-my-drive"}).execute()
    assert _in_drive(alice, team) == ["in-drive"]
    mine = alice.files().list(fields="files(name)").execute()["files"]
    assert [f["name"] for f in mine] == ["in-my-drive"]  # the user corpus leaves drives out
    everywhere = alice.files().list(
        includeItemsFromAllDrives=True, supportsAllDrives=True, fields="files(name)"
    )
    assert sorted(f["name"] for f in everywhere.execute()["files"]) == ["in-drive", "in-my-drive"]
    by_parent = alice.files().list(
        q=f"'{team}' in parents",
        includeItemsFromAllDrives=True,
        supportsAllDrives=True,
        fields="files(name)",
    )
    assert by_parent.execute()["files"] == [{"name": "in-drive"}]
    with pytest.raises(HttpError) as ei:  # corpora=drive without driveId
        alice.files().list(
            corpora="drive", includeItemsFromAllDrives=True, supportsAllDrives=True
        ).execute()
    assert ei.value.status_code == 400
    with pytest.raises(HttpError) as ei:  # not a member
        _in_drive(bob, team)
    assert ei.value.status_code == 404
    _join(alice, team, "bob", "reader")
    assert _in_drive(bob, team) == ["in-drive"]


def test_changes_in_a_shared_drive_go_to_its_own_log(alice: Any, team: str) -> None:
    user_token = alice.changes().getStartPageToken().execute()["startPageToken"]
    drive_token = (
        alice.changes()
        .getStartPageToken(driveId=team, supportsAllDrives=True)
        .execute()["startPageToken"]
    )
    in_drive = (
        alice.files()
        .create(body={"name": "d", "parents": [team]}, supportsAllDrives=True)
        .execute()["id"]
    )
    in_mine = alice.files().create(body={"name": "m"}).execute()["id"]
    fields = "newStartPageToken,changes(fileId,driveId)"
    drive_log = (
        alice.changes()
        .list(
            pageToken=drive_token,
            driveId=team,
            supportsAllDrives=True,
            includeItemsFromAllDrives=True,
            fields=fields,
        )
        .execute()
    )
    assert drive_log["changes"] == [{"fileId": in_drive, "driveId": team}]
    user_log = alice.changes().list(pageToken=user_token, fields=fields).execute()
    assert user_log["changes"] == [{"fileId": in_mine}]
    with pytest.raises(HttpError) as ei:  # a non-member cannot read the drive's log
        build_client_for(alice, "carol").changes().getStartPageToken(
            driveId=team, supportsAllDrives=True
        ).execute()
    assert ei.value.status_code == 404


def build_client_for(client: Any, token: str) -> Any:
    """A client of the same fake acting as ``token``."""
    return build_client(client._rootDesc["rootUrl"], token=token)


def test_deleting_in_a_shared_drive_needs_an_organizer_role(
    alice: Any, bob: Any, team: str
) -> None:
    _join(alice, team, "bob", "writer")
    fid = (
        bob.files().create(body={"name": "b", "parents": [team]}, supportsAllDrives=True).execute()
    )["id"]
    with pytest.raises(HttpError) as ei:
        bob.files().delete(fileId=fid, supportsAllDrives=True).execute()
    assert ei.value.status_code == 403 and error_reason(ei.value) == "insufficientFilePermissions"
    _join(alice, team, "bob", "fileOrganizer")
    bob.files().delete(fileId=fid, supportsAllDrives=True).execute()
    gid = (
        bob.files().create(body={"name": "c", "parents": [team]}, supportsAllDrives=True).execute()
    )["id"]
    alice.files().delete(fileId=gid, supportsAllDrives=True).execute()  # the organizer
    assert _in_drive(alice, team) == []


def test_the_item_cap_answers_team_drive_file_limit_exceeded(
    alice: Any, team: str, server: FakeDriveServer
) -> None:
    server.configure(drive_item_limit=2)
    sub = (
        alice.files()
        .create(
            body={"name": "sub", "mimeType": FOLDER_MIME, "parents": [team]},
            supportsAllDrives=True,
        )
        .execute()["id"]
    )
    alice.files().create(body={"name": "one", "parents": [sub]}, supportsAllDrives=True).execute()
    with pytest.raises(HttpError) as ei:
        alice.files().create(
            body={"name": "two", "parents": [sub]}, supportsAllDrives=True
        ).execute()
    assert ei.value.status_code == 403 and error_reason(ei.value) == "teamDriveFileLimitExceeded"
    alice.files().create(body={"name": "in My Drive"}).execute()  # My Drive has no such cap


def test_admin_knobs_make_drives_and_members(server: FakeDriveServer, bob: Any) -> None:
    did = server.create_drive("ops", organizer="alice", members={"bob": "writer"})
    assert bob.drives().get(driveId=did, fields="name").execute() == {"name": "ops"}
    status, body = control(
        server.url, "/_fake/drives", {"name": "more", "organizer": "carol", "members": {}}
    )
    assert status == 200
    with pytest.raises(HttpError):
        bob.drives().get(driveId=body["driveId"]).execute()
    status, _ = control(
        server.url,
        "/_fake/drives",
        {"driveId": body["driveId"], "account": "bob", "role": "reader"},
    )
    assert status == 200
    assert bob.drives().get(driveId=body["driveId"], fields="name").execute() == {"name": "more"}
    status, _ = control(
        server.url, "/_fake/drives", {"driveId": body["driveId"], "account": "bob", "role": "boss"}
    )
    assert status == 400


def test_resumable_upload_in_chunks_into_a_shared_drive(bob: Any, server: FakeDriveServer) -> None:
    did = server.create_drive("uploads", members={"bob": "writer"})
    data = bytes(range(256)) * 2400  # 600 KiB: three chunks of 256 KiB
    media = MediaInMemoryUpload(
        data, mimetype="application/octet-stream", chunksize=256 * 1024, resumable=True
    )
    req = bob.files().create(
        body={"name": "big", "parents": [did]},
        media_body=media,
        supportsAllDrives=True,
        fields="id,size,driveId",
    )
    progress = []
    done = None
    while done is None:
        status, done = req.next_chunk()
        if status is not None:
            progress.append(status.resumable_progress)
    assert progress == [256 * 1024, 512 * 1024]  # two 308 Resume Incomplete answers
    assert done["size"] == str(len(data)) and done["driveId"] == did
    got = bob.files().get_media(fileId=done["id"], supportsAllDrives=True).execute()
    assert got == data


def test_state_file_keeps_accounts_and_drives(tmp_path: Any) -> None:
    state = str(tmp_path / "state.json")
    with FakeDriveServer(state_file=state) as srv:
        did = srv.create_drive("kept", organizer="alice", members={"bob": "fileOrganizer"})
        alice = build_client(srv.url, token="alice")
        (minted,) = alice.files().generateIds(count=1).execute()["ids"]
        private = alice.files().create(body={"name": "p"}).execute()["id"]
    with FakeDriveServer(state_file=state) as srv:
        bob = build_client(srv.url, token="bob")
        assert bob.drives().get(driveId=did, fields="name").execute() == {"name": "kept"}
        with pytest.raises(HttpError) as ei:
            bob.files().get(fileId=private).execute()
        assert ei.value.status_code == 404
        with pytest.raises(HttpError) as ei:  # still alice's minted id
            bob.files().create(body={"id": minted, "name": "x"}).execute()
        assert ei.value.status_code == 400
        build_client(srv.url, token="alice").files().create(
            body={"id": minted, "name": "x"}
        ).execute()
