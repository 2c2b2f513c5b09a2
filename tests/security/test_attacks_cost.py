"""Attack corpus: costs bounded before trust (issue 12.5).

* A 64 MiB unsigned job.json: before, every worker parsed it into Python objects before
  looking at its signature (measured: 500 MiB traced peak and 18 s CPU for an 8 MiB one, so
  gigabytes for 64 MiB), again after every restart. Now the signature is checked over the
  raw bytes first (drivemr.jobtrust) and the worker's traced peak stays near two copies of
  the bytes (about 130 MiB for 64 MiB), and a restart does not read it again.
* A shipped file signed at a few bytes and swapped for a big one is downloaded only up to
  its signed size (plus at most one transfer chunk), then refused.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drivemr import signing
from drivemr.cli import _verifier
from drivemr.errors import SecurityError, TooLarge
from drivemr.jobtrust import MAX_UNVERIFIED_JOB_BYTES, job_bytes, raw_signature_ok
from drivemr.protocol import JobFormatError, find_job, load_view, read_job, submit
from drivemr.spec import load_job
from drivemr.status import status_of
from drivemr.stores.base import FileInfo, Store
from drivemr.stores.folder import FolderStore
from drivemr.worker import Worker, WorkerConfig

MiB = 1024 * 1024


def _hostile_job(store: Store, size: int) -> FileInfo:
    """An unsigned job.json of ``size`` bytes built to cost the most to parse: millions of
    tiny objects, under every item limit."""
    fid, jf = store.mint_ids(2)
    folder = store.create(store.root_id, "job-evil", fid, folder=True)
    body = b'{"format":1,"id":"evil","tasks":[' + b"{}," * ((size - 64) // 3) + b"{}]}"
    store.create(fid, "job.json", jf, body)
    return folder


def _worker(store: Store, workdir: Path, **kw: Any) -> Worker:
    return Worker(
        store,
        WorkerConfig("guard", 1, workdir, lease=5, poll_interval=0.05, exit_when_idle=True, **kw),
        verify=_verifier(False),
    )


def _signer(config: Path) -> Callable[[dict[str, Any]], dict[str, Any]]:
    key, _ = signing.load_or_create_signing_key(config)
    return lambda doc: signing.sign_document(doc, key)


def test_signed_layout_is_checked_on_raw_bytes(isolated_config: Path) -> None:
    key, _ = signing.load_or_create_signing_key(isolated_config)
    doc = signing.sign_document({"format": 1, "id": "j", "x": ["ü", 1.5, {"b": None}]}, key)
    data = job_bytes(doc)
    trusted = signing.load_trusted(isolated_config)
    assert raw_signature_ok(data, trusted)
    assert not raw_signature_ok(data.replace(b'"j"', b'"k"'), trusted)
    assert not raw_signature_ok(data, {})
    assert not raw_signature_ok(b"{}", trusted) and not raw_signature_ok(b"", trusted)


def test_a_64_mib_unsigned_job_costs_bounded_memory_once(
    folder_store: FolderStore,
    write_job: Callable[..., Path],
    isolated_config: Path,
    tmp_path: Path,
) -> None:
    bad = _hostile_job(folder_store, 64 * MiB)
    good_file = write_job(
        'name = "good"\n[map]\ncommand = ["python", "-c", "pass"]\nitems = ["1"]\n', name="good"
    )
    good = submit(folder_store, load_job(good_file), sign=_signer(isolated_config))
    tracemalloc.start()
    try:
        worker = _worker(folder_store, tmp_path / "w")
        assert worker.run() == 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"worker refusing a 64 MiB unsigned job.json: traced peak {peak / MiB:.0f} MiB")
    assert peak < 200 * MiB  # two copies of the bytes at most, never their parse
    assert "not parsed" in worker.watcher.rejected["evil"]
    assert status_of(folder_store, good.id).state == "done"
    # A restart remembers the refusal: job.json is not read again.
    reads: list[str] = []
    real_read = folder_store.read

    def counting(file_id: str, *, max_bytes: int | None = None, parent: str | None = None) -> bytes:
        reads.append(file_id)
        return real_read(file_id, max_bytes=max_bytes, parent=parent)

    folder_store.read = counting  # type: ignore[method-assign]
    again = _worker(folder_store, tmp_path / "w")
    assert again.run() == 0
    evil_json = next(c.id for c in folder_store.list(bad.id) if c.name == "job.json")
    assert evil_json not in reads


def test_trusting_a_new_key_judges_a_remembered_refusal_again(
    folder_store: FolderStore, write_job: Callable[..., Path], tmp_path: Path
) -> None:
    other = tmp_path / "colleague"
    other.mkdir(mode=0o700)
    job_file = write_job(
        'name = "theirs"\n[map]\ncommand = ["python", "-c", "pass"]\nitems = ["1"]\n', name="t"
    )
    job = submit(folder_store, load_job(job_file), sign=_signer(other))
    w1 = _worker(folder_store, tmp_path / "w")
    assert w1.run() == 0 and "does not trust" in w1.watcher.rejected[job.id]
    _, info = signing.load_signing_key(other)
    signing.trust_key(None, info.line, name="colleague")
    assert _worker(folder_store, tmp_path / "w").run() == 0
    assert status_of(folder_store, job.id).state == "done"


def test_unsigned_small_jobs_are_still_parsed_and_refused(folder_store: FolderStore) -> None:
    folder = _hostile_job(folder_store, MAX_UNVERIFIED_JOB_BYTES // 2)
    with pytest.raises((SecurityError, JobFormatError)) as exc:
        from drivemr.jobtrust import SignatureVerifier

        job = read_job(folder_store, folder, precheck=SignatureVerifier().precheck)
        SignatureVerifier()(job)
    assert "not parsed" not in str(exc.value)


def test_an_unsigned_job_on_drive_is_refused_unparsed(drive_store: Store) -> None:
    from drivemr.jobtrust import SignatureVerifier

    folder = _hostile_job(drive_store, 8 * MiB)
    tracemalloc.start()
    try:
        with pytest.raises(SecurityError, match="not parsed"):
            read_job(drive_store, folder, precheck=SignatureVerifier().precheck)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * MiB  # an 8 MiB download; its parse alone would trace ~500 MiB


def _shipped_job(store: Store, write_job: Callable[..., Path], config: Path) -> Any:
    job_file = write_job(
        'name = "ship"\nfiles = ["tiny.py"]\n[map]\n'
        'command = ["python", "{files}/tiny.py"]\nitems = ["1"]\nmax_attempts = 1\n',
        {"tiny.py": "print('hello from a 147-byte file, more or less')\n"},
        name="ship",
    )
    return submit(store, load_job(job_file), sign=_signer(config))


def test_a_swapped_oversize_shipped_file_is_not_downloaded_in_full(
    folder_store: FolderStore,
    write_job: Callable[..., Path],
    isolated_config: Path,
    tmp_path: Path,
) -> None:
    job = _shipped_job(folder_store, write_job, isolated_config)
    shipped = job.files[0]
    # The attacker swaps the file's content in place, on disk (the store's own layout).
    (path,) = [
        p
        for p in folder_store.path.rglob(f"*{shipped.id}")
        if p.is_file() and "ids" not in str(p.parent)
    ]
    with open(path, "r+b") as fh:
        fh.truncate(256 * MiB)  # sparse: cheap to make, costly to copy
    worker = _worker(folder_store, tmp_path / "w")
    assert worker.run() == 0
    st = status_of(folder_store, job.id)
    assert st.counts["done"] == 0  # 0 wrong results accepted
    local = list((tmp_path / "w").rglob("tiny.py")) + list((tmp_path / "w").rglob(".tiny.py.part*"))
    assert all(p.stat().st_size <= shipped.size for p in local)
    _, fresh = find_job(folder_store, job.id)
    view = load_view(folder_store, fresh)
    failed = [r for r in view.results.values() if r.state == "failed"]
    assert failed  # refused, with the reason in its result
    assert b"larger than" in folder_store.read(failed[0].file.id)


def test_drive_downloads_stop_at_max_bytes(drive_store: Store, tmp_path: Path) -> None:
    (fid,) = drive_store.mint_ids(1)
    drive_store.create(drive_store.root_id, "big.bin", fid, b"x" * (20 * MiB))
    with pytest.raises(TooLarge):
        drive_store.download(fid, tmp_path / "out", max_bytes=147)
    assert list(tmp_path.iterdir()) == []
    drive_store.download(fid, tmp_path / "out", max_bytes=20 * MiB)
    assert (tmp_path / "out").stat().st_size == 20 * MiB
