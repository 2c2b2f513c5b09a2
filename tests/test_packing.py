"""Packing items into tasks: the sizes (pure), the job document, per-item runs and retries
inside a pack (MemoryStore, ``Worker.step``), byte-identical results with and without
packing, packed inputs and hostile archives, and worker processes end to end."""

from __future__ import annotations

import dataclasses
import json
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import WorkerProcs, run_cli

from drivemr.archives import Member, PackInputs, write_archive
from drivemr.errors import JobSpecError, SecurityError
from drivemr.example_jobs import example_dir
from drivemr.packing import (
    DEFAULT_SLOTS,
    FACTOR,
    MAX_PACK,
    TAIL_SHARES,
    estimate_writes,
    live_slots,
    pack_sizes,
)
from drivemr.protocol import (
    FIXED_NAMES_FORMAT,
    FORMAT,
    PACKED_FORMAT,
    Job,
    JobFormatError,
    find_job,
    job_from_doc,
    load_view,
    submit,
)
from drivemr.results import read_manifest
from drivemr.spec import JobSpec, load_job
from drivemr.stores.base import Store
from drivemr.stores.folder import FolderStore
from drivemr.testing import MemoryStore
from drivemr.testing.clock import ManualClock as StepClock
from drivemr.testing.stepping import step_until_done, stepping_worker
from drivemr.worker import Worker, WorkerConfig

# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("count", [1, 2, 7, 24, 100, 1000, 10_000, 100_000])
@pytest.mark.parametrize("slots", [1, 2, 6, 64])
def test_guided_sizes_cover_every_item_and_shrink(count: int, slots: int) -> None:
    sizes = pack_sizes(count, slots)
    assert sum(sizes) == count and all(1 <= s <= MAX_PACK for s in sizes)
    assert sizes == sorted(sizes, reverse=True)  # big first, small at the end
    # Each task holds at most 1/slots of the items not yet handed out (rounded up), or the
    # smallest size, 1/6 of a slot's share: the last task to start can never keep the
    # other slots waiting long.
    smallest = max(1, -(-count // (TAIL_SHARES * slots)))
    remaining = count
    for s in sizes:
        assert s <= max(smallest, -(-remaining // (FACTOR * slots)))
        remaining -= s
    # ... and there are few of them: about 3 x slots, plus the 1,000-item cap's share
    assert len(sizes) <= 3 * slots + count // MAX_PACK + 1


def test_guided_sizes_cost_few_tasks() -> None:
    # 10,000 items on 3 PCs x 2 slots: a few dozen tasks, not ten thousand.
    assert len(pack_sizes(10_000, 6)) == 18
    assert pack_sizes(24, 6) == [4, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1]  # 20 s on 6 slots
    assert pack_sizes(5, 8) == [1] * 5  # fewer items than slots: nothing to pack


def test_an_explicit_size_overrides_the_guided_one() -> None:
    assert pack_sizes(10, 6, items_per_task=4) == [4, 4, 2]
    assert pack_sizes(3, 6, items_per_task=1) == [1, 1, 1]
    assert pack_sizes(3, 6, items_per_task=50) == [3]


def test_write_estimate_counts_claims_results_and_uploads() -> None:
    cost = estimate_writes(tasks=100, uploads=10, reduce=True)
    assert (cost.submit, cost.run) == (6 + 10 + 1, 200 + 2 + 1)
    assert cost.drive_seconds == pytest.approx(cost.total / 3)


# --------------------------------------------------------------------------- job file


@pytest.mark.parametrize(
    ("value", "problem"),
    [("0", "0"), ('"4"', '"4"'), ("true", "true"), ("2.5", "2.5"), ("100001", "100001")],
)
def test_items_per_task_is_validated(
    write_job: Callable[..., Path], value: str, problem: str
) -> None:
    path = write_job(
        f'[map]\ncommand = ["echo", "{{item}}"]\nitems = ["a"]\nitems_per_task = {value}\n'
    )
    with pytest.raises(JobSpecError) as err:
        load_job(path)
    assert str(err.value) == (
        f"{path}: map.items_per_task: must be a whole number from 1 to 100000, not {problem} "
        "(1 runs one item per task; leave it out to let drivemr choose)"
    )


def test_items_per_task_is_read(write_job: Callable[..., Path]) -> None:
    path = write_job('[map]\ncommand = ["echo", "{item}"]\nitems = ["a"]\nitems_per_task = 7\n')
    assert load_job(path).items_per_task == 7


# --------------------------------------------------------------------------- job document

SQUARE = "import sys; open('out.txt', 'w').write(str(int(sys.argv[1]) ** 2))"


def items_job(write_job: Callable[..., Path], n: int, *, per_task: int | None = None) -> JobSpec:
    extra = "" if per_task is None else f"items_per_task = {per_task}\n"
    return load_job(
        write_job(
            f"""
            name = "sq"
            [map]
            command = ["python", "-c", {json.dumps(SQUARE)}, "{{item}}"]
            items = {{range = [0, {n}]}}
            outputs = ["out.txt"]
            {extra}"""
        )
    )


def test_a_packed_job_names_packs_and_keeps_item_ids(
    write_job: Callable[..., Path], tmp_path: Path
) -> None:
    store = FolderStore(tmp_path / "store", create=True)
    job = submit(store, items_job(write_job, 24), slots=6)
    assert job.doc["format"] == FIXED_NAMES_FORMAT
    assert [t.id for t in job.tasks][:3] == ["p0000", "p0001", "p0002"]
    assert [len(t.items) for t in job.tasks] == pack_sizes(24, 6)
    assert [i.id for i in job.items] == [f"t{n:04d}" for n in range(24)]
    assert [i.item for i in job.items] == [str(n) for n in range(24)]
    assert len(job.tasks[0].claim_ids) == 3  # max_attempts claims per pack, as per task


def test_one_item_per_task_writes_today_s_job(
    write_job: Callable[..., Path], tmp_path: Path
) -> None:
    store = FolderStore(tmp_path / "store", create=True)
    job = submit(store, items_job(write_job, 24, per_task=1), slots=6)
    assert job.doc["format"] == FIXED_NAMES_FORMAT
    assert [t.id for t in job.tasks] == [f"t{n:04d}" for n in range(24)]
    assert all("items" not in t for t in job.doc["tasks"]) and not job.packed
    assert [i.id for i in job.items] == [t.id for t in job.tasks]


def test_a_packed_document_is_checked(write_job: Callable[..., Path], tmp_path: Path) -> None:
    store = FolderStore(tmp_path / "store", create=True)
    doc = dict(submit(store, items_job(write_job, 24), slots=6).doc)
    with pytest.raises(JobFormatError, match="format 1"):
        job_from_doc({**doc, "format": FORMAT}, "folder")
    older = job_from_doc({**doc, "format": PACKED_FORMAT}, "folder")  # posted before format 3
    assert older.named and older.claim_name("p0000", 1, "pc") == "p0000.g1.pc"
    assert not job_from_doc(doc, "folder").named
    tasks = [dict(t) for t in doc["tasks"]]
    tasks[1]["items"] = [*tasks[1]["items"], tasks[0]["items"][0]]
    with pytest.raises(JobFormatError, match="unique"):
        job_from_doc({**doc, "tasks": tasks}, "folder")
    tasks = [dict(t) for t in doc["tasks"]]
    tasks[0]["items"] = []
    with pytest.raises(JobFormatError, match="packs no item"):
        job_from_doc({**doc, "tasks": tasks}, "folder")


def test_live_slots_come_from_the_heartbeats(tmp_path: Path) -> None:
    clock = StepClock()
    store = MemoryStore(clock)
    assert live_slots(store) is None  # nobody yet: submit assumes DEFAULT_SLOTS
    for wid, slots in (("a", 2), ("b", 3)):
        make_worker(store, tmp_path, wid, clock, slots=slots).step()
    assert live_slots(store, now=clock.now) == 5
    clock.now += LEASE + 1
    assert live_slots(store, now=clock.now) is None  # both silent past their lease
    assert DEFAULT_SLOTS >= 1


# --------------------------------------------------------------------------- in a pack

LEASE = 60.0
FLAKY = """
import os, sys
item, marks = sys.argv[1], sys.argv[2]
open(os.path.join(marks, "ran"), "a").write(item + "\\n")
if item in ("2", "5") and not os.path.exists(os.path.join(marks, "tried-" + item)):
    open(os.path.join(marks, "tried-" + item), "w").close()
    sys.exit(3)  # the first attempt of items 2 and 5 fails
if item == "6":
    print("six is broken", file=sys.stderr)
    sys.exit(4)  # item 6 always fails
open("out.txt", "w").write(str(int(item) ** 2))
"""


def make_worker(store: Store, tmp_path: Path, wid: str, clock: StepClock, slots: int = 1) -> Worker:
    return stepping_worker(
        store, tmp_path, wid, clock, slots=slots, lease=LEASE, retry_backoff=0.001
    )


def run_steps(workers: list[Worker], clock: StepClock, rounds: int = 40) -> None:
    step_until_done(workers, clock, rounds)


def flaky_job(write_job: Callable[..., Path], marks: Path, items: int, per_task: int) -> JobSpec:
    return load_job(
        write_job(
            f"""
            name = "flaky"
            [map]
            command = ["python", "-c", {json.dumps(FLAKY)}, "{{item}}", {json.dumps(str(marks))}]
            items = {{range = [0, {items}]}}
            outputs = ["out.txt"]
            max_attempts = 2
            items_per_task = {per_task}
            """
        )
    )


def test_a_failing_item_is_retried_inside_its_pack_and_the_others_run_once(
    write_job: Callable[..., Path], tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    clock = StepClock()
    store = MemoryStore(clock)
    job = submit(store, flaky_job(write_job, marks, items=6, per_task=6))
    assert [t.id for t in job.tasks] == ["p0000"]
    w = make_worker(store, tmp_path, "a", clock)
    run_steps([w], clock)
    ran = (marks / "ran").read_text().split()
    assert sorted(ran) == sorted(["0", "1", "2", "2", "3", "4", "5", "5"])  # only 2 and 5 twice
    assert w.stats["claims"] == 1 and w.stats["commits"] == 1  # one claim, one result
    view = load_view(store, job)
    assert view.results["p0000"].state == "done"
    manifest = read_manifest(store, job.tasks[0])
    entries = {e["id"]: e for e in manifest["items"]}
    assert [e["id"] for e in manifest["items"]] == [f"t{n:04d}" for n in range(6)]
    assert {i: e["attempts"] for i, e in entries.items()} == {
        "t0000": 1, "t0001": 1, "t0002": 2, "t0003": 1, "t0004": 1, "t0005": 2,
    }  # fmt: skip
    assert entries["t0002"]["failures"][0]["exit_code"] == 3
    assert all(e["state"] == "done" for e in entries.values())


def test_an_item_that_uses_up_its_attempts_fails_alone(
    write_job: Callable[..., Path], tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    clock = StepClock()
    store = MemoryStore(clock)
    job = submit(store, flaky_job(write_job, marks, items=8, per_task=4))
    w = make_worker(store, tmp_path, "a", clock)
    run_steps([w], clock)
    view = load_view(store, job)
    assert {t: r.state for t, r in view.results.items()} == {"p0000": "done", "p0001": "failed"}
    manifest = read_manifest(store, job.tasks[1])
    entries = {e["id"]: e for e in manifest["items"]}
    assert entries["t0006"]["state"] == "failed" and entries["t0006"]["attempts"] == 2
    assert entries["t0006"]["exit_code"] == 4
    assert "six is broken" in entries["t0006"]["stderr"]
    assert [entries[i]["state"] for i in ("t0004", "t0005", "t0007")] == ["done"] * 3
    assert manifest["error"] == "1 of 4 item(s) failed: t0006"
    ran = (marks / "ran").read_text().split()
    assert ran.count("6") == 2 and ran.count("7") == 1  # the pack went on after item 6
    assert w.stats["claims"] == 2  # the failed pack is not claimed again


# --------------------------------------------------------------------------- byte-identical


def run_to_end(store: Store, tmp_path: Path, name: str) -> None:
    config = WorkerConfig(
        worker_id=name,
        slots=2,
        workdir=tmp_path / name,
        lease=30.0,
        poll_interval=0.05,
        retry_backoff=0.01,
        exit_when_idle=True,
    )
    assert Worker(store, config).run() == 0


def final_result(
    tmp_path: Path, spec: JobSpec, name: str, slots: int | None = None
) -> dict[str, bytes]:
    from drivemr.cli import fetch_or_reduce

    store = FolderStore(tmp_path / f"store-{name}", create=True)
    job = submit(store, spec, slots=slots)
    run_to_end(store, tmp_path, name)
    out = tmp_path / f"out-{name}"
    paths = fetch_or_reduce(store, job.id, out)
    assert paths
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in paths}


def test_wordcount_gives_byte_identical_results_packed_and_unpacked(tmp_path: Path) -> None:
    spec = load_job(example_dir("wordcount") / "job.toml")
    packed = final_result(tmp_path, spec, "packed", slots=1)  # 6 inputs: packs of 3, 2, 1
    one = final_result(tmp_path, dataclasses.replace(spec, items_per_task=1), "one")
    assert packed == one and b'"words"' in packed["total.json"]


LISTING = """
import os, sys
d = sys.argv[1]
with open("listing.txt", "w") as out:
    for name in os.listdir(d):  # unsorted on purpose: the folder order itself must match
        out.write(name + " " + open(os.path.join(d, name, "out.txt")).read() + "\\n")
"""


def test_an_items_job_with_a_reduce_gives_byte_identical_results(
    write_job: Callable[..., Path], tmp_path: Path
) -> None:
    text = f"""
        name = "sq"
        [map]
        command = ["python", "-c", {json.dumps(SQUARE)}, "{{item}}"]
        items = {{range = [0, 40]}}
        outputs = ["out.txt"]
        [reduce]
        command = ["python", "-c", {json.dumps(LISTING)}, "{{results}}"]
        outputs = ["listing.txt"]
        """
    spec = load_job(write_job(text))
    packed = final_result(tmp_path, spec, "packed", slots=2)
    one = final_result(tmp_path, dataclasses.replace(spec, items_per_task=1), "one")
    assert packed == one
    lines = packed["listing.txt"].decode().split("\n")
    assert sorted(lines[:-1]) == sorted(f"t{n:04d} {n * n}" for n in range(40))


# --------------------------------------------------------------------------- packed inputs


def inputs_job(write_job: Callable[..., Path], count: int, per_task: str = "") -> Path:
    files = {f"data/sub{n % 3}/f{n:02d}.txt": f"file {n}\n" * (n + 1) for n in range(count)}
    files["wc.py"] = (
        "import sys\n"
        "data = open(sys.argv[1]).read()\n"
        "open('n.txt', 'w').write(sys.argv[1] + ' ' + str(len(data.split())))\n"
    )
    files["cat.py"] = (
        "import os, sys\n"
        "d = sys.argv[1]\n"
        "out = [open(os.path.join(d, t, 'n.txt')).read() for t in sorted(os.listdir(d))]\n"
        "open('all.txt', 'w').write('\\n'.join(out))\n"
    )
    return write_job(
        f"""
        name = "wc"
        files = ["wc.py", "cat.py"]
        [map]
        command = ["python", "{{files}}/wc.py", "{{input}}"]
        inputs = ["data/**/*.txt"]
        outputs = ["n.txt"]
        {per_task}
        [reduce]
        command = ["python", "{{files}}/cat.py", "{{results}}"]
        outputs = ["all.txt"]
        """,
        files,
    )


def test_packed_inputs_cost_one_upload_per_pack(
    write_job: Callable[..., Path], tmp_path: Path
) -> None:
    spec = load_job(inputs_job(write_job, 30))
    store = FolderStore(tmp_path / "store", create=True)
    job = submit(store, spec, slots=2)
    uploads = store.list(job.folders["files"])
    assert sorted(u.name for u in uploads) == sorted(
        ["wc.py", "cat.py", *(f"{t.id}.zip" for t in job.tasks)]
    )
    assert len(job.tasks) < 30
    item = job.items[0]
    assert item.input is not None and item.input.name == "data/sub0/f00.txt"
    assert item.input.id == job.tasks[0].archive.id  # type: ignore[union-attr]


def test_packed_inputs_give_byte_identical_results(
    write_job: Callable[..., Path], tmp_path: Path
) -> None:
    spec = load_job(inputs_job(write_job, 30))
    packed = final_result(tmp_path, spec, "packed", slots=2)
    one = final_result(tmp_path, dataclasses.replace(spec, items_per_task=1), "one")
    assert packed == one
    assert packed["all.txt"].decode().split("\n")[1] == "data/sub0/f03.txt 8"


def member(tmp_path: Path, name: str, data: bytes) -> Member:
    import hashlib

    return Member(name, hashlib.sha256(data).hexdigest(), len(data))


def hostile(tmp_path: Path, build: Callable[[zipfile.ZipFile], None]) -> Path:
    path = tmp_path / "hostile.zip"
    with zipfile.ZipFile(path, "w") as zf:
        build(zf)
    return path


def test_an_honest_archive_stages_each_input_where_it_belongs(tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_bytes(b"hello")
    members = write_archive([("in/a.txt", src)], tmp_path / "p.zip")
    assert members == [member(tmp_path, "in/a.txt", b"hello")]
    inputs = PackInputs(tmp_path / "p.zip", members)
    dest = tmp_path / "item"
    dest.mkdir()
    assert inputs.stage("in/a.txt", dest).read_bytes() == b"hello"
    inputs.close()


def _link(zf: zipfile.ZipFile) -> None:
    info = zipfile.ZipInfo("in/a.txt")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    zf.writestr(info, "/etc/passwd")


@pytest.mark.parametrize(
    ("build", "problem"),
    [
        (lambda zf: zf.writestr("../../evil.txt", b"hello"), "does not name"),
        (lambda zf: zf.writestr("/etc/evil.txt", b"hello"), "does not name"),
        (_link, "not a plain file"),
        (lambda zf: zf.writestr("in/a.txt", b"hello" * 1000), "is 5000 bytes"),
        (
            lambda zf: (zf.writestr("in/a.txt", b"hello"), zf.writestr("in/a.txt", b"hello")),
            "twice",
        ),
        (lambda zf: zf.writestr("in/a.txt/", b""), "does not name"),
    ],
)
@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_hostile_archives_are_refused_before_anything_runs(
    tmp_path: Path, build: Callable[[zipfile.ZipFile], None], problem: str
) -> None:
    path = hostile(tmp_path, build)
    with pytest.raises(SecurityError, match=problem):
        PackInputs(path, [member(tmp_path, "in/a.txt", b"hello")])
    assert not (tmp_path.parent / "evil.txt").exists()


def test_a_member_that_does_not_match_its_digest_leaves_nothing(tmp_path: Path) -> None:
    path = hostile(tmp_path, lambda zf: zf.writestr("in/a.txt", b"HELLO"))
    inputs = PackInputs(path, [member(tmp_path, "in/a.txt", b"hello")])
    dest = tmp_path / "item"
    dest.mkdir()
    with pytest.raises(SecurityError, match="digest"):
        inputs.stage("in/a.txt", dest)
    assert not (dest / "in" / "a.txt").exists()
    inputs.close()


def test_a_bomb_is_read_no_further_than_its_declared_size(tmp_path: Path) -> None:
    # The central directory claims 5 bytes; the deflated stream holds 50 MB of zeros.
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("in/a.txt", b"\0" * 50_000_000)
    data = bytearray(path.read_bytes())
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = (5).to_bytes(4, "little")  # uncompressed size
    path.write_bytes(bytes(data))
    inputs = PackInputs(path, [member(tmp_path, "in/a.txt", b"hello")])
    dest = tmp_path / "item"
    dest.mkdir()
    with pytest.raises(SecurityError):
        inputs.stage("in/a.txt", dest)
    assert not (dest / "in" / "a.txt").exists()
    inputs.close()


def test_a_tampered_archive_in_the_store_fails_its_pack(
    write_job: Callable[..., Path], tmp_path: Path
) -> None:
    spec = load_job(inputs_job(write_job, 12))
    store = FolderStore(tmp_path / "store", create=True)
    job = submit(store, dataclasses.replace(spec, items_per_task=6))
    archive = job.tasks[1].archive
    assert archive is not None
    stored = next((tmp_path / "store").rglob(f"{archive.name}~*"))
    with open(stored, "r+b") as f:  # in place: the store's index link sees it too
        f.truncate()
        f.write(hostile(tmp_path, lambda zf: zf.writestr("../evil", b"x")).read_bytes())
    run_to_end(store, tmp_path, "w")
    view = load_view(store, job)
    assert {t: r.state for t, r in view.results.items()} == {"p0000": "done", "p0001": "failed"}
    assert "sha256" in read_manifest(store, job.tasks[1])["error"]


# --------------------------------------------------------------------------- processes


def test_worker_processes_run_a_packed_inputs_job_end_to_end(
    folder_store: FolderStore, write_job: Callable[..., Path], tmp_path: Path, workers: WorkerProcs
) -> None:
    job_file = inputs_job(write_job, 40)
    job_id = run_cli("submit", "--store", folder_store.url, str(job_file)).stdout.split()[-1]
    for name in ("pc1", "pc2"):
        workers.start(name, "--exit-when-idle", slots=2)
    codes = workers.wait_all()
    assert codes == {"pc1": 0, "pc2": 0}, {n: workers.log(n) for n in codes}
    out = tmp_path / "out"
    run_cli("reduce", job_id, "--store", folder_store.url, "--out", str(out))
    lines = (out / "all.txt").read_text().split("\n")
    assert len(lines) == 40
    expected = {f"data/sub{n % 3}/f{n:02d}.txt {2 * (n + 1)}" for n in range(40)}
    assert set(lines) == expected
    job = _job(folder_store, job_id)
    assert job.packed and len(job.tasks) < 40


def test_a_big_task_left_free_goes_before_the_small_ones(
    write_job: Callable[..., Path], tmp_path: Path
) -> None:
    """24 items on 6 slots: 4, 4, 3, 3, 2, 2 and six single items. A worker that lists
    while the second 4 is still free takes it, whoever it is: left to the last slot that
    comes by, it would end the job 15 s late on items of 5 s."""
    from drivemr.protocol import ClaimRef, JobView
    from drivemr.stores.base import FileInfo
    from drivemr.worker.plan import plan_tasks

    store = FolderStore(tmp_path / "store", create=True)
    job = submit(store, items_job(write_job, 24), slots=6)
    assert [len(t.pack) for t in job.tasks] == [4, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1]
    view = JobView()
    for t in job.tasks[:6]:
        if t.index != 1:
            view.add_claim(ClaimRef(t.id, 0, "other", FileInfo("x", "x", "p")))
    starts = {plan_tasks(job, view, me=me, frontier=0).pending[0] for me in "abcdefgh"}
    assert starts == {job.tasks[1].id}
    # Among tasks of one size, workers spread over the first three.
    view.add_claim(ClaimRef(job.tasks[1].id, 0, "other", FileInfo("x", "x", "p")))
    starts = {plan_tasks(job, view, me=me, frontier=0).pending[0] for me in "abcdefgh"}
    assert starts == {t.id for t in job.tasks[6:9]}


def _job(store: Store, job_id: str) -> Job:
    from drivemr.protocol import find_job

    return find_job(store, job_id)[1]


def test_every_worker_claims_a_packed_job_from_its_biggest_task(
    write_job: Callable[..., Path], tmp_path: Path
) -> None:
    from drivemr.protocol import ClaimRef, JobView
    from drivemr.stores.base import FileInfo
    from drivemr.worker.plan import next_pending, plan_tasks

    store = FolderStore(tmp_path / "store", create=True)
    job = submit(store, items_job(write_job, 200), slots=6)
    assert job.packed_for == 6
    for me in ("pc1", "pc2", "pc3-a1b2"):
        first = plan_tasks(job, JobView(), me=me).pending[0]
        assert first in {t.id for t in job.tasks[:6]}  # among the six biggest
    view = JobView()
    for t in job.tasks[:4]:
        view.add_claim(ClaimRef(t.id, 0, "other", FileInfo("x", "x", "p")))
    assert [len(t.pack) for t in job.tasks[4:7]] == [16, 14, 11]
    starts = {plan_tasks(job, view, me=me, frontier=1).pending[0] for me in "abcdefgh"}
    # then one of the first free ones about as big as the first (11 < 3/4 of 16)
    assert starts == {t.id for t in job.tasks[4:6]}  # not all racing for the same one
    # ... and only right after a listing: no blind claim along a run, where the worker
    # whose run it is would race us for it
    step = next_pending(job, [t.id for t in job.tasks[5:]], settled=lambda t: False,
                        frontier=4, replanned=False)  # fmt: skip
    assert step.run_ended
    unpacked = submit(store, items_job(write_job, 200, per_task=1), slots=6)
    starts = {plan_tasks(unpacked, JobView(), me=me).pending[0] for me in ("pc1", "pc2", "pc3")}
    assert len(starts) == 3  # unpacked: each worker at an offset of its own, as before


# --------------------------------------------------------------------------- status in items


def test_status_logs_joblog_and_report_show_items(
    folder_store: FolderStore, write_job: Callable[..., Path], tmp_path: Path
) -> None:
    import io

    from drivemr.ops_cli import joblog_rows
    from drivemr.progress import summary
    from drivemr.report import collect, summarize
    from drivemr.status import status_of

    marks = tmp_path / "marks"
    marks.mkdir()
    job = submit(folder_store, flaky_job(write_job, marks, items=8, per_task=4))
    run_to_end(folder_store, tmp_path, "w")
    st = status_of(folder_store, job.id)
    assert (st.unit, st.packs, st.state) == ("item", 2, "failed")
    assert st.counts["done"] == 7 and st.counts["failed"] == 1
    assert [t.task for t in st.tasks] == [f"t{n:04d}" for n in range(8)]
    assert st.failed_tasks == ["t0006"]
    six = st.tasks[6]
    assert (six.pack, six.attempts, six.exit_code, six.item) == ("p0001", 2, 4, "6")
    out = io.StringIO()
    summary(st, out)
    assert "1 of 8 item(s) failed" in out.getvalue()
    doc = json.loads(run_cli("status", job.id, "--store", folder_store.url, "--json").stdout)
    assert doc["unit"] == "item" and len(doc["tasks"]) == 8
    assert doc["tasks"][6]["pack"] == "p0001"
    text = run_cli("status", job.id, "--store", folder_store.url).stdout
    assert "7 done, 0 running, 1 failed, 0 pending" in text and "(items, in 2 tasks)" in text
    logs = run_cli("logs", job.id, "t0006", "--store", folder_store.url).stdout
    assert "six is broken" in logs
    rows = {r[0]: r for r in joblog_rows(folder_store, job.id)}
    assert sorted(rows) == [f"t{n:04d}" for n in range(8)]
    assert rows["t0006"][5] == "4" and rows["t0006"][7] == "2"  # exit 4, two attempts
    assert rows["t0002"][7] == "2" and rows["t0001"][7] == "1"  # retried inside the pack
    s = summarize(collect(folder_store, job.id))
    assert (s["tasks"], s["packs"], s["done"], s["failed"], s["retries"]) == (8, 2, 7, 1, 3)
    page = tmp_path / "report.html"
    run_cli("report", job.id, "--store", folder_store.url, "--html", str(page))
    assert "items (in 2 tasks)" in page.read_text() and "t0006" in page.read_text()


def test_submit_tells_the_drive_write_cost_up_front_when_it_is_over_a_minute(
    write_job: Callable[..., Path],
) -> None:
    said: list[str] = []
    store = MemoryStore(StepClock())
    store.url = "drive://folder"  # as a Drive store names itself
    submit(store, items_job(write_job, 200, per_task=1), progress=said.append)
    assert said == [
        "this job costs about 408 Drive writes (7 to submit, 401 to run): about 3 min "
        "at Drive's quota of ~3 writes/s per account"
    ]
    said.clear()
    submit(store, items_job(write_job, 200), progress=said.append, slots=6)
    assert said == []  # packed: 15 tasks, well under a minute


def test_a_missing_output_fails_the_item_after_its_attempts(
    write_job: Callable[..., Path], tmp_path: Path
) -> None:
    clock = StepClock()
    store = MemoryStore(clock)
    text = """
        name = "noout"
        [map]
        command = ["python", "-c", "import os; print(os.environ['DRIVEMR_ATTEMPT'])"]
        items = ["a", "b"]
        outputs = ["out.txt"]
        max_attempts = 2
        items_per_task = 2
        """
    job = submit(store, load_job(write_job(text)))
    run_steps([make_worker(store, tmp_path, "a", clock)], clock)
    manifest = read_manifest(store, job.tasks[0])
    for e in manifest["items"]:
        assert (e["state"], e["attempts"]) == ("failed", 2)
        assert e["error"] == "outputs: declared output 'out.txt' was not produced"
        assert e["stdout"] == "2\n"  # the second attempt's, as DRIVEMR_ATTEMPT says


def test_many_packs_share_a_few_archives(write_job: Callable[..., Path], tmp_path: Path) -> None:
    spec = dataclasses.replace(load_job(inputs_job(write_job, 30)), items_per_task=2)
    store = FolderStore(tmp_path / "store", create=True)
    job = submit(store, spec)
    archives = [u for u in store.list(job.folders["files"]) if u.name.endswith(".zip")]
    assert len(job.tasks) == 15 and len(archives) == 8  # two consecutive packs per archive
    assert job.tasks[0].archive == job.tasks[1].archive != job.tasks[2].archive
    packed = final_result(tmp_path, spec, "grouped")
    one = final_result(tmp_path, dataclasses.replace(spec, items_per_task=1), "one")
    assert packed == one


# --------------------------------------------------------------------------- rounds, results

MENDABLE = """
import os, sys
item, marks = sys.argv[1], sys.argv[2]
if os.path.exists(os.path.join(marks, "broken-" + item)):
    sys.exit(4)  # broken until the test mends it
open("out.txt", "w").write(str(int(item) ** 2))
"""


def mendable_job(write_job: Callable[..., Path], marks: Path) -> JobSpec:
    return load_job(
        write_job(
            f"""
            name = "mendable"
            [map]
            command = ["python", "-c", {json.dumps(MENDABLE)}, "{{item}}", {json.dumps(str(marks))}]
            items = {{range = [0, 8]}}
            outputs = ["out.txt"]
            max_attempts = 1
            items_per_task = 4
            """
        )
    )


def test_results_retry_and_results_again_over_a_packed_job(
    write_job: Callable[..., Path], tmp_path: Path
) -> None:
    from drivemr.errors import DrivemrError
    from drivemr.results import fetch_results
    from drivemr.rounds import retry_job
    from drivemr.status import job_status

    marks = tmp_path / "marks"
    marks.mkdir()
    (marks / "broken-6").touch()
    clock = StepClock()
    store = MemoryStore(clock)
    job = submit(store, mendable_job(write_job, marks))
    w = make_worker(store, tmp_path, "a", clock)
    run_steps([w], clock)
    # drivemr results of a failed pack: its done items, one folder each, the failed one not
    out = tmp_path / "out1"
    fetch_results(store, job.id, out)
    assert sorted(p.name for p in out.iterdir()) == [f"t{n:04d}" for n in range(8) if n != 6]
    assert (out / "t0005" / "out.txt").read_text() == "25"
    with pytest.raises(DrivemrError, match=r"item t0006 .* no successful result"):
        fetch_results(store, job.id, tmp_path / "out2", task="t0006")
    fetch_results(store, job.id, tmp_path / "out3", task="t0007")
    assert [p.name for p in (tmp_path / "out3").iterdir()] == ["t0007"]
    with pytest.raises(DrivemrError, match="has no item 't0099'"):
        fetch_results(store, job.id, tmp_path / "out4", task="t0099")
    # retry by item id re-runs the pack holding it, and --failed finds the same pack
    (marks / "broken-6").unlink()
    rnd = retry_job(store, job.id, ["t0006"])
    assert list(rnd.tasks) == ["p0001"]
    run_steps([w], clock)
    folder, again = find_job(store, job.id)
    st = job_status(store, folder, again)
    assert st.state == "done" and st.round == 1 and st.counts["done"] == 8
    assert {t.task: (t.pack, t.round) for t in st.tasks}["t0006"] == ("p0001", 1)
    assert {t.task: t.round for t in st.tasks}["t0000"] == 0  # p0000's result was kept
    out = tmp_path / "out5"
    fetch_results(store, job.id, out)
    assert sorted(p.name for p in out.iterdir()) == [f"t{n:04d}" for n in range(8)]
    assert (out / "t0006" / "out.txt").read_text() == "36"
    with pytest.raises(DrivemrError, match="no failed task"):
        retry_job(store, job.id, failed=True)


def test_retry_failed_re_runs_the_packs_holding_failed_items(
    write_job: Callable[..., Path], tmp_path: Path
) -> None:
    from drivemr.rounds import retry_job

    marks = tmp_path / "marks"
    marks.mkdir()
    (marks / "broken-1").touch()
    clock = StepClock()
    store = MemoryStore(clock)
    job = submit(store, mendable_job(write_job, marks))
    w = make_worker(store, tmp_path, "a", clock)
    run_steps([w], clock)
    (marks / "broken-1").unlink()
    assert list(retry_job(store, job.id, failed=True).tasks) == ["p0000"]
    run_steps([w], clock)
    view = load_view(store, find_job(store, job.id)[1])
    assert {t: r.state for t, r in view.results.items()} == {"p0000": "done", "p0001": "done"}


def test_a_packed_result_whose_items_do_not_match_its_pack_is_refused(
    write_job: Callable[..., Path], tmp_path: Path
) -> None:
    from drivemr.results import manifest_from_body
    from drivemr.sealed import UntrustedFile

    store = MemoryStore(StepClock())
    job = submit(store, mendable_job(write_job, tmp_path))
    task = job.tasks[0]
    entry = {"state": "done", "attempts": 1, "exit_code": 0, "duration": 0.1, "outputs": []}
    good = [{"id": i.id, **entry} for i in task.pack]
    body = {"state": "done", "attempt": 1, "outputs": [], "items": good}
    m = manifest_from_body(body, job_id=job.id, task=task, slot_id="s", signer="x")
    assert [e.id for e in m.items] == ["t0000", "t0001", "t0002", "t0003"]
    bad_bodies = [
        {**body, "items": good[:3]},  # an item missing
        {**body, "items": good[::-1]},  # out of item order
        {**body, "items": [*good[:3], {**good[3], "state": "failed"}]},  # done with a failure
        {**body, "items": [*good[:3], {**good[3], "attempts": -1}]},
        {**body, "items": [*good[:3], {**good[3], "outputs": "x"}]},
        {"state": "done", "attempt": 1, "outputs": []},  # a done pack without entries
    ]
    for bad in bad_bodies:
        with pytest.raises(UntrustedFile):
            manifest_from_body(bad, job_id=job.id, task=task, slot_id="s", signer="x")
    whole = {"state": "failed", "attempt": 1, "outputs": [], "error": "inputs"}
    assert manifest_from_body(whole, job_id=job.id, task=task, slot_id="s", signer="x").items == ()
