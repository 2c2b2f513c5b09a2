"""The Drive store against the fake Drive server: create-once, lost acknowledgements,
the retry cap, errors, pagination, the changes feed, pacing and threads."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drivemr.errors import (
    AlreadyExists,
    AuthError,
    NotFound,
    PermanentStoreError,
    TransientStoreError,
    UnusableId,
)
from drivemr.stores import open_store
from drivemr.stores.drive import SAME_ACCOUNT_HELP, DriveStore, WritePacer

MakeStore = Callable[..., DriveStore]


def no_sleep(_: float) -> None:
    pass


def test_open_store_reaches_the_fake(drive_root: str) -> None:
    store = open_store(drive_root, write_rate=None)
    assert isinstance(store, DriveStore) and store.url == drive_root
    assert store.list(store.root_id) == []
    root = store.get(store.root_id)
    assert root.is_folder and root.name == "drivemr-test"


def test_create_once_across_clients(make_drive_store: MakeStore) -> None:
    a, b = make_drive_store(), make_drive_store()
    (fid,) = a.mint_ids(1)
    a.create(a.root_id, "claim", fid, b"nonce-a")
    with pytest.raises(AlreadyExists, match="409"):
        b.create(b.root_id, "claim", fid, b"nonce-b")
    with pytest.raises(AlreadyExists):  # same content, first try: still not ours
        b.create(b.root_id, "claim", fid, b"nonce-a")
    assert a.read(fid) == b"nonce-a"
    assert a.stats["recovered_creates"] == 0 and b.stats["recovered_creates"] == 0


def test_lost_ack_create_is_recognised_as_ours(
    fake_drive: Any, make_drive_store: MakeStore
) -> None:
    store = make_drive_store(sleep=no_sleep)
    folder, fid = store.mint_ids(2)
    fake_drive.configure(lost_ack_rate=1.0, lost_ack_methods=("files.create",))
    try:
        info = store.create(store.root_id, "claim", fid, b"nonce-1")
        made = store.create(store.root_id, "jobs", folder, folder=True)
    finally:
        fake_drive.configure(lost_ack_rate=0.0)
    assert info.id == fid and info.size == 7 and made.is_folder
    assert store.stats["recovered_creates"] == 2
    assert fake_drive.stats()["faults"] >= 2
    listed = store.list(store.root_id)
    assert sorted(i.id for i in listed) == sorted([fid, folder])  # no duplicates
    assert store.read(fid) == b"nonce-1"


def test_lost_ack_then_someone_elses_file_is_already_exists(
    fake_drive: Any, make_drive_store: MakeStore
) -> None:
    """Our create was lost before it reached Drive, someone else won the id meanwhile:
    the 409 on our retry must not be taken for our own success."""
    calls = {"n": 0}

    def heal(_: float) -> None:  # the first retry happens after the outage
        calls["n"] += 1
        fake_drive.configure(fault_rate=0.0)

    mine, theirs = make_drive_store(sleep=heal), make_drive_store()
    (fid,) = mine.mint_ids(1)
    theirs.create(theirs.root_id, "claim", fid, b"theirs")
    fake_drive.configure(fault_rate=1.0, fault_codes=(503,))
    with pytest.raises(AlreadyExists):
        mine.create(mine.root_id, "claim", fid, b"mine!!")
    assert calls["n"] == 1 and mine.stats["recovered_creates"] == 0


def test_lost_ack_on_a_resumable_create(
    fake_drive: Any, make_drive_store: MakeStore, tmp_path: Path
) -> None:
    store = make_drive_store(sleep=no_sleep)
    src = tmp_path / "big.bin"
    payload = os.urandom(6 * 1024 * 1024 + 123)
    src.write_bytes(payload)
    (fid,) = store.mint_ids(1)
    fake_drive.configure(lost_ack_rate=1.0, lost_ack_methods=("files.create",))
    try:
        info = store.create(store.root_id, "big.bin", fid, source=src)
    finally:
        fake_drive.configure(lost_ack_rate=0.0)
    assert info.md5 == hashlib.md5(payload).hexdigest() and info.size == len(payload)
    assert fake_drive.stats()["lost_acks"] == 1 and store.stats["retries"] >= 1
    assert [i.id for i in store.list(store.root_id)] == [fid]
    out = tmp_path / "out" / "big.bin"
    store.download(fid, out)
    assert out.read_bytes() == payload
    assert [p.name for p in out.parent.iterdir()] == ["big.bin"]  # no temporary left


def test_lost_ack_on_update_and_delete(fake_drive: Any, make_drive_store: MakeStore) -> None:
    def heal(_: float) -> None:  # acks are lost until the first retry
        fake_drive.configure(lost_ack_rate=0.0)

    store = make_drive_store(sleep=heal)
    (fid,) = store.mint_ids(1)
    store.create(store.root_id, "hb", fid, b"1")
    fake_drive.configure(lost_ack_rate=1.0, lost_ack_methods=("files.update", "files.delete"))
    info = store.update(fid, b"22")
    assert info.size == 2 and store.read(fid) == b"22"
    fake_drive.configure(lost_ack_rate=1.0)
    store.delete(fid)  # the retry meets 404: missing is fine
    assert store.stats["retries"] == 2
    with pytest.raises(NotFound):
        store.get(fid)


def test_retry_cap_under_permanent_outage(fake_drive: Any, make_drive_store: MakeStore) -> None:
    sleeps: list[float] = []
    store = make_drive_store(sleep=sleeps.append, max_attempts=8)
    (fid,) = store.mint_ids(1)
    store.reset_stats()
    fake_drive.reset_stats()
    fake_drive.configure(fault_rate=1.0, fault_codes=(500, 503, 429))
    try:
        with pytest.raises(TransientStoreError):
            store.create(store.root_id, "x", fid, b"x")
    finally:
        fake_drive.configure(fault_rate=0.0)
    stats = store.stats
    assert stats["requests"] == 8 and stats["writes"] == 8 and stats["retries"] == 7
    assert stats["gave_up"] == 1 and len(sleeps) == 7
    assert fake_drive.stats()["requests"] == 8


def test_faults_and_lost_acks_never_lose_or_duplicate(
    fake_drive: Any, make_drive_store: MakeStore
) -> None:
    store = make_drive_store(sleep=no_sleep, max_attempts=30)
    (folder,) = store.mint_ids(1)
    store.create(store.root_id, "results", folder, folder=True)
    ids = store.mint_ids(40)
    fake_drive.configure(
        fault_rate=0.3, fault_codes=(500, 503, 429), lost_ack_rate=0.3, name_query_lag=5.0
    )
    try:
        for n, fid in enumerate(ids):
            info = store.create(folder, f"r{n}", fid, f"result {n} {fid}".encode())
            assert info.id == fid
        listed = store.list(folder)
    finally:
        fake_drive.configure(fault_rate=0.0, lost_ack_rate=0.0, name_query_lag=0.0)
    assert sorted(i.id for i in listed) == sorted(ids)
    assert store.stats["retries"] > 0 and store.stats["recovered_creates"] > 0


def test_permanent_errors_carry_drives_message(make_drive_store: MakeStore) -> None:
    store = make_drive_store()
    (ghost,) = store.mint_ids(1)
    with pytest.raises(NotFound) as info:
        store.get(ghost)
    assert "404" in str(info.value) and ghost in str(info.value)
    with pytest.raises(PermanentStoreError) as info2:
        store.create(store.root_id, "claim", "neverMintedId0123456789abcdefgh", b"x")
    text = str(info2.value)
    assert "400" in text and SAME_ACCOUNT_HELP in text and ".." not in text
    assert isinstance(info2.value, UnusableId)  # the worker leaves a job whose ids these are
    assert store.stats["retries"] == 0


def test_listing_drains_every_page(make_drive_store: MakeStore) -> None:
    store = make_drive_store(page_size=7)
    (folder,) = store.mint_ids(1)
    store.create(store.root_id, "claims", folder, folder=True)
    ids = store.mint_ids(30)
    store.create_many((folder, f"c{n}", fid, b"") for n, fid in enumerate(ids))
    assert store.shared_drive_id() is None  # asked once per store, before the first listing
    store.reset_stats()
    listed = store.list(folder)
    assert sorted(i.id for i in listed) == sorted(ids)
    assert store.stats["reads"] == 5  # ceil(30 / 7) pages, nothing else


def test_changes_feed_drains_pages(make_drive_store: MakeStore) -> None:
    writer = make_drive_store()
    watcher = make_drive_store(changes_page_size=3)
    claims, results = writer.mint_ids(2)
    writer.create(writer.root_id, "claims", claims, folder=True)
    writer.create(writer.root_id, "results", results, folder=True)
    cursor = watcher.changes_cursor()
    quiet = watcher.poll_changes(cursor)
    assert quiet.folders == frozenset() and not quiet.anything
    ids = writer.mint_ids(10)
    for n, fid in enumerate(ids):
        writer.create(claims if n < 9 else results, f"f{n}", fid, b"x")
    watcher.reset_stats()
    seen = watcher.poll_changes(quiet.cursor)
    assert seen.folders is not None and {claims, results} <= seen.folders
    assert watcher.stats["reads"] >= 4  # 10 changes, 3 per page
    again = watcher.poll_changes(seen.cursor)
    assert not again.anything
    writer.delete(ids[0])
    removed = watcher.poll_changes(again.cursor)
    assert removed.anything


def test_writes_are_paced_through_the_pacer(make_drive_store: MakeStore) -> None:
    class Clock:
        now = 0.0
        slept: list[float] = []

        def __call__(self) -> float:
            return self.now

        def sleep(self, s: float) -> None:
            self.slept.append(s)
            self.now += s

    clock = Clock()
    pacer = WritePacer(3.0, burst=1.0, clock=clock, sleep=clock.sleep)
    store = make_drive_store(pacer=pacer)
    ids = store.mint_ids(6)
    for n, fid in enumerate(ids):
        store.create(store.root_id, f"f{n}", fid, b"x")
    store.list(store.root_id)
    store.get(ids[0])
    assert pacer.acquired == 6
    assert clock.now == pytest.approx(5 / 3.0)  # 1 free, then 3 per second


def test_fake_write_quota_403_is_retried(fake_drive: Any, make_drive_store: MakeStore) -> None:
    store = make_drive_store(backoff_base=0.05, backoff_max=0.5, max_attempts=20)
    ids = store.mint_ids(10)
    fake_drive.reset_stats()
    fake_drive.configure(write_rate=4.0)
    try:
        for n, fid in enumerate(ids):
            store.create(store.root_id, f"f{n}", fid, b"x")
    finally:
        fake_drive.configure(write_rate=None)
    refused = fake_drive.stats()["rate_limited"]
    assert refused > 0 and store.stats["retries"] == refused
    assert sorted(i.id for i in store.list(store.root_id)) == sorted(ids)


def test_pacing_at_the_quota_is_never_refused(fake_drive: Any, make_drive_store: MakeStore) -> None:
    store = make_drive_store(pacer=WritePacer(10.0, burst=2.0))
    ids = store.mint_ids(12)
    fake_drive.reset_stats()
    fake_drive.configure(write_rate=10.0)
    try:
        for n, fid in enumerate(ids):
            store.create(store.root_id, f"f{n}", fid, b"x")
    finally:
        fake_drive.configure(write_rate=None)
    assert fake_drive.stats()["rate_limited"] == 0 and store.stats["retries"] == 0


def test_one_store_many_threads(make_drive_store: MakeStore) -> None:
    store = make_drive_store()
    folders = store.mint_ids(6)
    errors: list[BaseException] = []
    created: dict[str, list[str]] = {}
    services: list[Any] = []

    def work(k: int) -> None:
        try:
            services.append(store.session.service())
            folder = folders[k]
            store.create(store.root_id, f"t{k}", folder, folder=True)
            ids = store.mint_ids(8)
            for n, fid in enumerate(ids):
                store.create(folder, f"f{n}", fid, f"{k}-{n}".encode())
                assert store.read(fid) == f"{k}-{n}".encode()
            created[folder] = ids
            assert sorted(i.id for i in store.list(folder)) == sorted(ids)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    mine = store.session.service()
    assert len({id(s) for s in [*services, mine]}) == 7  # one service per thread (6 + main)
    # A thread that ended leaves no connection behind: the next thread closes its sockets.
    late = threading.Thread(target=lambda: store.list(store.root_id))
    late.start()
    late.join()
    assert [t for t, _ in store.session.https] == [threading.main_thread(), late]
    assert sorted(i.id for i in store.list(store.root_id)) == sorted(folders)


def test_create_root_on_the_class_and_root_hint(drive_env: dict[str, str]) -> None:
    url = DriveStore.create_root(name="another", write_rate=None)
    store = DriveStore.from_url(url, write_rate=None)
    assert store.get(store.root_id).name == "another"
    store.delete(store.root_id)
    with pytest.raises(NotFound, match="same OAuth client"):
        store.list(store.root_id)
    with pytest.raises(NotFound, match="same OAuth client"):
        store.create(store.root_id, "x", store.mint_ids(1)[0], b"")


class TokenEndpoint:
    """A local stand-in for oauth2.googleapis.com/token (google-auth-httplib2 refreshes
    through httplib2, which `responses` cannot mock)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        import http.server
        import json

        payload = json.dumps(body).encode()
        self.calls = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.calls += 1
                self.rfile.read(int(self.headers.get("content-length", "0")))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _user_credentials(token_uri: str, expired: bool) -> Any:
    from datetime import datetime, timedelta, timezone

    from google.oauth2.credentials import Credentials

    return Credentials(
        token="access-1",
        refresh_token="refresh-1",
        token_uri=token_uri,
        client_id="cid",
        client_secret="secret",
        expiry=datetime.now(timezone.utc).replace(tzinfo=None)
        + timedelta(hours=-1 if expired else 1),
    )


def test_authorized_http_refreshes_then_reaches_drive(drive_root: str, fake_drive: Any) -> None:
    endpoint = TokenEndpoint(200, {"access_token": "access-2", "expires_in": 3600})
    # The fake names an account by its bearer token: share the root with "access-2".
    from drivemr.testing.fakedrive import build_client

    build_client(fake_drive.url).permissions().create(
        fileId=drive_root.removeprefix("drive://"),
        body={"type": "user", "role": "writer", "emailAddress": "access-2@example.com"},
    ).execute()
    try:
        creds = _user_credentials(endpoint.url, expired=True)
        store = DriveStore.from_url(drive_root, credentials=creds, write_rate=None)
        assert store.list(store.root_id) == []
        assert endpoint.calls == 1 and creds.token == "access-2"
    finally:
        endpoint.close()


def test_revoked_sign_in_mid_run_is_an_auth_error(drive_root: str) -> None:
    endpoint = TokenEndpoint(
        400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
    )
    try:
        creds = _user_credentials(endpoint.url, expired=True)
        store = DriveStore.from_url(drive_root, credentials=creds, write_rate=None)
        with pytest.raises(AuthError, match="run `drivemr auth login` again"):
            store.get(store.root_id)
        assert store.stats["retries"] == 0
    finally:
        endpoint.close()
