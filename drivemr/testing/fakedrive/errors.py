"""Drive-shaped errors.

Every refusal the fake makes goes through :class:`ApiError`, so clients see the same JSON
body Google sends (``{"error": {"code", "message", "errors": [{"reason", "domain",
"message"}]}}``) and code that decides on the status code and reason behaves as on Drive.
"""

from __future__ import annotations

import json
from typing import Any


class ApiError(Exception):
    """A refusal, rendered as Drive's JSON error body."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        domain: str = "global",
        location: str | None = None,
        location_type: str | None = None,
        detail: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.domain = domain
        self.location = location
        self.location_type = location_type
        self.detail = detail
        """Extra explanation for humans; sent in the ``X-Fake-Drive-Detail`` header only,
        so the body stays what Drive sends."""
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON document Drive answers with."""
        item: dict[str, Any] = {
            "message": self.message,
            "domain": self.domain,
            "reason": self.reason,
        }
        if self.location is not None:
            item["location"] = self.location
            item["locationType"] = self.location_type or "parameter"
        return {"error": {"code": self.code, "message": self.message, "errors": [item]}}

    def to_bytes(self) -> bytes:
        return json.dumps(self.body(), indent=1).encode()


def not_found(file_id: str, location: str = "fileId") -> ApiError:
    """Drive's answer for an id it does not know (or that was deleted)."""
    return ApiError(
        404,
        "notFound",
        f"File not found: {file_id}.",
        location=location,
        location_type="parameter",
    )


def invalid_value(parameter: str, detail: str | None = None) -> ApiError:
    """Drive's terse answer for a bad query parameter (bad ``q``, bad ``pageToken``, ...)."""
    return ApiError(
        400,
        "invalid",
        "Invalid Value",
        location=parameter,
        location_type="parameter",
        detail=detail,
    )


def bad_request(message: str, reason: str = "badRequest", **kw: Any) -> ApiError:
    """A generic 400."""
    return ApiError(400, reason, message, **kw)


def field_not_writable(name: str) -> ApiError:
    """Drive's 403 for a read-only field in a request body."""
    return ApiError(
        403,
        "fieldNotWritable",
        "The resource body includes fields which are not directly writable.",
        location=f"file.{name}",
        location_type="other",
        detail=f"field {name!r} is not writable here",
    )


def fault_error(code: int) -> ApiError:
    """What Drive sends for a transient failure with status ``code`` (injected faults)."""
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


def auth_error() -> ApiError:
    return ApiError(
        401,
        "authError",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, "
        "login cookie or other valid authentication credential.",
        location="Authorization",
        location_type="header",
        headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
    )


def rate_limited() -> ApiError:
    return ApiError(
        403,
        "userRateLimitExceeded",
        "User rate limit exceeded. Rate of requests for user exceed configured project quota.",
        domain="usageLimits",
    )


def insufficient_permissions(message: str | None = None) -> ApiError:
    """Drive's 403 when the caller's role on a file is too weak for the call."""
    return ApiError(
        403,
        "insufficientFilePermissions",
        message or "The user does not have sufficient permissions for this file.",
    )


def drive_not_found(drive_id: str) -> ApiError:
    """Drive's 404 for a shared drive that does not exist or the caller is no member of."""
    return ApiError(
        404,
        "notFound",
        f"Shared drive not found: {drive_id}",
        location="driveId",
        location_type="parameter",
    )
