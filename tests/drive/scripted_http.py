"""A scripted stand-in for httplib2.Http: answers (or exceptions) in order, requests recorded.

Lets the Drive store's error handling and retry layer be tested without any server."""

from __future__ import annotations

import json
from typing import Any

import httplib2


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> tuple:
    """A scripted response; ``body`` dicts are sent as JSON."""
    if isinstance(body, (dict, list)):
        content = json.dumps(body).encode()
    elif isinstance(body, str):
        content = body.encode()
    else:
        content = body or b""
    return ({"status": str(status), **(headers or {})}, content)


def drive_error(status: int, message: str, reason: str = "", **headers: str) -> tuple:
    """A Drive v3 JSON error body, as Google sends it."""
    errors = [{"domain": "global", "reason": reason, "message": message}] if reason else []
    body = {"error": {"code": status, "message": message, "errors": errors}}
    return answer(status, body, {k.replace("_", "-"): v for k, v in headers.items()})


def file_json(
    fid: str, name: str, parent: str, *, data: bytes | None = None, folder: bool = False
) -> dict:
    import hashlib

    d: dict[str, Any] = {
        "id": fid,
        "name": name,
        "parents": [parent],
        "mimeType": "application/vnd.google-apps.folder" if folder else "application/octet-stream",
        "modifiedTime": "2024-05-01T10:00:00.250Z",
        "createdTime": "2024-05-01T10:00:00.250Z",
    }
    if not folder:
        payload = data or b""
        d["size"] = str(len(payload))
        d["md5Checksum"] = hashlib.md5(payload).hexdigest()
    return d


class ScriptedHttp:
    """Plays a script of responses/exceptions; records (uri, method, headers, body)."""

    def __init__(self, script: list[Any]) -> None:
        self.script = list(script)
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []

    def request(
        self,
        uri: str,
        method: str = "GET",
        body: Any = None,
        headers: Any = None,
        redirections: int = 1,
        connection_type: Any = None,
    ) -> tuple[httplib2.Response, bytes]:
        if hasattr(body, "read"):
            body = body.read()
        self.requests.append((uri, method, dict(headers or {}), body))
        if not self.script:
            raise AssertionError(f"unexpected request {method} {uri}")
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        resp, content = item
        return httplib2.Response(resp), content

    def close(self) -> None:
        pass
