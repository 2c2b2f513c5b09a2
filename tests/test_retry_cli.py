"""Recovering a failed job from the command line, with worker processes on a folder store
(issue 17's test): 3 failing items of 30 and a buggy reduce.

`drivemr results` returns the 27 outputs before any retry; `drivemr retry --failed` re-runs
the 3 (the 27 are not re-run: counted from a log every map execution appends to) and the
reduce again; `drivemr retry --reduce-from` re-runs the reduce alone, fixed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner
from helpers import WorkerProcs

from drivemr.cli import main
from drivemr.stores.folder import FolderStore

ITEMS = 30
FAILING = (4, 17, 25)

MAP = """\
import os, sys
item = sys.argv[1]
with open(os.environ["EXECLOG"], "a") as log:
    log.write(f"map {item}\\n")
if os.path.exists(os.path.join(os.environ["CONTROL"], "fail-" + item)):
    sys.exit(f"item {item}: bad input")
open("out.txt", "w").write(str(int(item) ** 2))
"""

REDUCE_BUGGY = """\
import os, sys
with open(os.environ["EXECLOG"], "a") as log:
    log.write("reduce\\n")
d = sys.argv[1]
total = sum(int(open(os.path.join(d, t, "out.txt")).read()) for t in sorted(os.listdir(d)))
open("total.txt", "w").write(str(total / 0))
"""

REDUCE_FIXED = REDUCE_BUGGY.replace("total / 0", "total")


def job_text(control: Path) -> str:
    env = json.dumps(str(control / "exec.log")), json.dumps(str(control))
    return f"""
        name = "flaky"
        files = ["map.py", "reduce.py"]
        [map]
        command = ["python", "{{files}}/map.py", "{{item}}"]
        items = {{range = [1, {ITEMS + 1}]}}
        outputs = ["out.txt"]
        max_attempts = 1
        env = {{EXECLOG = {env[0]}, CONTROL = {env[1]}}}
        [reduce]
        command = ["python", "{{files}}/reduce.py", "{{results}}"]
        outputs = ["total.txt"]
        max_attempts = 1
        env = {{EXECLOG = {env[0]}}}
        """


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def run_workers(workers: WorkerProcs, tag: str) -> None:
    for name in (f"a{tag}", f"b{tag}"):
        workers.start(name, "--exit-when-idle")
    codes = workers.wait_all()
    assert set(codes.values()) == {0}, {n: workers.log(n)[-2000:] for n in codes}
    workers.procs.clear()


def test_results_then_retry_failed_then_reduce_from(
    folder_store: FolderStore,
    write_job: Callable[..., Path],
    tmp_path: Path,
    workers: WorkerProcs,
) -> None:
    store = str(folder_store.path)
    control = tmp_path / "control"
    control.mkdir()
    for item in FAILING:
        (control / f"fail-{item}").touch()
    job_file = write_job(job_text(control), files={"map.py": MAP, "reduce.py": REDUCE_BUGGY})
    code, out, err = invoke("submit", "--store", store, str(job_file))
    assert code == 0, err
    job_id = out.strip().splitlines()[-1]
    run_workers(workers, "1")
    log = control / "exec.log"
    assert len(log.read_text().splitlines()) == ITEMS  # no reduce: 3 maps failed

    # The 27 outputs, before any retry.
    code, out, err = invoke("results", job_id, "--store", store, "--out", str(tmp_path / "r1"))
    assert code == 0, err
    folders = sorted(p.name for p in (tmp_path / "r1").iterdir())
    expected = [f"t{i - 1:04d}" for i in range(1, ITEMS + 1) if i not in FAILING]
    assert folders == expected
    assert (tmp_path / "r1" / "t0002" / "out.txt").read_text() == "9"
    code, out, err = invoke(
        "results", job_id, "--store", store, "--out", str(tmp_path / "one"), "--task", "t0009"
    )
    assert code == 0 and [p.name for p in (tmp_path / "one").iterdir()] == ["t0009"]
    code, _out, err = invoke("reduce", job_id, "--store", store)
    assert code == 1 and "failed" in err

    # retry --failed: the 3 re-run, not the 27; the (buggy) reduce runs and fails.
    for item in FAILING:
        (control / f"fail-{item}").unlink()
    code, _out, err = invoke("retry", job_id, "--failed", "--store", store)
    assert code == 0, err
    assert "round 1" in err and "3 task(s)" in err
    run_workers(workers, "2")
    runs = log.read_text().splitlines()
    assert sorted(runs[ITEMS:]) == sorted([*(f"map {i}" for i in FAILING), "reduce"])
    code, out, _ = invoke("status", job_id, "--store", store, "--json")
    doc = json.loads(out)
    assert doc["round"] == 1 and doc["counts"]["done"] == ITEMS
    assert doc["reduce"]["state"] == "failed"

    # --reduce-from: the fixed reduce alone.
    fixed = write_job(
        job_text(control), files={"map.py": MAP, "reduce.py": REDUCE_FIXED}, name="fixed"
    )
    code, _out, err = invoke("retry", job_id, "--reduce-from", str(fixed), "--store", store)
    assert code == 0, err
    run_workers(workers, "3")
    assert log.read_text().splitlines()[len(runs) :] == ["reduce"]
    code, out, err = invoke("reduce", job_id, "--store", store, "--out", str(tmp_path / "total"))
    assert code == 0, err
    assert (tmp_path / "total" / "total.txt").read_text() == str(sum(i * i for i in range(1, 31)))
    code, out, _ = invoke("status", job_id, "--store", store)
    assert "done" in out.splitlines()[0] and "round 2" in out
    code, out, _ = invoke("joblog", job_id, "--store", store)
    rows = [line.split("\t") for line in out.strip().splitlines()[1:]]
    assert [r[0] for r in rows].count("t0003") == 2  # its failed round and its retry
    assert [r[0] for r in rows].count("reduce") == 2  # rounds 1 and 2 (none in round 0)
    assert [r[0] for r in rows].count("t0000") == 1
