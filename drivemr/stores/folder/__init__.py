"""The folder store: a plain folder on a local disk or a network share (the default).

One module per part: :mod:`.store` (the store's operations), :mod:`.dirs` (walking and
opening without following links), :mod:`.index` (the id index: create-once and id to
path), :mod:`.probe` (what is checked at open: marker, identity, file-system probe) and
:mod:`.changes` (the change feed). This package re-exports the names other modules and
tests use; to change one (a test's ``monkeypatch``), set it in the module that defines it.
"""

from __future__ import annotations

from drivemr.stores.folder import changes as changes
from drivemr.stores.folder import dirs as dirs
from drivemr.stores.folder import index as index
from drivemr.stores.folder import probe as probe
from drivemr.stores.folder import store as store
from drivemr.stores.folder.changes import COARSE_MTIME_SLACK_NS, ChangeFeed
from drivemr.stores.folder.dirs import _DIR_FDS as _DIR_FDS
from drivemr.stores.folder.dirs import _O_CREATE_EXCL as _O_CREATE_EXCL
from drivemr.stores.folder.dirs import _O_READ as _O_READ
from drivemr.stores.folder.dirs import _TMP_PREFIX as _TMP_PREFIX
from drivemr.stores.folder.dirs import MAX_DIR_FDS, Walker
from drivemr.stores.folder.dirs import _create_excl as _create_excl
from drivemr.stores.folder.dirs import _Dir as _Dir
from drivemr.stores.folder.dirs import _open_file as _open_file
from drivemr.stores.folder.dirs import _read_bounded as _read_bounded
from drivemr.stores.folder.dirs import _translate as _translate
from drivemr.stores.folder.dirs import _write_all as _write_all
from drivemr.stores.folder.index import _ID_ALPHABET as _ID_ALPHABET
from drivemr.stores.folder.index import _ID_CHARS as _ID_CHARS
from drivemr.stores.folder.index import INDEX_DIR, MAX_RECORD, RECORD_HEADER, SEPARATOR, IdIndex
from drivemr.stores.folder.index import _check_rel as _check_rel
from drivemr.stores.folder.index import _parent_id as _parent_id
from drivemr.stores.folder.probe import (
    MARKER,
    MARKER_TEXT,
    MARKER_TEXT_MIXED,
    STORE_ID,
    STORE_ID_BYTES,
)
from drivemr.stores.folder.probe import _probed as _probed
from drivemr.stores.folder.store import FolderStore

__all__ = [
    "COARSE_MTIME_SLACK_NS",
    "INDEX_DIR",
    "MARKER",
    "MARKER_TEXT",
    "MARKER_TEXT_MIXED",
    "MAX_DIR_FDS",
    "MAX_RECORD",
    "RECORD_HEADER",
    "SEPARATOR",
    "STORE_ID",
    "STORE_ID_BYTES",
    "ChangeFeed",
    "FolderStore",
    "IdIndex",
    "Walker",
]
