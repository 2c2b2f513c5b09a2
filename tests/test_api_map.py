"""Client.map: a top-level function shipped as its signed source file, items and results as
JSON, with real worker processes; and everything it refuses before writing a byte."""

from __future__ import annotations

import functools
import json
import math
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import mapfuncs
import pytest
from helpers import WorkerProcs

from drivemr.api import Client
from drivemr.errors import DrivemrError, MapError, MapInputError
from drivemr.fileio import sha256_file
from drivemr.mapjob import MAX_ITEM_BYTES, map_job_spec
from drivemr.status import JobStatus
from drivemr.stores.folder import FolderStore


def store_is_empty(store: FolderStore) -> bool:
    return store.list(store.root_id) == []


@pytest.mark.slow  # about ten seconds: 300 item processes
def test_map_300_items_equals_the_local_loop(
    folder_store: FolderStore, workers: WorkerProcs
) -> None:
    """Hundreds of items, packed into tasks of shrinking sizes over two workers, come back
    in item order. No bound is near: 1,000 items (once used here) crossed none either
    (``MAX_PACK`` is 1,000 per task, task ids have 4 digits up to 9,999 items), so 300 prove
    the same in a third of the time."""
    items = list(range(300))
    workers.start("w1")
    workers.start("w2")
    client = Client(folder_store)
    assert client.map(mapfuncs.square, items, poll=0.1) == [mapfuncs.square(x) for x in items]
    st = client.jobs()[0]
    assert isinstance(st, JobStatus) and st.state == "done" and st.counts["done"] == 300
    assert {t.worker for t in st.tasks} <= {"w1", "w2"}


def test_map_json_items_and_the_shipped_signed_file(
    folder_store: FolderStore, workers: WorkerProcs
) -> None:
    items: list[dict[str, Any]] = [{"name": "ab", "values": [1, 2.5]}, {"name": "é", "values": []}]
    workers.start("w", "--exit-when-idle")
    client = Client(folder_store)
    assert client.map(mapfuncs.describe, items, poll=0.05) == [mapfuncs.describe(x) for x in items]
    job = client.job(client.jobs()[0].job).definition
    assert job.name == "map-describe"
    shipped = {f.name: f.sha256 for f in job.files}
    assert shipped == {"mapfuncs.py": sha256_file(Path(mapfuncs.__file__))}
    assert "signature" in json.dumps(job.doc)  # signed like any job, the file's digest in it


def test_map_failures_name_every_failed_item(
    folder_store: FolderStore, workers: WorkerProcs
) -> None:
    workers.start("w", "--exit-when-idle")
    with pytest.raises(MapError) as info:
        Client(folder_store).map(mapfuncs.picky, list(range(30)), max_attempts=1, poll=0.05)
    err = info.value
    assert isinstance(err, DrivemrError) and err.total == 30
    assert [(f.index, f.item_json) for f in err.failures] == [(7, "7"), (17, "17"), (27, "27")]
    assert [f.error for f in err.failures] == [f"ValueError: bad item {n}" for n in (7, 17, 27)]
    assert "3 of 30 item(s) failed" in str(err) and "ValueError: bad item 27" in str(err)


def test_map_timeout_names_the_item_that_ran_out_of_time(
    folder_store: FolderStore, workers: WorkerProcs
) -> None:
    workers.start("w", "--exit-when-idle")
    with pytest.raises(MapError) as info:
        Client(folder_store).map(mapfuncs.sleeps, [0, 60], timeout="1s", max_attempts=1, poll=0.05)
    [failure] = info.value.failures
    assert (failure.index, failure.item_json) == (1, "60")
    assert failure.error.startswith("timed out")


def test_map_refuses_a_return_value_that_is_not_json(
    folder_store: FolderStore, workers: WorkerProcs
) -> None:
    workers.start("w", "--exit-when-idle")
    with pytest.raises(MapError) as info:
        Client(folder_store).map(mapfuncs.returns_a_set, [1], max_attempts=1, poll=0.05)
    assert "not JSON" in info.value.failures[0].error


def test_map_inside_a_task_is_refused(folder_store: FolderStore, workers: WorkerProcs) -> None:
    workers.start("w", "--exit-when-idle")
    with pytest.raises(MapError) as info:
        Client(folder_store).map(mapfuncs.maps_again, [folder_store.url], max_attempts=1, poll=0.05)
    assert "MapInputError" in info.value.failures[0].error
    assert "inside a map task" in info.value.failures[0].error


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([1, {2, 3}], "item 1 .* is not JSON"),
        ([object()], "item 0 .* is not JSON"),
        ([math.nan], "item 0 .* is not JSON"),
        ([(1, 2)], "would not read back equal"),
        ([{1: "a"}], "would not read back equal"),
        (["x" * (MAX_ITEM_BYTES + 1)], "over the limit"),
        ([], "no items"),
    ],
)
def test_map_refuses_items_before_writing(
    folder_store: FolderStore, items: list[object], expected: str
) -> None:
    with pytest.raises(MapInputError, match=expected):
        Client(folder_store).map(mapfuncs.square, items)
    assert store_is_empty(folder_store)


def _nested() -> object:
    def inner(x: int) -> int:
        return x

    return inner


class _Holder:
    def method(self, x: int) -> int:
        return x

    @staticmethod
    def static(x: int) -> int:
        return x


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (lambda x: x, "is a lambda"),
        (_nested(), "inside another function or a class"),
        (_Holder().method, "not a plain function"),
        (_Holder.static, "inside another function or a class"),
        (len, "not a plain function"),
        (functools.partial(mapfuncs.square), "not a plain function"),
    ],
)
def test_map_refuses_functions_it_cannot_ship(
    folder_store: FolderStore, fn: object, expected: str
) -> None:
    with pytest.raises(MapInputError, match=expected) as info:
        Client(folder_store).map(fn, [1])  # type: ignore[arg-type]
    assert "never pickles code" in str(info.value)
    assert store_is_empty(folder_store)


def _function_in(module: types.ModuleType, source: str) -> object:
    exec(compile(source, str(getattr(module, "__file__", "<string>")), "exec"), module.__dict__)
    return module.__dict__["fn"]


def test_map_refuses_main_without_a_file_or_without_a_guard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    interactive = types.ModuleType("__main__")
    monkeypatch.setitem(sys.modules, "__main__", interactive)
    with pytest.raises(MapInputError, match="no source file"):
        map_job_spec(_function_in(interactive, "def fn(x):\n    return x\n"), [1])  # type: ignore[arg-type]

    script = tmp_path / "script.py"
    source = "def fn(x):\n    return x\n\nprint('top level')\n"
    script.write_text(source)
    unguarded = types.ModuleType("__main__")
    unguarded.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", unguarded)
    with pytest.raises(MapInputError, match='no `if __name__ == "__main__":` block'):
        map_job_spec(_function_in(unguarded, source), [1])  # type: ignore[arg-type]

    source += "\nif __name__ == '__main__':\n    print('run')\n"
    script.write_text(source)
    guarded = types.ModuleType("__main__")
    guarded.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", guarded)
    spec = map_job_spec(_function_in(guarded, source), [1, 2], timeout="90s", max_attempts=2)  # type: ignore[arg-type]
    assert spec.name == "map-fn" and [f.name for f in spec.files] == ["script.py"]
    assert spec.map.command[3:6] == ("{files}/script.py", "script", "fn")
    assert [t.item for t in spec.tasks] == ["1", "2"] and spec.map.timeout == 90.0


def test_runner_alone(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "drivemr.mapfn", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )

    ok = run(mapfuncs.__file__, "mapfuncs", "square", "12")
    assert ok.returncode == 0, ok.stderr
    assert json.loads((tmp_path / "result.json").read_text()) == 144
    bad = run(mapfuncs.__file__, "mapfuncs", "picky", "7")
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1] == "ValueError: bad item 7"
    assert run("x").returncode == 2


def test_example_script_runs(tmp_path: Path) -> None:
    script = Path(__file__).parents[1] / "config" / "examples" / "map_squares.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--items", "20", "--store", str(tmp_path / "store")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "20 squares computed by 2 workers" in proc.stdout
    assert "the sum is 2470" in proc.stdout
    assert "20/20 done" in proc.stderr  # progress=True


def test_map_packs_items_and_keeps_item_order(
    folder_store: FolderStore, workers: WorkerProcs
) -> None:
    workers.start("w", "--exit-when-idle")
    client = Client(folder_store)
    items = list(range(10))
    assert client.map(mapfuncs.square, items, items_per_task=3, poll=0.05) == [
        mapfuncs.square(x) for x in items
    ]
    st = client.jobs()[0]
    assert isinstance(st, JobStatus) and st.packs == 4 and st.counts["done"] == 10
    job = client.job(st.job).definition
    assert [t.id for t in job.tasks] == ["p0000", "p0001", "p0002", "p0003"]
    assert [i.id for i in job.items] == [f"t{n:04d}" for n in range(10)]


def test_map_failures_in_packs_name_each_failed_item(
    folder_store: FolderStore, workers: WorkerProcs
) -> None:
    workers.start("w", "--exit-when-idle")
    with pytest.raises(MapError) as info:
        Client(folder_store).map(
            mapfuncs.picky, list(range(20)), max_attempts=1, items_per_task=5, poll=0.05
        )
    err = info.value
    assert err.total == 20
    assert [(f.index, f.task, f.item_json) for f in err.failures] == [
        (7, "t0007", "7"),
        (17, "t0017", "17"),
    ]
    assert [f.error for f in err.failures] == [f"ValueError: bad item {n}" for n in (7, 17)]


def test_map_refuses_a_bad_items_per_task(folder_store: FolderStore) -> None:
    with pytest.raises(MapInputError, match="items_per_task"):
        Client(folder_store).map(mapfuncs.square, [1], items_per_task=0)
    assert store_is_empty(folder_store)
