"""Reduce: add up every task's counts.json into total.json (the 10 most common words first)."""

import collections
import json
import pathlib
import sys

total: collections.Counter[str] = collections.Counter()
for task_dir in sorted(pathlib.Path(sys.argv[1]).iterdir()):
    total.update(json.loads((task_dir / "counts.json").read_text(encoding="utf-8")))
top = dict(total.most_common(10))
result = {"words": sum(total.values()), "distinct": len(total), "top": top}
pathlib.Path("total.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
