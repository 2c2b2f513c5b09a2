"""The Google Drive store: the store interface on Drive API v3 (google-api-python-client).

This package and :mod:`drivemr.auth` are the only ones that import googleapiclient.
Modules: :mod:`.store` (the store proper), :mod:`.session` (connections, retries,
counters), :mod:`.strict_http`, :mod:`.translate` (errors), :mod:`.pacing`,
:mod:`.transfer` (chunked uploads/downloads), :mod:`.feeds` (paged listings),
:mod:`.fields` (the wire format), :mod:`.root` (where the root lives).

Why it is built the way it is:

* **Create-once by minted id.** ``files.generateIds`` mints ids; ``files.create`` with
  ``id=<minted>`` is Drive's only atomic create-once (a reused id answers 409). A create
  retried after a lost response may meet its own earlier success as a 409: we then fetch
  the file by id and compare name, parent, size and md5 with what we sent; equal means the
  earlier request was ours and the create succeeded. A 409 on the first attempt is always
  :class:`AlreadyExists`. (The policy and the recognition are every store's:
  :mod:`drivemr.stores.retry`.)
* **No hidden retries.** googleapiclient's ``num_retries`` stays 0 and httplib2's silent
  resend of a request whose connection closed without a response is disabled for POST
  (our connection classes turn it into an error), so *every* retry goes through one
  tenacity layer and is counted; a create is never resent behind our back.
* **Threads.** httplib2 is not thread-safe: each thread gets its own ``Http`` (wrapped in
  ``AuthorizedHttp`` for real Drive) and its own service object.
* **Quota.** Writes (create/update/delete) pass a process-wide :class:`WritePacer`
  (``write_rate`` per second, default 3: Drive's sustained per-account write limit).
  Reads are not paced.
* **Pointing at a fake.** ``DRIVEMR_DRIVE_ENDPOINT=http://127.0.0.1:PORT/`` builds the
  client from the bundled discovery document with ``rootUrl`` patched, so uploads and
  batch calls go there too, and uses no credentials.
"""

from __future__ import annotations

from drivemr.stores.drive.fields import parse_rfc3339
from drivemr.stores.drive.pacing import DEFAULT_WRITE_RATE, WritePacer
from drivemr.stores.drive.session import DriveSession
from drivemr.stores.drive.store import ENDPOINT_ENV, DriveStore
from drivemr.stores.drive.strict_http import StrictHttp
from drivemr.stores.drive.translate import ROOT_NOT_VISIBLE, SAME_ACCOUNT_HELP

__all__ = [
    "DEFAULT_WRITE_RATE",
    "ENDPOINT_ENV",
    "ROOT_NOT_VISIBLE",
    "SAME_ACCOUNT_HELP",
    "DriveSession",
    "DriveStore",
    "StrictHttp",
    "WritePacer",
    "parse_rfc3339",
]
