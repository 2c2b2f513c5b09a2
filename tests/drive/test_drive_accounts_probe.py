"""The minted-id check between accounts (drivemr.stores.drive.accounts) on the fake: what
it writes, what it learns under both policies, and that forged or broken probe files in
the root never crash it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from drivemr.errors import ConfigError
from drivemr.stores.drive import DriveStore
from drivemr.stores.drive.accounts import PROBE_PREFIX, check_minted_ids, publish_minted_ids
from drivemr.testing.fakedrive import FakeDriveServer


@pytest.fixture
def srv(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[FakeDriveServer]:
    server = FakeDriveServer(port=0).start()
    monkeypatch.setenv("DRIVEMR_DRIVE_ENDPOINT", server.url)
    monkeypatch.setenv("DRIVEMR_CONFIG_DIR", str(tmp_path / "config"))
    try:
        yield server
    finally:
        server.stop()


def _as(monkeypatch: pytest.MonkeyPatch, account: str, url: str) -> DriveStore:
    monkeypatch.setenv("DRIVEMR_DRIVE_TOKEN", account)
    return DriveStore.from_url(url, write_rate=None)


@pytest.fixture
def root(srv: FakeDriveServer, monkeypatch: pytest.MonkeyPatch) -> str:
    drive_id = srv.create_drive("team", organizer="alice", members={"bob": "writer"})
    with _as(monkeypatch, "alice", "drive://") as alice:
        return alice.create_root(shared_drive=drive_id)


def _probes(store: DriveStore) -> list[str]:
    return sorted(e.name for e in store.list("root") if e.name.startswith(PROBE_PREFIX))


def test_first_account_alone_only_publishes_once(
    root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _as(monkeypatch, "alice", root) as alice:
        seen = check_minted_ids(alice)  # a worker: tries, never publishes
        assert seen.tested == () and _probes(alice) == []
        publish_minted_ids(alice)  # a submit
        assert _probes(alice) == [PROBE_PREFIX + seen.account]
        publish_minted_ids(alice)
        assert len(_probes(alice)) == 1  # one file per account, ever


@pytest.mark.parametrize("policy", ["account", "anyone"])
def test_a_second_account_learns_the_policy(
    srv: FakeDriveServer, root: str, monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    srv.configure(minted_ids=policy)
    with _as(monkeypatch, "alice", root) as alice:
        publish_minted_ids(alice)
        alice_id = alice.account_id()
    with _as(monkeypatch, "bob", root) as bob:
        if policy == "account":
            with pytest.raises(ConfigError) as err:
                check_minted_ids(bob)
            text = str(err.value)
            assert "same Google account" in text and alice_id in text and "\n" not in text
            assert len(_probes(bob)) == 1  # bob wrote nothing of his
        else:
            seen = check_minted_ids(bob, publish=True)
            assert seen.tested == (alice_id,)
            assert len(_probes(bob)) == 2
            again = check_minted_ids(bob)  # the scratch left behind answers it: no new write
            assert again.tested == (alice_id,)


@pytest.mark.parametrize(
    "content",
    [b"not json", b'{"ids": "nope"}', b'{"ids": [1, 2, "x"]}', b"\xff\xfe", b"[]", b"{}" * 9000],
)
def test_broken_probe_files_are_skipped(
    srv: FakeDriveServer, root: str, monkeypatch: pytest.MonkeyPatch, content: bytes
) -> None:
    srv.configure(minted_ids="account")
    with _as(monkeypatch, "alice", root) as alice:
        (fid,) = alice.mint_ids(1)
        alice.create("root", PROBE_PREFIX + "12345678901234567890", fid, content)
        alice.create("root", PROBE_PREFIX + "../../evil", alice.mint_ids(1)[0], b"{}")
    with _as(monkeypatch, "bob", root) as bob:
        seen = check_minted_ids(bob)
        assert seen.tested == ()
