"""What travels between the HTTP layer and the API handlers: requests, responses, MIME parts.

Kept apart from the handlers so that the server, the batch endpoint and every resource
module speak the same two small types, and so that the byte-exact multipart parsing (used
by multipart uploads and by batch) lives once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from drivemr.testing.fakedrive.errors import ApiError, bad_request

JSON_TYPE = "application/json; charset=UTF-8"
DEFAULT_ACCOUNT = "default"
"""The account of a request without an ``Authorization`` header."""

REASONS = {
    200: "OK",
    204: "No Content",
    206: "Partial Content",
    302: "Found",
    308: "Resume Incomplete",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    416: "Requested Range Not Satisfiable",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass
class Request:
    """One API call: what the HTTP layer (or a batch part) parsed."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    """Lower-cased header names."""
    body: bytes
    base_url: str
    """``http://host:port/``: where session URIs point."""

    @property
    def account(self) -> str:
        """The account this call acts as: the bearer token names it (any string will do)."""
        auth = self.headers.get("authorization", "").strip()
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return DEFAULT_ACCOUNT

    def flag(self, name: str) -> bool:
        """A boolean query parameter (already validated against the discovery document)."""
        return self.query.get(name, "false").lower() == "true"

    @property
    def all_drives(self) -> bool:
        """``supportsAllDrives`` (or its deprecated name ``supportsTeamDrives``)."""
        return self.flag("supportsAllDrives") or self.flag("supportsTeamDrives")


@dataclass
class Response:
    """What to send back; ``drop`` means close the connection without answering."""

    status: int
    body: bytes = b""
    content_type: str | None = JSON_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)
    drop: bool = False
    endpoint: str = ""


def json_response(status: int, obj: Any, endpoint: str = "") -> Response:
    return Response(status, json.dumps(obj, separators=(",", ":")).encode(), endpoint=endpoint)


def error_response(err: ApiError, endpoint: str = "") -> Response:
    headers = list(err.headers.items())
    if err.detail:
        headers.append(("X-Fake-Drive-Detail", err.detail.replace("\n", " ")[:500]))
    return Response(err.code, err.to_bytes(), headers=headers, endpoint=endpoint)


def empty_response(status: int = 204) -> Response:
    return Response(status, b"", content_type=None)


def parse_multipart(body: bytes, boundary: bytes) -> list[tuple[dict[str, str], bytes]]:
    """Split a MIME multipart body into (headers, payload) parts, byte-exact."""
    delim = b"--" + boundary
    start = body.find(delim)
    if start < 0:
        raise bad_request("Malformed multipart body: boundary not found.")
    pos = start + len(delim)
    parts: list[tuple[dict[str, str], bytes]] = []
    while True:
        if body.startswith(b"--", pos):
            return parts
        eol = body.find(b"\n", pos)
        if eol < 0:
            raise bad_request("Malformed multipart body: truncated.")
        pos = eol + 1
        nxt = body.find(b"\n" + delim, pos - 1)
        if nxt < 0:
            raise bad_request("Malformed multipart body: missing closing boundary.")
        end = nxt
        if end > pos and body[end - 1 : end] == b"\r":
            end -= 1
        raw = body[pos:end] if end > pos else b""
        parts.append(split_headers(raw))
        pos = nxt + 1 + len(delim)


def split_headers(raw: bytes) -> tuple[dict[str, str], bytes]:
    """Headers (lower-cased names) and payload of one MIME entity."""
    i1 = raw.find(b"\r\n\r\n")
    i2 = raw.find(b"\n\n")
    if raw.startswith(b"\r\n"):
        head, payload = b"", raw[2:]
    elif raw.startswith(b"\n"):
        head, payload = b"", raw[1:]
    elif i1 >= 0 and (i2 < 0 or i1 < i2):
        head, payload = raw[:i1], raw[i1 + 4 :]
    elif i2 >= 0:
        head, payload = raw[:i2], raw[i2 + 2 :]
    else:
        head, payload = raw, b""
    headers: dict[str, str] = {}
    last = None
    for line in head.decode("latin-1").splitlines():
        if not line.strip():
            continue
        if line[0] in " \t" and last:
            headers[last] += " " + line.strip()
            continue
        name, _, value = line.partition(":")
        last = name.strip().lower()
        headers[last] = value.strip()
    return headers, payload


def content_type_param(value: str, param: str) -> str | None:
    for piece in value.split(";")[1:]:
        k, _, v = piece.strip().partition("=")
        if k.strip().lower() == param:
            return v.strip().strip('"')
    return None


def bare_type(value: str | None) -> str | None:
    if not value:
        return None
    return value.split(";", 1)[0].strip() or None
