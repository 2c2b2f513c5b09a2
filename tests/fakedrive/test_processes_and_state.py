"""Several client processes at once, state that survives a restart, and the command."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from googleapiclient.errors import HttpError

from drivemr.testing.fakedrive import FakeDriveServer, build_client
from drivemr.testing.fakedrive.helpers import mint

ROOT = Path(__file__).resolve().parents[2]

RACER = r"""
import json, random, sys
from googleapiclient.errors import HttpError
from drivemr.testing.fakedrive import build_client
url, parent, ids = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
drive = build_client(url)
random.shuffle(ids)
sys.stdin.readline()  # start together
out = {}
for fid in ids:
    try:
        drive.files().create(body={"id": fid, "name": "claim", "parents": [parent]}).execute()
        out[fid] = 200
    except HttpError as exc:
        out[fid] = exc.status_code
print(json.dumps(out))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def test_three_processes_race_for_the_same_minted_ids(
    drive: Any, server: FakeDriveServer, folder: str
) -> None:
    ids = mint(drive, 40)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, server.url, folder, json.dumps(ids)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
            cwd=ROOT,
        )
        for _ in range(3)
    ]
    outs = [p.communicate("go\n", timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    results = [json.loads(out) for out, _ in outs]
    for fid in ids:
        codes = sorted(r[fid] for r in results)
        assert codes == [200, 409, 409], (fid, codes)
    listed = drive.files().list(q=f"'{folder}' in parents", pageSize=1000).execute()["files"]
    assert sorted(f["id"] for f in listed) == sorted(ids)


def test_threads_in_one_process_with_one_client_each(server: FakeDriveServer, folder: str) -> None:
    drive = build_client(server.url)
    ids = mint(drive, 20)
    wins: list[str] = []
    lock = threading.Lock()

    def race() -> None:
        mine = build_client(server.url)  # httplib2 is not thread-safe: one client per thread
        for fid in ids:
            try:
                mine.files().create(body={"id": fid, "name": "c", "parents": [folder]}).execute()
                with lock:
                    wins.append(fid)
            except HttpError as exc:
                assert exc.status_code == 409

    threads = [threading.Thread(target=race) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == sorted(ids)


def test_state_file_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "drive.json"
    with FakeDriveServer(state_file=str(state)) as srv:
        drive = build_client(srv.url)
        used, spare = mint(drive, 2)
        from googleapiclient.http import MediaInMemoryUpload

        media = MediaInMemoryUpload(b"kept", mimetype="text/plain")
        body = {"id": used, "name": "k.txt", "appProperties": {"a": "b"}}
        drive.files().create(body=body, media_body=media).execute()
        token = drive.changes().getStartPageToken().execute()["startPageToken"]
        root_id = srv.state.root_id
    assert state.exists()
    with FakeDriveServer(state_file=str(state)) as srv:
        drive = build_client(srv.url)
        assert srv.state.root_id == root_id
        got = drive.files().get(fileId=used, fields="name,appProperties,md5Checksum").execute()
        assert got["name"] == "k.txt" and got["appProperties"] == {"a": "b"}
        assert drive.files().get_media(fileId=used).execute() == b"kept"
        with pytest.raises(HttpError) as ei:
            drive.files().create(body={"id": used, "name": "again"}).execute()
        assert ei.value.status_code == 409
        drive.files().create(body={"id": spare, "name": "minted before the restart"}).execute()
        assert drive.changes().getStartPageToken().execute()["startPageToken"] > token
        changes = drive.changes().list(pageToken=token, fields="changes(fileId)").execute()
        assert [c["fileId"] for c in changes["changes"]] == [spare]


def test_fake_drive_command(tmp_path: Path) -> None:
    state = tmp_path / "cli.json"
    cmd = [
        sys.executable,
        "-c",
        "from drivemr.testing.fakedrive.cli import fake_drive; fake_drive()",
        "--port",
        "0",
        "--state",
        str(state),
    ]

    def start() -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.fullmatch(r"fake Google Drive v3 listening at (http://127\.0\.0\.1:\d+/)\n", line)
        assert m, line
        return proc, m.group(1)

    proc, url = start()
    try:
        drive = build_client(url)
        fid = drive.files().create(body={"name": "from-cli"}).execute()["id"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    proc, url = start()
    try:
        assert build_client(url).files().get(fileId=fid).execute()["name"] == "from-cli"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
