"""The ``files`` resource: get, download, generateIds, about (reads) and create, update,
delete, copy, emptyTrash (writes), with Drive's id, parent, role and shared-drive rules.

Uploads reach :meth:`FileWrites.do_create` and :meth:`FileWrites.do_update` too, so an
upload and a metadata-only call obey the same rules.
"""

from __future__ import annotations

import base64
import re
import time
from typing import TYPE_CHECKING, Any

from drivemr.testing.fakedrive.access import (
    get_file,
    require_deleter,
    require_writer,
    user_of,
)
from drivemr.testing.fakedrive.errors import ApiError, bad_request, invalid_value
from drivemr.testing.fakedrive.fields import FILE_DEFAULT, apply_fields
from drivemr.testing.fakedrive.messages import Request, Response, empty_response, json_response
from drivemr.testing.fakedrive.metadata import (
    FILE_FIELDS_CREATE,
    FILE_FIELDS_UPDATE,
    check_meta,
    merge_props,
    read_meta,
)
from drivemr.testing.fakedrive.query import parse_time
from drivemr.testing.fakedrive.state import (
    GOOGLE_APPS_PREFIX,
    SHORTCUT_MIME,
    FileRecord,
    now_ms,
)

if TYPE_CHECKING:
    from drivemr.testing.fakedrive.api import DriveApi

MOVERS = frozenset({"owner", "organizer", "fileOrganizer"})
"""Roles for which ``addParents`` without ``removeParents`` moves the item."""


def _unusable_id(detail: str) -> ApiError:
    return ApiError(
        400,
        "invalid",
        "The provided file ID is not usable.",
        location="file.id",
        location_type="other",
        detail=detail,
    )


def _duplicate() -> ApiError:
    return ApiError(409, "duplicate", "A file already exists with the provided ID.")


def _too_many_parents() -> ApiError:
    return ApiError(403, "cannotAddParent", "Increasing the number of parents is not allowed.")


def _across_drives() -> ApiError:
    return ApiError(
        501,
        "notImplemented",
        "Moving items between My Drive and a shared drive (or between shared drives) is "
        "not modelled by the fake.",
    )


class FileReads:
    """files.get (metadata and ``alt=media``), files.generateIds, about.get. Stateless."""

    def __init__(self, api: DriveApi) -> None:
        self.api = api

    def get(self, req: Request, file_id: str) -> Response:
        if req.query.get("alt") == "media":
            return self._download(req, file_id)
        sel = self.api.selection(req.query, "File", FILE_DEFAULT)
        with self.api.state.lock:
            rec = get_file(self.api.state, req, file_id)
            full = self.api.render(req, rec)
        return json_response(200, apply_fields(full, sel))

    def _download(self, req: Request, file_id: str) -> Response:
        with self.api.state.lock:
            rec = get_file(self.api.state, req, file_id)
            content, mime, md5 = rec.content, rec.mime_type, rec.md5
        if content is None:
            raise ApiError(
                403,
                "fileNotDownloadable",
                "Only files with binary content can be downloaded. Use Export with Docs "
                "Editors files.",
                location="alt",
            )
        headers: list[tuple[str, str]] = []
        if md5:
            headers.append(("X-Goog-Hash", "md5=" + base64.b64encode(bytes.fromhex(md5)).decode()))
        rng = req.headers.get("range")
        total = len(content)
        if not rng:
            return Response(200, content, content_type=mime, headers=headers)
        m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", rng)
        if not m or (m.group(1) == "" and m.group(2) == ""):
            raise bad_request(f"Invalid Range header: {rng}")
        if m.group(1) == "":
            start, end = max(0, total - int(m.group(2))), total - 1
        else:
            start = int(m.group(1))
            end = min(int(m.group(2)) if m.group(2) else total - 1, total - 1)
        if start >= total or start > end:
            err = ApiError(416, "requestedRangeNotSatisfiable", "Request range not satisfiable")
            return Response(416, err.to_bytes(), headers=[("Content-Range", f"bytes */{total}")])
        headers.append(("Content-Range", f"bytes {start}-{end}/{total}"))
        return Response(206, content[start : end + 1], content_type=mime, headers=headers)

    def generate_ids(self, req: Request) -> Response:
        sel = self.api.selection(req.query, "GeneratedIds", {"*": None})
        count = int(req.query.get("count", "10"))
        if not 1 <= count <= 1000:
            raise invalid_value("count", "count must be within 1..1000")
        space = req.query.get("space", "drive")
        if space not in ("drive", "appDataFolder"):
            raise invalid_value("space")
        kind = req.query.get("type", "files")
        if kind not in ("files", "shortcuts"):
            raise invalid_value("type")
        with self.api.state.lock:
            ids = self.api.state.mint(count, req.account)
        body = {"kind": "drive#generatedIds", "space": space, "ids": ids}
        return json_response(200, apply_fields(body, sel))

    def about(self, req: Request) -> Response:
        if "fields" not in req.query:
            raise ApiError(
                400,
                "required",
                "The 'fields' parameter is required for this method.",
                location="fields",
            )
        sel = self.api.selection(req.query, "About", {})
        st = self.api.state
        with st.lock:
            mine = [r for r in st.files.values() if r.owner == req.account and r.drive_id is None]
            usage = sum(len(r.content or b"") for r in mine)
            trash = sum(len(r.content or b"") for r in mine if r.trashed)
        body = {
            "kind": "drive#about",
            "user": user_of(req.account, req.account),
            "storageQuota": {
                "limit": str(15 * 1024**3),
                "usage": str(usage),
                "usageInDrive": str(usage),
                "usageInDriveTrash": str(trash),
            },
            "maxUploadSize": "5497558138880",
            "appInstalled": False,
            "canCreateDrives": True,
        }
        return json_response(200, apply_fields(body, sel))


class FileWrites:
    """files.create/update/delete/copy/emptyTrash; callers of ``do_*`` hold the state lock."""

    def __init__(self, api: DriveApi) -> None:
        self.api = api

    # -- create ------------------------------------------------------------------------------

    def create(self, req: Request) -> Response:
        sel = self.api.selection(req.query, "File", FILE_DEFAULT)
        meta = read_meta(req.body)
        with self.api.state.lock:
            rec = self.do_create(req, meta, None, None)
            return self.api.file_response(req, rec, sel, "files.create")

    def parent_for(self, req: Request, parents: list[str] | None) -> FileRecord:
        """The folder a new item goes into: the caller must see it and may write in it."""
        st = self.api.state
        if not parents:
            return st.files[st.root_of(req.account)]
        if len(parents) > 1:
            raise _too_many_parents()
        parent = get_file(st, req, parents[0], "parents")
        if not parent.is_folder:
            raise bad_request("The specified parent is not a folder.", "invalidParent")
        require_writer(st, req, parent)
        return parent

    def check_new_id(self, req: Request, fid: str, mime: str) -> None:
        """Drive's rules for a client-chosen id (and the fake's minted-id policy)."""
        st = self.api.state
        cfg = self.api.config
        if fid in st.used:
            if cfg.misbehaves("create-once") and fid in st.files:
                return  # overwritten by do_create, as a broken stand-in would
            raise _duplicate()
        minter = st.minted.get(fid)
        if minter is None:
            raise _unusable_id("this id was never minted by files.generateIds")
        if minter != req.account and cfg.minted_ids == "account":
            raise _unusable_id(
                "this id was minted by another account (fake setting minted_ids=account: "
                "only the minting account may create with it)"
            )
        if mime == SHORTCUT_MIME:
            raise _unusable_id("shortcuts cannot use generated ids")
        if mime.startswith(GOOGLE_APPS_PREFIX) and not mime.endswith(".folder"):
            raise ApiError(
                403,
                "insufficientFilePermissions",
                "Generated IDs are not supported for Docs Editors formats.",
            )

    def do_create(
        self,
        req: Request,
        meta: dict[str, Any],
        content: bytes | None,
        media_mime: str | None,
        template: FileRecord | None = None,
    ) -> FileRecord:
        """files.create (and copy, uploads): the id, parent and cap rules, then the record."""
        check_meta(meta, self.api.file_props, FILE_FIELDS_CREATE, update=False)
        st = self.api.state
        mime = meta.get("mimeType") or media_mime or "application/octet-stream"
        parent = self.parent_for(req, meta.get("parents"))
        fid = meta.get("id")
        if fid is not None:
            self.check_new_id(req, fid, mime)
        drive_id = parent.drive_id
        limit = self.api.config.drive_item_limit
        if drive_id is not None and st.drives[drive_id].items >= limit:
            raise ApiError(
                403,
                "teamDriveFileLimitExceeded",
                f"The file limit for this shared drive has been exceeded ({limit} items).",
            )
        if fid is None:
            fid = st.mint(1, req.account)[0]
        elif fid in st.files:  # misbehave=create-once: overwrite
            self._delete_tree(fid)
        t = now_ms()
        rec = FileRecord(
            id=fid,
            name=meta.get("name") or (template.name if template else "Untitled"),
            mime_type=mime,
            parents=[parent.id],
            created_ms=parse_time(meta["createdTime"]) if "createdTime" in meta else t,
            modified_ms=parse_time(meta["modifiedTime"]) if "modifiedTime" in meta else t,
            born=time.time(),
            description=meta.get("description"),
            starred=bool(meta.get("starred", False)),
            original_filename=meta.get("originalFilename"),
            owner=req.account,
            drive_id=drive_id,
        )
        if template is not None:
            rec.app_properties = dict(template.app_properties)
            rec.properties = dict(template.properties)
            rec.description = meta.get("description", template.description)
        merge_props(rec.app_properties, meta.get("appProperties"), "appProperties")
        merge_props(rec.properties, meta.get("properties"), "properties")
        if not mime.startswith(GOOGLE_APPS_PREFIX):
            rec.set_content(content or b"")
        if meta.get("trashed"):
            rec.trashed = rec.explicitly_trashed = True
            rec.trashed_ms = t
        st.add(rec)
        return rec

    # -- update ----------------------------------------------------------------------------------

    def update(self, req: Request, file_id: str) -> Response:
        sel = self.api.selection(req.query, "File", FILE_DEFAULT)
        meta = read_meta(req.body)
        with self.api.state.lock:
            rec = self.do_update(req, file_id, meta, None, req.query)
            return self.api.file_response(req, rec, sel, "files.update")

    def _new_parents(
        self, req: Request, rec: FileRecord, role: str, query: dict[str, str]
    ) -> list[str] | None:
        """The parents after ``addParents``/``removeParents``, or None when unchanged."""
        st = self.api.state
        adds = [p.strip() for p in query.get("addParents", "").split(",") if p.strip()]
        removes = [p.strip() for p in query.get("removeParents", "").split(",") if p.strip()]
        if not adds and not removes:
            return None
        remove_ids = {st.resolve(p, req.account) for p in removes}
        for p in remove_ids:
            if p not in rec.parents:
                raise bad_request(f"The parent {p} is not a parent of the file.", "invalid")
        new_parents = [p for p in rec.parents if p not in remove_ids]
        added: list[str] = []
        for p in adds:
            parent = get_file(st, req, p, "addParents")
            if not parent.is_folder:
                raise bad_request("The specified parent is not a folder.", "invalidParent")
            if parent.id == rec.id or parent.id in st.descendants(rec.id):
                raise bad_request(
                    "A folder cannot be moved into itself or its descendants.", "invalidParent"
                )
            if parent.drive_id != rec.drive_id:
                raise _across_drives()
            require_writer(st, req, parent)
            if parent.id not in new_parents:
                new_parents.append(parent.id)
                added.append(parent.id)
        if len(new_parents) > 1:
            if removes or role not in MOVERS:
                raise _too_many_parents()
            new_parents = added  # Drive moves the item when only addParents is given
        return new_parents

    def do_update(
        self,
        req: Request,
        file_id: str,
        meta: dict[str, Any],
        content: bytes | None,
        query: dict[str, str],
    ) -> FileRecord:
        check_meta(meta, self.api.file_props, FILE_FIELDS_UPDATE, update=True)
        st = self.api.state
        rec = get_file(st, req, file_id)
        if st.is_root(rec.id):
            raise ApiError(
                403, "insufficientFilePermissions", "The root folder cannot be modified."
            )
        role = require_writer(st, req, rec)
        new_parents = self._new_parents(req, rec, role, query)
        # All checks passed: apply.
        t = now_ms()
        bump_modified = False
        app = dict(rec.app_properties)
        props = dict(rec.properties)
        merge_props(app, meta.get("appProperties"), "appProperties")
        merge_props(props, meta.get("properties"), "properties")
        rec.app_properties, rec.properties = app, props
        if "name" in meta and meta["name"] is not None and meta["name"] != rec.name:
            rec.name = meta["name"]
            bump_modified = True
        if "description" in meta:
            rec.description = meta["description"]
            bump_modified = True
        if meta.get("mimeType"):
            rec.mime_type = meta["mimeType"]
        if "starred" in meta:
            rec.starred = bool(meta["starred"])
        if "originalFilename" in meta:
            rec.original_filename = meta["originalFilename"]
        if new_parents is not None:
            st.set_parents(rec, new_parents)
        if content is not None:
            rec.set_content(content)
            bump_modified = True
        if "trashed" in meta and bool(meta["trashed"]) != rec.explicitly_trashed:
            self._set_trashed(rec, bool(meta["trashed"]), t)
        if "modifiedTime" in meta:
            rec.modified_ms = parse_time(str(meta["modifiedTime"]))
        elif bump_modified:
            rec.modified_ms = t
        st.touch(rec)
        return rec

    def _set_trashed(self, rec: FileRecord, trashed: bool, t: int) -> None:
        """Trash (or restore) a file; a folder takes its descendants along."""
        st = self.api.state
        rec.trashed = trashed
        rec.explicitly_trashed = trashed
        rec.trashed_ms = t if trashed else None
        for kid_id in st.descendants(rec.id):
            kid = st.files[kid_id]
            if trashed and not kid.trashed:
                kid.trashed, kid.explicitly_trashed, kid.trashed_ms = True, False, t
                st.touch(kid)
            elif not trashed and kid.trashed and not kid.explicitly_trashed:
                kid.trashed, kid.trashed_ms = False, None
                st.touch(kid)

    # -- delete / copy -------------------------------------------------------------------------

    def delete(self, req: Request, file_id: str) -> Response:
        st = self.api.state
        with st.lock:
            rec = get_file(st, req, file_id)
            if st.is_root(rec.id):
                raise ApiError(
                    403, "insufficientFilePermissions", "The root folder cannot be deleted."
                )
            require_deleter(st, req, rec)
            self._delete_tree(rec.id)
        return empty_response()

    def _delete_tree(self, file_id: str) -> None:
        st = self.api.state
        for kid in reversed(st.descendants(file_id)):
            st.remove(kid)
        st.remove(file_id)

    def empty_trash(self, req: Request) -> Response:
        """The caller's own trashed items, or with ``driveId`` that drive's (organizers)."""
        st = self.api.state
        drive_id = req.query.get("driveId")
        with st.lock:
            if drive_id:
                drive = st.drives.get(drive_id)
                role = drive.members.get(req.account) if drive else None
                if role is None:
                    raise ApiError(404, "notFound", f"Shared drive not found: {drive_id}")
                if role != "organizer":
                    raise ApiError(
                        403,
                        "insufficientFilePermissions",
                        "Emptying a shared drive's trash needs the organizer role.",
                    )
            for rec in [r for r in st.files.values() if r.explicitly_trashed]:
                mine = rec.drive_id is None and rec.owner == req.account and not drive_id
                if (mine or (drive_id and rec.drive_id == drive_id)) and rec.id in st.files:
                    self._delete_tree(rec.id)
        return empty_response()

    def copy(self, req: Request, file_id: str) -> Response:
        sel = self.api.selection(req.query, "File", FILE_DEFAULT)
        meta = read_meta(req.body)
        with self.api.state.lock:
            src = get_file(self.api.state, req, file_id)
            if src.is_folder:
                raise ApiError(403, "cannotCopyFile", "This file cannot be copied by the user.")
            meta = dict(meta)
            meta.setdefault("name", f"Copy of {src.name}")
            if "parents" not in meta:
                meta["parents"] = list(src.parents)
            rec = self.do_create(req, meta, src.content, src.mime_type, template=src)
            return self.api.file_response(req, rec, sel, "files.copy")
