"""Who may see and change what: accounts, roles, and Drive's visibility rules.

Any bearer token names an account (no ``Authorization`` header: the default account). An
account sees a file when it owns it, when the file was shared with it, when the file is
inside a folder it can see, or when the file is in a shared drive it is a member of;
anything else answers Drive's 404 ``notFound``, exactly as a file that does not exist. A
shared-drive item asked for without ``supportsAllDrives=true`` is a 404 too, as on Drive.
"""

from __future__ import annotations

import hashlib
from typing import Any

from drivemr.testing.fakedrive.errors import ApiError, insufficient_permissions, not_found
from drivemr.testing.fakedrive.messages import DEFAULT_ACCOUNT, Request
from drivemr.testing.fakedrive.state import DriveState, FileRecord

ROLES = ("reader", "commenter", "writer", "fileOrganizer", "organizer", "owner")
"""Weakest first."""
DRIVE_ROLES = frozenset({"reader", "commenter", "writer", "fileOrganizer", "organizer"})
FILE_ROLES = frozenset({"reader", "commenter", "writer"})
WRITERS = frozenset({"writer", "fileOrganizer", "organizer", "owner"})
ORGANIZERS = frozenset({"fileOrganizer", "organizer"})
DEFAULT_EMAIL = "fake-drive-user@example.com"
EMAIL_DOMAIN = "example.com"


def email_of(account: str) -> str:
    """The e-mail address the fake reports for ``account``."""
    if account == DEFAULT_ACCOUNT:
        return DEFAULT_EMAIL
    return account if "@" in account else f"{account}@{EMAIL_DOMAIN}"


def account_of_email(email: str) -> str:
    """Inverse of :func:`email_of` (an unknown address names an account of its own)."""
    if email == DEFAULT_EMAIL:
        return DEFAULT_ACCOUNT
    local, _, domain = email.partition("@")
    return local if domain == EMAIL_DOMAIN else email


def permission_id(account: str) -> str:
    if account == DEFAULT_ACCOUNT:
        return "00000000000000000001"
    return str(int(hashlib.sha1(account.encode()).hexdigest()[:15], 16)).zfill(20)


def user_of(account: str, me: str) -> dict[str, Any]:
    """Drive's User resource for ``account`` as seen by ``me``."""
    return {
        "kind": "drive#user",
        "displayName": "Fake Drive User" if account == DEFAULT_ACCOUNT else account,
        "me": account == me,
        "permissionId": permission_id(account),
        "emailAddress": email_of(account),
    }


def _stronger(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if ROLES.index(a) >= ROLES.index(b) else b


def role_of(
    st: DriveState, rec: FileRecord, account: str, memo: dict[str, str | None] | None = None
) -> str | None:
    """``account``'s role on ``rec`` (``None``: it cannot see the file). Hold the lock."""
    if rec.drive_id is not None:
        drive = st.drives.get(rec.drive_id)
        return drive.members.get(account) if drive is not None else None
    if rec.owner == account:
        return "owner"
    if memo is not None and rec.id in memo:
        return memo[rec.id]
    if memo is not None:
        memo[rec.id] = None  # a parent cycle (never made, but cheap to guard) sees nothing
    best = rec.shared_with.get(account)
    for pid in rec.parents:
        parent = st.files.get(pid)
        if parent is not None:
            inherited = role_of(st, parent, account, memo)
            best = _stronger(best, "writer" if inherited == "owner" else inherited)
    if memo is not None:
        memo[rec.id] = best
    return best


def visible(req: Request, rec: FileRecord, st: DriveState, memo: dict[str, str | None]) -> bool:
    """Whether the caller of ``req`` sees ``rec`` (in a listing, say)."""
    return role_of(st, rec, req.account, memo) is not None


def get_file(st: DriveState, req: Request, file_id: str, location: str = "fileId") -> FileRecord:
    """The file ``file_id`` as the caller of ``req`` may see it, or Drive's 404."""
    rec = st.files.get(st.resolve(file_id, req.account))
    if rec is None or role_of(st, rec, req.account, {}) is None:
        raise not_found(file_id, location)
    if rec.drive_id is not None and not req.all_drives:
        raise not_found(file_id, location)
    return rec


def require_writer(st: DriveState, req: Request, rec: FileRecord) -> str:
    """The caller's role on ``rec``, or 403 when it may not change the file."""
    role = role_of(st, rec, req.account, {})
    if role not in WRITERS:
        raise insufficient_permissions()
    return str(role)


def require_deleter(st: DriveState, req: Request, rec: FileRecord) -> None:
    """Deleting needs the owner in My Drive, an organizer or file organizer in a shared drive."""
    role = role_of(st, rec, req.account, {})
    if rec.drive_id is not None:
        if role not in ORGANIZERS:
            raise insufficient_permissions(
                "The user does not have sufficient permissions for this file. Deleting an "
                "item in a shared drive needs the organizer or fileOrganizer role."
            )
    elif role != "owner":
        raise insufficient_permissions()


def drive_limit_exceeded(limit: int) -> ApiError:
    return ApiError(
        403,
        "teamDriveFileLimitExceeded",
        f"The file limit for this shared drive has been exceeded ({limit} items).",
    )
