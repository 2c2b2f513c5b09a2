"""A faithful local Google Drive v3 server, for tests, benchmarks and offline trials.

drivemr's Drive path cannot reach Google from the machines that build and test it, so this
stand-in behaves like Drive wherever drivemr depends on it: minted ids and the 409 on a
second create, by-parent listings that are consistent while name queries lag, resumable
uploads, batch, the change feed, Drive-shaped errors, and injectable faults (latency, a
write quota, random 5xx/429, lost acknowledgements). Clients are the real
google-api-python-client, built with :func:`build_client`.

    from drivemr.testing.fakedrive import FakeDriveServer, build_client

    with FakeDriveServer() as srv:
        drive = build_client(srv.url)
        ids = drive.files().generateIds(count=1).execute()["ids"]
        drive.files().create(body={"id": ids[0], "name": "claim"}).execute()

Or as a process: ``drivemr fake-drive --port 0 [--state FILE]`` prints
``fake Google Drive v3 listening at http://127.0.0.1:PORT/`` and serves until SIGINT/SIGTERM.
Faults change at runtime with ``srv.configure(...)`` or ``POST /_fake/config`` (JSON with the
same keys, see :class:`FakeConfig`); ``GET /_fake/stats`` / ``POST /_fake/stats/reset``
count requests. Tip: ``drive.files()`` rebuilds every method in googleapiclient; keep one.

Accounts and shared drives (see ``docs/fakedrive.md``): the bearer token names the account
(``build_client(url, token="alice")``; none: the default account); files are visible to
their owner, to accounts they are shared with (``permissions.create``), below visible
folders, and in shared drives to members (``drives.create/list/get``,
``srv.create_drive(...)``); everything else is a 404. Policies and deliberate misbehaviour
are knobs: ``minted_ids``, ``drive_item_limit``, ``misbehave``.

Deliberately not modelled:

* permissions beyond user permissions (no groups, domains, anyone-with-link; no
  permissions.list/update/delete), per-item permissions inside shared drives, moving items
  between My Drive and shared drives, revisions, comments, labels, the ``appDataFolder``
  space (accepted, always empty), exports of Google Docs formats, push notifications
  (``watch``), and any method not listed above (-> 501);
* per-account quotas: the write quota is shared by all accounts;
* the lagging name index hides *new* files only (a rename is seen at once);
* ``modifiedTime`` moves on content, name and description changes, not on
  appProperties/parents/trash changes (Drive documents no precise rule);
* upload sessions live in memory only (lost on restart); per-minute quota units, the
  750 GB/day upload cap and storage limits are not enforced;
* the default ``files.list`` order is by id: Drive's is unspecified, do not rely on one.
"""

from drivemr.testing.fakedrive.client import build_client, discovery_document
from drivemr.testing.fakedrive.config import FakeConfig
from drivemr.testing.fakedrive.server import FakeDriveServer

__all__ = ["FakeConfig", "FakeDriveServer", "build_client", "discovery_document"]
