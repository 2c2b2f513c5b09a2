"""Sealed results in result slots, stepped in-process over a MemoryStore (issue 12).

Forged results before and during a run, copies of genuine results into other slots,
in-place edits after commit, forged output entries and swapped output files: none of
them ever reaches a view, a reduce, `drivemr results` or `drivemr reduce --out`; each is
reported once; the real result still commits (in the next slot)."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivemr.cli import fetch_or_reduce
from drivemr.errors import DrivemrError, SecurityError
from drivemr.protocol import REDUCE, RESULT_SLOTS, Job, job_from_doc, load_view, result_name, submit
from drivemr.results import ResultReader, fetch_results, read_manifest, seal_result
from drivemr.sealed import Sealer
from drivemr.signing import load_or_create_signing_key, load_trusted
from drivemr.spec import load_job
from drivemr.testing import MemoryStore
from drivemr.testing.clock import ManualClock as TestClock
from drivemr.testing.stepping import step_until_done, stepping_worker
from drivemr.worker import Worker

LEASE = 60.0
WRITE_ITEM = "import sys; open('out.txt', 'w').write(sys.argv[1])"
BIG_ITEM = "import sys; open('out.txt', 'w').write(sys.argv[1] * 300000)"
TOTAL = (
    "import os, sys; d = sys.argv[1]; "
    "open('total.txt', 'w').write(str(sum(int(open(os.path.join(d, t, 'out.txt')).read()) "
    "for t in sorted(os.listdir(d)))))"
)


@pytest.fixture
def clock() -> TestClock:
    return TestClock()


@pytest.fixture
def store(clock: TestClock) -> MemoryStore:
    return MemoryStore(clock)


@pytest.fixture
def post(store: MemoryStore, write_job: Callable[..., Path]) -> Callable[..., Job]:
    def post(items: int = 2, *, map_code: str = WRITE_ITEM, reduce: bool = True) -> Job:
        text = f"""
            name = "sealed"
            [map]
            command = ["python", "-c", {json.dumps(map_code)}, "{{item}}"]
            items = {{range = [1, {items + 1}]}}
            outputs = ["out.txt"]
            max_attempts = 1
            """
        if reduce:
            text += f"""
            [reduce]
            command = ["python", "-c", {json.dumps(TOTAL)}, "{{results}}"]
            outputs = ["total.txt"]
            """
        return submit(store, load_job(write_job(text)))

    return post


def make_worker(store: MemoryStore, tmp_path: Path, wid: str, clock: TestClock) -> Worker:
    return stepping_worker(store, tmp_path, wid, clock, lease=LEASE)


def run_until_done(workers: list[Worker], clock: TestClock, rounds: int = 60) -> None:
    step_until_done(workers, clock, rounds)


def mallory() -> Sealer:
    """A key nobody trusts: an attacker who can write the folder."""
    return Sealer(Ed25519PrivateKey.generate())


def me() -> Sealer:
    return Sealer(load_or_create_signing_key()[0])


def forged_body(job: Job, task_id: str, slot: int, *, value: str = "666") -> dict[str, object]:
    task = job.task(task_id)
    data = value.encode()
    import hashlib

    return {
        "job": job.id,
        "task": task_id,
        "slot": task.result_ids[slot],
        "round": 0,
        "state": "done",
        "attempt": 1,
        "worker": "mallory",
        "exit_code": 0,
        "duration": 0.1,
        "outputs": [
            {
                "name": "total.txt" if task_id == REDUCE else "out.txt",
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "data": base64.b64encode(data).decode(),
            }
        ],
    }


def plant(store: MemoryStore, job: Job, task_id: str, slot: int, data: bytes) -> None:
    name = result_name(task_id, "done", 0, 0, 0.1)
    store.create(job.folders["results"], name, job.task(task_id).result_ids[slot], data)


def ignored(caplog: pytest.LogCaptureFixture, file_id: str) -> int:
    return sum(
        1 for r in caplog.records if "ignoring" in r.getMessage() and file_id in r.getMessage()
    )


def reduce_total(store: MemoryStore, job: Job, tmp_path: Path) -> str:
    (path,) = fetch_or_reduce(store, job.id, tmp_path / "out")
    return path.read_text()


# --------------------------------------------------------------------------- job document


def test_a_job_mints_result_slots_and_format_1_reads_as_one_slot(post: Callable[..., Job]) -> None:
    job = post(2)
    assert all(len(t.result_ids) == RESULT_SLOTS for t in job.all_tasks)
    assert len({r for t in job.all_tasks for r in t.result_ids}) == 3 * RESULT_SLOTS
    doc = json.loads(json.dumps(dict(job.doc)))
    for t in doc["tasks"]:
        t["result"] = t.pop("results")[0]  # a job.json written by format 1
    old = job_from_doc(doc, job.folder)
    assert old.tasks[0].result_ids == (job.tasks[0].result_ids[0],)


# --------------------------------------------------------------------------- forged results


@pytest.mark.parametrize(
    "forgery",
    ["unsealed", "untrusted key", "copied from another task", "sealed for another slot"],
)
def test_a_result_forged_before_the_run_is_skipped_and_the_real_one_commits(
    forgery: str,
    store: MemoryStore,
    clock: TestClock,
    post: Callable[..., Job],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = post(2)
    if forgery == "unsealed":  # the format-1 manifest anyone can write
        body = forged_body(job, "t0000", 0)
        data = json.dumps({"format": 1, **body}).encode()
    elif forgery == "untrusted key":
        data = seal_result(mallory(), forged_body(job, "t0000", 0))
    elif forgery == "copied from another task":  # genuine seal, wrong place
        data = seal_result(me(), {**forged_body(job, "t0001", 0)})
    else:
        data = seal_result(me(), forged_body(job, "t0000", 1))
    plant(store, job, "t0000", 0, data)
    caplog.set_level(logging.WARNING)
    w = make_worker(store, tmp_path, "a", clock)
    run_until_done([w], clock)
    view = load_view(store, job)
    assert view.results["t0000"].slot == 1  # the real result, in the next slot
    assert view.results["t0000"].state == "done"
    assert reduce_total(store, job, tmp_path) == "3"  # 1 + 2, not 666 + 2
    assert read_manifest(store, job.tasks[0], job)["worker"] == "a"
    assert ignored(caplog, job.tasks[0].result_ids[0]) == 1  # reported once, many looks


def test_a_result_forged_during_the_run_neither_stops_it_nor_wins(
    store: MemoryStore,
    clock: TestClock,
    post: Callable[..., Job],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = post(1)
    w = make_worker(store, tmp_path, "a", clock)
    w.step(run=False)  # claimed, not yet run
    assert w.shared.running
    plant(store, job, "t0000", 0, seal_result(mallory(), forged_body(job, "t0000", 0)))
    clock.now += LEASE * 0.9  # the commit re-checks the lease (and whether it is superseded)
    assert w.run_claimed() == 1
    assert w.stats["commits"] == 1 and w.stats["commits_lost"] == 0
    run_until_done([w], clock)
    assert load_view(store, job).results["t0000"].slot == 1
    assert reduce_total(store, job, tmp_path) == "1"


def test_a_forged_reduce_result_never_reaches_reduce_out(
    store: MemoryStore,
    clock: TestClock,
    post: Callable[..., Job],
    tmp_path: Path,
) -> None:
    job = post(2)
    # An output entry pointing at another file of the store (here job.json's folder
    # neighbour: a shipped file or anything else) must never be spliced into --out.
    spliced = forged_body(job, REDUCE, 0)
    target = next(i for i in store.list(job.folder) if i.name == "job.json")
    spliced["outputs"] = [
        {"name": "total.txt", "size": target.size, "sha256": "0" * 64, "id": target.id}
    ]
    plant(store, job, REDUCE, 0, json.dumps({"format": 1, **spliced}).encode())
    plant(store, job, REDUCE, 1, seal_result(mallory(), forged_body(job, REDUCE, 1)))
    w = make_worker(store, tmp_path, "a", clock)
    run_until_done([w], clock)
    assert load_view(store, job).results[REDUCE].slot == 2
    assert reduce_total(store, job, tmp_path) == "3"
    assert not (tmp_path / "out" / "job.json").exists()


def test_every_slot_forged_gives_up_on_the_task_without_believing_any(
    store: MemoryStore, clock: TestClock, post: Callable[..., Job], tmp_path: Path
) -> None:
    job = post(1, reduce=False)
    for slot in range(RESULT_SLOTS):
        plant(store, job, "t0000", slot, seal_result(mallory(), forged_body(job, "t0000", slot)))
    w = make_worker(store, tmp_path, "a", clock)
    run_until_done([w], clock)
    assert "t0000" not in load_view(store, job).results
    assert "t0000" in w.jobs[job.id].given_up
    with pytest.raises(DrivemrError):
        read_manifest(store, job.tasks[0], job)


# --------------------------------------------------------------------------- after commit


def test_an_in_place_edit_after_commit_is_refused_everywhere(
    store: MemoryStore,
    clock: TestClock,
    post: Callable[..., Job],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = post(2)
    run_until_done([make_worker(store, tmp_path, "a", clock)], clock)
    caplog.set_level(logging.WARNING)
    # Edit the committed result of t0001: its value, keeping the (now broken) seal.
    rid = load_view(store, job).results["t0001"].file.id
    doc = json.loads(store.read(rid))
    doc["body"]["outputs"][0]["data"] = base64.b64encode(b"999").decode()
    clock.now += 1
    store.update(rid, json.dumps(doc).encode())
    assert "t0001" not in load_view(store, job).results
    paths = fetch_results(store, job.id, tmp_path / "res")
    assert [p.relative_to(tmp_path / "res").as_posix() for p in paths] == ["t0000/out.txt"]
    # The same for the reduce's result: `drivemr reduce --out` refuses it.
    red = load_view(store, job).results[REDUCE].file.id
    doc = json.loads(store.read(red))
    doc["body"]["outputs"][0]["data"] = base64.b64encode(b"999").decode()
    clock.now += 1
    store.update(red, json.dumps(doc).encode())
    with pytest.raises(DrivemrError):
        fetch_or_reduce(store, job.id, tmp_path / "out")
    assert not (tmp_path / "out" / "total.txt").exists()
    assert ignored(caplog, rid) == 1


def test_an_edit_within_the_same_second_is_caught_when_the_result_is_used(
    store: MemoryStore, clock: TestClock, post: Callable[..., Job], tmp_path: Path
) -> None:
    """The planning cache is keyed by (id, size, modified); an edit keeping both still
    never reaches a reduce: results are opened again before their outputs are used."""
    job = post(2, reduce=False)
    run_until_done([make_worker(store, tmp_path, "a", clock)], clock)
    reader = ResultReader(load_trusted())
    view = load_view(store, job, reader=reader)
    rid = view.results["t0001"].file.id
    doc = json.loads(store.read(rid))
    doc["body"]["outputs"][0]["data"] = base64.b64encode(b"9").decode()  # same size
    clock.now = view.results["t0001"].file.modified  # and the same modified time
    store.update(rid, json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
    assert load_view(store, job, reader=reader).results["t0001"]  # cached verdict (same key)
    from drivemr.results import stage_results
    from drivemr.sealed import UntrustedFile

    with pytest.raises(UntrustedFile):
        stage_results(store, job, view.results, tmp_path / "r", reader=reader)


def test_a_swapped_output_file_is_refused_and_read_no_further_than_its_size(
    store: MemoryStore, clock: TestClock, post: Callable[..., Job], tmp_path: Path
) -> None:
    job = post(1, map_code=BIG_ITEM, reduce=False)  # 300 kB: uploaded, referenced by id
    run_until_done([make_worker(store, tmp_path, "a", clock)], clock)
    (out,) = read_manifest(store, job.tasks[0], job)["outputs"]
    assert "id" in out and out["size"] == 300_000 and len(out["sha256"]) == 64
    good = store.read(out["id"])
    store.update(out["id"], good + b"x" * 5_000_000)  # bigger
    reads: list[int | None] = []
    real_read = store.read

    def counting_read(
        file_id: str, *, max_bytes: int | None = None, parent: str | None = None
    ) -> bytes:
        reads.append(max_bytes if file_id == out["id"] else -1)
        return real_read(file_id, max_bytes=max_bytes, parent=parent)

    store.read = counting_read  # type: ignore[method-assign]
    with pytest.raises(SecurityError):
        fetch_results(store, job.id, tmp_path / "a")
    assert 300_000 in reads and None not in reads  # asked for no more than the sealed size
    store.update(out["id"], b"y" * 300_000)  # same size, other bytes
    with pytest.raises(SecurityError):
        fetch_results(store, job.id, tmp_path / "b")
    assert not (tmp_path / "b" / "t0000" / "out.txt").exists()
    store.update(out["id"], good)
    (path,) = fetch_results(store, job.id, tmp_path / "c")
    assert path.read_bytes() == good


def test_a_junk_claim_under_a_stray_id_is_not_a_claim(
    store: MemoryStore, clock: TestClock, post: Callable[..., Job], tmp_path: Path
) -> None:
    job = post(1, reduce=False)
    store.create(job.folders["claims"], "t0000.g0.mallory", store.mint_ids(1)[0], b"{}")
    assert load_view(store, job).claims == {}
    run_until_done([make_worker(store, tmp_path, "a", clock)], clock)
    assert load_view(store, job).results["t0000"].state == "done"


def test_a_swapped_shipped_file_is_read_no_further_than_its_signed_size(
    store: MemoryStore, write_job: Callable[..., Path], tmp_path: Path
) -> None:
    from types import SimpleNamespace

    from drivemr.worker.slot import fetch

    text = 'name = "s"\nfiles = ["lib.py"]\n[map]\ncommand = ["python", "{files}/lib.py"]\nitems = ["a"]\n'
    job = submit(store, load_job(write_job(text, files={"lib.py": "print(1)\n"})))
    (shipped,) = job.files
    store.update(shipped.id, b"x" * (2 << 20))
    asked: list[int | None] = []
    real_read = store.read

    def read(file_id: str, *, max_bytes: int | None = None, parent: str | None = None) -> bytes:
        asked.append(max_bytes)
        return real_read(file_id, max_bytes=max_bytes, parent=parent)

    store.read = read  # type: ignore[method-assign]
    with pytest.raises(SecurityError, match=r"in job\.json"):
        fetch(SimpleNamespace(store=store), shipped, tmp_path / "files" / "lib.py")  # type: ignore[arg-type]
    assert asked == [shipped.size] and not (tmp_path / "files" / "lib.py").exists()


def test_a_result_of_a_pc_trusted_later_counts_without_a_new_reader(
    store: MemoryStore, post: Callable[..., Job], tmp_path: Path
) -> None:
    """Results are opened against the reader's Trust (the same trusted list as claims and
    heartbeats): refused while its sealer is untrusted, believed once `keys trust` ran."""
    from drivemr import signing
    from drivemr.trust import Trust

    job = post(1, reduce=False)
    other_key = Ed25519PrivateKey.generate()
    plant(store, job, "t0000", 0, seal_result(Sealer(other_key), forged_body(job, "t0000", 0)))
    config = tmp_path / "cfg"
    trust = Trust(signing.load_or_create_signing_key(config)[0], config_dir=config, refresh_every=0)
    reader = ResultReader(trust)
    assert "t0000" not in load_view(store, job, trust, reader=reader).results
    other = Trust(other_key, trusted={})
    assert other.me is not None
    signing.trust_key(config, other.me.line, "other")
    view = load_view(store, job, trust, reader=reader)
    assert view.results["t0000"].state == "done"
    assert reader.verified(store, job, job.tasks[0], view.results["t0000"].file) is not None
