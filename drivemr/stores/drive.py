"""The Google Drive store: the store interface on Drive API v3 (google-api-python-client).

This module and :mod:`drivemr.auth` are the only ones that import googleapiclient.

Why it is built the way it is:

* **Create-once by minted id.** ``files.generateIds`` mints ids; ``files.create`` with
  ``id=<minted>`` is Drive's only atomic create-once (a reused id answers 409). A create
  retried after a lost response may meet its own earlier success as a 409: we then fetch
  the file by id and compare name, parent, size and md5 with what we sent; equal means the
  earlier request was ours and the create succeeded. A 409 on the first attempt is always
  :class:`AlreadyExists`.
* **No hidden retries.** googleapiclient's ``num_retries`` stays 0 and httplib2's silent
  resend of a request whose connection closed without a response is disabled for POST
  (our connection classes turn it into an error), so *every* retry goes through one
  tenacity layer and is counted; a create is never resent behind our back.
* **Threads.** httplib2 is not thread-safe: each thread gets its own ``Http`` (wrapped in
  ``AuthorizedHttp`` for real Drive) and its own service object.
* **Quota.** Writes (create/update/delete) pass a process-wide token bucket
  (``write_rate`` per second, default 3: Drive's sustained per-account write limit).
  Reads are not paced.
* **Pointing at a fake.** ``DRIVEMR_DRIVE_ENDPOINT=http://127.0.0.1:PORT/`` builds the
  client from the bundled discovery document with ``rootUrl`` patched, so uploads and
  batch calls go there too, and uses no credentials.
"""

from __future__ import annotations

import contextlib
import email.utils
import errno
import functools
import http.client
import io
import json
import logging
import mimetypes
import os
import random
import re
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import httplib2
from googleapiclient.discovery import build_from_document
from googleapiclient.discovery_cache import get_static_doc
from googleapiclient.errors import HttpError
from googleapiclient.http import MediaIoBaseDownload, MediaIoBaseUpload
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
)

from drivemr.errors import (
    AlreadyExists,
    AuthError,
    ConfigError,
    NotFound,
    PermanentStoreError,
    StoreError,
    TransientStoreError,
)
from drivemr.stores.base import (
    FOLDER_MIME,
    ROOT,
    Changes,
    FileInfo,
    Store,
    content_digest,
    is_what_we_sent,
)

__all__ = [
    "DEFAULT_WRITE_RATE",
    "ENDPOINT_ENV",
    "DriveStore",
    "TokenBucket",
]

T = TypeVar("T")

ENDPOINT_ENV = "DRIVEMR_DRIVE_ENDPOINT"
"""Base URL of a Drive-compatible server (the fake); no credentials are used then."""

DEFAULT_WRITE_RATE = 3.0
"""Drive's sustained write limit per account, writes per second."""
AIMD_STEP = 0.02
"""After the quota refused a write, each accepted write wins back this share of the rate."""

SCHEME = "drive://"
FILE_FIELDS = "id,name,parents,mimeType,size,md5Checksum,modifiedTime,createdTime"
GET_FIELDS = FILE_FIELDS + ",trashed"
LIST_FIELDS = f"nextPageToken,incompleteSearch,files({FILE_FIELDS})"
CHANGES_FIELDS = "nextPageToken,newStartPageToken,changes(fileId,removed,file(id,parents,mimeType))"

MULTIPART_LIMIT = 5 * 1024 * 1024
"""Files up to this size go up in one multipart request; larger ones resumable."""
CHUNK_SIZE = 8 * 1024 * 1024
"""Resumable upload / download chunk (a multiple of 256 KiB, as Drive requires)."""

_TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
_RATE_REASONS = frozenset({"userRateLimitExceeded", "rateLimitExceeded", "RATE_LIMIT_EXCEEDED"})
_TRANSIENT_ERRNO_NAMES = frozenset(
    {
        "ETIMEDOUT",
        "WSAETIMEDOUT",
        "EPIPE",
        "ECONNABORTED",
        "ECONNREFUSED",
        "ECONNRESET",
        "WSAECONNRESET",
        "WSAECONNABORTED",
        "ENETUNREACH",
        "ENETDOWN",
        "EHOSTUNREACH",
    }
)
_SILENT_RESEND_OK = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods httplib2 may resend by itself when a connection closes without an answer.
Never writes: a resend would hide a committed write from our retry layer (and from
pacing and counting), and a resent stream body (an upload chunk) would be empty."""

SAME_ACCOUNT_HELP = (
    "Drive refused a minted file id. Ids minted by one Google account are not usable by "
    "another: sign in on every worker with the same Google account and the same OAuth "
    "client (`drivemr auth login --client-secrets FILE`), "
    "or keep the shared root in a shared drive (`drivemr init --store drive:// "
    "--shared-drive ID`). Workers signed in with different accounts also need the full "
    "`drive` scope (`drivemr auth login --scope drive`), because `drive.file` only reaches "
    "files this app created for that same account."
)
ROOT_NOT_VISIBLE = (
    "The drivemr root folder is not visible to this sign-in. Check the drive:// URL, and "
    "that this PC signed in with the same Google account and the same OAuth client "
    "(client_secret.json) as the PC that created the folder: the default `drive.file` "
    "scope only sees files created through that client. Workers on other accounts need "
    "the folder shared with them and `drivemr auth login --scope drive`."
)
SERVICE_ACCOUNT_HELP = (
    "A service account has no Drive storage of its own: it can only write into a shared "
    "drive. Create the root there (`drivemr init --store drive:// --shared-drive ID`, with "
    "the service account a member of that shared drive), or sign in as a user with "
    "`drivemr auth login`."
)
USER_QUOTA_HELP = (
    "The signed-in account's Drive storage is full: free some space or use a shared drive. "
    "(With a service account this error means it has no storage of its own: "
    "service accounts can only write into a shared drive.)"
)


class _QuietForbidden(logging.Filter):
    """googleapiclient logs a WARNING for every 403 it receives, even with its own retries
    off. Our retry layer handles (and counts) rate-limit refusals and turns every other 403
    into an error carrying Drive's message, so that warning only alarms the user."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Encountered 403 Forbidden")


logging.getLogger("googleapiclient.http").addFilter(_QuietForbidden())


# --------------------------------------------------------------------------- HTTP layer


def _closed_without_response(method: str, exc: Exception) -> ConnectionAbortedError:
    return ConnectionAbortedError(
        f"the server closed the connection without answering a {method} request "
        f"(it may or may not have been processed): {exc!r}"
    )


class _HTTPConnection(httplib2.HTTPConnectionWithTimeout):
    """httplib2 silently resends a request whose connection closed without a response
    (BadStatusLine). For a write that hides a possibly committed change (a create!), so we
    turn it into an error our retry layer sees, counts and handles."""

    _drivemr_method = "GET"

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> None:
        self._drivemr_method = method.upper()
        super().request(method, url, *args, **kwargs)

    def getresponse(self) -> http.client.HTTPResponse:
        try:
            return super().getresponse()
        except http.client.BadStatusLine as exc:
            if self._drivemr_method in _SILENT_RESEND_OK:
                raise
            raise _closed_without_response(self._drivemr_method, exc) from exc


class _HTTPSConnection(httplib2.HTTPSConnectionWithTimeout):
    """Same as :class:`_HTTPConnection`, for TLS."""

    _drivemr_method = "GET"

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> None:
        self._drivemr_method = method.upper()
        super().request(method, url, *args, **kwargs)

    def getresponse(self) -> http.client.HTTPResponse:
        try:
            return super().getresponse()
        except http.client.BadStatusLine as exc:
            if self._drivemr_method in _SILENT_RESEND_OK:
                raise
            raise _closed_without_response(self._drivemr_method, exc) from exc


class _StrictHttp(httplib2.Http):
    """``httplib2.Http`` using the connection classes above (and not following 308s,
    which Drive uses for resumable uploads, as googleapiclient's ``build_http`` does)."""

    def __init__(self, timeout: float) -> None:
        super().__init__(timeout=timeout)
        codes = getattr(self, "redirect_codes", None)
        if codes is not None:
            setattr(self, "redirect_codes", frozenset(codes) - {308})  # noqa: B010

    def request(
        self,
        uri: str,
        method: str = "GET",
        body: Any = None,
        headers: Any = None,
        redirections: int = httplib2.DEFAULT_MAX_REDIRECTS,
        connection_type: Any = None,
    ) -> Any:
        if connection_type is None:
            connection_type = _HTTPSConnection if uri.startswith("https:") else _HTTPConnection
        return super().request(uri, method, body, headers, redirections, connection_type)


@functools.lru_cache(maxsize=8)
def _discovery_document(endpoint: str | None) -> str:
    """The bundled Drive v3 discovery document, pointed at ``endpoint`` when given."""
    doc = json.loads(get_static_doc("drive", "v3"))
    if endpoint:
        root = endpoint if endpoint.endswith("/") else endpoint + "/"
        doc["rootUrl"] = root
        doc["mtlsRootUrl"] = root
        doc["baseUrl"] = root + doc["servicePath"]
    return json.dumps(doc)


# --------------------------------------------------------------------------- errors


def _error_details(exc: HttpError) -> tuple[int, str, set[str]]:
    """(status, Drive's message, reasons) of an HttpError's JSON error body."""
    status = int(getattr(exc.resp, "status", 0) or 0)
    message = str(getattr(exc, "reason", "") or "")
    reasons: set[str] = set()
    try:
        content = exc.content.decode("utf-8", "replace") if exc.content else ""
        data = json.loads(content) if content else None
    except ValueError:
        data = None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        if isinstance(err.get("message"), str) and err["message"]:
            message = err["message"]
        for key in ("errors", "details"):
            for item in err.get(key) or []:
                if isinstance(item, dict) and isinstance(item.get("reason"), str):
                    reasons.add(item["reason"])
    elif isinstance(err, str):  # OAuth-style {"error": "invalid_grant", ...}
        reasons.add(err)
        message = str(data.get("error_description") or err) if isinstance(data, dict) else err
    return status, message.strip() or http.client.responses.get(status, ""), reasons


def _http_status(exc: BaseException | None) -> int | None:
    """Status code of the HttpError behind a translated error, if any."""
    while exc is not None:
        if isinstance(exc, HttpError):
            return int(getattr(exc.resp, "status", 0) or 0)
        exc = exc.__cause__
    return None


def _retry_after(exc: HttpError) -> float | None:
    value = None
    with contextlib.suppress(Exception):
        value = exc.resp.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _Transient(TransientStoreError):
    """A transient failure, with the server's Retry-After hint when it gave one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _is_transient_os_error(exc: OSError) -> bool:
    if isinstance(exc, (socket.timeout, TimeoutError, ConnectionError)):
        return True
    if isinstance(exc, ssl.SSLCertVerificationError):
        return False
    if isinstance(exc, ssl.SSLError):
        return True  # EOF / bad record mid-stream: the connection broke
    return errno.errorcode.get(exc.errno or -1, "") in _TRANSIENT_ERRNO_NAMES


def _translate(
    exc: BaseException, what: str, *, service_account: bool = False
) -> StoreError | None:
    """Map a googleapiclient / httplib2 / socket / google-auth failure to a drivemr error.

    Returns None for anything that is not an I/O failure (a bug should surface as is)."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, HttpError):
        status, message, reasons = _error_details(exc)
        text = f"{what}: Drive answered HTTP {status}: {message}"
        if status in _TRANSIENT_STATUS or (status == 403 and reasons & _RATE_REASONS):
            return _Transient(text, _retry_after(exc))
        if status == 404:
            return NotFound(text)
        if status == 409:
            return AlreadyExists(text)
        if status == 401:
            return AuthError(f"{text} (sign in again with `drivemr auth login`)")
        if status == 403 and "storageQuotaExceeded" in reasons:
            hint = SERVICE_ACCOUNT_HELP if service_account else USER_QUOTA_HELP
            return PermanentStoreError(f"{text}. {hint}")
        return PermanentStoreError(text)
    if isinstance(exc, httplib2.ServerNotFoundError):
        return PermanentStoreError(f"{what}: {exc} (is this PC offline, or the endpoint wrong?)")
    if isinstance(exc, (http.client.HTTPException, httplib2.HttpLib2Error)):
        # IncompleteRead, a malformed response, a redirect loop: the exchange broke.
        return _Transient(f"{what}: broken HTTP exchange: {exc!r}")
    if isinstance(exc, OSError):
        if _is_transient_os_error(exc):
            return _Transient(f"{what}: network error: {exc!r}")
        return PermanentStoreError(f"{what}: {exc!r}")
    try:
        from google.auth import exceptions as gexc
    except ImportError:  # pragma: no cover
        return None
    if isinstance(exc, gexc.RefreshError):
        from drivemr.auth import refresh_error

        return refresh_error(exc)
    if isinstance(exc, gexc.TransportError):
        return _Transient(f"{what}: could not reach Google: {exc}")
    return None


# --------------------------------------------------------------------------- pacing


class TokenBucket:
    """Thread-safe token bucket: at most ``rate`` acquisitions per second after a burst
    of ``burst``. Callers reserve a token and sleep outside the lock, so waiting threads
    are served in order and no thread spins. ``clock``/``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        rate: float,
        burst: float = 2.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.capacity = max(1.0, float(burst))
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.capacity
        self._last = clock()
        self.acquired = 0
        self.waited = 0.0
        self.ceiling = self.rate
        self._slowed_at: float | None = None

    def slow_down(self) -> None:
        """The account's quota refused a write: other clients (PCs) share it, so take less.
        Halve the rate (once per second however many slots were refused together; never
        below a tenth of the configured rate); :meth:`speed_up` wins it back write by write."""
        with self._lock:
            now = self._clock()
            if self._slowed_at is not None and now - self._slowed_at < 1.0:
                return
            self._slowed_at = now
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens = min(self._tokens, 0.0)  # no burst right after a refusal
            self.rate = max(self.ceiling / 10, self.rate / 2)

    def speed_up(self) -> None:
        """An accepted write: raise the rate a little, up to the configured one."""
        if self.rate >= self.ceiling:
            return
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self.rate = min(self.ceiling, self.rate + self.ceiling * AIMD_STEP)

    def acquire(self, tokens: float = 1.0) -> float:
        """Take ``tokens``; sleeps as long as needed and returns the time slept."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= tokens
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
            self.acquired += 1
            self.waited += wait
        if wait > 0:
            self._sleep(wait)
        return wait


_SHARED_BUCKETS: dict[tuple[str, float, float], TokenBucket] = {}
_SHARED_BUCKETS_LOCK = threading.Lock()


def _shared_bucket(key: str, rate: float, burst: float) -> TokenBucket:
    """One bucket per (endpoint, rate) for the whole process: every slot, every store."""
    with _SHARED_BUCKETS_LOCK:
        bucket = _SHARED_BUCKETS.get((key, rate, burst))
        if bucket is None:
            bucket = _SHARED_BUCKETS[(key, rate, burst)] = TokenBucket(rate, burst)
        return bucket


# --------------------------------------------------------------------------- helpers

_TS_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:?\d{2})?$"
)


def parse_rfc3339(value: str | None) -> float:
    """Seconds since the epoch for an RFC 3339 timestamp (Drive's ``modifiedTime``)."""
    if not value:
        return 0.0
    m = _TS_RE.match(value.strip())
    if not m:
        raise PermanentStoreError(f"unreadable timestamp from Drive: {value!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac = float("0." + m.group(7)) if m.group(7) else 0.0
    tz = m.group(8)
    offset = timedelta(0)
    if tz and tz not in ("Z", "z"):
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        offset = sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    dt = datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc) - offset
    return dt.timestamp() + frac


def _file_info(d: dict[str, Any]) -> FileInfo:
    parents = d.get("parents") or []
    size = d.get("size")
    return FileInfo(
        id=d["id"],
        name=d.get("name", ""),
        parent=parents[0] if parents else "",
        is_folder=d.get("mimeType") == FOLDER_MIME,
        size=int(size) if size is not None else None,
        md5=d.get("md5Checksum"),
        modified=parse_rfc3339(d.get("modifiedTime")),
        created=parse_rfc3339(d.get("createdTime")),
    )


def _quote(value: str) -> str:
    """Escape a value for a Drive query string literal."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _mimetype(name: str) -> str:
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"


# --------------------------------------------------------------------------- the store


class _instance_or_class:
    """A method that also works on the class: then it runs on a temporary
    ``DriveStore.from_url("drive://", **options)`` (options = unknown keyword arguments)."""

    def __init__(self, func: Callable[..., str]) -> None:
        self.func = func
        self.__doc__ = func.__doc__

    def __get__(self, obj: Any, cls: Any) -> Callable[..., str]:
        if obj is not None:
            return functools.partial(self.func, obj)

        def on_class(
            name: str = "drivemr",
            parent: str = ROOT,
            shared_drive: str | None = None,
            **options: Any,
        ) -> str:
            with cls.from_url(SCHEME, **options) as store:
                return self.func(store, name, parent, shared_drive)

        return on_class


_OPTION_NAMES = (
    "write_rate",
    "write_burst",
    "config_dir",
    "endpoint",
    "credentials",
    "max_attempts",
    "max_retry_time",
    "backoff_base",
    "backoff_max",
    "timeout",
    "page_size",
    "changes_page_size",
    "sleep",
    "bucket",
    "http_factory",
)


class DriveStore(Store):
    """A drivemr store in one Google Drive folder (``drive://FOLDER_ID``).

    Thread-safe: share one instance between all slots of a worker. ``stats`` counts
    requests by kind for benchmarks and tests.
    """

    def __init__(
        self,
        root_id: str | None = None,
        *,
        url: str | None = None,
        endpoint: str | None = None,
        credentials: Any = None,
        config_dir: Path | None = None,
        write_rate: float | None = DEFAULT_WRITE_RATE,
        write_burst: float = 2.0,
        bucket: TokenBucket | None = None,
        max_attempts: int = 8,
        max_retry_time: float = 300.0,
        backoff_base: float = 1.0,
        backoff_max: float = 32.0,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 60.0,
        page_size: int = 1000,
        changes_page_size: int = 1000,
        http_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.root_id = root_id or ROOT
        self.url = url or f"{SCHEME}{root_id or ''}"
        self.endpoint = endpoint if endpoint is not None else (os.environ.get(ENDPOINT_ENV) or None)
        if self.endpoint is None and credentials is None and http_factory is None:
            from drivemr.auth import load_credentials

            credentials = load_credentials(config_dir=config_dir)
        self._credentials = credentials
        self._is_service_account = type(credentials).__module__.endswith("service_account")
        if bucket is None and write_rate:
            bucket = _shared_bucket(self.endpoint or "google", float(write_rate), write_burst)
        self._bucket = bucket
        self.max_attempts = max(1, int(max_attempts))
        self.max_retry_time = float(max_retry_time)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self._sleep = sleep
        self._rand = random.random
        self.timeout = float(timeout)
        self.page_size = max(1, min(1000, int(page_size)))
        self.changes_page_size = max(1, min(1000, int(changes_page_size)))
        self._http_factory = http_factory
        self._local = threading.local()
        self._lock = threading.Lock()
        self._https: list[Any] = []
        self._closed = False
        self._stats: dict[str, float] = {}
        self.reset_stats()

    # -- construction --

    @classmethod
    def from_url(cls, url: str, **options: Any) -> DriveStore:
        """Open ``drive://FOLDER_ID`` (or ``drive://``, only good for :meth:`create_root`).

        Understood options: ``write_rate`` (writes/s; None or 0 = unpaced), ``config_dir``,
        and the keyword arguments of :class:`DriveStore`; others are ignored (they belong
        to other stores)."""
        if not url.startswith(SCHEME):
            raise ConfigError(f"not a Drive store URL: {url!r} (expected drive://FOLDER_ID)")
        folder = url[len(SCHEME) :].strip("/")
        if folder and not re.fullmatch(r"[A-Za-z0-9_-]+", folder):
            raise ConfigError(f"bad Drive folder id in {url!r}: expected drive://FOLDER_ID")
        kwargs = {k: options[k] for k in _OPTION_NAMES if k in options}
        if "write_rate" in kwargs and not kwargs["write_rate"]:
            kwargs["write_rate"] = None
        if kwargs.get("config_dir") is not None:
            kwargs["config_dir"] = Path(kwargs["config_dir"])
        return cls(folder or None, url=f"{SCHEME}{folder}", **kwargs)

    @_instance_or_class
    def create_root(
        self, name: str = "drivemr", parent: str = ROOT, shared_drive: str | None = None
    ) -> str:
        """Create a drivemr root folder (in My Drive, under ``parent``, or at the top of
        the shared drive ``shared_drive``) and return its ``drive://FOLDER_ID`` URL.

        ``parent="root"`` here means the account's My Drive, whatever this store's root.
        Callable on an instance, or on the class (``DriveStore.create_root(name=...,
        shared_drive=..., **store_options)`` opens ``drive://`` for the call)."""
        (fid,) = self.mint_ids(1)
        info = self._create(shared_drive or parent, name, fid, None, None, True)
        return f"{SCHEME}{info.id}"

    # -- plumbing --

    @property
    def stats(self) -> dict[str, float]:
        """A snapshot of the counters: requests (HTTP attempts), reads, writes, retries,
        transient (failed attempts), gave_up, recovered_creates (lost acks recognised),
        paced_seconds."""
        with self._lock:
            return dict(self._stats)

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = {
                "requests": 0,
                "reads": 0,
                "writes": 0,
                "retries": 0,
                "transient": 0,
                "gave_up": 0,
                "recovered_creates": 0,
                "paced_seconds": 0.0,
            }

    def _count(self, key: str, amount: float = 1) -> None:
        with self._lock:
            self._stats[key] = self._stats.get(key, 0) + amount

    def _service(self) -> Any:
        """This thread's service object (httplib2 is not thread-safe)."""
        service = getattr(self._local, "service", None)
        if service is None:
            if self._closed:
                raise PermanentStoreError("the Drive store was closed")
            base = self._http_factory() if self._http_factory else _StrictHttp(self.timeout)
            if self._credentials is not None:
                import google_auth_httplib2

                http_obj = google_auth_httplib2.AuthorizedHttp(self._credentials, http=base)
            else:
                http_obj = base
            service = build_from_document(_discovery_document(self.endpoint), http=http_obj)
            with self._lock:
                self._https.append(http_obj)
            self._local.service = service
        return service

    def _wait(self, state: RetryCallState) -> float:
        """Full-jitter exponential backoff, at least the server's Retry-After."""
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (state.attempt_number - 1))
        wait = self._rand() * ceiling
        exc = state.outcome.exception() if state.outcome is not None else None
        hint = getattr(exc, "retry_after", None)
        if hint:
            wait = max(wait, min(float(hint), self.backoff_max))
        return wait

    def _before_sleep(self, state: RetryCallState) -> None:
        self._count("retries")

    def _call(
        self,
        what: str,
        kind: str,
        fn: Callable[[Any], T],
        attempts: list[int] | None = None,
    ) -> T:
        """Run ``fn(service)`` under the one retry layer.

        ``kind`` is "read" or "write" (writes are paced). ``attempts[0]`` counts the
        attempts made, so a create can tell a first-try 409 from a retried one."""

        def attempt() -> T:
            if attempts is not None:
                attempts[0] += 1
            if kind == "write" and self._bucket is not None:
                waited = self._bucket.acquire()
                if waited:
                    self._count("paced_seconds", waited)
            with self._lock:
                self._stats["requests"] += 1
                self._stats["reads" if kind == "read" else "writes"] += 1
            try:
                result = fn(self._service())
            except Exception as exc:
                translated = _translate(exc, what, service_account=self._is_service_account)
                if translated is None:
                    raise
                if isinstance(translated, TransientStoreError):
                    self._count("transient")
                    quota = _http_status(exc) in (403, 429)  # the quota, not an outage
                    if quota and kind == "write" and self._bucket is not None:
                        self._bucket.slow_down()
                if translated is exc:
                    raise
                raise translated from exc
            if kind == "write" and self._bucket is not None:
                self._bucket.speed_up()
            return result

        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts) | stop_after_delay(self.max_retry_time),
            wait=self._wait,
            retry=retry_if_exception_type(TransientStoreError),
            sleep=self._sleep,
            reraise=True,
            before_sleep=self._before_sleep,
        )
        try:
            return retrying(attempt)
        except TransientStoreError:
            self._count("gave_up")
            raise

    def _resolve(self, file_id: str) -> str:
        return self.root_id if file_id == ROOT else file_id

    # -- the interface --

    def mint_ids(self, count: int) -> list[str]:
        if count < 1:
            raise PermanentStoreError(f"mint_ids: count must be at least 1, not {count}")
        ids: list[str] = []
        while len(ids) < count:
            n = min(1000, count - len(ids))

            def generate(svc: Any, n: int = n) -> Any:
                return svc.files().generateIds(count=n, space="drive", type="files").execute()

            result = self._call("mint ids", "read", generate)
            got = list(result.get("ids") or [])
            if not got:
                raise PermanentStoreError("mint ids: Drive returned no ids")
            ids.extend(got[:n])
        return ids

    def create(
        self,
        parent: str,
        name: str,
        file_id: str,
        data: bytes | None = None,
        *,
        source: Path | None = None,
        folder: bool = False,
    ) -> FileInfo:
        if folder and (data is not None or source is not None):
            raise ValueError("a folder has no content")
        if data is not None and source is not None:
            raise ValueError("give data or source, not both")
        return self._create(self._resolve(parent), name, file_id, data, source, folder)

    def _create(
        self,
        parent: str,
        name: str,
        file_id: str,
        data: bytes | None,
        source: Path | None,
        folder: bool,
    ) -> FileInfo:
        what = f"create {name!r} ({file_id}) in {parent}"
        body: dict[str, Any] = {"id": file_id, "name": name, "parents": [parent]}
        md5: str | None = None
        size: int | None = None
        mimetype = _mimetype(name)
        if folder:
            body["mimeType"] = FOLDER_MIME
        elif source is not None:
            md5, size = content_digest(None, Path(source))
            if size <= MULTIPART_LIMIT:
                data, source = Path(source).read_bytes(), None
        else:
            data = data if data is not None else b""
            md5, size = content_digest(data, None)
        attempts = [0]
        try:
            if source is not None:
                with open(source, "rb") as fh:
                    result = self._resumable(
                        what,
                        lambda svc: svc.files().create(
                            body=body,
                            media_body=MediaIoBaseUpload(
                                fh, mimetype, chunksize=CHUNK_SIZE, resumable=True
                            ),
                            fields=FILE_FIELDS,
                            supportsAllDrives=True,
                        ),
                        attempts,
                    )
            else:
                payload = data

                def send(svc: Any) -> Any:
                    media = None
                    if payload is not None:
                        media = MediaIoBaseUpload(io.BytesIO(payload), mimetype, resumable=False)
                    return (
                        svc.files()
                        .create(
                            body=body, media_body=media, fields=FILE_FIELDS, supportsAllDrives=True
                        )
                        .execute()
                    )

                result = self._call(what, "write", send, attempts)
        except AlreadyExists:
            if attempts[0] > 1:
                mine = self._own_earlier_create(file_id, name, parent, folder, md5, size)
                if mine is not None:
                    self._count("recovered_creates")
                    return mine
            raise
        except NotFound as exc:
            hinted = self._root_hint(exc, parent)
            if hinted is exc:
                raise
            raise hinted from exc
        except PermanentStoreError as exc:
            if _http_status(exc) == 400:
                raise PermanentStoreError(f"{exc}. {SAME_ACCOUNT_HELP}") from exc
            raise
        return _file_info(result)

    def _own_earlier_create(
        self,
        file_id: str,
        name: str,
        parent: str,
        folder: bool,
        md5: str | None,
        size: int | None,
    ) -> FileInfo | None:
        try:
            info = self.get(file_id)
        except NotFound:
            return None
        return info if is_what_we_sent(info, name, parent, folder, md5, size) else None

    def _resumable(
        self, what: str, make_request: Callable[[Any], Any], attempts: list[int]
    ) -> dict[str, Any]:
        """Run a resumable upload chunk by chunk, each chunk under the retry layer.

        The request object keeps the session URI and progress, so a retried chunk resumes
        (after a connection error it first asks the server how far it got). A session the
        server forgot (404/410 mid-upload) is restarted from scratch, at most twice."""
        for session in range(3):
            holder: dict[str, Any] = {}

            def step(svc: Any, holder: dict[str, Any] = holder) -> Any:
                if "request" not in holder:
                    holder["request"] = make_request(svc)
                _, body = holder["request"].next_chunk(num_retries=0)
                return body

            try:
                while True:
                    body = self._call(what, "write", step, attempts)
                    if body is not None:
                        return dict(body)
            except PermanentStoreError as exc:
                started = getattr(holder.get("request"), "resumable_uri", None)
                if started and _http_status(exc) in (404, 410) and session < 2:
                    continue
                raise
        raise PermanentStoreError(f"{what}: the upload session kept expiring")  # pragma: no cover

    def list(self, parent: str) -> list[FileInfo]:
        pid = self._resolve(parent)
        query = f"'{_quote(pid)}' in parents and trashed = false"
        what = f"list {pid}"
        found: dict[str, FileInfo] = {}
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "q": query,
                "pageSize": self.page_size,
                "fields": LIST_FIELDS,
                "supportsAllDrives": True,
                "includeItemsFromAllDrives": True,
                "spaces": "drive",
            }
            if token:
                kwargs["pageToken"] = token

            def page_of(svc: Any, kwargs: dict[str, Any] = kwargs) -> Any:
                page = svc.files().list(**kwargs).execute()
                if page.get("incompleteSearch"):
                    raise _Transient(f"{what}: Drive reported an incomplete listing")
                return page

            page = self._call(what, "read", page_of)
            for item in page.get("files") or []:
                found[item["id"]] = _file_info(item)
            token = page.get("nextPageToken")
            if not token:
                break
        if not found:
            # An empty answer must not hide a missing folder: confirm it exists.
            info = self.get(pid)
            if not info.is_folder:
                raise PermanentStoreError(f"{what}: not a folder")
        return list(found.values())

    def get(self, file_id: str) -> FileInfo:
        fid = self._resolve(file_id)
        try:
            result = self._call(
                f"get {fid}",
                "read",
                lambda svc: (
                    svc.files().get(fileId=fid, fields=GET_FIELDS, supportsAllDrives=True).execute()
                ),
            )
        except NotFound as exc:
            hinted = self._root_hint(exc, fid)
            if hinted is exc:
                raise
            raise hinted from exc
        if result.get("trashed"):
            raise NotFound(f"get {fid}: the file is in the trash")
        return _file_info(result)

    def _root_hint(self, exc: NotFound, folder_id: str) -> NotFound:
        """A missing *root* is almost always a sign-in mismatch: say so."""
        if folder_id != self.root_id or self.root_id == ROOT:
            return exc
        return NotFound(f"{exc}. {ROOT_NOT_VISIBLE}")

    def read(self, file_id: str, *, max_bytes: int | None = None) -> bytes:
        fid = self._resolve(file_id)
        what = f"read {fid}"

        def fetch(svc: Any) -> bytes:
            request = svc.files().get_media(fileId=fid, supportsAllDrives=True)
            if max_bytes is not None:
                # One byte past the limit tells "too big" apart without a metadata call.
                request.headers["range"] = f"bytes=0-{max_bytes}"
            return bytes(request.execute())

        try:
            content = self._call(what, "read", fetch)
        except PermanentStoreError as exc:
            if _http_status(exc) == 416:  # a range on an empty file
                return b""
            raise
        if max_bytes is not None and len(content) > max_bytes:
            raise PermanentStoreError(f"{what}: larger than the limit of {max_bytes} bytes")
        return content

    def download(self, file_id: str, dest: Path) -> None:
        fid = self._resolve(file_id)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                holder: dict[str, Any] = {}

                def step(svc: Any) -> bool:
                    if "downloader" not in holder:
                        request = svc.files().get_media(fileId=fid, supportsAllDrives=True)
                        holder["downloader"] = MediaIoBaseDownload(
                            fh, request, chunksize=CHUNK_SIZE
                        )
                    _, done = holder["downloader"].next_chunk(num_retries=0)
                    return bool(done)

                while not self._call(f"download {fid}", "read", step):
                    pass
            os.replace(tmp, dest)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            cause = exc.__cause__ if isinstance(exc, PermanentStoreError) else exc
            if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
                raise PermanentStoreError(
                    f"download {fid}: no space left on the local disk for {dest}"
                ) from exc
            raise

    def update(self, file_id: str, data: bytes) -> FileInfo:
        fid = self._resolve(file_id)
        what = f"update {fid}"
        mimetype = "application/octet-stream"
        if len(data) > MULTIPART_LIMIT:
            stream = io.BytesIO(data)
            result = self._resumable(
                what,
                lambda svc: svc.files().update(
                    fileId=fid,
                    media_body=MediaIoBaseUpload(
                        stream, mimetype, chunksize=CHUNK_SIZE, resumable=True
                    ),
                    fields=FILE_FIELDS,
                    supportsAllDrives=True,
                ),
                [0],
            )
            return _file_info(result)
        result = self._call(
            what,
            "write",
            lambda svc: (
                svc.files()
                .update(
                    fileId=fid,
                    media_body=MediaIoBaseUpload(io.BytesIO(data), mimetype, resumable=False),
                    fields=FILE_FIELDS,
                    supportsAllDrives=True,
                )
                .execute()
            ),
        )
        return _file_info(result)

    def delete(self, file_id: str) -> None:
        fid = self._resolve(file_id)
        try:
            self._call(
                f"delete {fid}",
                "write",
                lambda svc: svc.files().delete(fileId=fid, supportsAllDrives=True).execute(),
            )
        except NotFound:
            return

    def changes_cursor(self) -> str:
        result = self._call(
            "changes cursor",
            "read",
            lambda svc: svc.changes().getStartPageToken(supportsAllDrives=True).execute(),
        )
        token = result.get("startPageToken")
        if not token:
            raise PermanentStoreError("changes cursor: Drive returned no start page token")
        return str(token)

    def poll_changes(self, cursor: str) -> Changes:
        """Drain every page of ``changes.list`` before keeping ``newStartPageToken``.

        Folders = parents of changed files plus changed folders themselves; a removed
        entry (parent unknown) or a cursor Drive rejects means "anything changed"."""
        folders: set[str] | None = set()
        token = cursor
        while True:
            kwargs = {
                "pageToken": token,
                "pageSize": self.changes_page_size,
                "fields": CHANGES_FIELDS,
                "includeRemoved": True,
                "supportsAllDrives": True,
                "includeItemsFromAllDrives": True,
                "spaces": "drive",
            }

            def fetch(svc: Any, kwargs: dict[str, Any] = kwargs) -> Any:
                return svc.changes().list(**kwargs).execute()

            try:
                page = self._call("poll changes", "read", fetch)
            except PermanentStoreError as exc:
                if _http_status(exc) in (400, 404, 410):
                    return Changes(self.changes_cursor(), None)
                raise
            for change in page.get("changes") or []:
                file = change.get("file")
                if change.get("removed") or not isinstance(file, dict):
                    folders = None
                    continue
                if folders is None:
                    continue
                folders.update(file.get("parents") or [])
                if file.get("mimeType") == FOLDER_MIME and file.get("id"):
                    folders.add(file["id"])
            next_token = page.get("nextPageToken")
            if next_token:
                token = next_token
                continue
            new_cursor = page.get("newStartPageToken")
            if not new_cursor:
                raise _Transient(
                    "poll changes: Drive returned neither a next page nor a new cursor"
                )
            break
        if folders is not None and self.root_id in folders:
            folders.add(ROOT)
        return Changes(str(new_cursor), frozenset(folders) if folders is not None else None)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            https, self._https = self._https, []
        for http_obj in https:
            with contextlib.suppress(Exception):
                http_obj.close()
