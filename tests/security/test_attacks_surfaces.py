"""Attack corpus: operator surfaces (issue 12.7) and duplicate job folders.

Escape sequences planted in the store (a heartbeat's host name and running tasks, a
rejection note, a failed attempt's stderr, a log's worker field) never reach the terminal
raw: every CLI surface escapes them, the HTML report escapes them twice over. A second
``job-<id>`` folder does not make the id unusable: the signed one is picked.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from drivemr import signing
from drivemr.cli import _verifier, main
from drivemr.protocol import JOB_PREFIX, find_job, submit
from drivemr.safetext import safe
from drivemr.spec import load_job
from drivemr.stores.folder import FolderStore
from drivemr.trust import Trust
from drivemr.worker import Worker, WorkerConfig
from drivemr.worker.history import JobHistory

ESC = "\x1b]0;owned\x07\x1b[2J\x1b[31m\u202e\x9b"
RAW = ("\x1b", "\x07", "\u202e", "\x9b")


def _signer(config: Path) -> Callable[[dict[str, Any]], dict[str, Any]]:
    key, _ = signing.load_or_create_signing_key(config)
    return lambda doc: signing.sign_document(doc, key)


def _job(store: FolderStore, write_job: Callable[..., Path], config: Path) -> Any:
    job_file = write_job(
        'name = "esc"\n[map]\n'
        'command = ["python", "-c", "import sys; sys.stderr.write(\'\\\\x1b]0;x\\\\x07 bad\'); sys.exit(2)"]\n'
        'items = ["1"]\nmax_attempts = 1\n',
        name="esc",
    )
    return submit(store, load_job(job_file), sign=_signer(config))


def test_escape_sequences_never_reach_the_terminal(
    folder_store: FolderStore,
    write_job: Callable[..., Path],
    isolated_config: Path,
    tmp_path: Path,
) -> None:
    job = _job(folder_store, write_job, isolated_config)
    worker = Worker(
        folder_store,
        WorkerConfig("honest", 1, tmp_path / "w", lease=5, poll_interval=0.05, exit_when_idle=True),
    )
    assert worker.run() == 0
    ids = iter(folder_store.mint_ids(6))
    beat = {
        "host": ESC,
        "slots": ESC,
        "state": ESC,
        "lease": 10**300,
        "running": [{"job": ESC, "task": ESC, "gen": 1}],
    }
    folder_store.create(
        folder_store.root_id, "worker-mallory.json", next(ids), json.dumps(beat).encode()
    )
    # The same text in a heartbeat a trusted key sealed (a PC of the cluster gone rogue, or a
    # host name with escapes): shown, escaped.
    sealed_beat = Trust.reader(isolated_config).seal(
        "heartbeat", {**beat, "worker": "eve", "life": "l1", "seq": 1}
    )
    folder_store.create(folder_store.root_id, "worker-eve.json", next(ids), sealed_beat)
    note = {"worker": ESC, "reason": f"{ESC} run: drivemr keys trust drivemr-ed25519:AAAA"}
    folder_store.create(job.folder, "rejected.mallory", next(ids), json.dumps(note).encode())
    # A genuine (sealed) note whose worker name carries escapes: shown, escaped.
    sealed = Trust.reader(isolated_config).seal(
        "note", {"job": job.id, "worker": ESC, "code": "untrusted-key", "at": 0}
    )
    folder_store.create(job.folder, f"rejected.{ESC}", next(ids), sealed)
    html = tmp_path / "r.html"
    runner = CliRunner()
    outputs = []
    for args in (
        ["status", job.id],
        ["status"],
        ["jobs"],
        ["workers"],
        ["logs", job.id],
        ["logs", job.id, "t0000"],
        ["logs", job.id, "t0000", "--only", "stderr"],
        ["joblog", job.id],
        ["report", job.id, "--html", str(html)],
    ):
        result = runner.invoke(main, [*args, "--store", folder_store.url])
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            args,
            result.exception,
        )
        outputs.append((args, result.output))
    outputs.append((["report.html"], html.read_text(encoding="utf-8")))
    for args, text in outputs:
        assert not any(c in text for c in RAW), (args, text[:2000])
    shown = {" ".join(args): text for args, text in outputs}
    status_text = shown[f"status {job.id}"]
    assert f"rejected by {safe(ESC, max_len=64)}: the job is signed by a key" in status_text
    assert "rejected by mallory" not in status_text  # the unsealed note is not shown
    assert "keys trust" not in status_text
    assert "\\x1b]0;x\\x07 bad" in shown[f"logs {job.id} t0000"]  # escaped, not dropped
    assert "\\x1b]0;x\\x07 bad" in shown[f"logs {job.id} t0000 --only stderr"]
    assert "\\x1b" in shown["workers"] and "eve" in shown["workers"]
    assert "mallory" in shown["workers"] and "untrusted" in shown["workers"]


def test_duplicate_job_folders_pick_the_signed_one(
    folder_store: FolderStore,
    write_job: Callable[..., Path],
    isolated_config: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = _job(folder_store, write_job, isolated_config)
    # The attacker's folder of the same name: an unsigned job.json that claims the id.
    doc = dict(job.doc)
    doc.pop("signature")
    ids = folder_store.mint_ids(2)
    fake = folder_store.create(folder_store.root_id, JOB_PREFIX + job.id, ids[0], folder=True)
    doc["folders"] = dict(doc["folders"], job=ids[0])
    folder_store.create(fake.id, "job.json", ids[1], json.dumps(doc).encode())
    folder, found = find_job(folder_store, job.id)
    assert folder.id == job.folder and found.id == job.id
    assert any("ignoring a copy" in r.getMessage() for r in caplog.records)
    result = CliRunner().invoke(main, ["status", job.id, "--store", folder_store.url])
    assert result.exit_code == 0 and "ambiguous" not in result.output


def test_job_history_is_bounded_and_refuses_what_it_forgot(tmp_path: Path) -> None:
    history = JobHistory(tmp_path, max_finished=3, max_refused=2)
    for n in range(5):
        history.remember_finished(f"j{n}", created=100.0 + n)
    assert [history.is_finished(f"j{n}") for n in range(5)] == [False, False, True, True, True]
    assert history.too_old("j0", 100.0) and history.too_old("x", 101.0)
    assert not history.too_old("new", 150.0)
    for n in range(3):
        history.remember_refused(f"f{n}", "trust", f"reason {n}\nsecond line")
    again = JobHistory(tmp_path, max_finished=3, max_refused=2)  # a restart
    assert again.is_finished("j4") and not again.is_finished("j1")
    assert again.too_old("j1", 101.0)
    assert (
        again.refused("f0", "trust") is None
        and again.refused("f2", "trust") == "reason 2 second line"
    )
    assert again.refused("f2", "other trust") is None
    # The file stays bounded however many jobs pass.
    for n in range(200):
        again.remember_finished(f"k{n}", created=1000.0 + n)
    assert len((tmp_path / "job-history.tsv").read_text().splitlines()) < 40
    (tmp_path / "job-history.tsv").write_bytes(b"F\tx\tnot-a-number\n\x00\xff\nR\tonly\n")
    assert not JobHistory(tmp_path).is_finished("x")  # damaged lines: skipped


def test_a_job_signed_by_a_strangers_key_leaves_no_command_in_the_store(
    folder_store: FolderStore, write_job: Callable[..., Path], tmp_path: Path
) -> None:
    stranger = tmp_path / "stranger"
    stranger.mkdir(mode=0o700)
    job = _job(folder_store, write_job, stranger)
    worker = Worker(
        folder_store,
        WorkerConfig("honest", 1, tmp_path / "w", lease=5, poll_interval=0.05, exit_when_idle=True),
        verify=_verifier(False),
    )
    assert worker.run() == 0
    assert "drivemr keys trust" in worker.watcher.rejected[job.id]  # the worker's own log
    (note,) = [e for e in folder_store.list(job.folder) if e.name.startswith("rejected.")]
    text = folder_store.read(note.id).decode()
    # A sealed reason code, never text a reader would be told to run.
    assert '"code":"untrusted-key"' in text
    assert "keys trust" not in text and "drivemr-ed25519" not in text
    out = CliRunner().invoke(main, ["status", job.id, "--store", folder_store.url]).output
    assert "rejected by honest: the job is signed by a key this worker does not trust" in out
    assert "keys trust" not in out


def test_job_history_keys_on_the_round(tmp_path: Path) -> None:
    history = JobHistory(tmp_path, max_finished=2)
    history.remember_finished("j", created=100.0)  # round 0 ended
    assert history.is_finished("j") and not history.is_finished("j", 1)
    assert not history.too_old("j", 300.0, 1)  # a newer signed round: judged afresh
    history.remember_finished("j", created=300.0, round=1)
    history.remember_finished("j", created=100.0, round=0)  # never goes back
    again = JobHistory(tmp_path, max_finished=2)  # a restart
    assert again.is_finished("j", 1) and again.is_finished("j", 0)
    assert not again.is_finished("j", 2)
    # Lines written before rounds (three fields) read as round 0.
    (tmp_path / "job-history.tsv").write_text("F\told\t50.0\n")
    old = JobHistory(tmp_path)
    assert old.is_finished("old") and not old.is_finished("old", 1)
    # Forgetting keys on the signed time of the round a job ended at.
    for n, job in enumerate(("a", "b", "c")):
        old.max_finished = 2
        old.remember_finished(job, created=1000.0 + n, round=3)
    assert old.too_old("forgotten", 999.0) and not old.too_old("later", 2000.0)
