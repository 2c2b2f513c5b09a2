"""What a claim or result file says, for tests, benchmarks and the chaos ledger.

Names of jobs of format 3 say only which claim or result slot a file is (they are fixed
by the id's role, :mod:`drivemr.protocol.names`); the worker and the outcome are in the
sealed body. Tools that count what happened read them here: from the name when it says
(formats 1 and 2), else from the body, read *without* checking the seal (a test's own
store; workers never do this: they open seals with :mod:`drivemr.trust`).
"""

from __future__ import annotations

import json
from typing import Any

from drivemr.errors import DrivemrError
from drivemr.protocol import ResultRef, parse_claim_name, parse_result
from drivemr.stores.base import FileInfo, Store


def sealed_body(store: Store, info: FileInfo) -> dict[str, Any] | None:
    """The body of a sealed document in the store, unchecked; None if it is not one."""
    try:
        doc = json.loads(store.read(info.id, max_bytes=16 << 20, parent=info.parent))
    except (DrivemrError, ValueError):
        return None
    body = doc.get("body") if isinstance(doc, dict) else None
    return body if isinstance(body, dict) else None


def claim_facts(store: Store, info: FileInfo) -> tuple[str, int, str] | None:
    """(task, attempt, worker) of a claim file; None when neither name nor body says."""
    parsed = parse_claim_name(info.name)
    if parsed is not None and parsed[2]:
        return parsed
    body = sealed_body(store, info)
    if body is None:
        return None
    task, attempt, worker = body.get("task"), body.get("attempt"), body.get("worker")
    if not (isinstance(task, str) and isinstance(attempt, int) and isinstance(worker, str)):
        return None
    return task, attempt, worker


def result_facts(store: Store, info: FileInfo) -> ResultRef | None:
    """How a result file says its attempt ended; None when neither name nor body says."""
    ref = parse_result(info)
    if ref is not None:
        return ref
    body = sealed_body(store, info)
    if body is None:
        return None
    task, state, attempt = body.get("task"), body.get("state"), body.get("attempt")
    if not (isinstance(task, str) and isinstance(state, str) and isinstance(attempt, int)):
        return None
    code = body.get("exit_code")
    duration = body.get("duration")
    return ResultRef(
        task,
        state,
        attempt - 1,
        code if isinstance(code, int) else None,
        float(duration) if isinstance(duration, (int, float)) else 0.0,
        info,
        worker=str(body.get("worker") or ""),
    )
