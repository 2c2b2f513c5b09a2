"""Strict HTTP for the Drive store: httplib2 that never resends a write behind our back.

httplib2 silently resends a request whose connection closed without a response. For a
write that hides a possibly committed change (a create!) from the retry layer, from
pacing and from counting, and a resent stream body (an upload chunk) would be empty. These
connection classes turn it into an error the retry layer sees. httplib2 is not
thread-safe: the session gives each thread its own :class:`StrictHttp`.
"""

from __future__ import annotations

import functools
import http.client
import json
from typing import Any

import httplib2
from googleapiclient.discovery_cache import get_static_doc

__all__ = ["SILENT_RESEND_OK", "StrictHttp", "discovery_document"]

SILENT_RESEND_OK = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods httplib2 may resend by itself when a connection closes without an answer.
Never writes: a resend would hide a committed write from our retry layer (and from
pacing and counting), and a resent stream body (an upload chunk) would be empty."""


def _closed_without_response(method: str, exc: Exception) -> ConnectionAbortedError:
    return ConnectionAbortedError(
        f"the server closed the connection without answering a {method} request "
        f"(it may or may not have been processed): {exc!r}"
    )


class _NoSilentResend:
    """httplib2 silently resends a request whose connection closed without a response
    (BadStatusLine). For a write that hides a possibly committed change (a create!), so we
    turn it into an error our retry layer sees, counts and handles. Mixed into both of
    httplib2's connection classes (plain and TLS)."""

    _drivemr_method = "GET"

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> None:
        self._drivemr_method = method.upper()
        super().request(method, url, *args, **kwargs)  # type: ignore[misc]

    def getresponse(self) -> http.client.HTTPResponse:
        try:
            return super().getresponse()  # type: ignore[misc]
        except http.client.BadStatusLine as exc:
            if self._drivemr_method in SILENT_RESEND_OK:
                raise
            raise _closed_without_response(self._drivemr_method, exc) from exc


class _HTTPConnection(_NoSilentResend, httplib2.HTTPConnectionWithTimeout):
    """A plain-HTTP connection without silent resends of writes."""


class _HTTPSConnection(_NoSilentResend, httplib2.HTTPSConnectionWithTimeout):
    """A TLS connection without silent resends of writes."""


class StrictHttp(httplib2.Http):
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
def discovery_document(endpoint: str | None) -> str:
    """The bundled Drive v3 discovery document, pointed at ``endpoint`` when given."""
    doc = json.loads(get_static_doc("drive", "v3"))
    if endpoint:
        root = endpoint if endpoint.endswith("/") else endpoint + "/"
        doc["rootUrl"] = root
        doc["mtlsRootUrl"] = root
        doc["baseUrl"] = root + doc["servicePath"]
    return json.dumps(doc)
