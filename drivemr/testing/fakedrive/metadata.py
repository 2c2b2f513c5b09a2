"""File metadata in and out: the File resource the fake reports, and checks on request bodies.

Both directions are Drive's rules, not any one method's: files.get, files.list, changes and
uploads render the same resource, and create, copy, update and uploads refuse the same bad
bodies with the same errors.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from drivemr.testing.fakedrive.access import permission_id, role_of, user_of
from drivemr.testing.fakedrive.errors import ApiError, bad_request, field_not_writable
from drivemr.testing.fakedrive.query import QueryError, parse_time
from drivemr.testing.fakedrive.state import DriveState, FileRecord, rfc3339

PROPERTY_LIMIT = 124
"""Drive's limit on one (app)property: key plus value, UTF-8 bytes."""
MAX_PROPERTIES = 30
MAX_METADATA_BYTES = 1 << 20

FILE_FIELDS_CREATE = frozenset(
    {
        "id",
        "name",
        "mimeType",
        "parents",
        "appProperties",
        "properties",
        "description",
        "starred",
        "modifiedTime",
        "createdTime",
        "viewedByMeTime",
        "originalFilename",
        "folderColorRgb",
        "writersCanShare",
        "copyRequiresWriterPermission",
        "contentHints",
        "trashed",
        "kind",
    }
)
FILE_FIELDS_UPDATE = FILE_FIELDS_CREATE - {"id", "parents", "createdTime"}


def render(st: DriveState, rec: FileRecord, account: str) -> dict[str, Any]:
    """The full File resource Drive would report for ``rec`` to ``account``."""
    role = role_of(st, rec, account, {})
    can_write = role in ("writer", "fileOrganizer", "organizer", "owner")
    top = not rec.parents
    owner = user_of(rec.owner, account)
    d: dict[str, Any] = {
        "kind": "drive#file",
        "id": rec.id,
        "name": rec.name,
        "mimeType": rec.mime_type,
        "starred": rec.starred,
        "trashed": rec.trashed,
        "explicitlyTrashed": rec.explicitly_trashed,
        "spaces": ["drive"],
        "version": str(rec.version),
        "webViewLink": (
            f"https://drive.google.com/drive/folders/{rec.id}"
            if rec.is_folder
            else f"https://drive.google.com/file/d/{rec.id}/view?usp=drivesdk"
        ),
        "iconLink": f"https://drive-thirdparty.googleusercontent.com/16/type/{rec.mime_type}",
        "hasThumbnail": False,
        "thumbnailVersion": "0",
        "viewedByMe": True,
        "viewedByMeTime": rfc3339(rec.modified_ms),
        "createdTime": rfc3339(rec.created_ms),
        "modifiedTime": rfc3339(rec.modified_ms),
        "modifiedByMeTime": rfc3339(rec.modified_ms),
        "modifiedByMe": True,
        "lastModifyingUser": owner,
        "shared": bool(rec.shared_with) or rec.drive_id is not None,
        "ownedByMe": rec.drive_id is None and rec.owner == account,
        "writersCanShare": True,
        "viewersCanCopyContent": True,
        "copyRequiresWriterPermission": False,
        "isAppAuthorized": True,
        "permissionIds": [permission_id(rec.owner)]
        + [permission_id(a) for a in sorted(rec.shared_with)],
        "quotaBytesUsed": str(len(rec.content or b"")),
        "capabilities": {
            "canEdit": can_write,
            "canDelete": not top
            and (
                role == "owner"
                or (rec.drive_id is not None and role in ("fileOrganizer", "organizer"))
            ),
            "canTrash": not top and can_write,
            "canRename": not top and can_write,
            "canDownload": rec.content is not None,
            "canAddChildren": rec.is_folder and can_write,
            "canListChildren": rec.is_folder,
        },
    }
    if rec.drive_id is not None:
        d["driveId"] = rec.drive_id
        d["teamDriveId"] = rec.drive_id
    else:
        d["owners"] = [owner]
    if rec.parents:
        d["parents"] = list(rec.parents)
    if rec.app_properties:
        d["appProperties"] = dict(rec.app_properties)
    if rec.properties:
        d["properties"] = dict(rec.properties)
    if rec.description is not None:
        d["description"] = rec.description
    if rec.trashed and rec.trashed_ms is not None:
        d["trashedTime"] = rfc3339(rec.trashed_ms)
        d["trashingUser"] = owner
    if rec.content is not None:
        d["size"] = str(len(rec.content))
        d["md5Checksum"] = rec.md5
        d["sha1Checksum"] = rec.sha1
        d["sha256Checksum"] = rec.sha256
        rev = hashlib.md5(f"{rec.id}:{rec.head_revision}".encode()).hexdigest()
        d["headRevisionId"] = "0B" + rev[:30]
        d["originalFilename"] = rec.original_filename or rec.name
        d["webContentLink"] = f"https://drive.google.com/uc?id={rec.id}&export=download"
        if "." in rec.name.strip("."):
            d["fullFileExtension"] = rec.name.split(".", 1)[1]
            d["fileExtension"] = rec.name.rsplit(".", 1)[1]
    return d


def read_meta(raw: bytes) -> dict[str, Any]:
    """A request body's File metadata (JSON object), or Drive's parse error."""
    if not raw.strip():
        return {}
    if len(raw) > MAX_METADATA_BYTES:
        raise bad_request("The metadata in the request is too large.", "badContent")
    try:
        meta = json.loads(raw)
    except ValueError:
        raise ApiError(400, "parseError", "Parse Error") from None
    if not isinstance(meta, dict):
        raise ApiError(400, "parseError", "Parse Error")
    return meta


def check_meta(
    meta: dict[str, Any], file_props: frozenset[str], writable: frozenset[str], update: bool
) -> None:
    """Refuse what Drive refuses in a File body: unknown, read-only or ill-typed fields."""
    for key in meta:
        if key not in file_props:
            raise ApiError(
                400,
                "invalid",
                f"Invalid JSON payload received. Unknown name \"{key}\" at 'resource': "
                "Cannot find field.",
            )
        if key not in writable:
            if update and key == "parents":
                raise ApiError(
                    403,
                    "fieldNotWritable",
                    "The parents field is not directly writable in update requests. "
                    "Use the addParents and removeParents parameters instead.",
                )
            raise field_not_writable(key)
    for key in ("name", "mimeType", "description", "originalFilename", "id"):
        if key in meta and meta[key] is not None and not isinstance(meta[key], str):
            raise bad_request(f"Invalid value for {key}.", "invalid", location=key)
    if "parents" in meta and not (
        isinstance(meta["parents"], list) and all(isinstance(p, str) for p in meta["parents"])
    ):
        raise bad_request("Invalid value for parents.", "invalid", location="parents")
    for key in ("appProperties", "properties"):
        if key in meta and meta[key] is not None:
            _check_props(key, meta[key])
    for key in ("modifiedTime", "createdTime", "viewedByMeTime"):
        if key in meta:
            try:
                parse_time(str(meta[key]))
            except QueryError:
                raise bad_request(f"Invalid value for {key}.", "invalid") from None


def _check_props(key: str, props: Any) -> None:
    if not isinstance(props, dict):
        raise bad_request(f"Invalid value for {key}.", "invalid", location=key)
    for k, v in props.items():
        if v is not None and not isinstance(v, str):
            raise bad_request(f"Invalid value for {key}.{k}.", "invalid", location=key)
        size = len(k.encode()) + len((v or "").encode())
        if size > PROPERTY_LIMIT:
            raise ApiError(
                400,
                "invalidProperty",
                f"The size of the property '{k}' ({size} bytes, key plus value) "
                f"exceeds the limit of {PROPERTY_LIMIT} bytes.",
                location=key,
                location_type="other",
            )


def merge_props(have: dict[str, str], patch: dict[str, Any] | None, kind: str) -> None:
    """Apply a (app)properties patch: ``None`` values delete keys."""
    if not patch:
        return
    for k, v in patch.items():
        if v is None:
            have.pop(k, None)
        else:
            have[k] = v
    if len(have) > MAX_PROPERTIES:
        raise ApiError(
            400,
            "invalidProperty",
            f"A file may have at most {MAX_PROPERTIES} {kind}.",
            location=kind,
            location_type="other",
        )
