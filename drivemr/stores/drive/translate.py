"""Error translation for the Drive store: googleapiclient, httplib2, socket and google-auth
failures become drivemr's errors, so nothing above the store sees a backend's types.

What is transient (retried by :mod:`drivemr.stores.retry`) is decided here: 429 and 5xx,
a 403 whose reason is a rate limit, a broken exchange, a reset or timed-out connection.
Everything else is permanent and carries Drive's own message, plus a hint where the usual
cause is known (a sign-in mismatch, a service account without storage).
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import logging
import socket
import ssl

import httplib2
from googleapiclient.errors import HttpError

from drivemr.errors import (
    AlreadyExists,
    AuthError,
    NotFound,
    PermanentStoreError,
    StoreError,
    TransientStoreError,
)
from drivemr.stores.retry import parse_retry_after

__all__ = [
    "DELETE_ROLE_HELP",
    "ITEM_LIMIT_HELP",
    "ROOT_NOT_VISIBLE",
    "SAME_ACCOUNT_HELP",
    "SERVICE_ACCOUNT_HELP",
    "USER_QUOTA_HELP",
    "http_status",
    "reasons_of",
    "translate",
    "with_hint",
]

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

SAME_ACCOUNT_HELP = (
    "Drive refused a minted file id. Ids minted by one Google account are not usable by "
    "another here: sign in on every PC that submits or works with the same Google account "
    "(or the same service account) and the same OAuth client "
    "(`drivemr auth login --client-secrets FILE`); a service account needs the root in a "
    "shared drive (`drivemr init --store drive:// --shared-drive ID`). Workers signed in "
    "with different accounts also need the full `drive` scope (`drivemr auth login --scope "
    "drive`), and `drivemr doctor --second-account` tells whether their ids cross."
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


def with_hint(text: object, hint: str) -> str:
    """``text`` followed by ``hint`` as a new sentence: one period between them, never two
    (Drive's messages often end with a period already)."""
    head = str(text).rstrip()
    while head.endswith("."):
        head = head[:-1].rstrip()
    return f"{head}. {hint}"


ITEM_LIMIT_HELP = (
    "The shared drive holds as many items as Drive allows (about 400,000). Remove finished "
    "jobs with `drivemr clean --older-than 30d` (try `--dry-run` first), or move the root to "
    "another shared drive."
)
DELETE_ROLE_HELP = (
    "This account may not delete it: in a shared drive, deleting needs the Content manager "
    "(fileOrganizer) or Manager (organizer) role, and in My Drive only the owner deletes. "
    "Ask a manager of the shared drive to raise this account's role, or run the clean-up "
    "as an account that has it."
)


def reasons_of(exc: BaseException | None) -> set[str]:
    """Drive's error reasons behind a translated error (empty when there are none)."""
    while exc is not None:
        if isinstance(exc, HttpError):
            return _error_details(exc)[2]
        exc = exc.__cause__
    return set()


class _QuietForbidden(logging.Filter):
    """googleapiclient logs a WARNING for every 403 it receives, even with its own retries
    off. Our retry layer handles (and counts) rate-limit refusals and turns every other 403
    into an error carrying Drive's message, so that warning only alarms the user."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Encountered 403 Forbidden")


logging.getLogger("googleapiclient.http").addFilter(_QuietForbidden())


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


def http_status(exc: BaseException | None) -> int | None:
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
    return parse_retry_after(value)


def _is_transient_os_error(exc: OSError) -> bool:
    if isinstance(exc, (socket.timeout, TimeoutError, ConnectionError)):
        return True
    if isinstance(exc, ssl.SSLCertVerificationError):
        return False
    if isinstance(exc, ssl.SSLError):
        return True  # EOF / bad record mid-stream: the connection broke
    return errno.errorcode.get(exc.errno or -1, "") in _TRANSIENT_ERRNO_NAMES


def translate(exc: BaseException, what: str, *, service_account: bool = False) -> StoreError | None:
    """Map a googleapiclient / httplib2 / socket / google-auth failure to a drivemr error.

    Returns None for anything that is not an I/O failure (a bug should surface as is)."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, HttpError):
        status, message, reasons = _error_details(exc)
        text = f"{what}: Drive answered HTTP {status}: {message}"
        if status in _TRANSIENT_STATUS or (status == 403 and reasons & _RATE_REASONS):
            return TransientStoreError(text, _retry_after(exc))
        if status == 404:
            return NotFound(text)
        if status == 409:
            return AlreadyExists(text)
        if status == 401:
            return AuthError(f"{text} (sign in again with `drivemr auth login`)")
        if status == 403 and "storageQuotaExceeded" in reasons:
            hint = SERVICE_ACCOUNT_HELP if service_account else USER_QUOTA_HELP
            return PermanentStoreError(with_hint(text, hint))
        if status == 403 and reasons & {
            "teamDriveFileLimitExceeded",
            "numChildrenInNonRootLimitExceeded",
        }:
            return PermanentStoreError(with_hint(text, ITEM_LIMIT_HELP))
        if status == 403 and "insufficientFilePermissions" in reasons and what.startswith("delete"):
            return PermanentStoreError(with_hint(text, DELETE_ROLE_HELP))
        return PermanentStoreError(text)
    if isinstance(exc, httplib2.ServerNotFoundError):
        return PermanentStoreError(f"{what}: {exc} (is this PC offline, or the endpoint wrong?)")
    if isinstance(exc, (http.client.HTTPException, httplib2.HttpLib2Error)):
        # IncompleteRead, a malformed response, a redirect loop: the exchange broke.
        return TransientStoreError(f"{what}: broken HTTP exchange: {exc!r}")
    if isinstance(exc, OSError):
        if _is_transient_os_error(exc):
            return TransientStoreError(f"{what}: network error: {exc!r}")
        return PermanentStoreError(f"{what}: {exc!r}")
    try:
        from google.auth import exceptions as gexc
    except ImportError:  # pragma: no cover
        return None
    if isinstance(exc, gexc.RefreshError):
        from drivemr.auth import refresh_error

        return refresh_error(exc)
    if isinstance(exc, gexc.TransportError):
        return TransientStoreError(f"{what}: could not reach Google: {exc}")
    return None
