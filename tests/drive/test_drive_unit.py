"""The Drive store's error mapping, retry layer, pacing and parsing, on scripted HTTP.

No server: every response (or network failure) is scripted, so the attempt cap, the
lost-acknowledgement recognition and Drive's error messages are checked exactly."""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import replace
from typing import Any

import httplib2
import pytest
from scripted_http import ScriptedHttp, answer, drive_error, file_json

from drivemr.errors import (
    AlreadyExists,
    AuthError,
    ConfigError,
    NotFound,
    PermanentStoreError,
    StoreError,
    TransientStoreError,
)
from drivemr.stores.drive import (
    SAME_ACCOUNT_HELP,
    DriveStore,
    StrictHttp,
    WritePacer,
    parse_rfc3339,
)
from drivemr.stores.drive.strict_http import _HTTPConnection

ENDPOINT = "http://fake.invalid/"
ROOT_ID = "ROOTFOLDER"


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def make_store(script: list[Any], **options: Any) -> tuple[DriveStore, ScriptedHttp, Sleeps]:
    http = ScriptedHttp(script)
    sleeps = Sleeps()
    options.setdefault("write_rate", None)
    options.setdefault("sleep", sleeps)
    options.setdefault("shared_drive", False)  # no root lookup in the scripts
    store = DriveStore(ROOT_ID, endpoint=ENDPOINT, http_factory=lambda: http, **options)
    return store, http, sleeps


# -- retry layer --


def test_rate_limit_403_is_retried_then_succeeds() -> None:
    store, http, sleeps = make_store(
        [
            drive_error(403, "User rate limit exceeded.", "userRateLimitExceeded"),
            drive_error(403, "Rate Limit Exceeded", "rateLimitExceeded"),
            answer(200, file_json("f1", "a", ROOT_ID, data=b"x")),
        ]
    )
    info = store.get("f1")
    assert info.id == "f1" and info.size == 1
    assert len(http.requests) == 3 and len(sleeps.calls) == 2
    stats = store.stats
    assert stats["requests"] == 3 and stats["retries"] == 2 and stats["reads"] == 3


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(status: int) -> None:
    store, http, _ = make_store(
        [drive_error(status, "try later"), answer(200, file_json("f1", "a", ROOT_ID))]
    )
    assert store.get("f1").name == "a"
    assert len(http.requests) == 2


def test_attempt_cap_surfaces_transient_error() -> None:
    cap = 5
    store, http, sleeps = make_store(
        [drive_error(503, "Backend Error", "backendError")] * 20, max_attempts=cap
    )
    with pytest.raises(TransientStoreError, match="Backend Error"):
        store.get("f1")
    assert len(http.requests) == cap and len(sleeps.calls) == cap - 1
    stats = store.stats
    assert stats["requests"] == cap and stats["retries"] == cap - 1 and stats["gave_up"] == 1


def test_backoff_is_full_jitter_capped_and_honours_retry_after() -> None:
    store, _, sleeps = make_store(
        [drive_error(503, "x")] * 6 + [drive_error(429, "slow down", retry_after="7")] * 2,
        max_attempts=8,
        backoff_base=1.0,
        backoff_max=10.0,
    )
    store.session.policy = replace(
        store.session.policy, rand=lambda: 1.0
    )  # the top of each jitter window
    with pytest.raises(TransientStoreError):
        store.get("f1")
    assert sleeps.calls == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    store2, _, sleeps2 = make_store(
        [drive_error(429, "slow down", retry_after="7"), answer(200, file_json("f", "a", ROOT_ID))]
    )
    store2.session.policy = replace(store2.session.policy, rand=lambda: 0.0)
    store2.get("f")
    assert sleeps2.calls == [7.0]


def test_network_errors_are_transient_dns_is_not() -> None:
    store, http, _ = make_store(
        [
            ConnectionResetError(104, "reset"),
            TimeoutError("timed out"),
            ConnectionRefusedError(111, "refused"),
            answer(200, file_json("f1", "a", ROOT_ID)),
        ]
    )
    assert store.get("f1").id == "f1"
    assert store.stats["transient"] == 3
    store, http, _ = make_store([httplib2.ServerNotFoundError("Unable to find the server")])
    with pytest.raises(PermanentStoreError, match="Unable to find the server"):
        store.get("f1")
    assert len(http.requests) == 1


# -- permanent errors carry Drive's message --


def test_not_found_carries_drives_message() -> None:
    store, http, _ = make_store([drive_error(404, "File not found: f1.", "notFound")])
    with pytest.raises(NotFound, match=r"File not found: f1\."):
        store.get("f1")
    assert len(http.requests) == 1


def test_other_403_is_permanent_with_message() -> None:
    store, http, _ = make_store(
        [
            drive_error(
                403,
                "The user does not have sufficient permissions for this file.",
                "insufficientFilePermissions",
            )
        ]
    )
    with pytest.raises(PermanentStoreError, match="sufficient permissions") as info:
        store.get("f1")
    assert not isinstance(info.value, TransientStoreError)
    assert len(http.requests) == 1


def test_401_is_auth_error() -> None:
    store, _, _ = make_store([drive_error(401, "Invalid Credentials", "authError")])
    with pytest.raises(AuthError, match="Invalid Credentials"):
        store.get("f1")


def test_storage_quota_explains_service_accounts() -> None:
    store, _, _ = make_store(
        [
            drive_error(
                403,
                "Service Accounts do not have storage quota.",
                "storageQuotaExceeded",
            )
        ]
    )
    with pytest.raises(PermanentStoreError) as info:
        store.create(ROOT_ID, "a", "id1", b"x")
    text = str(info.value)
    assert "Service Accounts do not have storage quota." in text and "shared drive" in text


def test_400_on_create_with_id_explains_the_same_account_rule() -> None:
    store, _, _ = make_store([drive_error(400, "The provided file ID is not usable.", "invalid")])
    with pytest.raises(PermanentStoreError) as info:
        store.create(ROOT_ID, "claim", "invented-id", b"x")
    text = str(info.value)
    assert "The provided file ID is not usable." in text
    assert SAME_ACCOUNT_HELP in text and "--shared-drive" in text and "--scope drive" in text


# -- create once --


def test_first_try_409_is_already_exists_without_lookup() -> None:
    store, http, _ = make_store(
        [drive_error(409, "A file already exists with the provided ID.", "duplicate")]
    )
    with pytest.raises(AlreadyExists, match="already exists"):
        store.create(ROOT_ID, "claim", "id1", b"nonce-1")
    assert len(http.requests) == 1


def test_lost_ack_then_409_is_recognised_as_ours() -> None:
    data = b"nonce-42"
    store, http, _ = make_store(
        [
            ConnectionAbortedError("closed without a response"),
            drive_error(409, "A file already exists with the provided ID.", "duplicate"),
            answer(200, file_json("id1", "claim", ROOT_ID, data=data)),
        ]
    )
    info = store.create(ROOT_ID, "claim", "id1", data)
    assert info.id == "id1" and info.size == len(data)
    assert [r[1] for r in http.requests] == ["POST", "POST", "GET"]
    assert store.stats["recovered_creates"] == 1


def test_retried_409_with_other_content_is_already_exists() -> None:
    store, _, _ = make_store(
        [
            drive_error(503, "Backend Error"),
            drive_error(409, "A file already exists with the provided ID.", "duplicate"),
            answer(200, file_json("id1", "claim", ROOT_ID, data=b"someone-else")),
        ]
    )
    with pytest.raises(AlreadyExists):
        store.create(ROOT_ID, "claim", "id1", b"my-nonce!!!!")


def test_retried_409_in_other_folder_is_already_exists() -> None:
    data = b"same"
    store, _, _ = make_store(
        [
            TimeoutError("timed out"),
            drive_error(409, "exists", "duplicate"),
            answer(200, file_json("id1", "claim", "OTHER", data=data)),
        ]
    )
    with pytest.raises(AlreadyExists):
        store.create(ROOT_ID, "claim", "id1", data)


def test_retried_folder_create_recognised() -> None:
    store, _, _ = make_store(
        [
            ConnectionResetError(104, "reset"),
            drive_error(409, "exists", "duplicate"),
            answer(200, file_json("d1", "jobs", ROOT_ID, folder=True)),
        ]
    )
    assert store.create(ROOT_ID, "jobs", "d1", folder=True).is_folder


def test_create_sends_minted_id_multipart_to_the_endpoint() -> None:
    store, http, _ = make_store([answer(200, file_json("id1", "a.json", ROOT_ID, data=b"{}"))])
    store.create("root", "a.json", "id1", b"{}")  # "root" is the store's root folder
    uri, method, headers, body = http.requests[0]
    assert uri.startswith(ENDPOINT + "upload/drive/v3/files?")
    assert "uploadType=multipart" in uri and "supportsAllDrives=true" in uri
    assert method == "POST" and headers["content-type"].startswith("multipart/related")
    metadata = json.loads(body.replace(b"\r\n", b"\n").split(b"\n\n")[1].split(b"\n--")[0])
    assert metadata == {"id": "id1", "name": "a.json", "parents": [ROOT_ID]}


# -- listing, reading, changes --


def test_list_drains_every_page_and_never_mistakes_missing_for_empty() -> None:
    page1 = {"files": [file_json("a", "a", ROOT_ID)], "nextPageToken": "p2"}
    page2 = {"files": [file_json("b", "b", ROOT_ID, folder=True)]}
    store, http, _ = make_store([answer(200, page1), answer(200, page2)], page_size=1)
    listed = store.list(ROOT_ID)
    assert [i.id for i in listed] == ["a", "b"] and listed[1].is_folder
    assert "pageToken=p2" in http.requests[1][0] and "pageSize=1" in http.requests[0][0]
    assert (
        "trashed+%3D+false" in http.requests[0][0] or "trashed%20%3D%20false" in http.requests[0][0]
    )

    store, http, _ = make_store(
        [answer(200, {"files": []}), drive_error(404, "File not found: ghost.", "notFound")]
    )
    with pytest.raises(NotFound):
        store.list("ghost")


def test_incomplete_listing_is_retried() -> None:
    store, _http, _ = make_store(
        [
            answer(200, {"files": [], "incompleteSearch": True}),
            answer(200, {"files": [file_json("a", "a", ROOT_ID)]}),
        ]
    )
    assert [i.id for i in store.list(ROOT_ID)] == ["a"]


def test_read_caps_with_a_range_request() -> None:
    store, http, _ = make_store(
        [
            answer(206, b"x" * 11),
            answer(200, b"hello"),
            answer(416, b"", {"content-range": "bytes */0"}),
        ]
    )
    with pytest.raises(StoreError, match="larger than the limit of 10 bytes"):
        store.read("f1", max_bytes=10)
    assert http.requests[0][2]["range"] == "bytes=0-10"
    assert "alt=media" in http.requests[0][0]
    assert store.read("f1", max_bytes=10) == b"hello"
    assert store.read("f1", max_bytes=10) == b""


def test_poll_changes_drains_pages_and_reports_folders() -> None:
    pages = [
        {
            "nextPageToken": "c2",
            "changes": [
                {"fileId": "x", "removed": False, "file": {"id": "x", "parents": ["claims"]}},
                {
                    "fileId": "d",
                    "removed": False,
                    "file": {
                        "id": "d",
                        "parents": [ROOT_ID],
                        "mimeType": "application/vnd.google-apps.folder",
                    },
                },
            ],
        },
        {
            "nextPageToken": "c3",
            "changes": [{"fileId": "y", "file": {"id": "y", "parents": ["results"]}}],
        },
        {"newStartPageToken": "c4", "changes": []},
    ]
    store, http, _ = make_store([answer(200, p) for p in pages], changes_page_size=2)
    changes = store.poll_changes("c1")
    assert changes.cursor == "c4"
    assert changes.folders is not None
    assert {"claims", "d", ROOT_ID, "results"} <= changes.folders
    assert len(http.requests) == 3 and "pageToken=c3" in http.requests[2][0]


def test_poll_changes_removed_means_unknown() -> None:
    store, _, _ = make_store(
        [
            answer(
                200,
                {
                    "newStartPageToken": "n",
                    "changes": [
                        {"fileId": "x", "file": {"id": "x", "parents": ["p"]}},
                        {"fileId": "gone", "removed": True},
                    ],
                },
            )
        ]
    )
    changes = store.poll_changes("c")
    assert changes.folders is None and changes.anything and changes.cursor == "n"


def test_poll_changes_with_rejected_cursor_starts_over() -> None:
    store, _, _ = make_store(
        [drive_error(400, "Invalid Value", "invalid"), answer(200, {"startPageToken": "fresh"})]
    )
    changes = store.poll_changes("bogus")
    assert changes.cursor == "fresh" and changes.folders is None


def test_delete_missing_is_fine_and_writes_are_counted() -> None:
    store, _, _ = make_store([drive_error(404, "File not found"), answer(204, b"")])
    store.delete("gone")
    store.delete("there")
    assert store.stats["writes"] == 2 and store.stats["reads"] == 0


def test_mint_ids_batches_by_1000() -> None:
    store, http, _ = make_store(
        [
            answer(200, {"ids": [f"a{i}" for i in range(1000)]}),
            answer(200, {"ids": [f"b{i}" for i in range(5)]}),
        ]
    )
    ids = store.mint_ids(1005)
    assert len(ids) == 1005 and ids[-1] == "b4"
    assert "count=5" in http.requests[1][0]


# -- pacing --


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_write_pacer_paces_after_burst() -> None:
    clock = FakeClock()
    pacer = WritePacer(3.0, burst=2.0, clock=clock, sleep=clock.sleep)
    for _ in range(8):
        pacer.acquire()
    # 2 free, then one every 1/3 s
    assert clock.slept[:0] == [] and len(clock.slept) == 6
    assert clock.now - 100.0 == pytest.approx(6 / 3.0)
    clock.now += 10  # idle: the burst refills, but no more than the capacity
    before = len(clock.slept)
    pacer.acquire()
    pacer.acquire()
    assert len(clock.slept) == before
    pacer.acquire()
    assert clock.slept[-1] == pytest.approx(1 / 3.0)


def test_write_pacer_is_fair_across_threads() -> None:
    clock = FakeClock()
    lock = threading.Lock()
    total: list[float] = []

    def sleep(seconds: float) -> None:
        with lock:
            total.append(seconds)

    pacer = WritePacer(2.0, burst=1.0, clock=clock, sleep=sleep)
    threads = [threading.Thread(target=pacer.acquire) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # the clock never moves: the k-th waiter reserves k/2 s ahead
    assert sorted(total) == pytest.approx([0.5, 1.0, 1.5, 2.0])


def test_writes_are_paced_reads_are_not() -> None:
    clock = FakeClock()
    pacer = WritePacer(1.0, burst=1.0, clock=clock, sleep=clock.sleep)
    store, _, _ = make_store(
        [
            answer(200, file_json("a", "a", ROOT_ID, data=b"1")),
            answer(200, file_json("b", "b", ROOT_ID, data=b"2")),
            answer(200, file_json("a", "a", ROOT_ID, data=b"1")),
            answer(200, file_json("a", "a", ROOT_ID, data=b"1")),
            answer(200, file_json("a", "a", ROOT_ID, data=b"3")),
        ],
        pacer=pacer,
    )
    store.create(ROOT_ID, "a", "a", b"1")
    store.create(ROOT_ID, "b", "b", b"2")
    store.get("a")
    store.get("a")
    store.update("a", b"3")
    assert pacer.acquired == 3 and clock.slept == [1.0, 1.0]
    assert store.stats["paced_seconds"] == pytest.approx(2.0)


def test_shared_pacer_per_process() -> None:
    a = DriveStore("r", endpoint=ENDPOINT, http_factory=ScriptedHttp, write_rate=2.5)
    b = DriveStore("r", endpoint=ENDPOINT, http_factory=ScriptedHttp, write_rate=2.5)
    c = DriveStore("r", endpoint=ENDPOINT, http_factory=ScriptedHttp, write_rate=None)
    assert a.pacer is b.pacer and a.pacer is not None and c.pacer is None


def test_pcs_sharing_an_accounts_rate_share_its_burst() -> None:
    """Three PCs at ``--write-rate 1`` (the account's 3 shared out) whose two slots all end
    a task at once: together they send no more writes at that instant than the account's
    quota lets through (3), where bursts of 2 each sent 6 and got 3 refused."""
    from drivemr.stores.drive.pacing import burst_for

    assert burst_for(3.0) == burst_for(30.0) == 2.0
    assert burst_for(1.5) == burst_for(1.0) == burst_for(0.2) == 1.0
    assert burst_for(2.25) == pytest.approx(1.5)
    clock = FakeClock()
    pacers = [WritePacer(1.0, burst_for(1.0), clock=clock, sleep=clock.sleep) for _ in range(3)]
    at_once = sum(p.acquire() == 0.0 for p in pacers for _slot in range(2))
    assert at_once == 3
    # The store takes its default burst from its rate; an explicit one wins.
    shared = DriveStore("r", endpoint=ENDPOINT + "/burst", http_factory=ScriptedHttp, write_rate=1)
    own = DriveStore(
        "r", endpoint=ENDPOINT + "/burst", http_factory=ScriptedHttp, write_rate=1, write_burst=4
    )
    full = DriveStore("r", endpoint=ENDPOINT + "/burst", http_factory=ScriptedHttp, write_rate=3)
    assert shared.pacer is not None and shared.pacer.capacity == 1.0
    assert own.pacer is not None and own.pacer.capacity == 4.0
    assert full.pacer is not None and full.pacer.capacity == 2.0


# -- threads --


def test_each_thread_gets_its_own_http_and_service() -> None:
    made: list[ScriptedHttp] = []

    def factory() -> ScriptedHttp:
        http = ScriptedHttp([answer(200, file_json("f", "a", ROOT_ID))] * 3)
        made.append(http)
        return http

    store = DriveStore(ROOT_ID, endpoint=ENDPOINT, http_factory=factory, write_rate=None)
    seen: list[int] = []

    def work() -> None:
        for _ in range(3):
            store.get("f")
        seen.append(id(store.session.service()))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 4 and len(set(seen)) == 4
    assert all(len(h.requests) == 3 for h in made)
    store.close()
    with pytest.raises(PermanentStoreError, match="closed"):
        threading.Thread(target=store.session.service).run()


# -- no hidden retries in httplib2 --


class OneShotServer:
    """Accepts connections; reads one request from each and closes without answering."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.requests.append(data.split(b"\r\n", 1)[0])

    def close(self) -> None:
        self._stop = True
        self.thread.join()
        self.sock.close()


def test_post_whose_answer_is_lost_is_not_resent_by_httplib2() -> None:
    server = OneShotServer()
    try:
        http = StrictHttp(timeout=5)
        url = f"http://127.0.0.1:{server.port}/x"
        # The server closes the socket; the kernel may report that as a reset: either way the
        # failure surfaces (to our retry layer) and the POST is not resent behind our back.
        with pytest.raises((ConnectionAbortedError, ConnectionResetError)):
            http.request(url, "POST", body="{}", headers={"content-type": "application/json"})
        assert len(server.requests) == 1
        # GETs keep httplib2's resend of a stale connection (harmless for a read)
        with pytest.raises((ConnectionError, OSError, httplib2.HttpLib2Error)):
            http.request(url, "GET")
        assert len(server.requests) == 3
    finally:
        server.close()
    assert issubclass(_HTTPConnection, httplib2.HTTPConnectionWithTimeout)


# -- parsing and construction --


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T10:00:00Z", 1714557600.0),
        ("2024-05-01T10:00:00.250Z", 1714557600.25),
        ("2024-05-01T12:00:00.123456789+02:00", 1714557600.123456789),
        ("2024-05-01T10:00:00", 1714557600.0),
    ],
)
def test_rfc3339(text: str, expected: float) -> None:
    assert parse_rfc3339(text) == pytest.approx(expected, abs=1e-6)
    assert parse_rfc3339(None) == 0.0


def test_from_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIVEMR_DRIVE_ENDPOINT", ENDPOINT)
    store = DriveStore.from_url("drive://abc_DEF-1", write_rate=0, create=True, unknown=1)
    assert store.root_id == "abc_DEF-1" and store.url == "drive://abc_DEF-1"
    assert store.pacer is None and store.endpoint == ENDPOINT
    bare = DriveStore.from_url("drive://")
    assert bare.root_id == "root" and bare.pacer is not None
    for bad in ("file:///x", "drive://a/b", "drive://a b"):
        with pytest.raises(ConfigError):
            DriveStore.from_url(bad)


def test_real_drive_without_sign_in_is_an_auth_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.delenv("DRIVEMR_DRIVE_ENDPOINT", raising=False)
    monkeypatch.delenv("DRIVEMR_SERVICE_ACCOUNT", raising=False)
    monkeypatch.setenv("DRIVEMR_CONFIG_DIR", str(tmp_path))
    with pytest.raises(AuthError, match="drivemr auth login"):
        DriveStore.from_url("drive://abc")


def test_create_root(monkeypatch: pytest.MonkeyPatch) -> None:
    store, http, _ = make_store(
        [
            answer(200, {"ids": ["newroot"]}),
            answer(200, file_json("newroot", "drivemr", "SHARED", folder=True)),
        ]
    )
    assert store.create_root(shared_drive="SHARED") == "drive://newroot"
    body = http.requests[1][3]
    assert json.loads(body) == {
        "id": "newroot",
        "name": "drivemr",
        "parents": ["SHARED"],
        "mimeType": "application/vnd.google-apps.folder",
    }
