"""Uploads (media, multipart, resumable) and downloads (alt=media, Range)."""

from __future__ import annotations

import hashlib
import io
import json
import os
from typing import Any

import pytest
from googleapiclient.errors import HttpError
from googleapiclient.http import MediaInMemoryUpload, MediaIoBaseDownload, MediaIoBaseUpload

from drivemr.testing.fakedrive import FakeDriveServer

KIB256 = 256 * 1024
# Bytes that a careless MIME parser would mangle: CR/LF pairs, a trailing newline, dashes.
AWKWARD = b"--boundary?\r\n\r\n\n\x00\xff" * 1000 + b"\r\n"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_create_with_upload_type_media(drive: Any, server: FakeDriveServer) -> None:
    media = MediaInMemoryUpload(AWKWARD, mimetype="application/x-awkward")
    got = drive.files().create(media_body=media, fields="id,name,mimeType,md5Checksum,size")
    f = got.execute()
    assert f["md5Checksum"] == md5(AWKWARD) and f["size"] == str(len(AWKWARD))
    assert f["mimeType"] == "application/x-awkward" and f["name"] == "Untitled"
    assert server.stats()["by_endpoint"]["files.create"] == 1


def test_create_with_multipart_upload_is_byte_exact(drive: Any, folder: str) -> None:
    media = MediaIoBaseUpload(io.BytesIO(AWKWARD), mimetype="text/plain", resumable=False)
    body = {"name": "m.txt", "parents": [folder], "appProperties": {"k": "v"}}
    f = drive.files().create(body=body, media_body=media, fields="id,md5Checksum,appProperties")
    got = f.execute()
    assert got["md5Checksum"] == md5(AWKWARD) and got["appProperties"] == {"k": "v"}
    assert drive.files().get_media(fileId=got["id"]).execute() == AWKWARD


def test_resumable_upload_in_chunks(drive: Any, server: FakeDriveServer, folder: str) -> None:
    data = os.urandom(3 * KIB256 + 17)
    media = MediaIoBaseUpload(io.BytesIO(data), "application/octet-stream", KIB256, True)
    req = drive.files().create(
        body={"name": "r.bin", "parents": [folder]}, media_body=media, fields="id,md5Checksum"
    )
    progress, resp = req.next_chunk()
    assert resp is None and progress.resumable_progress == KIB256
    while resp is None:
        progress, resp = req.next_chunk()
    assert resp["md5Checksum"] == md5(data)
    assert server.stats()["by_status"]["308"] == 3


def test_resumable_chunk_not_a_multiple_of_256k_keeps_whole_units(drive: Any) -> None:
    """googleapiclient follows the Range of each 308, so an odd chunk size still works."""
    data = os.urandom(700_000)
    media = MediaIoBaseUpload(io.BytesIO(data), "application/octet-stream", 300_000, True)
    req = drive.files().create(body={"name": "odd"}, media_body=media, fields="md5Checksum")
    progress, resp = req.next_chunk()
    assert progress.resumable_progress == KIB256  # 300000 sent, 262144 kept
    while resp is None:
        progress, resp = req.next_chunk()
    assert resp["md5Checksum"] == md5(data)


def test_resumable_protocol_on_the_wire(drive: Any, server: FakeDriveServer) -> None:
    """Session URI in Location, 308 + Range, ``bytes */N`` status queries, final 200."""
    http = drive._http
    data = os.urandom(2 * KIB256 + 1000)
    n = len(data)
    start = server.url + "upload/drive/v3/files?uploadType=resumable&fields=id,md5Checksum"
    headers = {
        "content-type": "application/json; charset=UTF-8",
        "X-Upload-Content-Type": "application/octet-stream",
        "X-Upload-Content-Length": str(n),
    }
    resp, _ = http.request(start, "POST", body=json.dumps({"name": "w"}), headers=headers)
    assert resp.status == 200
    session = resp["location"]
    assert session.startswith(server.url + "upload/drive/v3/files?") and "upload_id=" in session

    status_query = {"Content-Range": f"bytes */{n}", "content-length": "0"}
    resp, _ = http.request(session, "PUT", body=b"", headers=status_query)
    assert resp.status == 308 and "range" not in resp  # nothing stored yet

    chunk = {"Content-Range": f"bytes 0-299999/{n}"}
    resp, _ = http.request(session, "PUT", body=data[:300_000], headers=chunk)
    assert resp.status == 308 and resp["range"] == f"bytes=0-{KIB256 - 1}"

    resp, _ = http.request(session, "PUT", body=b"", headers=status_query)
    assert resp.status == 308 and resp["range"] == f"bytes=0-{KIB256 - 1}"

    rest = {"Content-Range": f"bytes {KIB256}-{n - 1}/{n}"}
    resp, content = http.request(session, "PUT", body=data[KIB256:], headers=rest)
    assert resp.status == 200
    done = json.loads(content)
    assert done["md5Checksum"] == md5(data)

    resp, content = http.request(session, "PUT", body=b"", headers=status_query)
    assert resp.status == 200 and json.loads(content) == done  # the session stays answered

    bogus = server.url + "upload/drive/v3/files?uploadType=resumable&upload_id=nope"
    resp, content = http.request(bogus, "PUT", body=b"", headers=status_query)
    assert resp.status == 404 and json.loads(content)["error"]["code"] == 404


def test_expired_upload_session_is_404(drive: Any, server: FakeDriveServer) -> None:
    data = os.urandom(2 * KIB256)
    media = MediaIoBaseUpload(io.BytesIO(data), "application/octet-stream", KIB256, True)
    req = drive.files().create(body={"name": "late"}, media_body=media)
    req.next_chunk()
    server.configure(upload_session_ttl=0.0)
    with pytest.raises(HttpError) as ei:
        req.next_chunk()
    assert ei.value.status_code == 404


def test_resumable_upload_resumes_after_a_failed_chunk(drive: Any, server: FakeDriveServer) -> None:
    data = os.urandom(3 * KIB256)
    media = MediaIoBaseUpload(io.BytesIO(data), "application/octet-stream", KIB256, True)
    req = drive.files().create(body={"name": "r"}, media_body=media, fields="md5Checksum")
    req.next_chunk()
    server.configure(fault_rate=1.0, fault_codes=(503,))
    with pytest.raises(HttpError) as ei:
        req.next_chunk()
    assert ei.value.status_code == 503
    server.configure(fault_rate=0.0)
    resp = None
    while resp is None:  # googleapiclient asks `bytes */N` first, then goes on
        _, resp = req.next_chunk()
    assert resp["md5Checksum"] == md5(data)


def test_update_content_with_media_multipart_and_resumable(drive: Any) -> None:
    f = drive.files().create(body={"name": "u.txt"}, fields="id,version").execute()
    fid = f["id"]
    one = MediaInMemoryUpload(b"one", mimetype="text/plain")
    got = drive.files().update(fileId=fid, media_body=one, fields="md5Checksum,version")
    g1 = got.execute()
    assert g1["md5Checksum"] == md5(b"one") and int(g1["version"]) > int(f["version"])
    two = MediaIoBaseUpload(io.BytesIO(b"two!"), mimetype="text/plain", resumable=False)
    g2 = drive.files().update(fileId=fid, body={"name": "v.txt"}, media_body=two, fields="*")
    g2 = g2.execute()
    assert (g2["name"], g2["size"], g2["md5Checksum"]) == ("v.txt", "4", md5(b"two!"))
    big = os.urandom(KIB256 + 5)
    three = MediaIoBaseUpload(io.BytesIO(big), "application/octet-stream", KIB256, True)
    g3 = drive.files().update(fileId=fid, media_body=three, fields="md5Checksum").execute()
    assert g3["md5Checksum"] == md5(big)
    assert drive.files().get_media(fileId=fid).execute() == big


def test_download_with_range_answers_206(drive: Any, server: FakeDriveServer) -> None:
    data = bytes(range(256)) * 40
    media = MediaInMemoryUpload(data, mimetype="application/octet-stream")
    fid = drive.files().create(body={"name": "d"}, media_body=media).execute()["id"]

    req = drive.files().get_media(fileId=fid)
    req.headers["Range"] = "bytes=10-19"
    assert req.execute() == data[10:20]
    assert server.stats()["by_status"]["206"] == 1

    out = io.BytesIO()
    down = MediaIoBaseDownload(out, drive.files().get_media(fileId=fid), chunksize=3000)
    done = False
    while not done:
        _, done = down.next_chunk()
    assert out.getvalue() == data

    req = drive.files().get_media(fileId=fid)
    req.headers["Range"] = f"bytes={len(data)}-"
    with pytest.raises(HttpError) as ei:
        req.execute()
    assert ei.value.status_code == 416


def test_folders_are_not_downloadable(drive: Any, folder: str) -> None:
    with pytest.raises(HttpError) as ei:
        drive.files().get_media(fileId=folder).execute()
    assert ei.value.status_code == 403
