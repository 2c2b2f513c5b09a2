"""Small helpers for tests that use the fake: error bodies, control calls, minting."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from drivemr.testing.fakedrive.state import FOLDER_MIME

__all__ = ["FOLDER_MIME", "control", "drive_error", "error_reason", "mint"]


def drive_error(exc: Any) -> dict[str, Any]:
    """The ``error`` object of a googleapiclient ``HttpError``, checked to be Drive-shaped."""
    body = json.loads(exc.content)
    err = body["error"]
    if not (set(err) >= {"code", "message", "errors"} and err["code"] == exc.status_code):
        raise AssertionError(f"not a Drive-shaped error: {body!r}")
    if not set(err["errors"][0]) >= {"reason", "domain", "message"}:
        raise AssertionError(f"not a Drive-shaped error item: {body!r}")
    return dict(err)


def error_reason(exc: Any) -> str:
    """``errors[0].reason`` of a googleapiclient ``HttpError``."""
    return str(drive_error(exc)["errors"][0]["reason"])


def control(url: str, path: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
    """Call a ``/_fake/...`` endpoint of the fake at ``url`` (POST when ``body`` is given)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url.rstrip("/") + "/" + path.lstrip("/"), data=data)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read())


def mint(drive: Any, count: int = 1) -> list[str]:
    """``files.generateIds`` through a googleapiclient Drive resource."""
    return list(drive.files().generateIds(count=count).execute()["ids"])
