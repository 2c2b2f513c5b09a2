"""Drive's wire format as the store uses it: the fields asked for, the upload sizes, and
the parsing of Drive's file resources into :class:`~drivemr.stores.base.FileInfo`.

Everything Drive answers is parsed totally: a timestamp that is not RFC 3339 is a
:class:`PermanentStoreError`, never a crash.
"""

from __future__ import annotations

import mimetypes
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from drivemr.errors import PermanentStoreError
from drivemr.stores.base import FOLDER_MIME, FileInfo

SCHEME = "drive://"
FILE_FIELDS = "id,name,parents,mimeType,size,md5Checksum,modifiedTime,createdTime"
GET_FIELDS = FILE_FIELDS + ",trashed"
LIST_FIELDS = f"nextPageToken,incompleteSearch,files({FILE_FIELDS})"
CHANGES_FIELDS = "nextPageToken,newStartPageToken,changes(fileId,removed,file(id,parents,mimeType))"

MULTIPART_LIMIT = 5 * 1024 * 1024
"""Files up to this size go up in one multipart request; larger ones resumable."""
CHUNK_SIZE = 8 * 1024 * 1024
"""Resumable upload / download chunk (a multiple of 256 KiB, as Drive requires)."""

_TS_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:?\d{2})?$"
)


def parse_rfc3339(value: str | None) -> float:
    """Seconds since the epoch for an RFC 3339 timestamp (Drive's ``modifiedTime``)."""
    if not value:
        return 0.0
    m = _TS_RE.match(value.strip())
    if not m:
        raise PermanentStoreError(f"unreadable timestamp from Drive: {value!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac = float("0." + m.group(7)) if m.group(7) else 0.0
    tz = m.group(8)
    offset = timedelta(0)
    if tz and tz not in ("Z", "z"):
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        offset = sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    dt = datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc) - offset
    return dt.timestamp() + frac


def file_info(d: dict[str, Any]) -> FileInfo:
    parents = d.get("parents") or []
    size = d.get("size")
    return FileInfo(
        id=d["id"],
        name=d.get("name", ""),
        parent=parents[0] if parents else "",
        is_folder=d.get("mimeType") == FOLDER_MIME,
        size=int(size) if size is not None else None,
        md5=d.get("md5Checksum"),
        modified=parse_rfc3339(d.get("modifiedTime")),
        created=parse_rfc3339(d.get("createdTime")),
    )


def quote(value: str) -> str:
    """Escape a value for a Drive query string literal."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def mimetype(name: str) -> str:
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"
