"""Attack corpus: replay (issue 12.6), with worker processes on folder stores.

* Replay by wipe: delete a finished job's claims, results and finished marker; the signed
  job.json looks new again. A worker that saw it finish remembers it (its working folder's
  job-history.tsv) and never runs it again, also after a restart.
* Replay by copy: copy the job folder with its index into another store. The job names
  (and signs) the store it was posted to, so no worker runs it in the other one.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import WorkerProcs

from drivemr import signing
from drivemr.errors import StoreError
from drivemr.protocol import find_job, read_job, submit
from drivemr.spec import load_job
from drivemr.status import status_of
from drivemr.stores.folder import STORE_ID, FolderStore


def _counting_job(
    store: FolderStore, write_job: Callable[..., Path], config: Path, runs: Path
) -> Any:
    job_file = write_job(
        f"""
        name = "once"
        files = ["count.py"]
        [map]
        command = [{json.dumps(sys.executable)}, "{{files}}/count.py", {json.dumps(str(runs))}, "{{item}}"]
        items = ["1", "2"]
        """,
        {"count.py": "import sys\nopen(sys.argv[1], 'a').write(sys.argv[2] + '\\n')\n"},
        name="once",
    )
    key, _ = signing.load_or_create_signing_key(config)
    return submit(store, load_job(job_file), sign=lambda d: signing.sign_document(d, key))


def _run(procs: WorkerProcs, name: str) -> None:
    procs.start(name, "--exit-when-idle", slots=1)
    codes = procs.wait_all()
    assert codes[name] == 0, procs.log(name)
    del procs.procs[name]


def test_replay_by_wipe_never_runs_again(
    folder_store: FolderStore,
    workers: WorkerProcs,
    write_job: Callable[..., Path],
    isolated_config: Path,
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs.txt"
    job = _counting_job(folder_store, write_job, isolated_config, runs)
    _run(workers, "w1")
    assert sorted(runs.read_text().split()) == ["1", "2"]
    assert status_of(folder_store, job.id).state == "done"
    # The wipe: every claim, result and marker gone; job.json (signed) left as it was.
    for sub in ("claims", "results", "logs", "outputs"):
        for entry in folder_store.list(job.folders[sub]):
            folder_store.delete(entry.id)
    for entry in folder_store.list(job.folder):
        if not entry.is_folder and entry.name != "job.json":
            folder_store.delete(entry.id)
    assert status_of(folder_store, job.id).state == "pending"
    _run(workers, "w1")  # a restart of the same worker
    assert sorted(runs.read_text().split()) == ["1", "2"]
    assert "job-history.tsv" in {p.name for p in (workers.workdir / "w1").iterdir()}


def test_replay_by_copy_into_another_store_never_runs(
    folder_store: FolderStore,
    write_job: Callable[..., Path],
    isolated_config: Path,
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs.txt"
    job = _counting_job(folder_store, write_job, isolated_config, runs)
    first = WorkerProcs(folder_store.url, tmp_path / "a-workers")
    first.workdir.mkdir()
    try:
        _run(first, "wa")
    finally:
        first.stop()
    assert sorted(runs.read_text().split()) == ["1", "2"]
    # Another store, into which the attacker copies the job folder with its index records
    # (a copy of every file but the other store's own identity).
    other_root = tmp_path / "other"
    FolderStore(other_root, create=True)
    own_id = (other_root / STORE_ID).read_bytes()
    shutil.rmtree(other_root)
    shutil.copytree(folder_store.path, other_root, symlinks=True)
    (other_root / STORE_ID).write_bytes(own_id)
    other = FolderStore(other_root)
    folder, _ = next((f, None) for f in other.list(other.root_id) if f.name == f"job-{job.id}")
    for sub in ("claims", "results"):
        for entry in other.list(job.folders[sub]):
            other.delete(entry.id)
    for entry in other.list(folder.id):
        if not entry.is_folder and entry.name != "job.json":
            other.delete(entry.id)
    procs = WorkerProcs(other.url, tmp_path / "b-workers")
    procs.workdir.mkdir()
    try:
        _run(procs, "wb")
        assert "posted to another store" in procs.log("wb")
    finally:
        procs.stop()
    assert sorted(runs.read_text().split()) == ["1", "2"]
    st = status_of(folder_store, job.id)
    assert st.state == "done"
    try:
        read_job(other, folder)
    except Exception as exc:
        assert "posted to another store" in str(exc)
    else:
        raise AssertionError("the copied job was read as a job of the other store")
    assert find_job(folder_store, job.id)[1].id == job.id


def test_store_identity_is_stable_and_distinct(tmp_path: Path, make_drive_store: Any) -> None:
    a = FolderStore(tmp_path / "a", create=True)
    assert a.identity == FolderStore(tmp_path / "a").identity
    assert a.identity != FolderStore(tmp_path / "b", create=True).identity
    # A store made before stores had an identity gets one, once, at its first open.
    (tmp_path / "a" / STORE_ID).unlink()
    first = FolderStore(tmp_path / "a").identity
    assert first != a.identity and FolderStore(tmp_path / "a").identity == first
    (tmp_path / "a" / STORE_ID).write_bytes(b"not hex!\n")
    with pytest.raises(StoreError, match="damaged"):
        _ = FolderStore(tmp_path / "a").identity
    drive = make_drive_store()
    assert drive.identity == f"drive:{drive.root_id}" == make_drive_store().identity
