"""Turning a result manifest back into files: inline outputs or uploaded ones, md5-checked,
never written outside the destination folder."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

from drivemr.errors import SecurityError
from drivemr.protocol import MAX_MANIFEST_BYTES, Job, JobFormatError, Task, parse_json
from drivemr.safepaths import safe_join
from drivemr.stores.base import Store


def read_manifest(store: Store, task: Task) -> dict[str, Any]:
    doc = parse_json(store.read(task.result_id, max_bytes=MAX_MANIFEST_BYTES), "result manifest")
    if not isinstance(doc, dict) or not isinstance(doc.get("outputs", []), list):
        raise JobFormatError(f"the result of {task.id} is not a drivemr manifest")
    return doc


def materialise_outputs(store: Store, manifest: dict[str, Any], dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for out in manifest.get("outputs", []):
        if not isinstance(out, dict) or not isinstance(out.get("name"), str):
            raise JobFormatError("malformed output entry in a result manifest")
        target = safe_join(dest, out["name"])
        target.parent.mkdir(parents=True, exist_ok=True)
        if "data" in out:
            target.write_bytes(base64.b64decode(str(out["data"])))
        else:
            store.download(str(out["id"]), target)
        if hashlib.md5(target.read_bytes()).hexdigest() != out.get("md5"):
            target.unlink(missing_ok=True)
            raise SecurityError(f"output {out['name']} does not match the md5 in its manifest")
        written.append(target)
    return written


def download_outputs(store: Store, job: Job, task: Task, dest: Path) -> list[Path]:
    return materialise_outputs(store, read_manifest(store, task), dest)


def item_entries(manifest: dict[str, Any], task: Task) -> dict[str, dict[str, Any]]:
    """A pack's manifest entries by item id, only for the task's own items (untrusted
    input: anything else is ignored, a malformed entry refused)."""
    entries = manifest.get("items")
    if not isinstance(entries, list):
        return {}
    wanted = {i.id for i in task.items}
    out: dict[str, dict[str, Any]] = {}
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("outputs", []), list):
            raise JobFormatError(f"the result of {task.id} has a malformed item entry")
        if e.get("id") in wanted:
            out.setdefault(str(e["id"]), e)
    return out


def stage_task_results(store: Store, task: Task, results_dir: Path) -> list[Path]:
    """A map task's outputs under ``results_dir``: one folder per item, named by item id
    (an unpacked task is its own one item), whatever the packing."""
    manifest = read_manifest(store, task)
    if not task.packed:
        return materialise_outputs(store, manifest, results_dir / task.id)
    entries = item_entries(manifest, task)
    written = []
    for item in task.items:
        entry = entries.get(item.id)
        if entry is None or entry.get("state") != "done":
            raise JobFormatError(f"the result of {task.id} has no done entry for {item.id}")
        written += materialise_outputs(store, entry, results_dir / item.id)
    return written
