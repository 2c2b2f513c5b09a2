"""Shared drives (``drives.create/list/get``) and membership (``permissions.create``).

A shared drive's id is also the id of its top folder, as on Drive. Its creator is its
organizer; ``permissions.create`` on the drive id (with ``supportsAllDrives=true``) adds a
member with a role, and on a My Drive file shares the file with an account. Accounts are
named in permissions by e-mail address: ``NAME@example.com`` names the account whose bearer
token is ``NAME`` (``fake-drive-user@example.com`` is the default account).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drivemr.testing.fakedrive.access import (
    DRIVE_ROLES,
    FILE_ROLES,
    account_of_email,
    email_of,
    get_file,
    permission_id,
    role_of,
)
from drivemr.testing.fakedrive.errors import (
    ApiError,
    bad_request,
    drive_not_found,
    insufficient_permissions,
    invalid_value,
)
from drivemr.testing.fakedrive.fields import Selection, apply_fields
from drivemr.testing.fakedrive.messages import Request, Response, json_response
from drivemr.testing.fakedrive.metadata import read_meta
from drivemr.testing.fakedrive.state import SharedDrive, rfc3339

if TYPE_CHECKING:
    from drivemr.testing.fakedrive.api import DriveApi

DRIVE_DEFAULT: Selection = {"kind": None, "id": None, "name": None}
DRIVE_LIST_DEFAULT: Selection = {"kind": None, "nextPageToken": None, "drives": DRIVE_DEFAULT}
PERMISSION_DEFAULT: Selection = {"kind": None, "id": None, "type": None, "role": None}


def render_drive(drive: SharedDrive, account: str) -> dict[str, Any]:
    """Drive's Drive resource for ``drive`` as seen by ``account``."""
    role = drive.members.get(account)
    organizer = role == "organizer"
    return {
        "kind": "drive#drive",
        "id": drive.id,
        "name": drive.name,
        "createdTime": rfc3339(drive.created_ms),
        "hidden": False,
        "themeId": "",
        "colorRgb": "#4986e7",
        "capabilities": {
            "canAddChildren": role in ("writer", "fileOrganizer", "organizer"),
            "canDeleteChildren": role in ("fileOrganizer", "organizer"),
            "canTrashChildren": role in ("fileOrganizer", "organizer"),
            "canListChildren": True,
            "canManageMembers": organizer,
            "canRename": organizer,
            "canDeleteDrive": organizer,
            "canShare": organizer,
        },
        "restrictions": {
            "adminManagedRestrictions": False,
            "copyRequiresWriterPermission": False,
            "domainUsersOnly": False,
            "driveMembersOnly": False,
        },
    }


class Drives:
    """drives.create/list/get and permissions.create; mutate the state under its lock."""

    def __init__(self, api: DriveApi) -> None:
        self.api = api

    def create(self, req: Request) -> Response:
        sel = self.api.selection(req.query, "Drive", DRIVE_DEFAULT)
        request_id = req.query.get("requestId")
        if not request_id:
            raise ApiError(400, "required", "Required parameter: requestId", location="requestId")
        meta = read_meta(req.body)
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            raise bad_request("A shared drive needs a name.", "required", location="name")
        st = self.api.state
        with st.lock:
            if any(d.request_id == request_id for d in st.drives.values()):
                raise ApiError(
                    409, "duplicate", "A shared drive with this request ID already exists."
                )
            drive = st.add_drive(name, req.account, request_id)
            body = render_drive(drive, req.account)
        return json_response(200, apply_fields(body, sel))

    def get(self, req: Request, drive_id: str) -> Response:
        sel = self.api.selection(req.query, "Drive", DRIVE_DEFAULT)
        with self.api.state.lock:
            drive = self.api.state.drives.get(drive_id)
            if drive is None or req.account not in drive.members:
                raise drive_not_found(drive_id)
            body = render_drive(drive, req.account)
        return json_response(200, apply_fields(body, sel))

    def list(self, req: Request) -> Response:
        sel = self.api.selection(req.query, "DriveList", DRIVE_LIST_DEFAULT)
        if req.query.get("q"):
            raise ApiError(501, "notImplemented", "drives.list q is not modelled by the fake.")
        size = min(max(int(req.query.get("pageSize", "10")), 1), 100)
        start = int(req.query.get("pageToken", "0") or "0")
        with self.api.state.lock:
            mine = sorted(
                (d for d in self.api.state.drives.values() if req.account in d.members),
                key=lambda d: (d.created_ms, d.id),
            )
            page = [render_drive(d, req.account) for d in mine[start : start + size]]
        body: dict[str, Any] = {"kind": "drive#driveList", "drives": page}
        if start + size < len(mine):
            body["nextPageToken"] = str(start + size)
        return json_response(200, apply_fields(body, sel))

    def create_permission(self, req: Request, file_id: str) -> Response:
        """Add a member to a shared drive (its id) or share a My Drive file."""
        sel = self.api.selection(req.query, "Permission", PERMISSION_DEFAULT)
        meta = read_meta(req.body)
        role = meta.get("role")
        email = meta.get("emailAddress")
        if meta.get("type") != "user" or not isinstance(email, str) or not email:
            raise bad_request(
                "The fake models user permissions only: type 'user' with an emailAddress.",
                "invalidSharingRequest",
            )
        account = account_of_email(email)
        st = self.api.state
        with st.lock:
            rec = get_file(st, req, file_id)
            drive = st.drives.get(rec.id)
            if drive is not None:
                if role not in DRIVE_ROLES:
                    raise invalid_value(
                        "role", f"a shared drive role is one of {sorted(DRIVE_ROLES)}"
                    )
                if drive.members.get(req.account) != "organizer":
                    raise insufficient_permissions(
                        "Only an organizer can add members to a shared drive."
                    )
                drive.members[account] = str(role)
            else:
                if rec.drive_id is not None:
                    raise ApiError(
                        501,
                        "notImplemented",
                        "Per-item permissions inside a shared drive are not modelled.",
                    )
                if role not in FILE_ROLES:
                    raise invalid_value("role", f"a file role is one of {sorted(FILE_ROLES)}")
                if role_of(st, rec, req.account, {}) not in ("owner", "writer"):
                    raise insufficient_permissions()
                rec.shared_with[account] = str(role)
                st.touch(rec)
            st.dirty = True
        body = {
            "kind": "drive#permission",
            "id": permission_id(account),
            "type": "user",
            "role": role,
            "emailAddress": email_of(account),
        }
        return json_response(200, apply_fields(body, sel))
