"""Secrets stay with the worker: a task gets the worker's environment minus the deny-list,
a variable passed on purpose (``--pass-env`` / ``pass_env``) reaches it, and a denied value
the task prints anyway is redacted from the tails published in the store."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from drivemr.errors import DrivemrError
from drivemr.protocol import find_job, load_view, submit
from drivemr.spec import load_job
from drivemr.stores.folder import FolderStore
from drivemr.taskenv import Redactor, task_base_env
from drivemr.wiring import parse_pass_env
from drivemr.worker import Worker, WorkerConfig

SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "aws-secret-value-123",
    "GITHUB_TOKEN": "ghp_githubtokenvalue",
    "MY_SERVICE_PASSWORD": "hunter2hunter2",
    "DRIVEMR_SERVICE_ACCOUNT": "/home/x/sa-key.json",
    "PASSED_TOKEN": "passed-token-value",
}


def test_deny_list_and_pass_env() -> None:
    env = {**SECRETS, "PATH": "/bin", "LANG": "C", "HOME": "/home/x"}
    base = task_base_env(env, passed=["passed_token"])
    assert base == {
        "PATH": "/bin",
        "LANG": "C",
        "HOME": "/home/x",
        "PASSED_TOKEN": "passed-token-value",
    }


def test_redactor_replaces_long_denied_values_only() -> None:
    redact = Redactor(
        {**SECRETS, "SHORT_TOKEN": "abc", "PATH": "/usr/bin/long/path"}, passed=["PASSED_TOKEN"]
    )
    text = "k=aws-secret-value-123 t=ghp_githubtokenvalue short=abc p=passed-token-value /usr/bin/long/path"
    out = redact(text)
    assert "aws-secret-value-123" not in out and "ghp_githubtokenvalue" not in out
    assert "[redacted $AWS_SECRET_ACCESS_KEY]" in out and "[redacted $GITHUB_TOKEN]" in out
    assert "short=abc" in out and "passed-token-value" in out and "/usr/bin/long/path" in out
    assert not Redactor({"PATH": "/bin"})


def test_parse_pass_env() -> None:
    assert parse_pass_env("A_TOKEN, B_SECRET C") == frozenset({"A_TOKEN", "B_SECRET", "C"})
    assert parse_pass_env("") == frozenset()
    with pytest.raises(DrivemrError, match="not an environment variable name"):
        parse_pass_env("BAD-NAME")


def test_secrets_do_not_reach_a_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    store = FolderStore(tmp_path / "store", create=True)
    jobdir = tmp_path / "job"
    jobdir.mkdir()
    (jobdir / "show.py").write_text(
        "import json, os, sys\n"
        "names = ['AWS_SECRET_ACCESS_KEY', 'GITHUB_TOKEN', 'MY_SERVICE_PASSWORD',"
        " 'DRIVEMR_SERVICE_ACCOUNT', 'PASSED_TOKEN']\n"
        "json.dump({n: os.environ.get(n) for n in names}, open('env.json', 'w'))\n"
        # a task that found a secret some other way and prints it: redacted from the tail
        "print('leak: aws-secret-value-123')\n"
        "sys.exit(int(sys.argv[1]))\n"
    )
    (jobdir / "job.toml").write_text(
        "name = 'envcheck'\nfiles = ['show.py']\n[map]\n"
        f"command = [{json.dumps(sys.executable)}, '{{files}}/show.py', '{{item}}']\n"
        "items = ['0', '3']\noutputs = ['env.json']\nmax_attempts = 1\n"
    )
    job = submit(store, load_job(jobdir / "job.toml"))
    worker = Worker(
        store,
        WorkerConfig(
            worker_id="envw",
            slots=1,
            workdir=tmp_path / "work",
            lease=5,
            poll_interval=0.05,
            exit_when_idle=True,
            pass_env=frozenset({"PASSED_TOKEN"}),
        ),
    )
    assert worker.run() == 0
    _, job = find_job(store, job.id)
    view = load_view(store, job)
    done = view.results[job.tasks[0].id]
    from drivemr.results import read_manifest

    manifest = read_manifest(store, job.tasks[0], job)  # the sealed body, once it opens
    blob = store.read(done.file.id).decode()
    assert "aws-secret-value-123" not in blob and "[redacted $AWS_SECRET_ACCESS_KEY]" in blob
    env_doc = json.loads(_output(store, manifest, "env.json"))
    assert env_doc == {
        "AWS_SECRET_ACCESS_KEY": None,
        "GITHUB_TOKEN": None,
        "MY_SERVICE_PASSWORD": None,
        "DRIVEMR_SERVICE_ACCOUNT": None,
        "PASSED_TOKEN": "passed-token-value",
    }
    # the failed attempt's published result is redacted too
    failed = view.results[job.tasks[1].id]
    assert failed.state == "failed"
    blob = store.read(failed.file.id).decode()
    assert "aws-secret-value-123" not in blob and "[redacted $AWS_SECRET_ACCESS_KEY]" in blob
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == "aws-secret-value-123"  # the worker keeps it


def _output(store: FolderStore, manifest: dict[str, Any], name: str) -> bytes:
    import base64

    for entry in manifest["outputs"]:
        if entry["name"] == name:
            if "data" in entry:
                return base64.b64decode(entry["data"])
            return store.read(entry["id"])
    raise AssertionError(f"no output {name} in {manifest['outputs']}")


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_config_and_keys_directories_writable_by_others_are_refused(tmp_path: Path) -> None:
    from drivemr import signing
    from drivemr.errors import SecurityError

    cfg = tmp_path / "cfg"
    signing.load_or_create_signing_key(cfg)
    cfg.chmod(0o777)
    with pytest.raises(SecurityError, match=r"config directory .* writable by group or others"):
        signing.load_signing_key(cfg)
    with pytest.raises(SecurityError, match="config directory"):
        signing.load_trusted(cfg)
    cfg.chmod(0o700)
    (cfg / "keys").chmod(0o775)
    with pytest.raises(SecurityError, match="keys directory"):
        signing.load_signing_key(cfg)
    (cfg / "keys").chmod(0o700)
    assert signing.load_signing_key(cfg)[1].key_id in signing.load_trusted(cfg)
