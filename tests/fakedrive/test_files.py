"""files.create / get / update / delete / copy / generateIds, ids and metadata."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from google.oauth2.credentials import Credentials
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.errors import HttpError
from googleapiclient.http import build_http

from drivemr.testing.fakedrive import FakeDriveServer, build_client
from drivemr.testing.fakedrive.helpers import FOLDER_MIME as FOLDER
from drivemr.testing.fakedrive.helpers import drive_error as error_of
from drivemr.testing.fakedrive.helpers import error_reason as reason_of
from drivemr.testing.fakedrive.helpers import mint

TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ID_RE = re.compile(r"^[A-Za-z0-9_-]{33}$")


def test_create_metadata_only_returns_drive_default_fields(drive: Any) -> None:
    f = drive.files().create(body={"name": "notes.txt"}).execute()
    assert set(f) == {"kind", "id", "name", "mimeType"}
    assert f["kind"] == "drive#file"
    assert f["mimeType"] == "application/octet-stream"
    assert ID_RE.match(f["id"])


def test_create_with_minted_id_then_409_on_reuse(drive: Any, folder: str) -> None:
    (fid,) = mint(drive)
    got = drive.files().create(body={"id": fid, "name": "c", "parents": [folder]}).execute()
    assert got["id"] == fid
    with pytest.raises(HttpError) as ei:
        drive.files().create(body={"id": fid, "name": "c", "parents": [folder]}).execute()
    assert ei.value.status_code == 409
    err = error_of(ei.value)
    assert err["message"] == "A file already exists with the provided ID."
    assert err["errors"][0]["reason"] == "duplicate"


def test_create_with_never_minted_id_is_400(drive: Any) -> None:
    with pytest.raises(HttpError) as ei:
        drive.files().create(body={"id": "1" + "x" * 32, "name": "c"}).execute()
    assert ei.value.status_code == 400
    assert error_of(ei.value)["message"] == "The provided file ID is not usable."


def test_deleted_files_id_stays_taken(drive: Any) -> None:
    (fid,) = mint(drive)
    drive.files().create(body={"id": fid, "name": "c"}).execute()
    drive.files().delete(fileId=fid).execute()
    with pytest.raises(HttpError) as ei:
        drive.files().create(body={"id": fid, "name": "c"}).execute()
    assert ei.value.status_code == 409


def test_generated_ids_refused_for_docs_editors_formats(drive: Any) -> None:
    (fid,) = mint(drive)
    body = {"id": fid, "name": "doc", "mimeType": "application/vnd.google-apps.document"}
    with pytest.raises(HttpError) as ei:
        drive.files().create(body=body).execute()
    assert ei.value.status_code == 403
    # A folder takes a minted id.
    drive.files().create(body={"id": fid, "name": "dir", "mimeType": FOLDER}).execute()


def test_duplicate_names_in_one_folder_are_allowed(drive: Any, folder: str) -> None:
    a = drive.files().create(body={"name": "same", "parents": [folder]}).execute()
    b = drive.files().create(body={"name": "same", "parents": [folder]}).execute()
    assert a["id"] != b["id"]
    listed = drive.files().list(q=f"'{folder}' in parents").execute()["files"]
    assert sorted(f["id"] for f in listed) == sorted([a["id"], b["id"]])


def test_missing_parent_is_404(drive: Any) -> None:
    (ghost,) = mint(drive)
    with pytest.raises(HttpError) as ei:
        drive.files().create(body={"name": "x", "parents": [ghost]}).execute()
    assert ei.value.status_code == 404
    assert reason_of(ei.value) == "notFound"


def test_root_is_an_alias_of_the_root_folder(drive: Any, server: FakeDriveServer) -> None:
    root = drive.files().get(fileId="root", fields="id,name,mimeType").execute()
    assert root["id"] == server.state.root_id
    assert root["name"] == "My Drive"
    assert root["mimeType"] == FOLDER
    f = drive.files().create(body={"name": "top", "parents": ["root"]}, fields="id,parents")
    created = f.execute()
    assert created["parents"] == [root["id"]]
    plain = drive.files().create(body={"name": "top2"}, fields="parents").execute()
    assert plain["parents"] == [root["id"]]
    names = {f["name"] for f in drive.files().list(q="'root' in parents").execute()["files"]}
    assert {"top", "top2"} <= names


def test_generate_ids_count_space_and_type(drive: Any) -> None:
    one = drive.files().generateIds(count=1, space="drive", type="files").execute()
    assert one["kind"] == "drive#generatedIds" and one["space"] == "drive"
    assert len(one["ids"]) == 1
    many = drive.files().generateIds(count=1000).execute()["ids"]
    assert len(set(many)) == 1000
    assert all(ID_RE.match(i) for i in many)
    assert len(drive.files().generateIds().execute()["ids"]) == 10
    for bad in ({"count": 0}, {"count": 1001}, {"space": "photos"}, {"type": "folders"}):
        with pytest.raises(HttpError) as ei:
            drive.files().generateIds(**bad).execute()
        assert ei.value.status_code == 400, bad


def test_get_with_fields_and_unknown_file(drive: Any, folder: str) -> None:
    f = drive.files().create(body={"name": "a.txt", "parents": [folder]}).execute()
    got = drive.files().get(fileId=f["id"], fields="id,parents,appProperties").execute()
    assert got == {"id": f["id"], "parents": [folder]}
    full = drive.files().get(fileId=f["id"], fields="*").execute()
    assert full["name"] == "a.txt" and full["size"] == "0"
    with pytest.raises(HttpError) as ei:
        drive.files().get(fileId=f["id"], fields="id,bogusField").execute()
    assert ei.value.status_code == 400
    with pytest.raises(HttpError) as ei:
        drive.files().get(fileId="1" + "z" * 32).execute()
    assert ei.value.status_code == 404
    assert error_of(ei.value)["message"] == f"File not found: {'1' + 'z' * 32}."


def test_metadata_times_version_checksums_and_size(drive: Any) -> None:
    from googleapiclient.http import MediaInMemoryUpload

    fields = "id,createdTime,modifiedTime,version,md5Checksum,size"
    media = MediaInMemoryUpload(b"hello", mimetype="text/plain")
    f = drive.files().create(body={"name": "h.txt"}, media_body=media, fields=fields).execute()
    assert TIME_RE.match(f["createdTime"]) and TIME_RE.match(f["modifiedTime"])
    assert f["md5Checksum"] == "5d41402abc4b2a76b9719d911017c592"
    assert f["size"] == "5" and isinstance(f["size"], str)
    versions = [int(f["version"])]
    for i in range(3):
        g = drive.files().update(fileId=f["id"], body={"name": f"h{i}.txt"}, fields=fields)
        versions.append(int(g.execute()["version"]))
    assert versions == sorted(versions) and len(set(versions)) == 4
    folder = drive.files().create(body={"name": "d", "mimeType": FOLDER}, fields="*").execute()
    assert "size" not in folder and "md5Checksum" not in folder


def test_app_properties_limit_is_124_bytes_key_plus_value(drive: Any) -> None:
    ok = {"k": "v" * 123}
    f = drive.files().create(body={"name": "p", "appProperties": ok}, fields="id,appProperties")
    assert f.execute()["appProperties"] == ok
    with pytest.raises(HttpError) as ei:
        drive.files().create(body={"name": "p", "appProperties": {"k": "v" * 124}}).execute()
    assert ei.value.status_code == 400
    with pytest.raises(HttpError) as ei:
        drive.files().create(body={"name": "p", "appProperties": {"kk": "é" * 62}}).execute()
    assert ei.value.status_code == 400  # 2 + 124 bytes in UTF-8


def test_update_patches_metadata_and_merges_app_properties(drive: Any) -> None:
    body = {"name": "a", "appProperties": {"x": "1", "y": "2"}}
    f = drive.files().create(body=body, fields="id,modifiedTime").execute()
    upd = {"name": "b", "appProperties": {"y": None, "z": "3"}, "description": "d"}
    g = drive.files().update(fileId=f["id"], body=upd, fields="name,appProperties,description")
    assert g.execute() == {"name": "b", "appProperties": {"x": "1", "z": "3"}, "description": "d"}
    with pytest.raises(HttpError) as ei:
        drive.files().update(fileId=f["id"], body={"parents": ["root"]}).execute()
    assert ei.value.status_code == 403
    with pytest.raises(HttpError) as ei:
        drive.files().update(fileId=f["id"], body={"size": "3"}).execute()
    assert ei.value.status_code == 403 and reason_of(ei.value) == "fieldNotWritable"


def test_update_moves_with_add_and_remove_parents(drive: Any, folder: str) -> None:
    other = drive.files().create(body={"name": "o", "mimeType": FOLDER}).execute()["id"]
    f = drive.files().create(body={"name": "m", "parents": [folder]}).execute()
    moved = (
        drive.files()
        .update(fileId=f["id"], addParents=other, removeParents=folder, fields="parents")
        .execute()
    )
    assert moved["parents"] == [other]
    with pytest.raises(HttpError) as ei:  # keep the old parent and add one: one parent only
        drive.files().update(fileId=f["id"], addParents=folder, removeParents="root").execute()
    assert ei.value.status_code == 400  # root is not a parent of the file


def test_add_parents_alone_moves_the_callers_own_file(drive: Any, folder: str) -> None:
    """Drive moves an item when only addParents is given (it allows a single parent)."""
    other = drive.files().create(body={"name": "o", "mimeType": FOLDER}).execute()["id"]
    f = drive.files().create(body={"name": "m", "parents": [folder]}).execute()
    moved = drive.files().update(fileId=f["id"], addParents=other, fields="parents").execute()
    assert moved["parents"] == [other]
    listed = drive.files().list(q=f"'{folder}' in parents", fields="files(id)").execute()
    assert listed["files"] == []


def test_delete_folder_deletes_descendants(drive: Any, folder: str) -> None:
    sub = drive.files().create(body={"name": "s", "mimeType": FOLDER, "parents": [folder]})
    sub_id = sub.execute()["id"]
    leaf = drive.files().create(body={"name": "l", "parents": [sub_id]}).execute()["id"]
    assert drive.files().delete(fileId=folder).execute() == ""
    for fid in (folder, sub_id, leaf):
        with pytest.raises(HttpError) as ei:
            drive.files().get(fileId=fid).execute()
        assert ei.value.status_code == 404
    with pytest.raises(HttpError) as ei:
        drive.files().delete(fileId=folder).execute()
    assert ei.value.status_code == 404


def test_trash_is_visible_to_get_and_cascades_to_children(drive: Any, folder: str) -> None:
    leaf = drive.files().create(body={"name": "l", "parents": [folder]}).execute()["id"]
    drive.files().update(fileId=folder, body={"trashed": True}).execute()
    got = drive.files().get(fileId=leaf, fields="trashed,explicitlyTrashed,trashedTime").execute()
    assert got["trashed"] is True and got["explicitlyTrashed"] is False
    assert TIME_RE.match(got["trashedTime"])
    drive.files().update(fileId=folder, body={"trashed": False}).execute()
    assert drive.files().get(fileId=leaf, fields="trashed").execute() == {"trashed": False}


def test_empty_trash_deletes_trashed_files(drive: Any) -> None:
    f = drive.files().create(body={"name": "t"}).execute()["id"]
    keep = drive.files().create(body={"name": "k"}).execute()["id"]
    drive.files().update(fileId=f, body={"trashed": True}).execute()
    drive.files().emptyTrash().execute()
    with pytest.raises(HttpError):
        drive.files().get(fileId=f).execute()
    drive.files().get(fileId=keep).execute()


def test_copy_makes_a_new_file_with_the_same_content(drive: Any) -> None:
    from googleapiclient.http import MediaInMemoryUpload

    media = MediaInMemoryUpload(b"data", mimetype="text/plain")
    src = drive.files().create(body={"name": "s.txt"}, media_body=media, fields="id,md5Checksum")
    s = src.execute()
    (cid,) = mint(drive)
    c = drive.files().copy(fileId=s["id"], body={"id": cid}, fields="id,name,md5Checksum")
    got = c.execute()
    assert got == {"id": cid, "name": "Copy of s.txt", "md5Checksum": s["md5Checksum"]}


def test_about_requires_fields(drive: Any) -> None:
    with pytest.raises(HttpError) as ei:
        drive.about().get().execute()
    assert ei.value.status_code == 400
    assert drive.about().get(fields="user(emailAddress)").execute()["user"]["emailAddress"]


def test_authorization_header_is_ignored(server: FakeDriveServer) -> None:
    http = AuthorizedHttp(Credentials(token="not-a-real-token"), http=build_http())
    drive = build_client(server.url, http=http)
    assert drive.files().create(body={"name": "x"}).execute()["name"] == "x"


def test_unmodelled_method_answers_501(drive: Any) -> None:
    f = drive.files().create(body={"name": "x"}).execute()
    with pytest.raises(HttpError) as ei:
        drive.permissions().list(fileId=f["id"]).execute()
    assert ei.value.status_code == 501


def test_malformed_json_body_is_400_and_the_server_keeps_serving(
    drive: Any, server: FakeDriveServer
) -> None:
    headers = {"content-type": "application/json"}
    url = server.url + "drive/v3/files?alt=json"
    resp, content = drive._http.request(url, "POST", body=b"{not json", headers=headers)
    assert resp.status == 400
    assert json.loads(content)["error"]["errors"][0]["reason"] == "parseError"
    resp, content = drive._http.request(url, "POST", body=b'{"nome": "x"}', headers=headers)
    assert resp.status == 400  # unknown field name
    assert drive.files().create(body={"name": "fine"}).execute()["name"] == "fine"
