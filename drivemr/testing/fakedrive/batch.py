"""``POST /batch/drive/v3``: up to 100 calls in one multipart/mixed request.

Each part runs as its own call through :meth:`DriveApi.handle` (so faults, quota and
accounting apply per part) as the batch's account, and the answers come back as one
multipart/mixed body. Drive serves no media in a batch: an ``alt=media`` part is answered
``302 Found`` with a ``Location`` to fetch the content from directly; an upload part is a 400.
"""

from __future__ import annotations

import secrets
import urllib.parse
from typing import TYPE_CHECKING

from drivemr.testing.fakedrive.errors import ApiError, bad_request
from drivemr.testing.fakedrive.messages import (
    REASONS,
    Request,
    Response,
    content_type_param,
    error_response,
    parse_multipart,
    split_headers,
)

if TYPE_CHECKING:
    from drivemr.testing.fakedrive.api import DriveApi

MAX_BATCH = 100


class Batch:
    """Splits a batch, runs its parts, joins the answers. Stateless."""

    def __init__(self, api: DriveApi) -> None:
        self.api = api

    def run(self, req: Request) -> Response:
        ctype = req.headers.get("content-type", "")
        boundary = content_type_param(ctype, "boundary")
        if not ctype.lower().startswith("multipart/") or not boundary:
            raise bad_request("A batch request needs a multipart/mixed body.", "badContent")
        parts = parse_multipart(req.body, boundary.encode("latin-1"))
        if len(parts) > MAX_BATCH:
            raise bad_request(
                f"A batch request may hold at most {MAX_BATCH} calls.", "limitExceeded"
            )
        out_boundary = "batch_" + secrets.token_hex(12)
        chunks: list[bytes] = []
        drop = False
        for headers, payload in parts:
            cid = headers.get("content-id", "")
            resp = self._answer(req, payload)
            drop = drop or resp.drop
            reason = REASONS.get(resp.status, "Status")
            lines = [f"HTTP/1.1 {resp.status} {reason}"]
            if resp.content_type:
                lines.append(f"Content-Type: {resp.content_type}")
            for k, v in resp.headers:
                lines.append(f"{k}: {v}")
            lines.append(f"Content-Length: {len(resp.body)}")
            head = [f"--{out_boundary}", "Content-Type: application/http"]
            if cid:
                inner_id = cid[1:-1] if cid.startswith("<") and cid.endswith(">") else cid
                head.append(f"Content-ID: <response-{inner_id}>")
            chunks.append(
                ("\r\n".join(head) + "\r\n\r\n" + "\r\n".join(lines) + "\r\n\r\n").encode()
                + resp.body
                + b"\r\n"
            )
        chunks.append(f"--{out_boundary}--\r\n".encode())
        return Response(
            200,
            b"".join(chunks),
            content_type=f"multipart/mixed; boundary={out_boundary}",
            drop=drop,
            endpoint="batch",
        )

    def _answer(self, outer: Request, payload: bytes) -> Response:
        inner = self._inner_request(outer, payload)
        if isinstance(inner, ApiError):
            self.api.stats.count_call("unknown")
            return error_response(inner)
        if inner.query.get("alt") == "media":
            self.api.stats.count_call("files.get")
            target = outer.base_url.rstrip("/") + inner.path
            query = urllib.parse.urlencode(inner.query)
            return Response(
                302, b"", content_type=None, headers=[("Location", f"{target}?{query}")]
            )
        return self.api.handle(inner, top_level=False)

    @staticmethod
    def _inner_request(outer: Request, payload: bytes) -> Request | ApiError:
        """Parse one ``application/http`` part; it acts as the batch's account."""
        eol = payload.find(b"\n")
        if eol < 0:
            return bad_request("Malformed batch part.")
        request_line = payload[:eol].decode("latin-1").strip()
        bits = request_line.split()
        if len(bits) < 2:
            return bad_request("Malformed batch part request line.")
        method, target = bits[0].upper(), bits[1]
        headers, body = split_headers(payload[eol + 1 :])
        length = headers.get("content-length")
        if length is not None and length.isdigit():
            body = body[: int(length)]
        else:
            body = body.rstrip(b"\r\n")
        parsed = urllib.parse.urlsplit(target)
        if parsed.path.startswith(("/upload/", "/resumable/")):
            return bad_request("Media upload is not supported in batch requests.")
        if "authorization" not in headers and "authorization" in outer.headers:
            headers["authorization"] = outer.headers["authorization"]
        query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        return Request(method, parsed.path, query, headers, body, outer.base_url)
