"""OAuth grants: the fake's token endpoint, so a refreshed token stays the same user.

On Drive every access token issued for one grant acts as the same user, however often the
client refreshes it. Bearer strings name accounts in the fake (any string will do), so
without this a refreshed token would look like another account. :class:`Grants` issues a
grant (a refresh token and a first access token) for an account, answers Google's
``POST /token`` refresh (``grant_type=refresh_token``) with a new access token of the same
account, and answers ``400 invalid_grant`` once the grant is revoked, as Google does for a
revoked or expired sign-in. Tokens it did not issue keep naming accounts themselves.
"""

from __future__ import annotations

import json
import secrets
import threading
import urllib.parse
from dataclasses import dataclass, replace

from drivemr.testing.fakedrive.messages import Request, Response

TOKEN_PATH = "/token"
"""Where the fake's token endpoint listens (Google's is ``https://oauth2.googleapis.com/token``)."""
ACCESS_TOKEN_SECONDS = 3600


@dataclass(frozen=True)
class Grant:
    """What a sign-in hands the client: its refresh token and first access token."""

    account: str
    refresh_token: str
    access_token: str


class Grants:
    """Issued grants and the access tokens minted for them (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_refresh: dict[str, str] = {}
        """Live refresh token -> account."""
        self._by_access: dict[str, str] = {}
        """Access token -> account, for every token this endpoint issued."""

    def issue(self, account: str) -> Grant:
        """A new grant for ``account`` (a sign-in)."""
        grant = Grant(account, "1//fake-" + secrets.token_urlsafe(16), self._mint(account))
        with self._lock:
            self._by_refresh[grant.refresh_token] = account
        return grant

    def revoke(self, refresh_token: str) -> None:
        """Revoke a grant: its refresh answers ``invalid_grant`` from now on. Access tokens
        already issued keep working until the client drops them (as on Google, until they
        expire)."""
        with self._lock:
            self._by_refresh.pop(refresh_token, None)

    def account_of(self, token: str) -> str | None:
        """The account of an access token this endpoint issued, else ``None``."""
        with self._lock:
            return self._by_access.get(token)

    def resolve(self, req: Request) -> Request:
        """``req`` acting as the account of its issued access token (unchanged otherwise)."""
        scheme, _, token = req.headers.get("authorization", "").strip().partition(" ")
        account = self.account_of(token.strip()) if scheme.lower() == "bearer" else None
        if account is None:
            return req
        return replace(req, headers={**req.headers, "authorization": f"Bearer {account}"})

    def serve(self, req: Request) -> Response:
        """``POST /token``: the refresh-token grant, answered as Google does."""
        form = dict(urllib.parse.parse_qsl(req.body.decode("utf-8", "replace"), True))
        if req.method != "POST" or form.get("grant_type") != "refresh_token":
            return _oauth_error(400, "unsupported_grant_type", "Only refresh_token is served.")
        with self._lock:
            account = self._by_refresh.get(form.get("refresh_token", ""))
        if account is None:
            return _oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
        body = {
            "access_token": self._mint(account),
            "expires_in": ACCESS_TOKEN_SECONDS,
            "token_type": "Bearer",
            "scope": "https://www.googleapis.com/auth/drive",
        }
        return Response(200, json.dumps(body).encode())

    def _mint(self, account: str) -> str:
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        with self._lock:
            self._by_access[token] = account
        return token


def _oauth_error(status: int, error: str, description: str) -> Response:
    body = {"error": error, "error_description": description}
    return Response(status, json.dumps(body).encode())
