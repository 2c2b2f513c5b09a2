"""The HTTP side of the fake: a threaded HTTP/1.1 keep-alive server around :class:`DriveApi`.

stdlib ``http.server`` is enough for well over 1000 requests/s on two cores as long as
connections are kept alive, Nagle is off and each response goes out in one ``send``; see
``scripts/bench_fakedrive.py``.
"""

from __future__ import annotations

import email.utils
import json
import secrets
import socket
import sys
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from drivemr.testing.fakedrive.access import DRIVE_ROLES
from drivemr.testing.fakedrive.api import DriveApi
from drivemr.testing.fakedrive.client import discovery_document
from drivemr.testing.fakedrive.config import CONFIG_KEYS, FakeConfig, coerce_config
from drivemr.testing.fakedrive.errors import ApiError
from drivemr.testing.fakedrive.grants import TOKEN_PATH, Grant
from drivemr.testing.fakedrive.messages import (
    DEFAULT_ACCOUNT,
    REASONS,
    Request,
    Response,
    error_response,
    json_response,
)
from drivemr.testing.fakedrive.state import DriveState

_DRAIN_LIMIT = 256 * 1024 * 1024


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], owner: FakeDriveServer) -> None:
        self.owner = owner
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__(addr, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeGoogleDrive/1"
    disable_nagle_algorithm = True
    timeout = 300  # idle keep-alive connections are closed after this
    server: _HttpServer

    def setup(self) -> None:
        super().setup()
        with self.server.conn_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.conn_lock:
                self.server.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: thousands of requests per second would drown the test output."""

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def _read_body(self, headers: dict[str, str], limit: int) -> bytes | None:
        """The request body, or None (after answering 400) when it is too large."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks = []
            total = 0
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > limit:
                    self._too_large(close=True)
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(chunks)
        try:
            length = int(headers.get("content-length", "0") or "0")
        except ValueError:
            length = -1
        if length < 0:
            self._too_large(close=True)
            return None
        if length > limit:
            # Drain what is cheap to drain so the client reads our 400, not a reset.
            if length <= _DRAIN_LIMIT:
                left = length
                while left > 0:
                    got = self.rfile.read(min(left, 1 << 20))
                    if not got:
                        break
                    left -= len(got)
                self._too_large(close=False)
            else:
                self._too_large(close=True)
            return None
        return self.rfile.read(length) if length else b""

    def _too_large(self, close: bool = True) -> None:
        err = ApiError(400, "badRequest", "The request body is too large.", detail="oversize body")
        if close:
            self.close_connection = True
        self._send(error_response(err))

    def _serve(self) -> None:
        owner = self.server.owner
        api = owner.api
        headers = {k.lower(): v for k, v in self.headers.items()}
        body = self._read_body(headers, api.config.max_body_bytes)
        if body is None:
            return
        split = urllib.parse.urlsplit(self.path)
        path = split.path
        query = dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
        try:
            if path.startswith("/_fake/"):
                resp = owner._control(self.command, path, body)
            else:
                latency = api.config.latency_ms
                if latency > 0:
                    time.sleep(latency / 1000.0)
                host = headers.get("host") or f"{owner.host}:{owner.port}"
                req = Request(self.command, path, query, headers, body, f"http://{host}/")
                if path == TOKEN_PATH:
                    resp = api.grants.serve(req)
                elif path in ("/batch/drive/v3", "/batch") and self.command == "POST":
                    resp = api.handle_batch(req)
                else:
                    resp = api.handle(req)
        except Exception:  # the fake must keep serving whatever one request does
            traceback.print_exc(file=sys.stderr)
            resp = error_response(ApiError(500, "backendError", "Backend Error"))
        self._send(resp, head_only=self.command == "HEAD")

    def _send(self, resp: Response, head_only: bool = False) -> None:
        if resp.drop:
            # Lost acknowledgement: the change is committed, the client hears nothing.
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        lines = [
            f"HTTP/1.1 {resp.status} {REASONS.get(resp.status, 'Status')}",
            f"Date: {_http_date()}",
            "Server: FakeGoogleDrive",
        ]
        if resp.content_type:
            lines.append(f"Content-Type: {resp.content_type}")
        for k, v in resp.headers:
            lines.append(f"{k}: {v}")
        if resp.status != 204:
            lines.append(f"Content-Length: {len(resp.body)}")
        if self.close_connection:
            lines.append("Connection: close")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if not head_only and resp.status != 204:
            data += resp.body
        try:
            self.wfile.write(data)
        except OSError:
            self.close_connection = True


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


class FakeDriveServer:
    """A local Google Drive v3 for tests, benchmarks and offline trials.

    >>> with FakeDriveServer() as srv:          # doctest: +SKIP
    ...     drive = build_client(srv.url)
    ...     drive.files().generateIds(count=3).execute()

    ``state_file`` makes the state survive a restart: it is loaded at start, written
    (atomically) at most every ``save_interval`` seconds while writes happen, and at stop.
    Any :class:`~drivemr.testing.fakedrive.config.FakeConfig` field can be passed as a
    keyword (``minted_ids="anyone"``, ``misbehave=("listing",)``, ``drive_item_limit=10``...).
    Shared drives can be set up without a client: :meth:`create_drive`, :meth:`add_member`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0.0,
        write_rate: float | None = None,
        fault_rate: float = 0.0,
        state_file: str | None = None,
        *,
        save_interval: float = 0.2,
        **settings: Any,
    ) -> None:
        self.host = host
        self.port = port
        self.state_file = str(state_file) if state_file is not None else None
        self.save_interval = save_interval
        self._initial: dict[str, Any] = {
            "latency_ms": latency_ms,
            "write_rate": write_rate,
            "fault_rate": fault_rate,
            **settings,
        }
        self._config = FakeConfig()
        self._api: DriveApi | None = None
        self._httpd: _HttpServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._start_stop_lock = threading.Lock()
        self._discovery = discovery_document()

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def api(self) -> DriveApi:
        if self._api is None:
            raise RuntimeError("FakeDriveServer is not started")
        return self._api

    @property
    def state(self) -> DriveState:
        """The live state (hold ``state.lock`` while looking inside)."""
        return self.api.state

    @property
    def url(self) -> str:
        """``http://HOST:PORT/`` once started."""
        if self._httpd is None:
            raise RuntimeError("FakeDriveServer is not started")
        return f"http://{self.host}:{self.port}/"

    def start(self) -> FakeDriveServer:
        """Bind, load the state file, and serve in background threads."""
        with self._start_stop_lock:
            if self._httpd is not None:
                return self
            state = DriveState.load(self.state_file) if self.state_file else DriveState()
            api = DriveApi(state, self._config, self._discovery)
            api.configure(**self._initial)
            self._api = api
            httpd = _HttpServer((self.host, self.port), self)
            self.port = httpd.server_address[1]
            self._httpd = httpd
            self._stopping.clear()
            t = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"fakedrive-{self.port}",
                daemon=True,
            )
            t.start()
            self._threads = [t]
            if self.state_file:
                s = threading.Thread(target=self._saver, name="fakedrive-saver", daemon=True)
                s.start()
                self._threads.append(s)
            return self

    def stop(self) -> None:
        """Stop serving, drop open connections, and save the state file."""
        with self._start_stop_lock:
            httpd = self._httpd
            if httpd is None:
                return
            self._stopping.set()
            httpd.shutdown()
            with httpd.conn_lock:
                conns = list(httpd.connections)
            for c in conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            httpd.server_close()
            for t in self._threads:
                t.join(timeout=5)
            self._threads = []
            self._httpd = None
            self.save()

    def save(self) -> None:
        """Write the state file now (no-op without one)."""
        if self.state_file and self._api is not None:
            with self._api.state.lock:
                self._api.state.save(self.state_file)

    def _saver(self) -> None:
        while not self._stopping.wait(self.save_interval):
            api = self._api
            if api is not None and api.state.dirty:
                try:
                    with api.state.lock:
                        api.state.save(self.state_file or "")
                except OSError:
                    traceback.print_exc(file=sys.stderr)

    def __enter__(self) -> FakeDriveServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- knobs and accounting ----------------------------------------------------------------

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change fault and policy settings at runtime (see :class:`FakeConfig`); returns them all."""
        if self._api is None:
            unknown = set(changes) - CONFIG_KEYS
            if unknown:
                raise ValueError(f"unknown fake-drive setting(s): {', '.join(sorted(unknown))}")
            for key, value in changes.items():
                self._initial[key] = coerce_config(key, value)
            return {**self._config.as_dict(), **self._initial}
        return self._api.configure(**changes)

    def stats(self) -> dict[str, Any]:
        """Request counts since start or the last reset (same as ``GET /_fake/stats``)."""
        return self.api.stats.snapshot()

    def reset_stats(self) -> None:
        """Zero the counters (same as ``POST /_fake/stats/reset``)."""
        self.api.stats.reset()

    # -- shared drives, as an administrator would set them up ------------------------------

    def create_drive(
        self,
        name: str,
        organizer: str = DEFAULT_ACCOUNT,
        members: dict[str, str] | None = None,
    ) -> str:
        """Make a shared drive whose organizer is the account ``organizer``; its id.

        ``members`` maps further accounts (bearer tokens) to roles (``reader``,
        ``commenter``, ``writer``, ``fileOrganizer``, ``organizer``).
        """
        st = self.state
        with st.lock:
            drive = st.add_drive(name, organizer, "fake-admin-" + secrets.token_hex(8))
        for account, role in (members or {}).items():
            self.add_member(drive.id, account, role)
        return drive.id

    def add_member(self, drive_id: str, account: str, role: str) -> None:
        """Give ``account`` the ``role`` in the shared drive ``drive_id``."""
        if role not in DRIVE_ROLES:
            raise ValueError(f"role must be one of {', '.join(sorted(DRIVE_ROLES))}")
        st = self.state
        with st.lock:
            drive = st.drives.get(drive_id)
            if drive is None:
                raise ValueError(f"no shared drive {drive_id!r}")
            drive.members[account] = role
            st.dirty = True

    # -- sign-ins: the token endpoint's grants ----------------------------------------------

    @property
    def token_url(self) -> str:
        """The fake's OAuth token endpoint (``token_uri`` of credentials for a grant)."""
        return self.url.rstrip("/") + TOKEN_PATH

    def issue_grant(self, account: str = DEFAULT_ACCOUNT) -> Grant:
        """Sign ``account`` in: a refresh token and an access token that act as ``account``,
        as does every access token refreshed from the grant."""
        return self.api.grants.issue(account)

    def revoke_grant(self, refresh_token: str) -> None:
        """Revoke a grant: refreshing it answers ``400 invalid_grant`` from now on."""
        self.api.grants.revoke(refresh_token)

    def _control_drives(self, body: bytes) -> Response:
        """``POST /_fake/drives``: ``{"name", "organizer"?, "members"?}`` or
        ``{"driveId", "account", "role"}`` to add one member."""
        try:
            req = json.loads(body or b"{}")
            if not isinstance(req, dict):
                raise ValueError("the body must be a JSON object")
            if "driveId" in req:
                self.add_member(str(req["driveId"]), str(req["account"]), str(req["role"]))
                return json_response(200, {"driveId": req["driveId"]})
            members = req.get("members") or {}
            if not isinstance(members, dict):
                raise ValueError("members must map accounts to roles")
            did = self.create_drive(
                str(req["name"]), str(req.get("organizer", DEFAULT_ACCOUNT)), members
            )
            return json_response(200, {"driveId": did})
        except (ValueError, TypeError, KeyError) as exc:
            return error_response(ApiError(400, "invalid", f"bad /_fake/drives request: {exc}"))

    def _control(self, method: str, path: str, body: bytes) -> Response:
        """``/_fake/...``: stats and configuration; never counted, delayed or faulted."""
        api = self.api
        if path == "/_fake/stats" and method == "GET":
            return json_response(200, api.stats.snapshot())
        if path == "/_fake/stats/reset" and method == "POST":
            api.stats.reset()
            return json_response(200, api.stats.snapshot())
        if path == "/_fake/config" and method == "GET":
            return json_response(200, api.config.as_dict())
        if path == "/_fake/config" and method == "POST":
            try:
                changes = json.loads(body or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("the body must be a JSON object")
                return json_response(200, api.configure(**changes))
            except (ValueError, TypeError) as exc:
                return error_response(ApiError(400, "invalid", str(exc)))
        if path == "/_fake/drives" and method == "POST":
            return self._control_drives(body)
        if path == "/_fake/save" and method == "POST":
            self.save()
            return json_response(200, {"saved": bool(self.state_file)})
        if path == "/_fake/health" and method == "GET":
            return json_response(200, {"ok": True, "url": self.url})
        return error_response(ApiError(404, "notFound", f"Not Found: {method} {path}"))
