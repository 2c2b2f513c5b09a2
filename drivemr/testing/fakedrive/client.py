"""Build a real googleapiclient Drive v3 client that talks to the fake.

``client_options.api_endpoint`` does not redirect uploads or batch calls, so the client is
built from the discovery document bundled with google-api-python-client with ``rootUrl``
(and the URLs derived from it) pointing at the fake.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import googleapiclient
from google.auth.credentials import AnonymousCredentials
from google.oauth2.credentials import Credentials
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build_from_document


@functools.lru_cache(maxsize=1)
def _bundled_document() -> dict[str, Any]:
    path = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents" / "drive.v3.json"
    with open(path, encoding="utf-8") as fh:
        doc: dict[str, Any] = json.load(fh)
    return doc


def discovery_document(url: str | None = None) -> dict[str, Any]:
    """The bundled drive v3 document, patched to ``url`` when given (a fresh copy)."""
    doc = copy.deepcopy(_bundled_document())
    if url is not None:
        root = url if url.endswith("/") else url + "/"
        doc["rootUrl"] = root
        doc["mtlsRootUrl"] = root
        doc["baseUrl"] = root + doc.get("servicePath", "drive/v3/")
        doc["batchPath"] = "batch/drive/v3"
    return doc


@functools.lru_cache(maxsize=32)
def _patched_text(url: str) -> str:
    return json.dumps(discovery_document(url))


def build_client(url: str, http: Any = None, token: str | None = None) -> Any:
    """A googleapiclient ``Resource`` for Drive v3 whose every call reaches ``url``.

    The fake names an account by its bearer token: with ``token`` the client sends
    ``Authorization: Bearer TOKEN`` and acts as that account; without it (and without
    ``http``) it sends no Authorization header and acts as the default account. Pass an
    ``httplib2.Http`` (e.g. one per thread, since httplib2 is not thread-safe) to control
    the transport.
    """
    doc = _patched_text(url)
    if token is not None:
        creds = Credentials(token=token)
        if http is None:
            return build_from_document(doc, credentials=creds)
        return build_from_document(doc, http=AuthorizedHttp(creds, http=http))
    if http is None:
        return build_from_document(doc, credentials=AnonymousCredentials())
    return build_from_document(doc, http=http)
