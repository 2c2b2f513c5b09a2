"""Recovering a failed job from code (issue 17 through the Python API): 3 failing items of
30 and a buggy reduce, with two worker processes on a folder store. ``Job.results`` returns
the 27 outputs before any retry; ``Job.retry(failed=True)`` re-runs the 3 (the 27 are not
re-run: counted from a log every execution appends to); ``Job.retry(reduce_from=...)``
re-runs the reduce alone, fixed; ``Job.reduce`` then fetches the right total."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import WorkerProcs
from test_retry_cli import FAILING, ITEMS, MAP, REDUCE_BUGGY, REDUCE_FIXED, job_text

from drivemr.api import Client
from drivemr.errors import DrivemrError, JobStateError
from drivemr.stores.folder import FolderStore


def test_results_retry_failed_and_reduce_from(
    folder_store: FolderStore,
    write_job: Callable[..., Path],
    tmp_path: Path,
    workers: WorkerProcs,
) -> None:
    control = tmp_path / "control"
    control.mkdir()
    for n in FAILING:
        (control / f"fail-{n}").touch()
    job_file = write_job(job_text(control), files={"map.py": MAP, "reduce.py": REDUCE_BUGGY})
    fixed = write_job(
        job_text(control), files={"map.py": MAP, "reduce.py": REDUCE_FIXED}, name="fixed"
    )
    client = Client(folder_store)
    job = client.submit(job_file)
    with pytest.raises(DrivemrError, match="still running"):
        job.retry(failed=True)
    workers.start("a")
    workers.start("b")

    st = job.wait(poll=0.05)
    assert st.state == "failed" and st.counts["failed"] == 3 and st.counts["done"] == ITEMS - 3
    assert st.reduce is not None and st.reduce.state == "pending"  # no reduce after a failure
    failed_items = sorted(int(t.item or 0) for t in st.tasks if t.state == "failed")
    assert failed_items == list(FAILING)

    paths = job.results(tmp_path / "before")
    assert len(paths) == ITEMS - 3 and all(p.name == "out.txt" for p in paths)
    assert len({p.parent.name for p in paths}) == ITEMS - 3

    for n in FAILING:  # the input data is fixed
        (control / f"fail-{n}").unlink()
    rnd = job.retry(failed=True)
    assert rnd.number == 1 and len(rnd.tasks) == 3
    st = job.wait(poll=0.05)
    assert st.state == "failed" and st.round == 1
    assert st.counts["done"] == ITEMS and st.reduce and st.reduce.state == "failed"
    with pytest.raises(JobStateError, match="the reduce failed"):
        job.reduce(tmp_path / "bad")

    rnd = job.retry(reduce_from=fixed)
    assert rnd.number == 2 and not rnd.tasks
    st = job.wait(poll=0.05)
    assert st.state == "done" and st.round == 2
    (total,) = job.reduce(tmp_path / "result")
    assert total.read_text() == str(sum(n * n for n in range(1, ITEMS + 1)))

    runs = (control / "exec.log").read_text().splitlines()
    maps = [line for line in runs if line.startswith("map ")]
    assert len(maps) == ITEMS + 3  # the 27 that succeeded ran once
    assert all(maps.count(f"map {n}") == (2 if n in FAILING else 1) for n in range(1, ITEMS + 1))
    assert runs.count("reduce") == 2
    retried = next(t.task for t in st.tasks if t.item == str(FAILING[0]))
    assert [a.round for a in job.attempts(retried)] == [0, 1]
    assert job.logs(retried).outcome == "done" and job.logs(retried, 1).outcome == "failed"
