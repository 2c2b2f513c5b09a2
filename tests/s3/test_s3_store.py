"""What the S3 store adds to the contract: its URL, its error mapping over real HTTP (503
SlowDown, 409 ConditionalRequestConflict, lost answers), untrusted keys and metadata,
multipart uploads, server timestamps, the idle cost of the change feed, `drivemr init`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import run_cli

from drivemr.errors import (
    AlreadyExists,
    ConfigError,
    NotAvailable,
    PermanentStoreError,
    TransientStoreError,
)
from drivemr.stores import open_store, store_kind
from drivemr.stores.base import ROOT
from drivemr.testing.s3proxy import S3Proxy

boto3 = pytest.importorskip("boto3")


def raw_client() -> Any:
    return boto3.session.Session().client("s3")


def keys_under(url: str) -> list[str]:
    bucket, _, prefix = url[len("s3://") :].partition("/")
    pages = raw_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


# -------------------------------------------------------------------- URLs and installation


def test_s3_urls_open_the_retrying_s3_store(s3_url: str) -> None:
    from drivemr.stores.s3 import RetryingS3Store

    assert store_kind(s3_url) == "s3"
    with open_store(s3_url + "/") as store:
        assert isinstance(store, RetryingS3Store)
        assert store.url == s3_url
    for bad in ("s3://", "s3://UPPER/x", "s3://a/x", "s3://bucket-ok/a//b"):
        with pytest.raises(ConfigError):
            open_store(bad)


def test_missing_boto3_names_the_install_command(
    s3_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # `import boto3` raises ImportError
    with pytest.raises(NotAvailable, match=r'pip install "drivemr\[s3\]"'):
        open_store(s3_url)


def test_cli_without_boto3_says_what_to_install(s3_url: str, tmp_path: Path) -> None:
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "boto3.py").write_text("raise ImportError('boto3 hidden by the test')\n")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(hide), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "drivemr.cli", "status", "--store", s3_url],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode != 0
    assert 'pip install "drivemr[s3]"' in proc.stderr, proc.stderr


def test_missing_credentials_are_named(s3_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ACCESS_KEY")}
    env.pop("AWS_SECRET_ACCESS_KEY", None)
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "drivemr.cli", "status", "--store", s3_url],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 4, proc.stderr  # as for a Drive sign-in that is missing
    assert "no AWS credentials found" in proc.stderr and "AWS_ACCESS_KEY_ID" in proc.stderr


# -------------------------------------------------------------------- errors over HTTP


@pytest.mark.parametrize(
    ("status", "code"),
    [(503, "SlowDown"), (409, "ConditionalRequestConflict"), (500, "InternalError")],
)
def test_transient_answers_are_retried(
    make_s3_store: Callable[..., Any], s3_proxy: S3Proxy, status: int, code: str
) -> None:
    store = make_s3_store()
    (fid,) = store.mint_ids(1)
    s3_proxy.fail("PutObject", f"/p/root/{fid}\\.", status=status, code=code, times=2)
    info = store.create(ROOT, "f", fid, b"data")
    assert info.id == fid and store.read(fid) == b"data"
    assert s3_proxy.injected == 2
    assert store.retry_stats["retries"] == 2 and store.retry_stats["recovered_creates"] == 0


def test_transient_error_class_without_the_retry_layer(s3_url: str, s3_proxy: S3Proxy) -> None:
    from drivemr.stores.s3 import S3Store

    store = S3Store.from_url(s3_url)
    (fid,) = store.mint_ids(1)
    s3_proxy.fail("PutObject", f"/p/root/{fid}\\.", status=503, code="SlowDown")
    with pytest.raises(TransientStoreError, match="SlowDown"):
        store.create(ROOT, "f", fid, b"x")
    s3_proxy.fail("PutObject", f"/p/root/{fid}\\.", status=409, code="ConditionalRequestConflict")
    with pytest.raises(TransientStoreError, match="ConditionalRequestConflict"):
        store.create(ROOT, "f", fid, b"x")
    store.create(ROOT, "f", fid, b"x")
    with pytest.raises(AlreadyExists):
        store.create(ROOT, "f", fid, b"x")  # a 412 is final without the retry layer


def test_lost_answer_to_a_create_is_recognised_as_ours(
    make_s3_store: Callable[..., Any], s3_proxy: S3Proxy
) -> None:
    store = make_s3_store()
    (fid,) = store.mint_ids(1)
    s3_proxy.fail("PutObject", f"/p/root/{fid}\\.", lose_answer=True)
    info = store.create(ROOT, "claim", fid, b"mine")
    assert info.id == fid
    assert store.retry_stats["recovered_creates"] == 1
    assert [i.id for i in make_s3_store().list(ROOT)] == [fid]


def test_one_write_per_file_one_per_update(
    make_s3_store: Callable[..., Any], s3_proxy: S3Proxy, s3_url: str
) -> None:
    """A file is one key: its create is one conditional PUT, an update one PUT of it."""
    store = make_s3_store()
    (fid,) = store.mint_ids(1)
    s3_proxy.reset()
    store.create(ROOT, "t0001.g0", fid, b"claim")
    assert s3_proxy.writes() == 1
    store.update(fid, b"beat")
    store.update(fid, b"a longer beat")
    assert s3_proxy.writes() == 3
    assert [k.rsplit("/", 1)[-1] for k in keys_under(s3_url)] == [f"{fid}.f.t0001.g0"]


@pytest.mark.parametrize("entry_faults", [1, 2], ids=["entry-fails", "heal-fails-too"])
def test_a_folder_stopped_between_index_and_entry_gets_its_entry_on_the_retry(
    make_s3_store: Callable[..., Any], s3_proxy: S3Proxy, entry_faults: int
) -> None:
    """A folder has an id index too (the create-once point; ids of folders are read without
    their parent). The first try's entry write fails after its index landed; the retry
    meets 412 and recognises the folder as ours. Its entry is written then: by the
    collision's best-effort heal, or, when that fails too, by the retry layer's own."""
    store = make_s3_store()
    (fid,) = store.mint_ids(1)
    s3_proxy.fail(
        "PutObject", f"/p/root/{fid}\\.d\\.", status=503, code="SlowDown", times=entry_faults
    )
    store.create(ROOT, "job-1", fid, folder=True)
    assert store.retry_stats["recovered_creates"] == 1  # the index had landed
    listed = make_s3_store().list(ROOT)
    assert [(i.id, i.name, i.is_folder) for i in listed] == [(fid, "job-1", True)]


def test_a_folder_creator_killed_between_index_and_entry_is_healed_by_the_next_collision(
    make_s3_store: Callable[..., Any], s3_url: str
) -> None:
    dead, alive = make_s3_store(), make_s3_store()
    (fid,) = dead.mint_ids(1)
    entries = [k for k in keys_under(s3_url) if "/p/" in k]
    bucket = s3_url[len("s3://") :].split("/")[0]
    dead.create(ROOT, "job-1", fid, folder=True)
    for key in keys_under(s3_url):
        if "/p/" in key and key not in entries:
            raw_client().delete_object(Bucket=bucket, Key=key)  # as if killed before the entry
    assert alive.list(ROOT) == [] and alive.get(fid).name == "job-1"
    with pytest.raises(AlreadyExists):
        alive.create(ROOT, "job-1", fid, folder=True)
    assert [(i.id, i.name) for i in alive.list(ROOT)] == [(fid, "job-1")]


def test_a_planted_second_name_at_a_taken_id_is_picked_alike_and_judged_by_its_seal(
    make_s3_store: Callable[..., Any], s3_url: str
) -> None:
    """S3's create-once is per key, and the key holds the name: a forger can put a second
    key at a taken id under another name. Every reader picks the same one (the oldest),
    by listing and by id; whether it is believed is its seal's business, as everywhere."""
    real, forger = make_s3_store(), make_s3_store()
    (fid,) = real.mint_ids(1)
    real.create(ROOT, "t0001.g0", fid, b"real")
    forger.create(ROOT, "zzz", fid, b"planted")  # lands: another key
    for reader in (make_s3_store(), make_s3_store()):
        (listed,) = [i for i in reader.list(ROOT) if i.id == fid]
        assert listed.name == "t0001.g0" and reader.read(fid) == b"real"
    fresh = make_s3_store()
    assert fresh.get(fid, parent=ROOT).name == "t0001.g0"
    assert fresh.read(fid, parent=ROOT) == b"real"


def test_someone_elses_file_is_not_taken_for_ours_after_a_lost_answer(
    make_s3_store: Callable[..., Any], s3_proxy: S3Proxy
) -> None:
    mine, theirs = make_s3_store(), make_s3_store()
    (fid,) = mine.mint_ids(1)
    theirs.create(ROOT, "t0001.g0", fid, b"theirs")
    s3_proxy.fail("PutObject", f"/p/root/{fid}\\.", status=503, code="SlowDown")
    with pytest.raises(AlreadyExists):
        mine.create(ROOT, "t0001.g0", fid, b"mine")
    assert mine.read(fid) == b"theirs"


def test_a_service_ignoring_if_none_match_is_refused_by_init(
    s3_url: str, s3_proxy: S3Proxy
) -> None:
    ok = run_cli("init", "--store", s3_url).stdout.splitlines()
    assert ok[-1] == s3_url and "conditional creates honoured" in ok[-2], ok
    assert keys_under(s3_url) == []  # the probe is cleaned up

    s3_proxy.fail("PutObject", "/p/", strip_header="If-None-Match", times=2)
    bad = run_cli("init", "--store", s3_url, check=False)
    assert bad.returncode != 0
    assert "ignored If-None-Match" in bad.stderr, bad.stderr


def test_init_names_a_missing_bucket(s3_server: dict[str, str]) -> None:
    proc = run_cli("init", "--store", "s3://no-such-bucket-here/x", check=False)
    assert proc.returncode != 0
    assert "no-such-bucket-here does not exist" in proc.stderr, proc.stderr


# -------------------------------------------------------------------- untrusted content


def test_foreign_keys_and_objects_are_skipped_or_refused(
    make_s3_store: Callable[..., Any], s3_url: str
) -> None:
    store = make_s3_store()
    (good,) = store.mint_ids(1)
    store.create(ROOT, "good", good, b"1")
    bucket, _, prefix = s3_url[len("s3://") :].partition("/")
    client = raw_client()
    for junk in ("x", "bad id.f.n", "abc.q.n", "abc.f.", "abc.f", "sub/abc.f.n", "a%2Fb.f.n"):
        client.put_object(Bucket=bucket, Key=f"{prefix}/p/root/{junk}", Body=b"")
    assert [i.id for i in store.list(ROOT)] == [good]

    client.put_object(Bucket=bucket, Key=f"{prefix}/p/root/plain.f.n", Body=b"no metadata")
    assert store.get("plain", parent=ROOT).name == "n"  # listed like any file, but
    with pytest.raises(PermanentStoreError, match="not a drivemr file"):
        store.read("plain", parent=ROOT)  # its content is refused
    client.put_object(Bucket=bucket, Key=f"{prefix}/i/plainobject", Body=b"no metadata")
    with pytest.raises(PermanentStoreError, match="not a drivemr folder"):
        store.get("plainobject")
    with pytest.raises(PermanentStoreError):
        store.get("../../etc")


# -------------------------------------------------------------------- big files, time, feed


def test_large_files_go_up_in_parts_with_a_conditional_complete(
    s3_url: str, s3_proxy: S3Proxy, tmp_path: Path
) -> None:
    from drivemr.stores.s3 import RetryingS3Store

    # S3's smallest part
    store = RetryingS3Store.from_url(s3_url, multipart_threshold=5 << 20, part_size=5 << 20)
    src = tmp_path / "big.bin"
    payload = os.urandom((11 << 20) + 123)
    src.write_bytes(payload)
    fid, other = store.mint_ids(2)
    info = store.create(ROOT, "big", fid, source=src)
    assert info.size == len(payload)
    assert s3_proxy.counts["UploadPart"] == 3 and s3_proxy.counts["CompleteMultipartUpload"] == 1
    dest = tmp_path / "back.bin"
    store.download(fid, dest)
    assert dest.read_bytes() == payload
    assert store.get(fid).size == len(payload)
    with pytest.raises(AlreadyExists):
        store.create(ROOT, "big", fid, source=src)
    store.create(ROOT, "big2", other, source=src)
    assert {i.name for i in store.list(ROOT)} == {"big", "big2"}


CLOCK_1970 = """
import json, sys, time
time.time = lambda: 1_000_000.0  # this PC's clock says 1970 (the server is another process)
from drivemr.stores import open_store
from drivemr.stores.base import ROOT
store = open_store(sys.argv[1])
(fid,) = store.mint_ids(1)
seen = [store.create(ROOT, "hb", fid, b"1").modified, store.update(fid, b"2").modified]
seen += [store.list(ROOT)[0].modified, store.get(fid).modified]
print(json.dumps(seen))
"""


def test_a_service_without_conditional_complete_gets_one_conditional_put(
    s3_url: str, s3_proxy: S3Proxy, tmp_path: Path
) -> None:
    from drivemr.stores.s3 import RetryingS3Store

    store = RetryingS3Store.from_url(s3_url, multipart_threshold=5 << 20, part_size=5 << 20)
    src = tmp_path / "big.bin"
    payload = os.urandom(6 << 20)
    src.write_bytes(payload)
    s3_proxy.fail("CompleteMultipartUpload", status=501, code="NotImplemented")
    (fid,) = store.mint_ids(1)
    store.create(ROOT, "big", fid, source=src)
    assert s3_proxy.counts["AbortMultipartUpload"] == 1 and store.read(fid) == payload
    with pytest.raises(AlreadyExists):
        store.create(ROOT, "big", fid, source=src)


def test_timestamps_come_from_the_server_not_this_pc(s3_url: str) -> None:
    import json
    import time

    proc = subprocess.run(
        [sys.executable, "-c", CLOCK_1970, s3_url], capture_output=True, text=True, check=True
    )
    now = time.time()  # the server's clock: it runs in this process
    for when in json.loads(proc.stdout):
        assert abs(when - now) < 120


def test_update_with_another_size_leaves_one_key(
    make_s3_store: Callable[..., Any], s3_url: str
) -> None:
    store = make_s3_store()
    (fid,) = store.mint_ids(1)
    store.create(ROOT, "worker-pc1.json", fid, b"short")
    store.update(fid, b"a longer heartbeat")
    other = make_s3_store()
    assert [(i.id, i.size) for i in other.list(ROOT)] == [(fid, 18)]
    assert other.update(fid, b"x").size == 1  # another client, metadata learned by HEAD
    assert [(i.id, i.size) for i in store.list(ROOT)] == [(fid, 1)]
    assert len(keys_under(s3_url)) == 1  # one key, updated in place


def test_deleting_a_folder_removes_every_key_under_it(
    make_s3_store: Callable[..., Any], s3_url: str
) -> None:
    store = make_s3_store()
    job, sub, a, b, keep = store.mint_ids(5)
    store.create(ROOT, "job-1", job, folder=True)
    store.create(job, "claims", sub, folder=True)
    store.create(job, "job.json", a, b"{}")
    store.create(sub, "t0.g0.pc1", b, b"c")
    store.create(ROOT, "other", keep, b"k")
    make_s3_store().delete(job)
    left = keys_under(s3_url)
    assert len(left) == 1 and keep in left[0], left  # its one key
    assert [i.id for i in store.list(ROOT)] == [keep]


def test_an_idle_poll_costs_one_listing(
    make_s3_store: Callable[..., Any], s3_proxy: S3Proxy
) -> None:
    busy, idle = make_s3_store(), make_s3_store()
    cursor = idle.changes_cursor()
    s3_proxy.reset()
    for _ in range(5):
        changes = idle.poll_changes(cursor)
        cursor = changes.cursor
        assert changes.folders == frozenset()
    assert dict(s3_proxy.counts) == {"ListObjectsV2": 5}
    (fid,) = busy.mint_ids(1)
    busy.create(ROOT, "job-x", fid, folder=True)
    assert idle.poll_changes(cursor).folders == frozenset({ROOT})


def test_a_folder_listed_is_watched_by_the_feed(make_s3_store: Callable[..., Any]) -> None:
    writer, watcher = make_s3_store(), make_s3_store()
    folder, child = writer.mint_ids(2)
    writer.create(ROOT, "results", folder, folder=True)
    assert watcher.list(folder) == []
    cursor = watcher.changes_cursor()
    quiet = watcher.poll_changes(cursor)
    assert quiet.folders == frozenset()
    writer.create(folder, "t0.done", child, b"r")
    assert watcher.poll_changes(quiet.cursor).folders == frozenset({folder})
