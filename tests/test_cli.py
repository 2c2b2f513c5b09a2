"""The command line, through click's runner and as real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import WorkerProcs, run_cli

from drivemr.cli import main
from drivemr.protocol import find_job
from drivemr.stores.folder import FolderStore

OK_JOB = """
name = "ok"
[map]
command = ["python", "-c", "import sys; open('o.txt', 'w').write(sys.argv[1] * 2)", "{item}"]
items = ["a", "b", "c"]
outputs = ["o.txt"]
[reduce]
command = ["python", "-c", "import os, sys; d = sys.argv[1]; open('all.txt', 'w').write(''.join(open(os.path.join(d, t, 'o.txt')).read() for t in sorted(os.listdir(d))))", "{results}"]
outputs = ["all.txt"]
"""


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def store_is_empty(store: FolderStore) -> bool:
    return store.list(store.root_id) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('name = "x"\n[map]\ncommand = ["true"]\nitems = ["a"]\nbogus = 1\n', "map.bogus"),
        ('name = "x"\n[map]\nitems = ["a"]\n', "map.command"),
        ('name = "x"\n[map]\ncommand = ["true"]\ninputs = ["nothing/*.txt"]\n', "matches no file"),
        ('name = "x"\n[map]\ncommand = ["echo", "{nope}"]\nitems = ["a"]\n', "nope"),
        (
            'name = "x"\nfiles = ["../outside.py"]\n[map]\ncommand = ["true"]\nitems = ["a"]\n',
            "files",
        ),
        ('name = "x"\n[map\n', "job.toml"),
    ],
)
def test_bad_job_file_writes_nothing(
    text: str, expected: str, folder_store: FolderStore, write_job: Callable[..., Path]
) -> None:
    job_file = write_job(text)
    code, _out, err = invoke("submit", "--store", str(folder_store.path), str(job_file))
    assert code == 1
    assert "job.toml" in err and expected in err
    assert len(err.strip().splitlines()) == 1  # one clear message
    assert store_is_empty(folder_store)


def test_submit_status_and_reduce(
    folder_store: FolderStore, write_job: Callable[..., Path], tmp_path: Path, workers: WorkerProcs
) -> None:
    job_file = write_job(OK_JOB)
    code, out, err = invoke("submit", "--store", str(folder_store.path), str(job_file))
    assert code == 0, err
    job_id = out.strip().splitlines()[-1]
    assert job_id.startswith("ok-")

    code, out, _ = invoke("status", job_id, "--store", str(folder_store.path), "--json")
    doc = json.loads(out)
    assert doc["counts"] == {
        "pending": 3,
        "running": 0,
        "done": 0,
        "failed": 0,
        "lost": 0,
        "cancelled": 0,
        "blocked": 0,
    }
    assert {"task", "state", "attempts", "worker", "exit_code"} <= set(doc["tasks"][0])
    assert doc["reduce"]["state"] == "pending"

    code, _, err = invoke("reduce", job_id, "--store", str(folder_store.path))
    assert code == 1 and "t0000, t0001, t0002" in err

    workers.start("w", "--exit-when-idle")
    assert workers.wait_all() == {"w": 0}, workers.log("w")

    code, out, _ = invoke("status", "--store", str(folder_store.path))
    assert job_id in out and "done" in out
    code, out, _ = invoke("status", job_id, "--store", str(folder_store.path), "--json")
    doc = json.loads(out)
    assert doc["state"] == "done" and doc["counts"]["done"] == 3
    assert all(t["worker"] == "w" and t["exit_code"] == 0 for t in doc["tasks"])

    code, out, err = invoke(
        "reduce", job_id, "--store", str(folder_store.path), "--out", str(tmp_path / "r")
    )
    assert code == 0, err
    assert (tmp_path / "r" / "all.txt").read_text() == "aabbcc"


def test_reduce_runs_locally_when_no_worker_did(
    folder_store: FolderStore, write_job: Callable[..., Path], tmp_path: Path, workers: WorkerProcs
) -> None:
    job_file = write_job(OK_JOB)
    job_id = (
        invoke("submit", "--store", str(folder_store.path), str(job_file))[1]
        .strip()
        .splitlines()[-1]
    )
    workers.start("w", "--exit-when-idle", "--no-reduce")
    assert workers.wait_all() == {"w": 0}
    _, job = find_job(folder_store, job_id)
    assert len(folder_store.list(job.folders["results"])) == 3  # the maps, no reduce
    code, _out, err = invoke(
        "reduce", job_id, "--store", str(folder_store.path), "--out", str(tmp_path / "local")
    )
    assert code == 0, err
    assert (tmp_path / "local" / "all.txt").read_text() == "aabbcc"


def test_submit_wait_exit_codes(
    folder_store: FolderStore, write_job: Callable[..., Path], workers: WorkerProcs
) -> None:
    workers.start("w", slots=2)
    good = write_job(OK_JOB, name="good")
    proc = run_cli("submit", "--store", str(folder_store.path), "--wait", str(good))
    assert proc.returncode == 0
    bad = write_job(
        'name = "bad"\n[map]\ncommand = ["python", "-c", "import sys; sys.exit(int(sys.argv[1]))", "{item}"]\n'
        'items = ["0", "7"]\nmax_attempts = 2\n',
        name="bad",
    )
    proc = run_cli("submit", "--store", str(folder_store.path), "--wait", str(bad), check=False)
    assert proc.returncode == 1
    assert "t0001" in proc.stderr and "failed" in proc.stderr


def test_store_from_environment_and_config_file(
    folder_store: FolderStore,
    write_job: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    isolated_config: Path,
) -> None:
    job_file = write_job(OK_JOB)
    code, _, err = invoke("status")
    assert code == 1 and "no store given" in err
    (isolated_config / "config.toml").write_text(f"store = {json.dumps(str(folder_store.path))}\n")
    try:
        assert invoke("status")[1].startswith("no jobs")
        monkeypatch.setenv("DRIVEMR_STORE", folder_store.url)
        code, _out, _ = invoke("submit", str(job_file))
        assert code == 0 and len(folder_store.list(folder_store.root_id)) == 1
    finally:
        (isolated_config / "config.toml").unlink()


def test_unknown_store_scheme(tmp_path: Path) -> None:
    code, _, err = invoke("status", "--store", "s3://bucket")
    assert code == 1 and "unknown store URL" in err


def test_init_creates_a_folder_store(tmp_path: Path) -> None:
    code, out, _ = invoke("init", "--store", str(tmp_path / "new"))
    assert code == 0 and out.strip().splitlines()[-1] == (tmp_path / "new").as_uri()
    assert (tmp_path / "new").is_dir()


def test_demo_runs_end_to_end() -> None:
    code, out, err = invoke("demo")
    assert code == 0, err
    assert '"words": 126' in out
    assert "done; 6 done, 0 failed; reduce done" in out


def test_version() -> None:
    code, out, _ = invoke("--version")
    assert code == 0 and "drivemr" in out


def test_python_dash_m_drivemr_runs_the_command_line() -> None:
    """For PCs where the `drivemr` script is not on PATH (e.g. a Windows user install)."""
    proc = subprocess.run(
        [sys.executable, "-m", "drivemr", "--version"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and proc.stdout.startswith("drivemr, version"), proc


def _store_files(store: FolderStore) -> list[str]:
    return sorted(str(p.relative_to(store.path)) for p in store.path.rglob("*"))


def test_a_name_the_store_cannot_hold_is_refused_before_any_write(
    folder_store: FolderStore, write_job: Callable[..., Path]
) -> None:
    job_file = write_job('name = "x"\n[map]\ncommand = ["cat", "{input}"]\ninputs = ["*.txt"]\n')
    (job_file.parent / "ok.txt").write_text("ok")
    (job_file.parent / "back\\slash.txt").write_text("bad")
    before = _store_files(folder_store)
    code, _out, err = invoke("submit", "--store", str(folder_store.path), str(job_file))
    assert code == 1
    assert "map.inputs: file 'back\\\\slash.txt': backslashes are not allowed" in err
    assert _store_files(folder_store) == before  # not even an id index entry


def test_a_submit_that_fails_midway_removes_its_job_folder(
    folder_store: FolderStore, write_job: Callable[..., Path]
) -> None:
    from drivemr.errors import DrivemrError
    from drivemr.protocol import submit
    from drivemr.spec import load_job

    job_file = write_job('name = "x"\n[map]\ncommand = ["cat", "{input}"]\ninputs = ["*.txt"]\n')
    for name in ("a.txt", "b.txt"):
        (job_file.parent / name).write_text(name)
    spec = load_job(job_file)
    (job_file.parent / "b.txt").unlink()  # vanishes between validation and upload
    with pytest.raises(DrivemrError):
        submit(folder_store, spec)
    assert store_is_empty(folder_store)


def test_verbosity_flags_work_after_the_subcommand(
    folder_store: FolderStore, tmp_path: Path
) -> None:
    args = ["worker", "--store", str(folder_store.path), "--exit-when-idle", "--slots", "1"]
    args += ["--workdir", str(tmp_path / "work")]
    plain = run_cli(*args).stderr
    assert "INFO worker" in plain and "serving" in plain
    assert "serving" not in run_cli(*args, "-q").stderr  # as `drivemr -q worker ...`
    assert "serving" in run_cli("-q", *args, "--verbose").stderr  # after undoes before
    code, out, _ = invoke("config", "show", "-v")
    assert code == 0 and "SETTING" in out  # nested groups accept them too


def test_sign_in_advice_is_given_once() -> None:
    """Issue 18 point 11: the error says how to sign in; no second line repeating it."""
    code, _out, err = invoke("status", "--store", "drive://some-folder-id")
    assert code == 4
    assert "not signed in to Google Drive" in err
    assert err.count("drivemr auth login") == 1, err
    from drivemr.cli import auth_message
    from drivemr.errors import AuthError

    assert auth_message(AuthError("token rejected")).endswith(
        "\nSign in again with: drivemr auth login"
    )
