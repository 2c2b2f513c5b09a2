"""A job whose job.json is listed but cannot be read is never "not posted yet" and never
"finished" (issue 19.1): status and jobs report it, naming the file and the error.

The store below hides published files from reads by id, as the first folder-store layout
did on sshfs (link counts of 1): listings show job.json, reads say "not found"."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from drivemr.cli import main
from drivemr.errors import NotFound, UnreadableJob
from drivemr.protocol import find_job, list_jobs, read_job, submit
from drivemr.spec import load_job
from drivemr.status import all_statuses, status_of
from drivemr.stores.folder import FolderStore


class HidingStore(FolderStore):
    """Every listed job.json reads as "not found", like the sshfs failure of issue 19."""

    def read(
        self, file_id: str, *, max_bytes: int | None = None, parent: str | None = None
    ) -> bytes:
        rel = self._rel(file_id)
        if rel.rsplit("/", 1)[-1].startswith("job.json~"):
            raise NotFound(f"read {file_id}: not found")
        return super().read(file_id, max_bytes=max_bytes)


JOB = 'name = "n"\n[map]\ncommand = ["python", "-c", "pass"]\nitems = ["1", "2"]\n'


def test_a_listed_but_unreadable_job_is_reported_not_skipped(
    folder_store: FolderStore, write_job: Callable[..., Path]
) -> None:
    job = submit(folder_store, load_job(write_job(JOB)))
    hiding = HidingStore(folder_store.path)
    (folder,) = list_jobs(hiding)
    with pytest.raises(UnreadableJob, match=r"job.json \(id .*\) is listed but cannot be read"):
        read_job(hiding, folder)
    with pytest.raises(UnreadableJob):
        status_of(hiding, job.id)
    (entry,) = all_statuses(hiding)
    assert isinstance(entry, tuple) and entry[0] == job.id and "cannot be read" in entry[1]


def test_a_job_not_posted_yet_is_still_plain_not_found(folder_store: FolderStore) -> None:
    (folder_id,) = folder_store.mint_ids(1)
    folder_store.create(folder_store.root_id, "job-half", folder_id, folder=True)
    (folder,) = list_jobs(folder_store)
    with pytest.raises(NotFound) as caught:
        read_job(folder_store, folder)
    assert not isinstance(caught.value, UnreadableJob)


def test_status_and_jobs_json_say_unreadable(
    folder_store: FolderStore, write_job: Callable[..., Path]
) -> None:
    job = submit(folder_store, load_job(write_job(JOB)))
    _, parsed = find_job(folder_store, job.id)
    # a job.json that cannot be used: machine-readable output says so, never "done"
    spec = next(i for i in folder_store.list(parsed.folder) if i.name == "job.json")
    (folder_store.path / folder_store._rel(spec.id)).write_bytes(b"{not json")
    for command in (["status", "--json"], ["jobs", "--json"]):
        result = CliRunner().invoke(main, [*command, "--store", str(folder_store.path)])
        assert result.exit_code == 0, result.stderr
        (doc,) = json.loads(result.stdout)
        assert doc["job"] == job.id and doc["state"] == "unreadable" and doc["error"]
