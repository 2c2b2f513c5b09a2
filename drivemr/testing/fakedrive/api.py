"""The Drive v3 methods the fake serves, independent of the HTTP plumbing.

:class:`DriveApi` takes a parsed :class:`Request` and returns a :class:`Response`; the HTTP
server (:mod:`.server`) and the batch endpoint both feed it, so a call inside a batch is
handled exactly like the same call on its own. Fault injection (latency aside), the write
quota, lost acknowledgements and accounting live here too, so they apply per API call.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import random
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from drivemr.testing.fakedrive.errors import (
    ApiError,
    bad_request,
    field_not_writable,
    invalid_value,
    not_found,
)
from drivemr.testing.fakedrive.fields import (
    CHANGE_LIST_DEFAULT,
    FILE_DEFAULT,
    FILE_LIST_DEFAULT,
    FieldsSyntaxError,
    SchemaValidator,
    Selection,
    apply_fields,
    parse_fields,
)
from drivemr.testing.fakedrive.query import Context, QueryError, parse_query, parse_time
from drivemr.testing.fakedrive.state import (
    FOLDER_MIME,
    GOOGLE_APPS_PREFIX,
    SHORTCUT_MIME,
    DriveState,
    FileRecord,
    now_ms,
    rfc3339,
)

JSON_TYPE = "application/json; charset=UTF-8"
CHUNK_UNIT = 256 * 1024
"""Resumable chunks must be multiples of 256 KiB, except the last."""
PROPERTY_LIMIT = 124
"""Drive's limit on one (app)property: key plus value, UTF-8 bytes."""
MAX_PROPERTIES = 30
MAX_BATCH = 100
MAX_METADATA_BYTES = 1 << 20

READ_ENDPOINTS = frozenset(
    {
        "files.get",
        "files.list",
        "files.generateIds",
        "changes.list",
        "changes.getStartPageToken",
        "about.get",
    }
)
WRITE_ENDPOINTS = frozenset(
    {"files.create", "files.update", "files.delete", "files.copy", "files.emptyTrash"}
)

_FILE_FIELDS_CREATE = frozenset(
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
_FILE_FIELDS_UPDATE = _FILE_FIELDS_CREATE - {"id", "parents", "createdTime"}

_USER = {
    "kind": "drive#user",
    "displayName": "Fake Drive User",
    "me": True,
    "permissionId": "00000000000000000001",
    "emailAddress": "fake-drive-user@example.com",
}


# ---------------------------------------------------------------------------------------
# requests, responses, configuration, accounting


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


@dataclass
class FakeConfig:
    """Fault knobs; every field can be changed while the server runs."""

    latency_ms: float = 0.0
    write_rate: float | None = None
    """Sustained writes per second for the account; ``None`` = unlimited."""
    write_burst: float | None = None
    """Token-bucket size; default ``max(1, write_rate)``."""
    fault_rate: float = 0.0
    fault_codes: tuple[int, ...] = (500, 503, 429)
    lost_ack_rate: float = 0.0
    lost_ack_methods: tuple[str, ...] = ("files.create",)
    name_query_lag: float = 0.0
    auth_error: bool = False
    """Answer every API call with 401 authError, as Drive does once an access token
    expired or the grant was revoked."""
    short_page_rate: float = 0.0
    """Probability that a files.list page comes back short (even empty) with a next page
    token, as Drive documents it may."""
    upload_session_ttl: float = 7 * 86400.0
    max_body_bytes: int = 512 * 1024 * 1024
    seed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


CONFIG_KEYS = frozenset(f.name for f in fields(FakeConfig))


def coerce_config(key: str, value: Any) -> Any:
    """Validate one configuration value (from Python or from POST /_fake/config JSON)."""
    if key in ("fault_codes",):
        codes = tuple(int(c) for c in value)
        if not codes or any(c < 400 or c > 599 for c in codes):
            raise ValueError("fault_codes must be HTTP error codes")
        return codes
    if key == "lost_ack_methods":
        if isinstance(value, str):
            value = [value]
        return tuple(str(m) for m in value)
    if key in ("write_rate", "write_burst"):
        if value is None:
            return None
        v = float(value)
        if v <= 0:
            raise ValueError(f"{key} must be > 0 (or null for unlimited)")
        return v
    if key == "auth_error":
        return bool(value)
    if key == "seed":
        return None if value is None else int(value)
    if key == "max_body_bytes":
        return int(value)
    v = float(value)
    if key in ("fault_rate", "lost_ack_rate", "short_page_rate") and not 0.0 <= v <= 1.0:
        raise ValueError(f"{key} must be within [0, 1]")
    if v < 0:
        raise ValueError(f"{key} must be >= 0")
    return v


class TokenBucket:
    """Sustained-rate limiter: ``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(self, rate: float | None, burst: float | None) -> None:
        self._lock = threading.Lock()
        self.set(rate, burst)

    def set(self, rate: float | None, burst: float | None) -> None:
        with self._lock:
            self.rate = rate
            self.burst = burst if burst is not None else max(1.0, rate or 1.0)
            self.tokens = self.burst
            self.stamp = time.monotonic()

    def take(self) -> bool:
        if self.rate is None:
            return True
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            return False


class Stats:
    """Request accounting, as served by ``GET /_fake/stats``.

    ``requests`` counts HTTP requests to the API (a batch is one); ``calls`` counts API
    calls (each part of a batch is one); ``reads``/``writes``/``by_endpoint`` count calls.
    ``faults`` counts every injected fault: random errors (``fault_errors``), write-quota
    refusals (``rate_limited``) and dropped acknowledgements (``lost_acks``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.requests = 0
            self.calls = 0
            self.reads = 0
            self.writes = 0
            self.faults = 0
            self.fault_errors = 0
            self.rate_limited = 0
            self.lost_acks = 0
            self.errors = 0
            self.bytes_in = 0
            self.bytes_out = 0
            self.by_endpoint: dict[str, int] = {}
            self.by_status: dict[str, int] = {}

    def count_call(self, endpoint: str) -> None:
        with self._lock:
            self.calls += 1
            self.by_endpoint[endpoint] = self.by_endpoint.get(endpoint, 0) + 1
            if endpoint in READ_ENDPOINTS:
                self.reads += 1
            elif endpoint in WRITE_ENDPOINTS:
                self.writes += 1

    def count_request(self, nbytes_in: int) -> None:
        with self._lock:
            self.requests += 1
            self.bytes_in += nbytes_in

    def count_response(self, resp: Response) -> None:
        with self._lock:
            key = "dropped" if resp.drop else str(resp.status)
            self.by_status[key] = self.by_status.get(key, 0) + 1
            if resp.status >= 400:
                self.errors += 1
            self.bytes_out += len(resp.body)

    def count_fault(self, kind: str) -> None:
        with self._lock:
            self.faults += 1
            setattr(self, kind, getattr(self, kind) + 1)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "calls": self.calls,
                "reads": self.reads,
                "writes": self.writes,
                "faults": self.faults,
                "fault_errors": self.fault_errors,
                "rate_limited": self.rate_limited,
                "lost_acks": self.lost_acks,
                "errors": self.errors,
                "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out,
                "by_endpoint": dict(self.by_endpoint),
                "by_status": dict(self.by_status),
            }


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
    data: bytearray = field(default_factory=bytearray)
    total: int | None = None
    result: Response | None = None


# ---------------------------------------------------------------------------------------
# helpers


def _fault_error(code: int) -> ApiError:
    if code == 429:
        return ApiError(429, "rateLimitExceeded", "Rate Limit Exceeded", domain="usageLimits")
    if code == 403:
        return ApiError(
            403, "userRateLimitExceeded", "User Rate Limit Exceeded", domain="usageLimits"
        )
    if code == 503:
        return ApiError(503, "backendError", "Service Unavailable")
    if code == 502:
        return ApiError(502, "badGateway", "Bad Gateway")
    if code == 504:
        return ApiError(504, "backendError", "Gateway Timeout")
    if code >= 500:
        return ApiError(code, "backendError", "Backend Error")
    return ApiError(code, "badRequest", "Injected fault")


def _auth_error() -> ApiError:
    return ApiError(
        401,
        "authError",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, "
        "login cookie or other valid authentication credential.",
        location="Authorization",
        location_type="header",
        headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
    )


def _rate_limited() -> ApiError:
    return ApiError(
        403,
        "userRateLimitExceeded",
        "User rate limit exceeded. Rate of requests for user exceed configured project quota.",
        domain="usageLimits",
    )


def _natural_key(name: str) -> list[list[Any]]:
    return [
        [0, int(part)] if part.isdigit() else [1, part.lower()]
        for part in re.findall(r"\d+|\D+", name)
    ]


_ORDER_KEYS: dict[str, Callable[[FileRecord], Any]] = {
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


def _cmp(a: Any, b: Any) -> int:
    return (a > b) - (a < b)


def _parse_multipart(body: bytes, boundary: bytes) -> list[tuple[dict[str, str], bytes]]:
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
        parts.append(_split_headers(raw))
        pos = nxt + 1 + len(delim)


def _split_headers(raw: bytes) -> tuple[dict[str, str], bytes]:
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


def _content_type_param(value: str, param: str) -> str | None:
    for piece in value.split(";")[1:]:
        k, _, v = piece.strip().partition("=")
        if k.strip().lower() == param:
            return v.strip().strip('"')
    return None


def _bare_type(value: str | None) -> str | None:
    if not value:
        return None
    return value.split(";", 1)[0].strip() or None


# ---------------------------------------------------------------------------------------
# the API


class DriveApi:
    """Drive v3 over a :class:`DriveState`, with faults and accounting."""

    def __init__(self, state: DriveState, config: FakeConfig, discovery: dict[str, Any]) -> None:
        self.state = state
        self.config = config
        self.stats = Stats()
        self.sessions: dict[str, UploadSession] = {}
        self._cfg_lock = threading.Lock()
        self._rng = random.Random(config.seed)
        self._bucket = TokenBucket(config.write_rate, config.write_burst)
        self._validator = SchemaValidator(discovery["schemas"])
        self._file_props = frozenset(discovery["schemas"]["File"]["properties"])
        self._params = self._method_params(discovery)
        self._ctx = Context(root_id=state.root_id, me_email=str(_USER["emailAddress"]))

    # -- configuration ---------------------------------------------------------------------

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change fault knobs at runtime; unknown keys or bad values raise ValueError."""
        unknown = set(changes) - CONFIG_KEYS
        if unknown:
            raise ValueError(f"unknown fake-drive setting(s): {', '.join(sorted(unknown))}")
        coerced = {k: coerce_config(k, v) for k, v in changes.items()}
        with self._cfg_lock:
            for k, v in coerced.items():
                setattr(self.config, k, v)
            if "write_rate" in coerced or "write_burst" in coerced:
                self._bucket.set(self.config.write_rate, self.config.write_burst)
            if "seed" in coerced:
                self._rng = random.Random(self.config.seed)
            return self.config.as_dict()

    # -- discovery-driven parameter checks ---------------------------------------------------

    @staticmethod
    def _method_params(doc: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
        common = doc.get("parameters", {})
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for res_name, res in doc.get("resources", {}).items():
            for m_name, m in res.get("methods", {}).items():
                allowed = dict(common)
                allowed.update(m.get("parameters", {}))
                out[f"{res_name}.{m_name}"] = allowed
        return out

    def _check_params(self, endpoint: str, query: dict[str, str], path_params: set[str]) -> None:
        allowed = self._params.get(endpoint, {})
        for key, value in query.items():
            spec = allowed.get(key)
            if spec is None or key in path_params:
                raise ApiError(
                    400,
                    "invalid",
                    f'Invalid JSON payload received. Unknown name "{key}": Cannot bind query '
                    f"parameter. Field '{key}' could not be found in request message.",
                )
            kind = spec.get("type")
            if kind == "integer":
                try:
                    int(value)
                except ValueError:
                    raise ApiError(
                        400,
                        "invalid",
                        f"Invalid value at '{key}' (TYPE_INT32), \"{value}\"",
                        location=key,
                    ) from None
            elif kind == "boolean" and value.lower() not in ("true", "false"):
                raise ApiError(
                    400,
                    "invalid",
                    f"Invalid value at '{key}' (TYPE_BOOL), \"{value}\"",
                    location=key,
                )
            enum = spec.get("enum")
            if enum and value not in enum:
                raise invalid_value(key, f"{key} must be one of {enum}")
        if query.get("alt") == "proto":
            raise invalid_value("alt", "alt=proto is not modelled by the fake")

    def _selection(self, query: dict[str, str], schema: str, default: Selection) -> Selection:
        text = query.get("fields")
        if text is None:
            return default
        try:
            sel = parse_fields(text)
        except FieldsSyntaxError as exc:
            raise ApiError(
                400,
                "invalidParameter",
                f"Invalid field selection {text}",
                location="fields",
                detail=str(exc),
            ) from None
        self._validator.validate(sel, schema)
        return sel

    # -- entry points ----------------------------------------------------------------------

    def handle(self, req: Request, top_level: bool = True) -> Response:
        """Serve one API call (a plain request or one part of a batch)."""
        if top_level:
            self.stats.count_request(len(req.body))
        if (
            req.method == "POST"
            and req.headers.get("x-http-method-override", "").upper() == "GET"
            and req.body
        ):
            form = urllib.parse.parse_qsl(req.body.decode("utf-8", "replace"), True)
            merged = dict(req.query)
            merged.update(form)
            req = Request("GET", req.path, merged, req.headers, b"", req.base_url)
        try:
            endpoint, fn, args, path_params = self._route(req)
        except ApiError as err:
            self.stats.count_call("unknown")
            resp = error_response(err, "unknown")
            self.stats.count_response(resp)
            return resp
        self.stats.count_call(endpoint)
        resp = self._run(endpoint, fn, args, path_params, req)
        resp.endpoint = resp.endpoint or endpoint
        self.stats.count_response(resp)
        return resp

    def _run(
        self,
        endpoint: str,
        fn: Callable[..., Response],
        args: tuple[Any, ...],
        path_params: set[str] | None,
        req: Request,
    ) -> Response:
        cfg = self.config
        try:
            if path_params is not None:  # None: an upload session PUT, checked by itself
                self._check_params(endpoint, req.query, path_params)
                if req.query.get("alt") == "media" and endpoint != "files.get":
                    raise invalid_value("alt", "alt=media is only served by files.get")
            if cfg.auth_error:
                raise _auth_error()
            if cfg.fault_rate > 0 and self._rng.random() < cfg.fault_rate:
                self.stats.count_fault("fault_errors")
                raise _fault_error(self._rng.choice(cfg.fault_codes))
            if endpoint in WRITE_ENDPOINTS and not self._bucket.take():
                self.stats.count_fault("rate_limited")
                raise _rate_limited()
            resp = fn(req, *args)
        except ApiError as err:
            return error_response(err, endpoint)
        ack_endpoint = resp.endpoint or endpoint
        if (
            resp.status < 300
            and cfg.lost_ack_rate > 0
            and ack_endpoint in cfg.lost_ack_methods
            and self._rng.random() < cfg.lost_ack_rate
        ):
            self.stats.count_fault("lost_acks")
            resp.drop = True
        return resp

    def _route(
        self, req: Request
    ) -> tuple[str, Callable[..., Response], tuple[Any, ...], set[str] | None]:
        """(endpoint, handler, handler args, path parameters) for a request."""
        path = req.path
        m = req.method
        prefix = ""
        if path.startswith("/upload/drive/v3/"):
            prefix, rest = "upload", path[len("/upload/drive/v3/") :]
        elif path.startswith("/resumable/upload/drive/v3/"):
            prefix, rest = "upload", path[len("/resumable/upload/drive/v3/") :]
        elif path.startswith("/drive/v3/"):
            rest = path[len("/drive/v3/") :]
        else:
            raise ApiError(404, "notFound", f"Not Found: {path}")
        segs = [urllib.parse.unquote(s) for s in rest.split("/")] if rest else []
        if prefix == "upload":
            if not segs or segs[0] != "files" or len(segs) > 2:
                raise ApiError(404, "notFound", f"Not Found: {path}")
            fid = segs[1] if len(segs) == 2 else None
            if m == "PUT" and "upload_id" in req.query:
                return "upload", self._upload_chunk, (fid,), None
            if m == "POST" and fid is None:
                return "files.create", self._upload_start, (None,), set()
            if m == "PATCH" and fid is not None:
                return "files.update", self._upload_start, (fid,), {"fileId"}
            raise ApiError(404, "notFound", f"Not Found: {m} {path}")
        route: tuple[str, Callable[..., Response], tuple[Any, ...]] | None = None
        if segs == ["files"]:
            if m == "GET":
                route = ("files.list", self._files_list, ())
            elif m == "POST":
                route = ("files.create", self._files_create, ())
        elif segs == ["files", "generateIds"] and m == "GET":
            route = ("files.generateIds", self._files_generate_ids, ())
        elif segs == ["files", "trash"] and m == "DELETE":
            route = ("files.emptyTrash", self._files_empty_trash, ())
        elif len(segs) == 2 and segs[0] == "files":
            fid = segs[1]
            if m == "GET":
                route = ("files.get", self._files_get, (fid,))
            elif m == "PATCH":
                route = ("files.update", self._files_update, (fid,))
            elif m == "DELETE":
                route = ("files.delete", self._files_delete, (fid,))
        elif len(segs) == 3 and segs[0] == "files" and segs[2] == "copy" and m == "POST":
            route = ("files.copy", self._files_copy, (segs[1],))
        elif segs == ["changes"] and m == "GET":
            route = ("changes.list", self._changes_list, ())
        elif segs == ["changes", "startPageToken"] and m == "GET":
            route = ("changes.getStartPageToken", self._changes_start, ())
        elif segs == ["about"] and m == "GET":
            route = ("about.get", self._about_get, ())
        if route is None:
            if segs and segs[0] in self._resources():
                raise ApiError(
                    501,
                    "notImplemented",
                    f"{m} /drive/v3/{rest} is a Drive method the fake does not model.",
                )
            raise ApiError(404, "notFound", f"Not Found: {m} {path}")
        path_params = {"fileId"} if len(segs) >= 2 and segs[0] == "files" else set()
        if route[0] in ("files.generateIds", "files.emptyTrash"):
            path_params = set()
        return (*route, path_params)

    def _resources(self) -> set[str]:
        return {k.split(".", 1)[0] for k in self._params}

    # -- rendering -------------------------------------------------------------------------

    def render(self, rec: FileRecord) -> dict[str, Any]:
        """The full File resource Drive would report for ``rec``."""
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
            "owners": [dict(_USER)],
            "lastModifyingUser": dict(_USER),
            "shared": False,
            "ownedByMe": True,
            "writersCanShare": True,
            "viewersCanCopyContent": True,
            "copyRequiresWriterPermission": False,
            "isAppAuthorized": True,
            "permissionIds": [str(_USER["permissionId"])],
            "quotaBytesUsed": str(len(rec.content or b"")),
            "capabilities": {
                "canEdit": True,
                "canDelete": rec.id != self.state.root_id,
                "canTrash": rec.id != self.state.root_id,
                "canRename": rec.id != self.state.root_id,
                "canDownload": rec.content is not None,
                "canAddChildren": rec.is_folder,
                "canListChildren": rec.is_folder,
            },
        }
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
            d["trashingUser"] = dict(_USER)
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

    # -- body checks -----------------------------------------------------------------------

    def _read_meta(self, raw: bytes) -> dict[str, Any]:
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

    def _check_meta(self, meta: dict[str, Any], writable: frozenset[str], update: bool) -> None:
        for key in meta:
            if key not in self._file_props:
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
                props = meta[key]
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
        for key in ("modifiedTime", "createdTime", "viewedByMeTime"):
            if key in meta:
                try:
                    parse_time(str(meta[key]))
                except QueryError:
                    raise bad_request(f"Invalid value for {key}.", "invalid") from None

    @staticmethod
    def _merge_props(have: dict[str, str], patch: dict[str, Any] | None, kind: str) -> None:
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

    def _get(self, file_id: str, location: str = "fileId") -> FileRecord:
        rec = self.state.files.get(self.state.resolve(file_id))
        if rec is None:
            raise not_found(file_id, location)
        return rec

    def _parent_for(self, parents: list[str] | None) -> list[str]:
        if not parents:
            return [self.state.root_id]
        if len(parents) > 1:
            raise ApiError(
                403,
                "cannotAddParent",
                "Increasing the number of parents is not allowed.",
            )
        parent = self._get(parents[0], "parents")
        if not parent.is_folder:
            raise bad_request("The specified parent is not a folder.", "invalidParent")
        return [parent.id]

    # -- create ------------------------------------------------------------------------------

    def _do_create(
        self,
        meta: dict[str, Any],
        content: bytes | None,
        media_mime: str | None,
        template: FileRecord | None = None,
    ) -> FileRecord:
        """files.create (and copy): the id rule, the parent rule, then the new record."""
        self._check_meta(meta, _FILE_FIELDS_CREATE, update=False)
        st = self.state
        mime = meta.get("mimeType") or media_mime or "application/octet-stream"
        with st.lock:
            parents = self._parent_for(meta.get("parents"))
            fid = meta.get("id")
            if fid is not None:
                if fid in st.used:
                    raise ApiError(409, "duplicate", "A file already exists with the provided ID.")
                if fid not in st.minted:
                    raise ApiError(
                        400,
                        "invalid",
                        "The provided file ID is not usable.",
                        location="file.id",
                        location_type="other",
                    )
                if mime == SHORTCUT_MIME:
                    raise ApiError(400, "invalid", "The provided file ID is not usable.")
                if mime.startswith(GOOGLE_APPS_PREFIX) and mime != FOLDER_MIME:
                    raise ApiError(
                        403,
                        "insufficientFilePermissions",
                        "Generated IDs are not supported for Docs Editors formats.",
                    )
            else:
                fid = st.mint(1)[0]
            t = now_ms()
            rec = FileRecord(
                id=fid,
                name=meta.get("name") or (template.name if template else "Untitled"),
                mime_type=mime,
                parents=parents,
                created_ms=parse_time(meta["createdTime"]) if "createdTime" in meta else t,
                modified_ms=parse_time(meta["modifiedTime"]) if "modifiedTime" in meta else t,
                born=time.time(),
                description=meta.get("description"),
                starred=bool(meta.get("starred", False)),
                original_filename=meta.get("originalFilename"),
            )
            if template is not None:
                rec.app_properties = dict(template.app_properties)
                rec.properties = dict(template.properties)
                rec.description = meta.get("description", template.description)
            self._merge_props(rec.app_properties, meta.get("appProperties"), "appProperties")
            self._merge_props(rec.properties, meta.get("properties"), "properties")
            if not mime.startswith(GOOGLE_APPS_PREFIX):
                rec.set_content(content or b"")
            if meta.get("trashed"):
                rec.trashed = rec.explicitly_trashed = True
                rec.trashed_ms = t
            st.add(rec)
            return rec

    def _file_response(self, rec: FileRecord, sel: Selection, endpoint: str) -> Response:
        return json_response(200, apply_fields(self.render(rec), sel), endpoint)

    def _files_create(self, req: Request) -> Response:
        sel = self._selection(req.query, "File", FILE_DEFAULT)
        meta = self._read_meta(req.body)
        with self.state.lock:
            rec = self._do_create(meta, None, None)
            return self._file_response(rec, sel, "files.create")

    # -- uploads -------------------------------------------------------------------------------

    def _upload_start(self, req: Request, file_id: str | None) -> Response:
        kind = req.query.get("uploadType")
        endpoint = "files.update" if file_id is not None else "files.create"
        if kind is None:
            raise bad_request(
                "Media upload requests must have an uploadType parameter.",
                "required",
                location="uploadType",
            )
        sel = self._selection(req.query, "File", FILE_DEFAULT)
        if kind == "media":
            mime = _bare_type(req.headers.get("content-type"))
            return self._commit(endpoint, file_id, {}, req.body, mime, sel, req.query)
        if kind == "multipart":
            ctype = req.headers.get("content-type", "")
            boundary = _content_type_param(ctype, "boundary")
            if not ctype.lower().startswith("multipart/related") or not boundary:
                raise bad_request(
                    "Multipart upload requests need a multipart/related body.", "badContent"
                )
            parts = _parse_multipart(req.body, boundary.encode("latin-1"))
            if len(parts) != 2:
                raise bad_request(
                    "A multipart upload has exactly two parts: metadata, then media.",
                    "badContent",
                )
            meta = self._read_meta(parts[0][1])
            mime = _bare_type(parts[1][0].get("content-type"))
            return self._commit(endpoint, file_id, meta, parts[1][1], mime, sel, req.query)
        if kind == "resumable":
            meta = self._read_meta(req.body)
            declared = req.headers.get("x-upload-content-length")
            total = None
            if declared is not None:
                try:
                    total = int(declared)
                except ValueError:
                    raise bad_request("Invalid X-Upload-Content-Length.") from None
            mime = _bare_type(req.headers.get("x-upload-content-type"))
            with self.state.lock:
                # Refuse what would fail at the end now, as Drive validates at the start.
                if file_id is None:
                    self._check_meta(meta, _FILE_FIELDS_CREATE, update=False)
                    self._parent_for(meta.get("parents"))
                    fid = meta.get("id")
                    if fid is not None and fid in self.state.used:
                        raise ApiError(
                            409, "duplicate", "A file already exists with the provided ID."
                        )
                    if fid is not None and fid not in self.state.minted:
                        raise ApiError(400, "invalid", "The provided file ID is not usable.")
                else:
                    self._check_meta(meta, _FILE_FIELDS_UPDATE, update=True)
                    self._get(file_id)
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
        raise invalid_value("uploadType", f"unknown uploadType {kind!r}")

    def _commit(
        self,
        endpoint: str,
        file_id: str | None,
        meta: dict[str, Any],
        content: bytes,
        mime: str | None,
        sel: Selection,
        query: dict[str, str],
    ) -> Response:
        with self.state.lock:
            if file_id is None:
                rec = self._do_create(meta, content, mime)
            else:
                rec = self._do_update(file_id, meta, content, query)
            return self._file_response(rec, sel, endpoint)

    def _upload_chunk(self, req: Request, file_id: str | None) -> Response:
        sid = req.query.get("upload_id", "")
        with self.state.lock:
            sess = self.sessions.get(sid)
            if (
                sess is not None
                and time.monotonic() - sess.created > self.config.upload_session_ttl
            ):
                del self.sessions[sid]
                sess = None
            if sess is None or sess.file_id != file_id:
                raise ApiError(404, "notFound", "Upload session not found or expired.")
            if sess.result is not None:
                return self._replay(sess.result, "upload")  # a replay commits nothing
            cr = req.headers.get("content-range")
            data = req.body
            if cr is None:
                sess.data = bytearray(data)
                sess.total = len(data)
            else:
                cr = cr.strip()
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
                            end -= end % CHUNK_UNIT  # Drive keeps whole 256 KiB units only
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
            if sess.total is not None and len(sess.data) == sess.total:
                sel = self._selection(sess.params, "File", FILE_DEFAULT)
                try:
                    resp = self._commit(
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
                return self._replay(resp, sess.endpoint)
            headers = []
            if sess.data:
                headers.append(("Range", f"bytes=0-{len(sess.data) - 1}"))
            return Response(308, b"", content_type=None, headers=headers, endpoint="upload")

    @staticmethod
    def _replay(resp: Response, endpoint: str) -> Response:
        return Response(
            resp.status, resp.body, resp.content_type, list(resp.headers), False, endpoint
        )

    # -- get / download ------------------------------------------------------------------------

    def _files_get(self, req: Request, file_id: str) -> Response:
        if req.query.get("alt") == "media":
            return self._download(req, file_id)
        sel = self._selection(req.query, "File", FILE_DEFAULT)
        with self.state.lock:
            rec = self._get(file_id)
            full = self.render(rec)
        return json_response(200, apply_fields(full, sel))

    def _download(self, req: Request, file_id: str) -> Response:
        with self.state.lock:
            rec = self._get(file_id)
            content = rec.content
            mime = rec.mime_type
            md5 = rec.md5
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
        if rng:
            m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", rng)
            if not m or (m.group(1) == "" and m.group(2) == ""):
                raise bad_request(f"Invalid Range header: {rng}")
            if m.group(1) == "":
                n = int(m.group(2))
                start, end = max(0, total - n), total - 1
            else:
                start = int(m.group(1))
                end = int(m.group(2)) if m.group(2) else total - 1
                end = min(end, total - 1)
            if start >= total or start > end:
                return Response(
                    416,
                    ApiError(
                        416, "requestedRangeNotSatisfiable", "Request range not satisfiable"
                    ).to_bytes(),
                    headers=[("Content-Range", f"bytes */{total}")],
                )
            headers.append(("Content-Range", f"bytes {start}-{end}/{total}"))
            return Response(206, content[start : end + 1], content_type=mime, headers=headers)
        return Response(200, content, content_type=mime, headers=headers)

    # -- update ----------------------------------------------------------------------------------

    def _do_update(
        self,
        file_id: str,
        meta: dict[str, Any],
        content: bytes | None,
        query: dict[str, str],
    ) -> FileRecord:
        self._check_meta(meta, _FILE_FIELDS_UPDATE, update=True)
        st = self.state
        with st.lock:
            rec = self._get(file_id)
            if rec.id == st.root_id:
                raise ApiError(
                    403, "insufficientFilePermissions", "The root folder cannot be modified."
                )
            adds = [p for p in query.get("addParents", "").split(",") if p.strip()]
            removes = [p for p in query.get("removeParents", "").split(",") if p.strip()]
            new_parents: list[str] | None = None
            if adds or removes:
                remove_ids = {st.resolve(p.strip()) for p in removes}
                for p in remove_ids:
                    if p not in rec.parents:
                        raise bad_request(f"The parent {p} is not a parent of the file.", "invalid")
                new_parents = [p for p in rec.parents if p not in remove_ids]
                for p in adds:
                    parent = self._get(p.strip(), "addParents")
                    if not parent.is_folder:
                        raise bad_request("The specified parent is not a folder.", "invalidParent")
                    if parent.id == rec.id or parent.id in st.descendants(rec.id):
                        raise bad_request(
                            "A folder cannot be moved into itself or its descendants.",
                            "invalidParent",
                        )
                    if parent.id not in new_parents:
                        new_parents.append(parent.id)
                if len(new_parents) > 1:
                    raise ApiError(
                        403,
                        "cannotAddParent",
                        "Increasing the number of parents is not allowed.",
                    )
            # All checks passed: apply.
            t = now_ms()
            bump_modified = False
            app = dict(rec.app_properties)
            props = dict(rec.properties)
            self._merge_props(app, meta.get("appProperties"), "appProperties")
            self._merge_props(props, meta.get("properties"), "properties")
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
        st = self.state
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

    def _files_update(self, req: Request, file_id: str) -> Response:
        sel = self._selection(req.query, "File", FILE_DEFAULT)
        meta = self._read_meta(req.body)
        with self.state.lock:
            rec = self._do_update(file_id, meta, None, req.query)
            return self._file_response(rec, sel, "files.update")

    # -- delete / copy -------------------------------------------------------------------------

    def _files_delete(self, req: Request, file_id: str) -> Response:
        st = self.state
        with st.lock:
            rec = self._get(file_id)
            if rec.id == st.root_id:
                raise ApiError(
                    403, "insufficientFilePermissions", "The root folder cannot be deleted."
                )
            self._delete_tree(rec.id)
        return Response(204, b"", content_type=None)

    def _delete_tree(self, file_id: str) -> None:
        st = self.state
        for kid in reversed(st.descendants(file_id)):
            st.remove(kid)
        st.remove(file_id)

    def _files_empty_trash(self, req: Request) -> Response:
        st = self.state
        with st.lock:
            for rec in [r for r in st.files.values() if r.explicitly_trashed]:
                if rec.id in st.files:
                    self._delete_tree(rec.id)
        return Response(204, b"", content_type=None)

    def _files_copy(self, req: Request, file_id: str) -> Response:
        sel = self._selection(req.query, "File", FILE_DEFAULT)
        meta = self._read_meta(req.body)
        with self.state.lock:
            src = self._get(file_id)
            if src.is_folder:
                raise ApiError(403, "cannotCopyFile", "This file cannot be copied by the user.")
            meta = dict(meta)
            meta.setdefault("name", f"Copy of {src.name}")
            if "parents" not in meta:
                meta["parents"] = list(src.parents)
            rec = self._do_create(meta, src.content, src.mime_type, template=src)
            return self._file_response(rec, sel, "files.copy")

    # -- generateIds, about ------------------------------------------------------------------

    def _files_generate_ids(self, req: Request) -> Response:
        sel = self._selection(req.query, "GeneratedIds", {"*": None})
        count = int(req.query.get("count", "10"))
        if not 1 <= count <= 1000:
            raise invalid_value("count", "count must be within 1..1000")
        space = req.query.get("space", "drive")
        if space not in ("drive", "appDataFolder"):
            raise invalid_value("space")
        kind = req.query.get("type", "files")
        if kind not in ("files", "shortcuts"):
            raise invalid_value("type")
        with self.state.lock:
            ids = self.state.mint(count)
        body = {"kind": "drive#generatedIds", "space": space, "ids": ids}
        return json_response(200, apply_fields(body, sel))

    def _about_get(self, req: Request) -> Response:
        if "fields" not in req.query:
            raise ApiError(
                400,
                "required",
                "The 'fields' parameter is required for this method.",
                location="fields",
            )
        sel = self._selection(req.query, "About", {})
        with self.state.lock:
            usage = sum(len(r.content or b"") for r in self.state.files.values())
            trash = sum(len(r.content or b"") for r in self.state.files.values() if r.trashed)
        body = {
            "kind": "drive#about",
            "user": dict(_USER),
            "storageQuota": {
                "limit": str(15 * 1024**3),
                "usage": str(usage),
                "usageInDrive": str(usage),
                "usageInDriveTrash": str(trash),
            },
            "maxUploadSize": "5497558138880",
            "appInstalled": False,
            "canCreateDrives": False,
        }
        return json_response(200, apply_fields(body, sel))

    # -- list --------------------------------------------------------------------------------

    @staticmethod
    def _page_size(query: dict[str, str]) -> int:
        size = int(query.get("pageSize", "100"))
        if size < 1:
            raise invalid_value("pageSize", "pageSize must be >= 1")
        return min(size, 1000)

    def _files_list(self, req: Request) -> Response:
        q = req.query
        sel = self._selection(q, "FileList", FILE_LIST_DEFAULT)
        size = self._page_size(q)
        text = q.get("q", "")
        try:
            query = parse_query(text)
        except QueryError as exc:
            raise invalid_value("q", str(exc)) from None
        order_text = q.get("orderBy", "")
        order: list[tuple[Callable[[FileRecord], Any], bool]] = []
        for item in (s.strip() for s in order_text.split(",")):
            if not item:
                continue
            words = item.split()
            if len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
                raise invalid_value("orderBy", f"bad sort key {item!r}")
            keyf = _ORDER_KEYS.get(words[0])
            if keyf is None:
                raise invalid_value("orderBy", f"unknown sort key {words[0]!r}")
            order.append((keyf, len(words) == 2 and words[1].lower() == "desc"))
        if q.get("driveId"):
            raise ApiError(
                404, "notFound", f"Shared drive not found: {q['driveId']}", location="driveId"
            )
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
        st = self.state
        lag = self.config.name_query_lag if query.uses_name else 0.0
        now = time.time()

        def sort_key(rec: FileRecord) -> list[Any]:
            return [f(rec) for f, _ in order]

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
            if query.parent is not None:
                pid = st.resolve(query.parent)
                candidates = [st.files[i] for i in st.children.get(pid, ()) if i in st.files]
            else:
                candidates = [r for r in st.files.values() if r.id != st.root_id]
            if "drive" not in spaces:
                candidates = []
            hits: list[tuple[list[Any], str, FileRecord]] = [
                (sort_key(r), r.id, r)
                for r in candidates
                if query.matches(r, self._ctx) and not (lag and now - r.born < lag)
            ]
            hits.sort(key=functools.cmp_to_key(compare_hits))
            if cursor is not None:
                hits = [h for h in hits if compare((h[0], h[1]), cursor) > 0]
            page = hits[:size]
            more = len(hits) > size
            rate = self.config.short_page_rate
            if rate > 0 and len(page) > 1 and self._rng.random() < rate:
                # "The service may return fewer than this value": a short (even empty)
                # page that still has a next page token.
                page = page[: self._rng.randrange(len(page))]
                more = True
            files = [self.render(h[2]) for h in page]
        body: dict[str, Any] = {"kind": "drive#fileList", "incompleteSearch": False}
        if more:
            after: tuple[Any, Any] = (page[-1][0], page[-1][1]) if page else (None, None)
            if not page and cursor is not None:
                after = cursor
            raw = json.dumps({"h": digest, "k": after[0], "i": after[1]}, separators=(",", ":"))
            body["nextPageToken"] = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
        body["files"] = files
        return json_response(200, apply_fields(body, sel))

    # -- changes -------------------------------------------------------------------------------

    def _changes_start(self, req: Request) -> Response:
        sel = self._selection(req.query, "StartPageToken", {"*": None})
        if req.query.get("driveId"):
            raise ApiError(404, "notFound", f"Shared drive not found: {req.query['driveId']}")
        with self.state.lock:
            token = str(self.state.next_seq)
        return json_response(
            200, apply_fields({"kind": "drive#startPageToken", "startPageToken": token}, sel)
        )

    def _changes_list(self, req: Request) -> Response:
        q = req.query
        sel = self._selection(q, "ChangeList", CHANGE_LIST_DEFAULT)
        token = q.get("pageToken")
        if token is None:
            raise ApiError(400, "required", "Required parameter: pageToken", location="pageToken")
        try:
            seq = int(token)
            if seq < 1:
                raise ValueError(token)
        except ValueError:
            raise invalid_value("pageToken", "not a change token") from None
        size = self._page_size(q)
        include_removed = q.get("includeRemoved", "true").lower() == "true"
        if q.get("driveId"):
            raise ApiError(404, "notFound", f"Shared drive not found: {q['driveId']}")
        st = self.state
        changes: list[dict[str, Any]] = []
        with st.lock:
            cur = seq
            while len(changes) < size:
                entries, nxt = st.changes_since(cur, size - len(changes))
                for _seq, fid, t, removed in entries:
                    if removed and not include_removed:
                        continue
                    ch: dict[str, Any] = {
                        "kind": "drive#change",
                        "type": "file",
                        "changeType": "file",
                        "time": rfc3339(t),
                        "removed": removed,
                        "fileId": fid,
                    }
                    rec = st.files.get(fid)
                    if not removed and rec is not None:
                        ch["file"] = self.render(rec)
                    changes.append(ch)
                cur = nxt
                if not entries or nxt >= st.next_seq:
                    break
            more = cur < st.next_seq
            body: dict[str, Any] = {"kind": "drive#changeList"}
            if more:
                body["nextPageToken"] = str(cur)
            else:
                body["newStartPageToken"] = str(max(st.next_seq, seq))
        body["changes"] = changes
        return json_response(200, apply_fields(body, sel))

    # -- batch -------------------------------------------------------------------------------

    def handle_batch(self, req: Request) -> Response:
        """``POST /batch/drive/v3``: run each part as its own call, answer multipart/mixed."""
        self.stats.count_request(len(req.body))
        self.stats.count_call("batch")
        try:
            resp = self._batch(req)
        except ApiError as err:
            resp = error_response(err, "batch")
        self.stats.count_response(resp)
        return resp

    def _batch(self, req: Request) -> Response:
        cfg = self.config
        if cfg.auth_error:
            raise _auth_error()
        if cfg.fault_rate > 0 and self._rng.random() < cfg.fault_rate:
            self.stats.count_fault("fault_errors")
            raise _fault_error(self._rng.choice(cfg.fault_codes))
        ctype = req.headers.get("content-type", "")
        boundary = _content_type_param(ctype, "boundary")
        if not ctype.lower().startswith("multipart/") or not boundary:
            raise bad_request("A batch request needs a multipart/mixed body.", "badContent")
        parts = _parse_multipart(req.body, boundary.encode("latin-1"))
        if len(parts) > MAX_BATCH:
            raise bad_request(
                f"A batch request may hold at most {MAX_BATCH} calls.", "limitExceeded"
            )
        out_boundary = "batch_" + secrets.token_hex(12)
        chunks: list[bytes] = []
        drop = False
        for headers, payload in parts:
            cid = headers.get("content-id", "")
            inner = self._inner_request(payload, req.base_url)
            if isinstance(inner, ApiError):
                resp = error_response(inner)
                self.stats.count_call("unknown")
            else:
                resp = self.handle(inner, top_level=False)
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

    def _inner_request(self, payload: bytes, base_url: str) -> Request | ApiError:
        """Parse one ``application/http`` part into a :class:`Request`."""
        eol = payload.find(b"\n")
        if eol < 0:
            return bad_request("Malformed batch part.")
        request_line = payload[:eol].decode("latin-1").strip()
        bits = request_line.split()
        if len(bits) < 2:
            return bad_request("Malformed batch part request line.")
        method, target = bits[0].upper(), bits[1]
        headers, body = _split_headers(payload[eol + 1 :])
        length = headers.get("content-length")
        if length is not None and length.isdigit():
            body = body[: int(length)]
        else:
            body = body.rstrip(b"\r\n")
        parsed = urllib.parse.urlsplit(target)
        if parsed.path.startswith(("/upload/", "/resumable/")) or "alt=media" in parsed.query:
            return bad_request("Media upload and download are not supported in batch requests.")
        query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        return Request(method, parsed.path, query, headers, body, base_url)


REASONS = {
    200: "OK",
    204: "No Content",
    206: "Partial Content",
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
