"""Uploads: ``uploadType=media``, ``multipart`` and ``resumable`` (sessions, chunks, 308).

A resumable upload starts with a POST (create) or PATCH (update) that answers a session URI
in ``Location``; the content then arrives in one or several PUTs with ``Content-Range``
(whole 256 KiB units except the last), each answered ``308 Resume Incomplete`` with the
``Range`` received so far, until the last one commits the file. Drive validates the
metadata when the session starts, so the fake refuses there what would fail at the end.
"""

from __future__ import annotations

import re
import secrets
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from drivemr.testing.fakedrive.access import get_file
from drivemr.testing.fakedrive.errors import ApiError, bad_request, invalid_value
from drivemr.testing.fakedrive.fields import FILE_DEFAULT, Selection
from drivemr.testing.fakedrive.messages import (
    Request,
    Response,
    bare_type,
    content_type_param,
    error_response,
    parse_multipart,
)
from drivemr.testing.fakedrive.metadata import (
    FILE_FIELDS_CREATE,
    FILE_FIELDS_UPDATE,
    check_meta,
    read_meta,
)

if TYPE_CHECKING:
    from drivemr.testing.fakedrive.api import DriveApi

CHUNK_UNIT = 256 * 1024
"""Resumable chunks must be multiples of 256 KiB, except the last."""


@dataclass
class UploadSession:
    """A resumable upload in progress (Drive keeps them for a week)."""

    id: str
    endpoint: str
    file_id: str | None
    meta: dict[str, Any]
    params: dict[str, str]
    mime: str | None
    declared_total: int | None
    created: float
    request: Request
    """The initiating call: who uploads, with which flags."""
    data: bytearray = field(default_factory=bytearray)
    total: int | None = None
    result: Response | None = None


def _replay(resp: Response, endpoint: str) -> Response:
    return Response(resp.status, resp.body, resp.content_type, list(resp.headers), False, endpoint)


class Uploads:
    """The ``/upload/drive/v3/files`` endpoints; sessions are guarded by the state lock."""

    def __init__(self, api: DriveApi) -> None:
        self.api = api
        self.sessions: dict[str, UploadSession] = {}

    def start(self, req: Request, file_id: str | None = None) -> Response:
        kind = req.query.get("uploadType")
        endpoint = "files.update" if file_id is not None else "files.create"
        if kind is None:
            raise bad_request(
                "Media upload requests must have an uploadType parameter.",
                "required",
                location="uploadType",
            )
        sel = self.api.selection(req.query, "File", FILE_DEFAULT)
        if kind == "media":
            mime = bare_type(req.headers.get("content-type"))
            return self._commit(req, endpoint, file_id, {}, req.body, mime, sel, req.query)
        if kind == "multipart":
            ctype = req.headers.get("content-type", "")
            boundary = content_type_param(ctype, "boundary")
            if not ctype.lower().startswith("multipart/related") or not boundary:
                raise bad_request(
                    "Multipart upload requests need a multipart/related body.", "badContent"
                )
            parts = parse_multipart(req.body, boundary.encode("latin-1"))
            if len(parts) != 2:
                raise bad_request(
                    "A multipart upload has exactly two parts: metadata, then media.",
                    "badContent",
                )
            meta = read_meta(parts[0][1])
            mime = bare_type(parts[1][0].get("content-type"))
            return self._commit(req, endpoint, file_id, meta, parts[1][1], mime, sel, req.query)
        if kind == "resumable":
            return self._open_session(req, endpoint, file_id)
        raise invalid_value("uploadType", f"unknown uploadType {kind!r}")

    def _open_session(self, req: Request, endpoint: str, file_id: str | None) -> Response:
        meta = read_meta(req.body)
        declared = req.headers.get("x-upload-content-length")
        total = None
        if declared is not None:
            try:
                total = int(declared)
            except ValueError:
                raise bad_request("Invalid X-Upload-Content-Length.") from None
        mime = bare_type(req.headers.get("x-upload-content-type"))
        writes = self.api.writes
        st = self.api.state
        with st.lock:
            # Refuse what would fail at the end now, as Drive validates at the start.
            if file_id is None:
                check_meta(meta, self.api.file_props, FILE_FIELDS_CREATE, update=False)
                writes.parent_for(req, meta.get("parents"))
                if meta.get("id") is not None:
                    writes.check_new_id(req, meta["id"], meta.get("mimeType") or mime or "")
            else:
                check_meta(meta, self.api.file_props, FILE_FIELDS_UPDATE, update=True)
                get_file(st, req, file_id)
            sid = secrets.token_urlsafe(24)
            self.sessions[sid] = UploadSession(
                id=sid,
                endpoint=endpoint,
                file_id=file_id,
                meta=meta,
                params=dict(req.query),
                mime=mime,
                declared_total=total,
                created=time.monotonic(),
                request=req,
            )
        path = "upload/drive/v3/files"
        if file_id is not None:
            path += "/" + urllib.parse.quote(file_id, safe="")
        location = f"{req.base_url}{path}?uploadType=resumable&upload_id={sid}"
        return Response(
            200,
            b"",
            content_type=None,
            headers=[("Location", location), ("X-GUploader-UploadID", sid)],
            endpoint=f"{endpoint}.resumable",
        )

    def _commit(
        self,
        req: Request,
        endpoint: str,
        file_id: str | None,
        meta: dict[str, Any],
        content: bytes,
        mime: str | None,
        sel: Selection,
        query: dict[str, str],
    ) -> Response:
        with self.api.state.lock:
            if file_id is None:
                rec = self.api.writes.do_create(req, meta, content, mime)
            else:
                rec = self.api.writes.do_update(req, file_id, meta, content, query)
            return self.api.file_response(req, rec, sel, endpoint)

    def chunk(self, req: Request, file_id: str | None = None) -> Response:
        """A PUT to a session URI: a chunk, the last chunk, or a status query."""
        sid = req.query.get("upload_id", "")
        with self.api.state.lock:
            sess = self.sessions.get(sid)
            ttl = self.api.config.upload_session_ttl
            if sess is not None and time.monotonic() - sess.created > ttl:
                del self.sessions[sid]
                sess = None
            if sess is None or sess.file_id != file_id:
                raise ApiError(404, "notFound", "Upload session not found or expired.")
            if sess.result is not None:
                return _replay(sess.result, "upload")  # a replay commits nothing
            self._receive(sess, req.headers.get("content-range"), req.body)
            if sess.total is not None and len(sess.data) == sess.total:
                return self._finish(sess)
            headers = []
            if sess.data:
                headers.append(("Range", f"bytes=0-{len(sess.data) - 1}"))
            return Response(308, b"", content_type=None, headers=headers, endpoint="upload")

    @staticmethod
    def _receive(sess: UploadSession, content_range: str | None, data: bytes) -> None:
        """Add a chunk to the session (Drive keeps whole 256 KiB units only)."""
        if content_range is None:
            sess.data = bytearray(data)
            sess.total = len(data)
        else:
            cr = content_range.strip()
            m_status = re.fullmatch(r"bytes \*/(\d+|\*)", cr)
            m_chunk = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", cr)
            if m_status:
                if data:
                    raise bad_request("A status query has no body.")
                if m_status.group(1) != "*":
                    sess.total = int(m_status.group(1))
            elif m_chunk:
                a, b = int(m_chunk.group(1)), int(m_chunk.group(2))
                if b < a or b - a + 1 != len(data):
                    raise bad_request("Content-Range does not match the body length.")
                if m_chunk.group(3) != "*":
                    total = int(m_chunk.group(3))
                    if b >= total:
                        raise bad_request("Content-Range end is beyond the total size.")
                    sess.total = total
                received = len(sess.data)
                if a <= received:
                    end = b + 1
                    final = sess.total is not None and end == sess.total
                    if not final:
                        end -= end % CHUNK_UNIT
                    if end > received:
                        sess.data += data[received - a : end - a]
            else:
                raise bad_request(f"Invalid Content-Range: {cr}")
        if (
            sess.declared_total is not None
            and sess.total is not None
            and sess.total != sess.declared_total
        ):
            raise bad_request("Upload size differs from X-Upload-Content-Length.")
        if sess.total is not None and len(sess.data) > sess.total:
            raise bad_request("More bytes received than the declared size.")

    def _finish(self, sess: UploadSession) -> Response:
        sel = self.api.selection(sess.params, "File", FILE_DEFAULT)
        try:
            resp = self._commit(
                sess.request,
                sess.endpoint,
                sess.file_id,
                sess.meta,
                bytes(sess.data),
                sess.mime,
                sel,
                sess.params,
            )
        except ApiError as err:
            resp = error_response(err, sess.endpoint)
        sess.result = resp
        sess.data = bytearray()
        return _replay(resp, sess.endpoint)
