"""Issue 18 point 3: ``submit --wait`` / ``status --watch`` say when nobody will run the job
(no live worker, or every live worker rejected it) instead of waiting silently forever."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

from drivemr.progress import follow
from drivemr.protocol import Job, heartbeat_name, mark, submit
from drivemr.spec import load_job
from drivemr.stores.folder import FolderStore
from drivemr.trust import Trust

JOB = """
name = "idle"
[map]
command = ["python", "-c", "pass", "{item}"]
items = ["a"]
"""


class _Out(io.StringIO):
    """A StringIO whose writes can be waited for."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()

    def write(self, text: str) -> int:
        with self.changed:
            n = super().write(text)
            self.changed.notify_all()
            return n

    def wait_for(self, needle: str) -> str:
        with self.changed:
            assert self.changed.wait_for(lambda: needle in self.getvalue(), timeout=60)
            return self.getvalue()


def _setup(tmp_path: Path) -> tuple[FolderStore, Job]:
    store = FolderStore(tmp_path / "store", create=True)
    (tmp_path / "job.toml").write_text(JOB, encoding="utf-8")
    return store, submit(store, load_job(tmp_path / "job.toml"))


def _follow_until(store: FolderStore, job: Job, needle: str) -> str:
    out = _Out()
    codes: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            codes.append(follow(store, job.id, poll=0.01, out=out, idle_after=0.05))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        text = out.wait_for(needle)
    finally:
        mark(store, job, "cancel", Trust.for_this_pc())
        thread.join()
    assert not errors and codes == [3]
    return text


def test_watch_says_no_live_worker_serves_the_store(tmp_path: Path) -> None:
    store, job = _setup(tmp_path)
    # A worker that stopped long ago does not count.
    (fid,) = store.mint_ids(1)
    beat = {"worker": "old", "life": "l", "seq": 1, "state": "stopped", "lease": 300.0}
    store.create(
        store.root_id, heartbeat_name("old"), fid, Trust.for_this_pc().seal("heartbeat", beat)
    )
    text = _follow_until(store, job, "no live worker")
    assert f"drivemr worker --store {store.url}" in text
    assert text.count("no live worker") == 1  # said once, not at every poll


def test_watch_says_every_live_worker_rejected_the_job(tmp_path: Path) -> None:
    store, job = _setup(tmp_path)
    (fid, note) = store.mint_ids(2)
    pc = Trust.for_this_pc()
    beat = {"worker": "w1", "life": "l", "seq": 1, "state": "running", "lease": 300.0}
    store.create(store.root_id, heartbeat_name("w1"), fid, pc.seal("heartbeat", beat))
    key = "abc123" + "0" * 10
    reason = {"job": job.id, "worker": "w1", "code": "untrusted-key", "key": key, "at": time.time()}
    store.create(job.folder, "rejected.w1", note, pc.seal("note", reason))
    text = _follow_until(store, job, "rejected")
    assert "every live worker rejected" in text and key in text
    assert "drivemr keys show" in text and "drivemr keys trust" in text
    assert "no live worker" not in text
