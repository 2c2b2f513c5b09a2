"""The runner of ``Client.map`` tasks: ``python -m drivemr.mapfn FILE MODULE FUNCTION ITEM``.

A map task's command runs this small module on the worker. It imports the shipped source
file (verified against the job's signature like any shipped file), reads the item (JSON
text), calls the function and writes its JSON return value to ``result.json`` in the
task's working directory, the task's one output. Code travels only as that source file:
nothing is ever unpickled. The function's exception ends the task with its traceback on
stderr (its last line, ``Type: message``, is what ``Client.map`` reports).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import traceback
from pathlib import Path

RESULT_FILE = "result.json"
IN_MAP_TASK = "DRIVEMR_IN_MAP_TASK"
"""Set while a map function runs, so a ``Client.map`` reached from it (a script whose map
call is not under ``if __name__ == "__main__":``) is refused instead of recursing."""
EXIT_USAGE = 2


def load_function(path: Path, module: str, function: str) -> object:
    """Import ``path`` as module ``module`` and return its attribute ``function``."""
    spec = importlib.util.spec_from_file_location(module, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[module] = mod
    spec.loader.exec_module(mod)
    return getattr(mod, function)


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print("usage: python -m drivemr.mapfn FILE MODULE FUNCTION ITEM_JSON", file=sys.stderr)
        return EXIT_USAGE
    path, module, function, item_text = argv
    os.environ[IN_MAP_TASK] = "1"
    try:
        item = json.loads(item_text)
        fn = load_function(Path(path), module, function)
        if not callable(fn):
            raise TypeError(f"{module}.{function} is not a function")
        value = fn(item)
    except BaseException:  # report any failure of the user's code, then fail the task
        traceback.print_exc()
        return 1
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        if json.loads(text) != value:
            raise ValueError("it would not read back equal (a tuple, or a dict with non-str keys?)")
    except (TypeError, ValueError, RecursionError) as exc:
        print(
            f"drivemr.mapfn: {function} returned a value that is not JSON: "
            f"{type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 1
    Path(RESULT_FILE).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
