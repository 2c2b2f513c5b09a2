"""Sealed liveness files end to end: worker processes on a folder store, one config
directory (key and trusted list) per PC, as a cluster is set up with `drivemr keys`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import WorkerProcs, run_cli

from drivemr import signing
from drivemr.protocol import claim_name, find_job
from drivemr.status import status_of
from drivemr.stores.folder import FolderStore

JOB = """
    name = "pcs"
    [map]
    command = ["python", "-c", "import sys; open('out.txt', 'w').write(sys.argv[1])", "{item}"]
    items = {range = [0, 12]}
    outputs = ["out.txt"]
    max_attempts = 2
    """


def pc(tmp_path: Path, name: str) -> Path:
    config = tmp_path / f"config-{name}"
    config.mkdir(mode=0o700)
    signing.load_or_create_signing_key(config)
    return config


def submit(
    monkeypatch: pytest.MonkeyPatch, config: Path, store: FolderStore, job_file: Path
) -> str:
    monkeypatch.setenv("DRIVEMR_CONFIG_DIR", str(config))
    return run_cli("submit", "--store", store.url, str(job_file)).stdout.strip().splitlines()[-1]


def start(monkeypatch: pytest.MonkeyPatch, workers: WorkerProcs, config: Path, name: str) -> None:
    monkeypatch.setenv("DRIVEMR_CONFIG_DIR", str(config))
    workers.start(name, "--exit-when-idle", slots=2)


def test_two_pcs_that_trust_each_other_share_a_job(
    folder_store: FolderStore,
    workers: WorkerProcs,
    write_job: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = pc(tmp_path, "a"), pc(tmp_path, "b")
    signing.trust_key(a, signing.show_public_key(b), "pc-b")  # the one-time set-up
    signing.trust_key(b, signing.show_public_key(a), "pc-a")
    job_id = submit(monkeypatch, a, folder_store, write_job(JOB))
    start(monkeypatch, workers, a, "pca")
    start(monkeypatch, workers, b, "pcb")
    codes = workers.wait_all()
    logs = {n: workers.log(n) for n in codes}
    assert codes == {"pca": 0, "pcb": 0}, logs
    assert not any("untrusted file" in text for text in logs.values()), logs
    # Start-up says which key seals this PC's files and which keys it believes.
    assert "believes itself and 1 trusted key(s): pc-b" in logs["pca"]
    assert "drivemr keys show" in logs["pca"] and "drivemr keys trust" in logs["pca"]
    monkeypatch.setenv("DRIVEMR_CONFIG_DIR", str(a))
    st = status_of(folder_store, job_id)
    assert st.state == "done" and st.counts["done"] == 12


def test_pcs_that_do_not_trust_each_other_ignore_each_other_and_say_so_once(
    folder_store: FolderStore,
    workers: WorkerProcs,
    write_job: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = pc(tmp_path, "a"), pc(tmp_path, "b")  # nobody ran `drivemr keys trust`
    job_id = submit(monkeypatch, a, folder_store, write_job(JOB))
    start(monkeypatch, workers, b, "pcb")  # refuses the job (untrusted signer), then idles
    start(monkeypatch, workers, a, "pca")
    codes = workers.wait_all()
    logs = {n: workers.log(n) for n in codes}
    assert codes == {"pca": 0, "pcb": 0}, logs
    # Each PC names the other's heartbeat file once, whatever how often it changed.
    assert logs["pca"].count("heartbeat 'worker-pcb.json'") <= 1, logs["pca"]
    assert logs["pcb"].count("heartbeat 'worker-pca.json'") <= 1, logs["pcb"]
    monkeypatch.setenv("DRIVEMR_CONFIG_DIR", str(a))
    st = status_of(folder_store, job_id)
    assert st.state == "done" and st.counts["done"] == 12
    # pcb's rejection note is sealed by a key pc a does not trust: not shown there...
    assert st.rejected_by == {}
    # ...but pcb's own PC shows it, from its reason code.
    monkeypatch.setenv("DRIVEMR_CONFIG_DIR", str(b))
    shown = status_of(folder_store, job_id).rejected_by
    assert list(shown) == ["pcb"]
    assert shown["pcb"].startswith("the job is signed by a key this worker does not trust")


def test_forged_claims_at_every_attempt_block_a_task_and_workers_exit(
    folder_store: FolderStore,
    workers: WorkerProcs,
    write_job: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    isolated_config: Path,
) -> None:
    job_id = submit(monkeypatch, isolated_config, folder_store, write_job(JOB))
    _folder, job = find_job(folder_store, job_id)
    task = job.tasks[3]
    for gen, cid in enumerate(task.claim_ids):  # anyone who can read job.json can do this
        folder_store.create(
            job.folders["claims"], claim_name(task.id, gen, "pc1"), cid, b'{"worker": "pc1"}'
        )
    start(monkeypatch, workers, isolated_config, "pc1")
    start(monkeypatch, workers, isolated_config, "pc2")
    codes = workers.wait_all()
    logs = {n: workers.log(n) for n in codes}
    assert codes == {"pc1": 0, "pc2": 0}, logs
    st = status_of(folder_store, job_id)
    assert st.counts == {
        "pending": 0,
        "running": 0,
        "done": 11,
        "failed": 0,
        "lost": 0,
        "cancelled": 0,
        "blocked": 1,
    }
    assert st.state == "blocked"
    out = run_cli("status", job_id, "--store", folder_store.url).stdout
    assert "1 blocked" in out and "blocked by untrusted files" in out


def test_a_plain_restart_keeps_the_worker_id_kept_in_its_workdir(
    folder_store: FolderStore, tmp_path: Path
) -> None:
    workdir = tmp_path / "wd"
    ids = []
    for _ in range(2):
        proc = run_cli(
            "-v", "worker", "--store", folder_store.url, "--workdir", str(workdir),
            "--exit-when-idle", "--slots", "1",
        )  # fmt: skip
        line = next(x for x in proc.stderr.splitlines() if " serving " in x)
        ids.append(line.split("worker ", 1)[1].split(" ", 1)[0])
    assert ids[0] == ids[1] and (workdir / "worker-id").read_text().strip() == ids[0]
    named = run_cli(
        "-v", "worker", "--store", folder_store.url, "--workdir", str(workdir),
        "--exit-when-idle", "--worker-id", "other",
    )  # fmt: skip
    assert "worker other serving" in named.stderr


def test_keys_says_that_the_key_seals_a_worker_s_files_and_trusting_needs_no_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIVEMR_CONFIG_DIR", str(pc(tmp_path, "here")))
    help_text = run_cli("keys", "--help").stdout
    assert "seals" in help_text and "without a restart" in help_text.replace("\n", " ")
    out = run_cli("keys", "trust", signing.show_public_key(pc(tmp_path, "x"))).stdout
    assert "running workers on this PC pick the change up" in out
