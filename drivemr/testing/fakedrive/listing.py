"""``files.list``: queries, ordering, paging, and which corpus a listing searches.

The default corpus (``user``) holds what the caller owns or can see through sharing, in My
Drive; shared-drive items join it only with ``includeItemsFromAllDrives=true`` (which
needs ``supportsAllDrives=true``). ``corpora=drive`` lists one shared drive and needs
``driveId`` (400 without it), membership (404 otherwise) and ``includeItemsFromAllDrives``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from drivemr.testing.fakedrive.access import email_of, role_of
from drivemr.testing.fakedrive.errors import ApiError, drive_not_found, invalid_value
from drivemr.testing.fakedrive.fields import FILE_LIST_DEFAULT, apply_fields
from drivemr.testing.fakedrive.messages import Request, Response, json_response
from drivemr.testing.fakedrive.query import Context, Query, QueryError, parse_query
from drivemr.testing.fakedrive.state import FileRecord

if TYPE_CHECKING:
    from drivemr.testing.fakedrive.api import DriveApi


def _natural_key(name: str) -> list[list[Any]]:
    return [
        [0, int(part)] if part.isdigit() else [1, part.lower()]
        for part in re.findall(r"\d+|\D+", name)
    ]


ORDER_KEYS: dict[str, Callable[[FileRecord], Any]] = {
    "name": lambda r: [r.name.lower(), r.name],
    "name_natural": lambda r: _natural_key(r.name),
    "createdTime": lambda r: r.created_ms,
    "modifiedTime": lambda r: r.modified_ms,
    "modifiedByMeTime": lambda r: r.modified_ms,
    "viewedByMeTime": lambda r: r.modified_ms,
    "recency": lambda r: max(r.modified_ms, r.created_ms),
    "sharedWithMeTime": lambda r: 0,
    "folder": lambda r: 0 if r.is_folder else 1,
    "starred": lambda r: 0 if r.starred else 1,
    "quotaBytesUsed": lambda r: len(r.content or b""),
}
Order = list[tuple[Callable[[FileRecord], Any], bool]]


def _cmp(a: Any, b: Any) -> int:
    return (a > b) - (a < b)


def page_size(query: dict[str, str]) -> int:
    size = int(query.get("pageSize", "100"))
    if size < 1:
        raise invalid_value("pageSize", "pageSize must be >= 1")
    return min(size, 1000)


def parse_order(text: str) -> Order:
    order: Order = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        words = item.split()
        if len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise invalid_value("orderBy", f"bad sort key {item!r}")
        keyf = ORDER_KEYS.get(words[0])
        if keyf is None:
            raise invalid_value("orderBy", f"unknown sort key {words[0]!r}")
        order.append((keyf, len(words) == 2 and words[1].lower() == "desc"))
    return order


class Listing:
    """files.list; reads the state under its lock."""

    def __init__(self, api: DriveApi) -> None:
        self.api = api

    def _corpus(self, req: Request) -> str | None:
        """The shared drive to list (``corpora=drive``) or None for the user's corpus."""
        q = req.query
        corpora = q.get("corpora", "user")
        drive_id = q.get("driveId") or q.get("teamDriveId")
        if corpora == "drive" or drive_id:
            if corpora != "drive" or not drive_id:
                raise ApiError(
                    400,
                    "invalid",
                    "The driveId parameter must be specified if and only if corpora is set "
                    "to drive.",
                    location="driveId" if not drive_id else "corpora",
                )
            if not (req.flag("includeItemsFromAllDrives") or req.flag("includeTeamDriveItems")):
                raise ApiError(
                    400,
                    "invalid",
                    "includeItemsFromAllDrives must be set to true when corpora is set to drive.",
                    location="includeItemsFromAllDrives",
                )
            drive = self.api.state.drives.get(drive_id)
            if drive is None or req.account not in drive.members or not req.all_drives:
                raise drive_not_found(drive_id)
        return drive_id

    def _candidates(self, req: Request, query: Query, drive_id: str | None) -> list[FileRecord]:
        st = self.api.state
        if query.parent is not None:
            pid = st.resolve(query.parent, req.account)
            found = [st.files[i] for i in st.children.get(pid, ()) if i in st.files]
            cfg = self.api.config
            if cfg.misbehaves("listing"):
                young = time.time() - cfg.misbehave_listing_seconds
                found = [r for r in found if r.born < young]
        else:
            found = [r for r in st.files.values() if r.parents]
        all_drives = req.all_drives and (
            req.flag("includeItemsFromAllDrives") or req.flag("includeTeamDriveItems")
        )
        memo: dict[str, str | None] = {}
        if drive_id is not None:
            return [r for r in found if r.drive_id == drive_id]
        return [
            r
            for r in found
            if (r.drive_id is None or all_drives) and role_of(st, r, req.account, memo) is not None
        ]

    def files_list(self, req: Request) -> Response:
        q = req.query
        sel = self.api.selection(q, "FileList", FILE_LIST_DEFAULT)
        size = page_size(q)
        text = q.get("q", "")
        try:
            query = parse_query(text)
        except QueryError as exc:
            raise invalid_value("q", str(exc)) from None
        order_text = q.get("orderBy", "")
        order = parse_order(order_text)
        digest = hashlib.sha1(f"{text}\0{order_text}".encode()).hexdigest()[:12]
        cursor: tuple[list[Any], str] | None = None
        token = q.get("pageToken")
        if token:
            try:
                tok = json.loads(base64.urlsafe_b64decode(token.encode() + b"==="))
                if tok["h"] != digest:
                    raise ValueError("page token belongs to another query")
                if tok["i"] is not None:
                    cursor = (list(tok["k"]), str(tok["i"]))
            except (ValueError, KeyError, TypeError) as exc:
                raise invalid_value("pageToken", str(exc)) from None
        spaces = {s.strip() for s in q.get("spaces", "drive").split(",")}
        st = self.api.state
        lag = self.api.config.name_query_lag if query.uses_name else 0.0
        now = time.time()

        def compare(a: tuple[list[Any], str], b: tuple[list[Any], str]) -> int:
            for (_, desc), x, y in zip(order, a[0], b[0], strict=True):
                c = _cmp(x, y)
                if c:
                    return -c if desc else c
            return _cmp(a[1], b[1])

        def compare_hits(
            a: tuple[list[Any], str, FileRecord], b: tuple[list[Any], str, FileRecord]
        ) -> int:
            return compare((a[0], a[1]), (b[0], b[1]))

        with st.lock:
            drive_id = self._corpus(req)
            ctx = Context(root_id=st.root_of(req.account), me_email=email_of(req.account))
            candidates = self._candidates(req, query, drive_id) if "drive" in spaces else []
            hits: list[tuple[list[Any], str, FileRecord]] = [
                ([f(r) for f, _ in order], r.id, r)
                for r in candidates
                if query.matches(r, ctx) and not (lag and now - r.born < lag)
            ]
            hits.sort(key=functools.cmp_to_key(compare_hits))
            if cursor is not None:
                hits = [h for h in hits if compare((h[0], h[1]), cursor) > 0]
            page = hits[:size]
            more = len(hits) > size
            rate = self.api.config.short_page_rate
            if rate > 0 and len(page) > 1 and self.api.rng.random() < rate:
                # "The service may return fewer than this value": a short (even empty)
                # page that still has a next page token.
                page = page[: self.api.rng.randrange(len(page))]
                more = True
            files = [self.api.render(req, h[2]) for h in page]
        body: dict[str, Any] = {"kind": "drive#fileList", "incompleteSearch": False}
        if more:
            after: tuple[Any, Any] = (page[-1][0], page[-1][1]) if page else (None, None)
            if not page and cursor is not None:
                after = cursor
            raw = json.dumps({"h": digest, "k": after[0], "i": after[1]}, separators=(",", ":"))
            body["nextPageToken"] = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
        body["files"] = files
        return json_response(200, apply_fields(body, sel))
