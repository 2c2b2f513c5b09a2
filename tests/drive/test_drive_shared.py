"""The Drive store in a shared drive, as several accounts (bearer tokens on the fake):
every call says supportsAllDrives, listings search the drive's corpus, the change feed is
the drive's own log, big creates go resumable, and the item cap and a missing delete role
give clear errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from drivemr.errors import PermanentStoreError
from drivemr.stores.drive import DriveStore
from drivemr.testing.fakedrive import FakeDriveServer


@pytest.fixture
def srv(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[FakeDriveServer]:
    server = FakeDriveServer(port=0).start()
    monkeypatch.setenv("DRIVEMR_DRIVE_ENDPOINT", server.url)
    monkeypatch.setenv("DRIVEMR_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("DRIVEMR_DRIVE_TOKEN", raising=False)
    try:
        yield server
    finally:
        server.stop()


def _as(monkeypatch: pytest.MonkeyPatch, account: str, url: str = "drive://") -> DriveStore:
    monkeypatch.setenv("DRIVEMR_DRIVE_TOKEN", account)
    return DriveStore.from_url(url, write_rate=None)


@pytest.fixture
def team_root(srv: FakeDriveServer, monkeypatch: pytest.MonkeyPatch) -> str:
    drive_id = srv.create_drive("team", organizer="alice", members={"bob": "writer"})
    with _as(monkeypatch, "alice") as alice:
        return alice.create_root(name="drivemr", shared_drive=drive_id)


def test_token_names_the_account(srv: FakeDriveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with _as(monkeypatch, "alice") as alice:
        url = alice.create_root(name="private")
    with (
        _as(monkeypatch, "mallory", url) as mallory,
        pytest.raises(PermanentStoreError, match="not visible to this sign-in"),
    ):
        mallory.list("root")
    with _as(monkeypatch, "alice", url) as again:
        assert again.list("root") == []


def test_shared_drive_root_lists_and_feeds_from_the_drive_log(
    srv: FakeDriveServer, team_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _as(monkeypatch, "bob", team_root) as bob, _as(monkeypatch, "alice", team_root) as alice:
        assert bob.shared_drive_id() is not None
        cursor = bob.changes_cursor()
        (fid,) = alice.mint_ids(1)
        alice.create("root", "job.json", fid, b"{}")
        # bob sees alice's new file at once, by listing and in the drive's change feed
        assert [f.id for f in bob.list("root")] == [fid]
        changes = bob.poll_changes(cursor)
        assert changes.folders is not None and "root" in changes.folders
        # the users' own logs never hear of it (Drive's documented split)
        srv.configure(misbehave=())
        bare = DriveStore.from_url("drive://", write_rate=None)
        with bare:
            user_cursor = bare.changes_cursor()
        (fid2,) = alice.mint_ids(1)
        alice.create("root", "more", fid2, b"x")
        with bare:
            assert bare.shared_drive_id() is None
        changes = bob.poll_changes(changes.cursor)
        assert changes.folders is not None and "root" in changes.folders
        assert user_cursor


def test_big_create_goes_resumable_in_a_shared_drive(
    srv: FakeDriveServer, team_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = b"s" * (5 * 1024 * 1024)  # 5 MB exactly: one multipart request
    data = bytes(range(256)) * (6 * 1024 * 4)  # 6 MiB: a resumable session and its chunks
    with _as(monkeypatch, "bob", team_root) as bob:
        srv.reset_stats()
        (fid0, fid) = bob.mint_ids(2)
        bob.create("root", "small.bin", fid0, small)
        assert srv.stats()["by_endpoint"].get("upload", 0) == 0
        info = bob.create("root", "big.bin", fid, data)
        assert srv.stats()["by_endpoint"].get("upload", 0) >= 1
        assert info.size == len(data)
        assert bob.read(fid) == data


def test_item_cap_and_delete_role_say_what_to_do(
    srv: FakeDriveServer, team_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _as(monkeypatch, "bob", team_root) as bob:
        (fid,) = bob.mint_ids(1)
        bob.create("root", "a", fid, b"a")
        with pytest.raises(PermanentStoreError) as err:
            bob.delete(fid)
        text = str(err.value)
        assert "fileOrganizer" in text and ".." not in text
        srv.configure(drive_item_limit=1)
        (fid2,) = bob.mint_ids(1)
        with pytest.raises(PermanentStoreError) as err:
            bob.create("root", "b", fid2, b"b")
        assert "drivemr clean" in str(err.value) and ".." not in str(err.value)
