"""The change feed: ``changes.getStartPageToken`` and ``changes.list``, per log.

Drive keeps one change log per user and one per shared drive; changes to shared-drive
items go to the drive's log only (``driveId`` + ``supportsAllDrives=true`` to read it, and
membership, else 404). Tokens are positions in one sequence the fake shares between logs,
so a token from one log simply reads the other log from the same point. The users' log
shows an account the changes to files it can see (and every removal: a removed file's
visibility is gone with it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drivemr.testing.fakedrive.access import role_of
from drivemr.testing.fakedrive.errors import ApiError, drive_not_found, invalid_value
from drivemr.testing.fakedrive.fields import CHANGE_LIST_DEFAULT, apply_fields
from drivemr.testing.fakedrive.listing import page_size
from drivemr.testing.fakedrive.messages import Request, Response, json_response
from drivemr.testing.fakedrive.state import rfc3339

if TYPE_CHECKING:
    from drivemr.testing.fakedrive.api import DriveApi


class Changes:
    """changes.getStartPageToken and changes.list; read the state under its lock."""

    def __init__(self, api: DriveApi) -> None:
        self.api = api

    def _log(self, req: Request) -> str | None:
        """The shared drive whose log is asked for, or None for the users' log."""
        drive_id = req.query.get("driveId") or req.query.get("teamDriveId")
        if not drive_id:
            return None
        drive = self.api.state.drives.get(drive_id)
        if drive is None or req.account not in drive.members or not req.all_drives:
            raise drive_not_found(drive_id)
        return drive_id

    def start(self, req: Request) -> Response:
        sel = self.api.selection(req.query, "StartPageToken", {"*": None})
        with self.api.state.lock:
            self._log(req)
            token = str(self.api.state.next_seq)
        return json_response(
            200, apply_fields({"kind": "drive#startPageToken", "startPageToken": token}, sel)
        )

    def list(self, req: Request) -> Response:
        q = req.query
        sel = self.api.selection(q, "ChangeList", CHANGE_LIST_DEFAULT)
        token = q.get("pageToken")
        if token is None:
            raise ApiError(400, "required", "Required parameter: pageToken", location="pageToken")
        try:
            seq = int(token)
            if seq < 1:
                raise ValueError(token)
        except ValueError:
            raise invalid_value("pageToken", "not a change token") from None
        size = page_size(q)
        include_removed = q.get("includeRemoved", "true").lower() == "true"
        st = self.api.state
        changes: list[dict[str, Any]] = []
        with st.lock:
            drive_id = self._log(req)
            if self.api.config.misbehaves("changes"):
                body: dict[str, Any] = {"kind": "drive#changeList"}
                body["newStartPageToken"] = str(max(st.next_seq, seq))
                body["changes"] = []
                return json_response(200, apply_fields(body, sel))
            memo: dict[str, str | None] = {}
            cur = seq
            while len(changes) < size:
                entries, nxt = st.changes_since(cur, size - len(changes), drive_id)
                for _seq, fid, t, removed, _log in entries:
                    if removed and not include_removed:
                        continue
                    rec = st.files.get(fid)
                    if (
                        rec is not None
                        and not removed
                        and drive_id is None
                        and role_of(st, rec, req.account, memo) is None
                    ):
                        continue
                    ch: dict[str, Any] = {
                        "kind": "drive#change",
                        "type": "file",
                        "changeType": "file",
                        "time": rfc3339(t),
                        "removed": removed,
                        "fileId": fid,
                    }
                    if drive_id is not None:
                        ch["driveId"] = drive_id
                    if not removed and rec is not None:
                        ch["file"] = self.api.render(req, rec)
                    changes.append(ch)
                cur = nxt
                if not entries or nxt >= st.next_seq:
                    break
            more = cur < st.next_seq
            body = {"kind": "drive#changeList"}
            if more:
                body["nextPageToken"] = str(cur)
            else:
                body["newStartPageToken"] = str(max(st.next_seq, seq))
        body["changes"] = changes
        return json_response(200, apply_fields(body, sel))
