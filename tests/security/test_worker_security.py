"""Workers run only trusted jobs: forged, modified, replayed and unsigned jobs run nothing.

Every untrusted job here would create a file named ``pwned-*`` in a canary folder if any
of its commands ran; the tests check that folder stays empty, that the worker survives and
goes on to run a good job, and that `drivemr status` shows who rejected what.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drivemr import signing
from drivemr.cli import _verifier
from drivemr.protocol import JOB_PREFIX, find_job, submit
from drivemr.spec import load_job
from drivemr.status import status_of
from drivemr.stores.folder import FolderStore
from drivemr.worker import Worker, WorkerConfig


def canary_job(write_job: Callable[..., Path], canary: Path, name: str) -> Path:
    return write_job(
        f"""
        name = "{name}"
        files = ["payload.py"]
        [map]
        command = ["python", "{{files}}/payload.py", {json.dumps(str(canary))}, "{{item}}"]
        items = ["1", "2"]
        """,
        {
            "payload.py": "import os, sys\nopen(os.path.join(sys.argv[1], 'pwned-' + sys.argv[2]), 'w').close()\n"
        },
        name=name,
    )


def signer(config_dir: Path) -> Callable[[dict[str, Any]], dict[str, Any]]:
    key, _ = signing.load_or_create_signing_key(config_dir)
    return lambda doc: signing.sign_document(doc, key)


def run_worker(store: FolderStore, workdir: Path, worker_id: str = "guard") -> Worker:
    worker = Worker(
        store,
        WorkerConfig(
            worker_id=worker_id,
            slots=2,
            workdir=workdir,
            lease=5,
            poll_interval=0.05,
            exit_when_idle=True,
        ),
        verify=_verifier(False),
    )
    assert worker.run() == 0
    return worker


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    path = tmp_path / "canary"
    path.mkdir()
    return path


@pytest.fixture
def attacker_keys(tmp_path: Path) -> Path:
    """A key pair the worker has never trusted (another user's config dir)."""
    path = tmp_path / "attacker"
    path.mkdir(mode=0o700)
    return path


def good_job_runs(store: FolderStore, write_job: Callable[..., Path], isolated_config: Path) -> str:
    job_file = write_job(
        'name = "good"\n[map]\ncommand = ["python", "-c", "pass"]\nitems = ["1"]\n', name="good"
    )
    return submit(store, load_job(job_file), sign=signer(isolated_config)).id


def test_unsigned_job_is_refused_and_the_worker_goes_on(
    folder_store: FolderStore,
    write_job: Callable[..., Path],
    canary: Path,
    tmp_path: Path,
    isolated_config: Path,
) -> None:
    bad = submit(folder_store, load_job(canary_job(write_job, canary, "unsigned")))
    good = good_job_runs(folder_store, write_job, isolated_config)
    worker = run_worker(folder_store, tmp_path / "w")
    assert list(canary.iterdir()) == []
    assert "unsigned" in worker.rejected[bad.id]
    assert status_of(folder_store, good).state == "done"
    st = status_of(folder_store, bad.id)
    assert "guard" in st.rejected_by and st.counts["pending"] == 2


def test_untrusted_key_is_refused_with_the_command_to_trust_it(
    folder_store: FolderStore,
    write_job: Callable[..., Path],
    canary: Path,
    tmp_path: Path,
    attacker_keys: Path,
) -> None:
    bad = submit(
        folder_store,
        load_job(canary_job(write_job, canary, "untrusted")),
        sign=signer(attacker_keys),
    )
    worker = run_worker(folder_store, tmp_path / "w")
    assert list(canary.iterdir()) == []
    assert "drivemr keys trust drivemr-ed25519:" in worker.rejected[bad.id]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda doc: doc["map"].__setitem__("command", ["python", "-c", "print('swapped')"]),
        lambda doc: doc["tasks"][0].__setitem__("item", "other"),
        lambda doc: doc["map"]["env"].__setitem__("PYTHONSTARTUP", "/tmp/evil.py"),
        lambda doc: doc["files"][0].__setitem__("sha256", "0" * 64),
        lambda doc: doc.__setitem__("created", doc["created"] + 1),
    ],
    ids=["command", "item", "env", "file-digest", "created"],
)
def test_modified_job_is_refused(
    tamper: Callable[[dict[str, Any]], None],
    folder_store: FolderStore,
    write_job: Callable[..., Path],
    canary: Path,
    tmp_path: Path,
    isolated_config: Path,
) -> None:
    job = submit(
        folder_store,
        load_job(canary_job(write_job, canary, "tampered")),
        sign=signer(isolated_config),
    )
    folder, _ = find_job(folder_store, job.id)
    (spec,) = [f for f in folder_store.list(folder.id) if f.name == "job.json"]
    doc = json.loads(folder_store.read(spec.id))
    tamper(doc)
    folder_store.update(spec.id, json.dumps(doc).encode())
    worker = run_worker(folder_store, tmp_path / "w")
    assert list(canary.iterdir()) == []
    assert job.id in worker.rejected


def test_swapped_shipped_file_never_runs(
    folder_store: FolderStore,
    write_job: Callable[..., Path],
    canary: Path,
    tmp_path: Path,
    isolated_config: Path,
) -> None:
    job = submit(
        folder_store,
        load_job(canary_job(write_job, canary, "swapped")),
        sign=signer(isolated_config),
    )
    (payload,) = folder_store.list(job.folders["files"])
    folder_store.update(
        payload.id, b"import os, sys\nopen(os.path.join(sys.argv[1], 'pwned-swap'), 'w').close()\n"
    )
    run_worker(folder_store, tmp_path / "w")
    assert list(canary.iterdir()) == []
    st = status_of(folder_store, job.id)
    assert st.counts["done"] == 0


def test_job_copied_under_another_id_is_a_replay(
    folder_store: FolderStore,
    write_job: Callable[..., Path],
    canary: Path,
    tmp_path: Path,
    isolated_config: Path,
) -> None:
    job = submit(
        folder_store, load_job(canary_job(write_job, canary, "orig")), sign=signer(isolated_config)
    )
    run_worker(folder_store, tmp_path / "w")
    assert sorted(p.name for p in canary.iterdir()) == ["pwned-1", "pwned-2"]  # the genuine job ran
    for p in canary.iterdir():
        p.unlink()
    folder, _ = find_job(folder_store, job.id)
    (spec,) = [f for f in folder_store.list(folder.id) if f.name == "job.json"]
    data = folder_store.read(spec.id)
    # 1. the same signed document in a folder named after another job id
    f1, s1 = folder_store.mint_ids(2)
    folder_store.create(
        folder_store.root_id, JOB_PREFIX + job.id.replace("orig", "copy"), f1, folder=True
    )
    folder_store.create(f1, "job.json", s1, data)
    # 2. the same job posted again after it finished, under its own id
    f2, s2 = folder_store.mint_ids(2)
    folder_store.create(folder_store.root_id, JOB_PREFIX + job.id, f2, folder=True)
    folder_store.create(f2, "job.json", s2, data)
    worker = run_worker(folder_store, tmp_path / "w")
    assert list(canary.iterdir()) == []
    assert worker.stats["claims"] == 0
    # a worker that never saw the original still refuses the copy under another id
    fresh = run_worker(folder_store, tmp_path / "w2", worker_id="fresh")
    assert list(canary.iterdir()) == []
    assert any(
        "replayed" in r or "sits in folder" in r or "a copy of the job folder" in r
        for r in fresh.rejected.values()
    )


@pytest.mark.parametrize(
    "hostile",
    [
        "../../escape.txt",
        "/etc/passwd",
        "C:evil",
        "a/../../b",
        "CON",
        "nul.txt",
        "x\u0000y",
        "\\\\server\\share",
    ],
)
def test_hostile_names_in_a_signed_job_are_refused(
    hostile: str,
    folder_store: FolderStore,
    write_job: Callable[..., Path],
    canary: Path,
    tmp_path: Path,
    isolated_config: Path,
) -> None:
    """Even a trusted key cannot make a worker write outside its working folder."""
    job = submit(
        folder_store, load_job(canary_job(write_job, canary, "names")), sign=signer(isolated_config)
    )
    folder, _ = find_job(folder_store, job.id)
    (spec,) = [f for f in folder_store.list(folder.id) if f.name == "job.json"]
    doc = json.loads(folder_store.read(spec.id))
    doc["files"][0]["name"] = hostile
    doc["map"]["outputs"] = [hostile]
    folder_store.update(spec.id, json.dumps(signer(isolated_config)(doc)).encode())
    worker = run_worker(folder_store, tmp_path / "w")
    assert list(canary.iterdir()) == []
    assert job.id in worker.rejected
    assert not (tmp_path / "escape.txt").exists()
