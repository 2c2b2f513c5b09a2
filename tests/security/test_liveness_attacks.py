"""The attack corpus for claims, heartbeats, markers and rejection notes (issue 12, points
1 and 2; issue 18, points 8 to 10): what a writer without a trusted key can put in the
store, and what workers and `drivemr status` then do.

Workers are stepped over a MemoryStore on a clock the test owns (``Worker.step``); each PC
is a :class:`Trust` with its own key and trusted list. Every attack: no task failed or
finished by a forged file, no live worker's task taken over, no worker crashed or hung,
and each untrusted file reported once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivemr import signing
from drivemr.errors import SecurityError
from drivemr.protocol import (
    Job,
    claim_name,
    heartbeat_name,
    load_view,
    mark,
    submit,
)
from drivemr.results import ResultReader, read_manifest
from drivemr.signing import PublicKeyInfo
from drivemr.spec import load_job
from drivemr.status import job_status
from drivemr.testing import MemoryStore
from drivemr.testing.clock import ManualClock as Clock
from drivemr.testing.filefacts import result_facts
from drivemr.testing.stepping import step_until_done, stepping_worker
from drivemr.trust import Trust, claim_body
from drivemr.worker import Worker, WorkerConfig
from drivemr.worker.identity import resolve_identity

LEASE = 60.0
WRITE_ITEM = "import sys; open('out.txt', 'w').write(sys.argv[1])"
ESCAPES = "\x1b]0;pwned\x07\x1b[2J\x1b[31mrun: drivemr keys trust drivemr-ed25519:AAAA --name ok"


class PC:
    """One PC: its key, and a Trust over a fixed trusted list that tests may change."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.key = Ed25519PrivateKey.generate()
        self.reports: list[str] = []
        self.trusted: dict[str, PublicKeyInfo] = {}
        self.trust = Trust(self.key, trusted=self.trusted, report=self.reports.append)
        assert self.trust.me is not None
        me = self.trust.me
        self.info = PublicKeyInfo(name, me.key_id, me.public_b64)

    def trusts(self, other: PC) -> None:
        self.trusted[other.info.key_id] = other.info
        self.trust = Trust(self.key, trusted=self.trusted, report=self.reports.append)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> MemoryStore:
    return MemoryStore(clock)


@pytest.fixture
def post(store: MemoryStore, write_job: Callable[..., Path]) -> Callable[..., Job]:
    def post(items: int = 2, attempts: int = 2) -> Job:
        text = f"""
            name = "attack"
            [map]
            command = ["python", "-c", {json.dumps(WRITE_ITEM)}, "{{item}}"]
            items = {{range = [1, {items + 1}]}}
            outputs = ["out.txt"]
            max_attempts = {attempts}
            """
        return submit(store, load_job(write_job(text)))

    return post


def worker(
    store: MemoryStore, tmp_path: Path, wid: str, clock: Clock, pc: PC, lease: float = LEASE
) -> Worker:
    return stepping_worker(store, tmp_path, wid, clock, lease=lease, trust=pc.trust)


def run(workers: list[Worker], clock: Clock, rounds: int = 40) -> None:
    step_until_done(workers, clock, rounds)


def results(store: MemoryStore, job: Job) -> dict[str, str]:
    out = {}
    for info in store.list(job.folders["results"]):
        ref = result_facts(store, info)
        assert ref is not None
        out[ref.task] = ref.state
    return out


def forge_claim(store: MemoryStore, job: Job, task: int, gen: int, data: bytes, who: str) -> None:
    t = job.tasks[task]
    store.create(job.folders["claims"], claim_name(t.id, gen, who), t.claim_ids[gen], data)


def sealed_claim(pc: PC, job: Job, task: int, gen: int, who: str) -> bytes:
    body = claim_body(job.id, job.tasks[task].id, gen, who, life="feedbeef", nonce="n")
    return pc.trust.seal("claim", body)


@pytest.fixture
def pcs() -> tuple[PC, PC, PC]:
    """Two PCs of one cluster (they trust each other) and an attacker nobody trusts."""
    a, b, attacker = PC("a"), PC("b"), PC("attacker")
    a.trusts(b)
    b.trusts(a)
    return a, b, attacker


# --------------------------------------------------------------------------- claims


def test_junk_claims_at_ids_that_are_not_minted_change_nothing(
    store: MemoryStore, clock: Clock, post: Callable[..., Job], tmp_path: Path, pcs: tuple[PC, ...]
) -> None:
    job = post(2, attempts=2)
    for t in job.tasks:  # "the last attempt" by name, at ids of the attacker's choosing
        for gen in range(3):
            (fid,) = store.mint_ids(1)
            store.create(job.folders["claims"], claim_name(t.id, gen, "x"), fid, b"junk")
    w = worker(store, tmp_path, "a", clock, pcs[0])
    run([w], clock)
    assert results(store, job) == {"t0000": "done", "t0001": "done"}
    assert w.stats["claims_burned"] == 0 and w.stats["reclaims"] == 0


def test_a_forged_claim_burns_its_attempt_and_the_next_is_claimed_at_once(
    store: MemoryStore, clock: Clock, post: Callable[..., Job], tmp_path: Path, pcs: tuple[PC, ...]
) -> None:
    a, _b, attacker = pcs
    job = post(2, attempts=3)
    # Sealed by a key nobody trusts, naming a worker that is alive (so it would be waited for).
    forge_claim(store, job, 0, 0, sealed_claim(attacker, job, 0, 0, "a"), "a")
    forge_claim(store, job, 1, 0, b"\x00" * 100, "ghost")  # plain junk
    w = worker(store, tmp_path, "a", clock, a)
    w.step()
    w.step()  # no lease wait: both tasks run in the first rounds
    res = results(store, job)
    assert res == {"t0000": "done", "t0001": "done"}
    assert w.stats["claims_burned"] == 2 and w.stats["blocked"] == 0
    assert read_manifest(store, job.tasks[0], reader=ResultReader(a.trust))["attempt"] == 2
    assert len([r for r in a.reports if "untrusted file ignored" in r]) == 2


def test_forged_claims_at_every_attempt_block_the_task_and_never_fail_it(
    store: MemoryStore,
    clock: Clock,
    post: Callable[..., Job],
    tmp_path: Path,
    pcs: tuple[PC, ...],
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, _b, attacker = pcs
    job = post(3, attempts=2)
    forge_claim(store, job, 1, 0, sealed_claim(attacker, job, 1, 0, "a"), "a")
    forge_claim(store, job, 1, 1, json.dumps({"worker": "a"}).encode(), "a")  # old-style
    w = worker(store, tmp_path, "a", clock, a)
    with caplog.at_level(logging.WARNING, logger="drivemr.worker"):
        for _ in range(5):
            w.step()
            clock.now += LEASE  # leases pass: still never failed
    assert results(store, job) == {"t0000": "done", "t0002": "done"}  # t0001: no result
    assert w.all_done()  # exit-when-idle would end: nothing hangs on the blocked task
    assert "t0001" in w.jobs[job.id].blocked
    blocked_lines = [r for r in caplog.messages if "blocked by untrusted files" in r]
    assert len(blocked_lines) == 1  # logged once
    # The old-style (unsealed) claim is named as such, once.
    assert sum("unsealed file" in r for r in a.reports) == 1
    st = job_status(store, store.get(job.folder), job, trust=a.trust)
    states = {t.task: t.state for t in st.tasks}
    assert states == {"t0000": "done", "t0001": "blocked", "t0002": "done"}
    assert st.counts["blocked"] == 1 and st.counts["failed"] == 0


def test_a_forged_later_claim_never_takes_a_live_attempt_over(
    store: MemoryStore, clock: Clock, post: Callable[..., Job], tmp_path: Path, pcs: tuple[PC, ...]
) -> None:
    a, _b, attacker = pcs
    job = post(1, attempts=3)
    w = worker(store, tmp_path, "a", clock, a)
    w.step(run=False)  # claims attempt 1
    forge_claim(store, job, 0, 1, sealed_claim(attacker, job, 0, 1, "b"), "b")
    clock.now += LEASE * 0.6  # late heartbeat: the commit re-checks the lease (and supersession)
    w.shared.dirty.reload.add(job.id)
    w.watcher.look()  # the relisting sees the "later" claim
    w.run_claimed()
    assert w.stats["commits"] == 1
    assert read_manifest(store, job.tasks[0], reader=ResultReader(a.trust))["attempt"] == 1


# --------------------------------------------------------------------------- heartbeats


def _beat_file(store: MemoryStore, wid: str) -> str:
    (info,) = [i for i in store.list(store.root_id) if i.name == heartbeat_name(wid)]
    return info.id


def test_forged_stopped_heartbeats_never_make_a_live_worker_s_task_reclaimed(
    store: MemoryStore, clock: Clock, post: Callable[..., Job], tmp_path: Path, pcs: tuple[PC, ...]
) -> None:
    a_pc, b_pc, attacker = pcs
    post(1)
    a = worker(store, tmp_path, "a", clock, a_pc)
    b = worker(store, tmp_path, "b", clock, b_pc)
    a.step(run=False)
    b.step()
    hb = _beat_file(store, "a")
    forged = {
        "worker": "a", "life": a.lease.life, "seq": 10**9, "lease": LEASE, "state": "stopped",
    }  # fmt: skip
    for data in (
        attacker.trust.seal("heartbeat", forged),  # a key nobody trusts
        json.dumps(forged).encode(),  # unsealed
        b"\x1b[2J not json",
    ):
        clock.now += 1.0
        store.update(hb, data)
        b.step()
        a.lease.beat()  # a is alive and keeps beating
        clock.now += 1.0
        b.step()
    assert b.stats["reclaims"] == 0 and b.stats["claims"] == 0
    assert a.shared.running  # a's attempt was never abandoned
    # The file is named once for its untrusted seal, and unsealed files once in all.
    assert len(b_pc.reports) == 2 and sum("unsealed file" in r for r in b_pc.reports) == 1


def test_a_heartbeat_dated_2100_keeps_nothing_alive_past_the_lease(
    store: MemoryStore, clock: Clock, post: Callable[..., Job], tmp_path: Path, pcs: tuple[PC, ...]
) -> None:
    a_pc, b_pc, _ = pcs
    job = post(1)
    a = worker(store, tmp_path, "a", clock, a_pc)
    b = worker(store, tmp_path, "b", clock, b_pc)
    a.step(run=False)  # a claims, beats once more dated 2100, then dies
    a.lease.beat()
    hb = _beat_file(store, "a")
    entry = store._entries[hb]
    entry.info = replace(entry.info, modified=4_102_444_800.0)  # 2100-01-01
    b.step()
    clock.now += LEASE - 1
    b.step()
    assert b.stats["reclaims"] == 0  # within a's lease as b measured it
    clock.now += 2
    b.step()
    assert b.stats["reclaims"] == 1
    assert read_manifest(store, job.tasks[0], reader=ResultReader(a_pc.trust))["worker"] == "b"


def test_a_replayed_old_heartbeat_is_no_sign_of_life(
    store: MemoryStore, clock: Clock, post: Callable[..., Job], tmp_path: Path, pcs: tuple[PC, ...]
) -> None:
    a_pc, b_pc, _ = pcs
    job = post(1)
    a = worker(store, tmp_path, "a", clock, a_pc)
    b = worker(store, tmp_path, "b", clock, b_pc)
    a.step(run=False)
    hb = _beat_file(store, "a")
    old = store.read(hb)  # a genuine, trusted heartbeat of a
    b.step()
    for _ in range(int(LEASE / 10) + 2):  # a is dead; the attacker replays its old beat
        clock.now += 10
        store.update(hb, old)  # fresh store time, old sequence number
        b.step()
    assert b.stats["reclaims"] == 1
    assert read_manifest(store, job.tasks[0], reader=ResultReader(a_pc.trust))["worker"] == "b"


def test_each_worker_is_judged_by_the_lease_it_declared(
    store: MemoryStore, clock: Clock, post: Callable[..., Job], tmp_path: Path, pcs: tuple[PC, ...]
) -> None:
    a_pc, b_pc, _ = pcs
    job = post(1)
    a = worker(store, tmp_path, "a", clock, a_pc, lease=10.0)
    b = worker(store, tmp_path, "b", clock, b_pc, lease=300.0)
    a.step(run=False)
    b.step()
    clock.now += 9
    b.step()
    assert b.stats["reclaims"] == 0
    clock.now += 2  # past a's 10 s lease, far within b's own 300 s
    b.step()
    assert b.stats["reclaims"] == 1
    assert results(store, job) == {"t0000": "done"}


# --------------------------------------------------------------------------- markers and notes


def test_forged_cancel_and_finished_markers_are_ignored(
    store: MemoryStore, clock: Clock, post: Callable[..., Job], tmp_path: Path, pcs: tuple[PC, ...]
) -> None:
    a_pc, _b, attacker = pcs
    job = post(2)
    store.create(job.folder, "cancel", job.markers["cancel"], attacker.trust.seal(
        "marker", {"job": job.id, "marker": "cancel"}))  # fmt: skip
    store.create(job.folder, "finished", job.markers["finished"], b'{"at": 1}')
    w = worker(store, tmp_path, "a", clock, a_pc)
    run([w], clock)
    assert results(store, job) == {"t0000": "done", "t0001": "done"}
    view = load_view(store, job, a_pc.trust)
    assert not view.cancelled and not view.finished
    st = job_status(store, store.get(job.folder), job, trust=a_pc.trust)
    assert st.state == "done"  # not "cancelled", not "pending" forever
    assert sum("marker" in r for r in a_pc.reports) == 2


def test_a_trusted_cancel_from_another_pc_of_the_cluster_cancels(
    store: MemoryStore, clock: Clock, post: Callable[..., Job], tmp_path: Path, pcs: tuple[PC, ...]
) -> None:
    a_pc, b_pc, _ = pcs
    job = post(2)
    w = worker(store, tmp_path, "a", clock, a_pc)
    w.step(run=False)
    assert mark(store, job, "cancel", b_pc.trust, by="b")
    clock.now += 1.0
    w.step()
    assert job.id in w.shared.done_jobs and w.stats["commits"] == 0


def test_forged_rejection_notes_are_not_shown_and_real_ones_show_only_a_reason_code(
    store: MemoryStore, clock: Clock, post: Callable[..., Job], tmp_path: Path, pcs: tuple[PC, ...]
) -> None:
    a_pc, _b, attacker = pcs
    job = post(1)
    for n, data in enumerate(
        (
            json.dumps({"worker": ESCAPES, "reason": ESCAPES}).encode(),
            attacker.trust.seal("note", {"job": job.id, "worker": ESCAPES, "code": ESCAPES}),
            b"[" * 100_000,  # deeply nested
        )
    ):
        (fid,) = store.mint_ids(1)
        store.create(job.folder, f"rejected.x{n}\x1b[2J", fid, data)

    def untrusted(_job: Job) -> None:
        raise SecurityError(
            "job x is signed by key 0123456789abcdef, which this worker does not trust;"
            " refused. If you trust its author, run on this worker: drivemr keys trust"
            f" {ESCAPES} --name NAME"
        )

    config = WorkerConfig(worker_id="a", slots=1, workdir=tmp_path / "a", lease=LEASE)
    w = Worker(store, config, clock=clock, trust=a_pc.trust, verify=untrusted)
    w.step()
    st = job_status(store, store.get(job.folder), job, trust=a_pc.trust)
    assert list(st.rejected_by) == ["a"]
    shown = st.rejected_by["a"]
    assert shown.startswith("the job is signed by a key this worker does not trust")
    assert "keys trust" not in shown and "\x1b" not in shown and "pwned" not in shown
    assert sum("rejection note" in r for r in a_pc.reports) == 3


# --------------------------------------------------------------------------- PCs and keys


def test_two_pcs_that_trust_each_other_share_a_job_and_reclaim_each_other(
    store: MemoryStore, clock: Clock, post: Callable[..., Job], tmp_path: Path, pcs: tuple[PC, ...]
) -> None:
    a_pc, b_pc, _ = pcs
    job = post(6)
    a = worker(store, tmp_path, "a", clock, a_pc)
    b = worker(store, tmp_path, "b", clock, b_pc)
    run([a, b], clock)
    assert set(results(store, job).values()) == {"done"} and len(results(store, job)) == 6
    assert a.stats["commits"] and b.stats["commits"]
    assert a.stats["claims_burned"] == b.stats["claims_burned"] == 0
    assert a.stats["commits"] + b.stats["commits"] == 6
    assert not a_pc.reports and not b_pc.reports


def test_pcs_that_do_not_trust_each_other_ignore_each_other_and_say_so_once(
    store: MemoryStore, clock: Clock, post: Callable[..., Job], tmp_path: Path
) -> None:
    a_pc, b_pc = PC("a"), PC("b")  # nobody ran `keys trust`
    job = post(1)
    a = worker(store, tmp_path, "a", clock, a_pc)
    b = worker(store, tmp_path, "b", clock, b_pc)
    a.step(run=False)  # a claims attempt 1
    for _ in range(5):
        b.step()  # b does not believe a's claim: burned; b runs attempt 2
        a.lease.beat()
        clock.now += 1.0
    assert results(store, job) == {"t0000": "done"}
    assert read_manifest(store, job.tasks[0], reader=ResultReader(b_pc.trust))["worker"] == "b"
    assert b.stats["claims_burned"] == 1
    heartbeat_reports = [r for r in b_pc.reports if "heartbeat" in r]
    claim_reports = [r for r in b_pc.reports if "claim" in r]
    assert len(claim_reports) == 1
    assert 1 <= len(heartbeat_reports) <= 6  # one per version of a's heartbeat file, not per look
    assert b.others.seen.get("a") is None  # a's heartbeats are not believed


def test_the_trusted_list_is_re_read_when_it_changes(tmp_path: Path) -> None:
    config = tmp_path / "cfg"
    key_a, _ = signing.load_or_create_signing_key(config)
    other = PC("other")
    trust = Trust(key_a, config_dir=config, refresh_every=0.0)
    body = {"job": "j", "marker": "cancel"}
    data = other.trust.seal("marker", body)
    assert trust.open(data, "marker", what="m", key="1") is None
    gen = trust.generation
    signing.trust_key(config, other.info.line, "other")
    opened = trust.open(data, "marker", what="m", key="2")
    assert opened is not None and opened.signer.name == "other"
    assert trust.generation == gen + 1


# --------------------------------------------------------------------------- restarts and logs


def test_a_restart_with_the_same_workdir_keeps_its_id_and_takes_its_claims_back_at_once(
    store: MemoryStore, clock: Clock, post: Callable[..., Job], tmp_path: Path, pcs: tuple[PC, ...]
) -> None:
    workdir = tmp_path / "wd"
    first = resolve_identity(workdir, None)
    assert first.source == "new"
    busy = resolve_identity(workdir, None)  # a second worker on the same folder meanwhile
    assert busy.source == "temporary" and busy.worker_id != first.worker_id
    first.release()
    again = resolve_identity(workdir, None)
    assert again.source == "stored" and again.worker_id == first.worker_id
    again.release()
    assert resolve_identity(workdir, "named").worker_id == "named"

    job = post(1)
    wid = first.worker_id
    old = worker(store, tmp_path, wid, clock, pcs[0])
    old.step(run=False)  # claims, then the PC reboots (no "stopped" beat)
    clock.now += 5
    new = worker(store, tmp_path, wid, clock, pcs[0])
    new.step()
    assert new.stats["reclaims"] == 1  # at once, not after the lease
    assert read_manifest(store, job.tasks[0], reader=ResultReader(pcs[0].trust))["attempt"] == 2


def test_a_quiet_start_logs_dead_workers_only_when_their_claims_are_taken_over_once(
    store: MemoryStore,
    clock: Clock,
    post: Callable[..., Job],
    tmp_path: Path,
    pcs: tuple[PC, ...],
    caplog: pytest.LogCaptureFixture,
) -> None:
    a_pc, b_pc, _ = pcs
    for n in range(5):  # workers that came and went long ago, with nothing claimed
        old = worker(store, tmp_path, f"old{n}", clock, a_pc)
        old.step()
    clock.now += 10 * LEASE
    job = post(2)
    dead = worker(store, tmp_path, "dead", clock, a_pc)
    dead.step(run=False)
    dead.step(run=False)  # claims both tasks, then dies
    with caplog.at_level(logging.INFO, logger="drivemr.worker"):
        b = worker(store, tmp_path, "b", clock, b_pc)
        for _ in range(3):
            b.step()
            clock.now += LEASE / 2
        run([b], clock)
    about_old = [m for m in caplog.messages if "old" in m and "worker" in m]
    assert about_old == []
    taken = [m for m in caplog.messages if "worker dead" in m and "taking its claims over" in m]
    assert len(taken) == 1  # once, though two of its claims were taken over
    assert results(store, job) == {"t0000": "done", "t0001": "done"}


def test_status_never_shows_a_forged_claim_dated_2100_as_running(
    store: MemoryStore, post: Callable[..., Job], pcs: tuple[PC, ...]
) -> None:
    a_pc, _b, attacker = pcs
    job = post(2)
    forge_claim(store, job, 0, 0, sealed_claim(attacker, job, 0, 0, "a"), "a")
    forge_claim(store, job, 1, 0, sealed_claim(a_pc, job, 1, 0, "ghost"), "ghost")  # genuine
    for info in store.list(job.folders["claims"]):
        entry = store._entries[info.id]
        entry.info = replace(entry.info, modified=4_102_444_800.0)
    st = job_status(store, store.get(job.folder), job, trust=a_pc.trust, lease=LEASE)
    # The forged claim is not "running"; a genuine claim's time counts as now at the latest
    # (workers reclaim it by their own measurements, test_a_heartbeat_dated_2100_...).
    assert {t.task: t.state for t in st.tasks} == {"t0000": "pending", "t0001": "running"}


def test_old_unsealed_files_from_before_the_upgrade_are_said_once_and_ignored(
    store: MemoryStore, clock: Clock, post: Callable[..., Job], tmp_path: Path, pcs: tuple[PC, ...]
) -> None:
    a_pc, _b, _ = pcs
    job = post(3, attempts=2)
    for n in range(20):  # the heartbeats of an older drivemr's workers, still fresh
        (fid,) = store.mint_ids(1)
        old = {"worker": f"old{n}", "state": "running", "lease": 300, "time": clock.now}
        store.create(store.root_id, heartbeat_name(f"old{n}"), fid, json.dumps(old).encode())
    for t in range(3):  # and their claims of a job that was running during the upgrade
        forge_claim(store, job, t, 0, json.dumps({"worker": "old0"}).encode(), "old0")
    w = worker(store, tmp_path, "a", clock, a_pc)
    run([w], clock)
    assert results(store, job) == {"t0000": "done", "t0001": "done", "t0002": "done"}
    unsealed = [r for r in a_pc.reports if "unsealed file" in r]
    assert len(unsealed) == 2  # once for heartbeats, once for claims
    assert all("finish running jobs before upgrading" in r for r in unsealed)


def test_trusting_a_pc_later_unblocks_its_tasks_without_a_restart(
    store: MemoryStore, clock: Clock, post: Callable[..., Job], tmp_path: Path
) -> None:
    config = tmp_path / "cfg"
    key, _ = signing.load_or_create_signing_key(config)
    reports: list[str] = []
    here = Trust(key, config_dir=config, report=reports.append, refresh_every=0.0)
    b = PC("b")  # another PC of the cluster, not trusted yet, which died holding t0000
    job = post(2, attempts=2)
    for gen in range(2):
        forge_claim(store, job, 0, gen, sealed_claim(b, job, 0, gen, "b"), "b")
    config_w = WorkerConfig(worker_id="a", slots=1, workdir=tmp_path / "a", lease=LEASE)
    w = Worker(store, config_w, clock=clock, trust=here)
    for _ in range(3):
        w.step()
        clock.now += 1
    assert "t0000" in w.jobs[job.id].blocked and results(store, job) == {"t0001": "done"}
    signing.trust_key(config, b.info.line, "pc-b")  # `drivemr keys trust` meanwhile
    w.step()
    active = w.jobs[job.id]
    assert "t0000" not in active.blocked and "t0000" not in active.given_up
    for _ in range(3):  # b's claims are believed now: b is dead a lease after first seen
        clock.now += LEASE / 2
        w.step()
    # Every attempt of t0000 was b's and b died: the task failed for real (not blocked).
    assert results(store, job) == {"t0000": "failed", "t0001": "done"}
