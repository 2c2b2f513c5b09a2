"""Moving content to and from Drive in chunks, each chunk one retried request.

A resumable upload's request object keeps the session URI and progress, so a retried chunk
resumes (after a connection error it first asks the server how far it got); a session the
server forgot (404/410 mid-upload) is restarted from scratch, at most twice. A download
goes to a temporary file next to its destination and is renamed into place: complete or
absent, never half.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path
from typing import Any

from googleapiclient.http import MediaIoBaseDownload

from drivemr.errors import PermanentStoreError, TooLarge
from drivemr.fileio import replacing
from drivemr.stores.drive.fields import CHUNK_SIZE
from drivemr.stores.drive.translate import http_status

__all__ = ["Call", "download_to", "resumable_upload"]

Call = Callable[..., Any]
"""The store's ``_call(what, kind, fn, attempts=None)``: one request under the retry policy."""


def resumable_upload(
    call: Call, what: str, make_request: Callable[[Any], Any], attempts: list[int]
) -> dict[str, Any]:
    """Run a resumable upload (``make_request(service)`` starts it) chunk by chunk."""
    for session in range(3):
        holder: dict[str, Any] = {}

        def step(svc: Any, holder: dict[str, Any] = holder) -> Any:
            if "request" not in holder:
                holder["request"] = make_request(svc)
            _, body = holder["request"].next_chunk(num_retries=0)
            return body

        try:
            while True:
                body = call(what, "write", step, attempts)
                if body is not None:
                    return dict(body)
        except PermanentStoreError as exc:
            started = getattr(holder.get("request"), "resumable_uri", None)
            if started and http_status(exc) in (404, 410) and session < 2:
                continue
            raise
    raise PermanentStoreError(f"{what}: the upload session kept expiring")  # pragma: no cover


def download_to(call: Call, fid: str, dest: Path, *, max_bytes: int | None = None) -> None:
    """Write the content of file ``fid`` to ``dest``, atomically; with ``max_bytes``, stop
    (TooLarge) as soon as a chunk takes it past that size: at most one chunk more is
    fetched, whatever the file's size."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with replacing(dest) as fh:
            holder: dict[str, Any] = {}

            def step(svc: Any) -> bool:
                if "downloader" not in holder:
                    request = svc.files().get_media(fileId=fid, supportsAllDrives=True)
                    holder["downloader"] = MediaIoBaseDownload(fh, request, chunksize=CHUNK_SIZE)
                _, done = holder["downloader"].next_chunk(num_retries=0)
                if max_bytes is not None and fh.tell() > max_bytes:
                    raise TooLarge(f"download {fid}: larger than the limit of {max_bytes} bytes")
                return bool(done)

            while not call(f"download {fid}", "read", step):
                pass
    except BaseException as exc:
        cause = exc.__cause__ if isinstance(exc, PermanentStoreError) else exc
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            raise PermanentStoreError(
                f"download {fid}: no space left on the local disk for {dest}"
            ) from exc
        raise
