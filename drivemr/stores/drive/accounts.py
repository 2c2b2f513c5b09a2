"""Several Google accounts on one root: can this account create with another's minted ids?

drivemr's claims and results are created once at ids the submitter minted
(``files.generateIds``). Google documents those ids as "generated for the requesting user";
whether Drive lets *another* account create a file with one is not documented. When it
does not, a worker signed in to another account could never claim a task of that job, so
the worker asks before it claims anything, and refuses to start with one line that says
which set-up works.

How it asks, at the cost of a few requests once per worker start:

* every account that submits jobs (whose minted ids workers will create at) leaves one
  small file in the root, ``.minted-ids.<permissionId>``, holding ids *it* minted and never
  uses itself (``drivemr submit`` writes it, once per account);
* a starting worker reads the other accounts' files and tries one create at one of their
  ids (a scratch file ``.minted-ids-test.<me>.<other>`` in the root, deleted at once when
  the account may delete; one left behind, as by a shared-drive writer, answers the
  question for later starts). Drive's
  400 "The provided file ID is not usable" means another account's ids are refused here;
  a success (or a 409: someone used that id before, so it was usable) means they work.

A worker started before another account's first submit cannot know yet: when Drive then
refuses its claim at that account's id, the worker leaves that job (one error line) and
serves on.

The files are untrusted: a read is bounded, a bad one is skipped with a warning, and a
file naming this worker's own account is never tested (a forged one could only make the
check pass; the claim itself would still fail loudly).
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass

from drivemr.errors import AlreadyExists, ConfigError, PermanentStoreError, StoreError
from drivemr.stores.base import ROOT, FileInfo
from drivemr.stores.drive.store import DriveStore
from drivemr.stores.drive.translate import http_status

__all__ = [
    "PROBE_PREFIX",
    "CrossAccountIds",
    "check_minted_ids",
    "publish_minted_ids",
    "try_foreign_id",
]

log = logging.getLogger("drivemr.store")

PROBE_PREFIX = ".minted-ids."
"""Name prefix of an account's probe file in the root (then its Drive permissionId)."""
TEST_PREFIX = ".minted-ids-test."
"""Name prefix of a scratch file made at another account's id (then both accounts)."""
PROBE_IDS = 32
MAX_PROBE_BYTES = 16 * 1024
MAX_ACCOUNTS_TESTED = 4

WHICH_SETUP_WORKS = (
    "Drive refuses files created with ids minted by another Google account here, so this "
    "worker could not claim that account's jobs: sign in on every PC that submits or works "
    "with the same Google account (or the same service account), with the root in a shared "
    "drive when PCs use a service account (`drivemr doctor --second-account` checks it)"
)


@dataclass(frozen=True)
class CrossAccountIds:
    """What the start-up check learned."""

    account: str
    """This sign-in's Drive permissionId."""
    tested: tuple[str, ...]
    """The other accounts (permissionIds) whose minted ids were tried."""
    refused_by: str | None = None
    """The first account whose minted ids Drive refused to this one, if any."""


def _probe_files(entries: list[FileInfo]) -> dict[str, FileInfo]:
    found: dict[str, FileInfo] = {}
    for entry in sorted(entries, key=lambda e: (e.created, e.id)):
        if entry.is_folder or not entry.name.startswith(PROBE_PREFIX):
            continue
        account = entry.name[len(PROBE_PREFIX) :]
        if account and account.replace("-", "").replace("_", "").isalnum():
            found.setdefault(account, entry)
    return found


def _read_ids(store: DriveStore, entry: FileInfo) -> list[str]:
    """The ids in one probe file, or [] (with a warning) when it is unreadable."""
    try:
        doc = json.loads(store.read(entry.id, max_bytes=MAX_PROBE_BYTES).decode("utf-8"))
    except (StoreError, ValueError, UnicodeDecodeError) as exc:
        log.warning("ignoring the unreadable probe file %s: %s", entry.id, exc)
        return []
    ids = doc.get("ids") if isinstance(doc, dict) else None
    if not isinstance(ids, list):
        return []
    return [i for i in ids if isinstance(i, str) and 10 <= len(i) <= 100 and i.isascii()][
        :PROBE_IDS
    ]


def publish_minted_ids(store: DriveStore, entries: list[FileInfo] | None = None) -> None:
    """Leave this account's probe file in the root, once per account (a few writes ever)."""
    me = store.account_id()
    if entries is None:
        entries = store.list(ROOT)
    if me in _probe_files(entries):
        return
    ids = store.mint_ids(PROBE_IDS + 1)
    body = json.dumps({"format": 1, "account": me, "ids": ids[1:]}).encode()
    store.create(ROOT, PROBE_PREFIX + me, ids[0], body)


def try_foreign_id(store: DriveStore, file_id: str, name: str) -> bool | None:
    """Create a scratch file in the root at ``file_id`` (minted by another account): True
    when Drive accepted it (or the id was used before: it was usable), False when Drive
    refused the id as not usable by this account, None when the answer says neither."""
    try:
        info = store.create(ROOT, name, file_id, b"")
    except AlreadyExists:
        return True
    except PermanentStoreError as exc:
        if http_status(exc) == 400:
            return False
        raise
    try:
        store.delete(info.id)
    except PermanentStoreError as exc:  # a shared-drive writer may not delete: leave it
        log.debug("could not delete the scratch file %s: %s", info.id, exc)
    return True


def check_minted_ids(store: DriveStore, *, publish: bool = False) -> CrossAccountIds:
    """Try the ids of the other accounts that submit jobs (see the module docstring) and,
    with ``publish``, leave this account's. Raises :class:`ConfigError` (one line) when
    Drive refuses them."""
    me = store.account_id()
    entries = store.list(ROOT)
    probes = _probe_files(entries)
    names = {e.name for e in entries}
    tested: list[str] = []
    for account, entry in probes.items():
        if account == me or len(tested) >= MAX_ACCOUNTS_TESTED:
            continue
        scratch = f"{TEST_PREFIX}{me}.{account}"
        if scratch in names:  # an earlier start succeeded and could not delete its scratch
            tested.append(account)
            continue
        ids = _read_ids(store, entry)
        if not ids:
            continue
        tested.append(account)
        verdict = try_foreign_id(store, random.choice(ids), scratch)
        if verdict is False:
            raise ConfigError(
                f"{WHICH_SETUP_WORKS}. Account {account} submitted jobs here; if it no "
                f"longer does, delete {PROBE_PREFIX}{account} from the root."
            )
    if publish:
        publish_minted_ids(store, entries)
    return CrossAccountIds(me, tuple(tested))
