"""Reading Drive's paged answers whole: a folder's children and the change feed.

Both drain every page before answering, because the store's contract is "complete or
raise": a listing Drive marks incomplete is a transient failure (retried), never a short
list, and the change feed's new cursor is kept only after its last page.
"""

from __future__ import annotations

from typing import Any

from drivemr.errors import PermanentStoreError, TransientStoreError
from drivemr.stores.base import FOLDER_MIME, FileInfo
from drivemr.stores.drive.fields import CHANGES_FIELDS, LIST_FIELDS, file_info, quote
from drivemr.stores.drive.transfer import Call

__all__ = ["changes_since", "list_children", "start_cursor"]


def list_children(
    call: Call, folder_id: str, page_size: int, drive_id: str | None = None
) -> list[FileInfo]:
    """Every child of ``folder_id`` (not trashed), all pages, each id once. ``drive_id``:
    the shared drive the folder is in (the listing then searches that drive's corpus)."""
    what = f"list {folder_id}"
    found: dict[str, FileInfo] = {}
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {
            "q": f"'{quote(folder_id)}' in parents and trashed = false",
            "pageSize": page_size,
            "fields": LIST_FIELDS,
            "supportsAllDrives": True,
            "includeItemsFromAllDrives": True,
            "spaces": "drive",
        }
        if drive_id:
            kwargs.update(corpora="drive", driveId=drive_id)
        if token:
            kwargs["pageToken"] = token

        def page_of(svc: Any, kwargs: dict[str, Any] = kwargs) -> Any:
            page = svc.files().list(**kwargs).execute()
            if page.get("incompleteSearch"):
                raise TransientStoreError(f"{what}: Drive reported an incomplete listing")
            return page

        page = call(what, "read", page_of)
        for item in page.get("files") or []:
            found[item["id"]] = file_info(item)
        token = page.get("nextPageToken")
        if not token:
            return list(found.values())


def changes_since(
    call: Call, cursor: str, page_size: int, drive_id: str | None = None
) -> tuple[str, set[str] | None]:
    """Drain every page of ``changes.list`` from ``cursor``: the next cursor, and the folders
    that changed (parents of changed files plus changed folders themselves), or None when a
    removed entry (parent unknown) means "anything changed". ``drive_id``: read that shared
    drive's own change log (``cursor`` must come from it)."""
    folders: set[str] | None = set()
    token = cursor
    while True:
        kwargs: dict[str, Any] = {
            "pageToken": token,
            "pageSize": page_size,
            "fields": CHANGES_FIELDS,
            "includeRemoved": True,
            "supportsAllDrives": True,
            "includeItemsFromAllDrives": True,
            "spaces": "drive",
        }
        if drive_id:
            kwargs["driveId"] = drive_id

        def fetch(svc: Any, kwargs: dict[str, Any] = kwargs) -> Any:
            return svc.changes().list(**kwargs).execute()

        page = call("poll changes", "read", fetch)
        for change in page.get("changes") or []:
            file = change.get("file")
            if change.get("removed") or not isinstance(file, dict):
                folders = None
                continue
            if folders is None:
                continue
            folders.update(file.get("parents") or [])
            if file.get("mimeType") == FOLDER_MIME and file.get("id"):
                folders.add(file["id"])
        next_token = page.get("nextPageToken")
        if next_token:
            token = next_token
            continue
        new_cursor = page.get("newStartPageToken")
        if not new_cursor:
            raise TransientStoreError(
                "poll changes: Drive returned neither a next page nor a new cursor"
            )
        return str(new_cursor), folders


def start_cursor(call: Call, drive_id: str | None) -> str:
    """A start token of the right change log: the shared drive's own log when the root is
    in a shared drive ``drive_id`` (its changes never reach the users' logs), else the
    user's."""
    extra: dict[str, Any] = {"driveId": drive_id} if drive_id else {}
    result = call(
        "changes cursor",
        "read",
        lambda svc: svc.changes().getStartPageToken(supportsAllDrives=True, **extra).execute(),
    )
    token = result.get("startPageToken")
    if not token:
        raise PermanentStoreError("changes cursor: Drive returned no start page token")
    return str(token)
