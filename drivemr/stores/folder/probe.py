"""What the folder store checks when it opens a folder: the marker, the identity, the probe.

``.drivemr-store`` marks a folder as a store (only ``drivemr init`` writes it) and its exact
text tells the layout; ``.drivemr-store-id`` holds the store's random identity. The probe
runs once per process and folder and refuses, with one line, a file system that lacks what
create-once needs (an exclusive create that loses, a rename that replaces), before any
worker relies on it. Kept apart from the store's operations because it runs once, at open.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
import threading
import time
from pathlib import Path

from drivemr.errors import ConfigError, PermanentStoreError, StoreError
from drivemr.stores.folder import dirs
from drivemr.stores.folder.dirs import (
    Walker,
    _create_excl,
    _open_file,
    _read_bounded,
    _translate,
    _write_all,
)
from drivemr.stores.folder.index import INDEX_DIR

MARKER = ".drivemr-store"
MARKER_TEXT = b'{"drivemr": "folder store", "layout": 2}\n'
"""The marker of a store made in layout 2: no entry of the first layout can be in it."""
STORE_ID = ".drivemr-store-id"
"""The store's random identity (see Store.identity), created once: at ``drivemr init``, or
by the first open of a store made before it existed. A file of its own, because the
marker's exact text is how the layout is recognised. Copying the store's files copies it
too; that is a copy of the store's jobs, which the workers' memory of finished jobs covers."""
STORE_ID_BYTES = 16
MARKER_TEXT_MIXED = b'{"drivemr": "folder store", "layout": 1}\n'
"""The marker ``drivemr init`` writes into a store of the first layout."""

_probed: dict[str, str | None] = {}
_probed_lock = threading.Lock()


def is_store(path: Path) -> bool:
    for name, want in ((MARKER, stat.S_ISREG), (INDEX_DIR, stat.S_ISDIR)):
        try:
            if want(os.lstat(path / name).st_mode):
                return True  # the marker, or an index of the first layout
        except OSError:
            continue
    return False


def may_hold_first_layout(walker: Walker) -> bool:
    try:
        with walker.root() as root:
            fd = _open_file(root, MARKER, "the store's marker")
            try:
                return _read_bounded(fd, 256) != MARKER_TEXT
            finally:
                os.close(fd)
    except (OSError, StoreError):
        return True  # no marker: a store of the first layout


def store_id(walker: Walker) -> str:
    """The random id in STORE_ID, created (exclusively) if missing."""
    path = walker.path
    with walker.root() as root:
        for attempt in range(40):
            if attempt:
                time.sleep(0.05)  # once per store open, only while another PC writes it
            try:
                fd = _open_file(root, STORE_ID, "the store's id")
            except FileNotFoundError:
                try:
                    fd = _create_excl(root, STORE_ID)
                except FileExistsError:
                    continue  # another PC created it first: read theirs
                except OSError as exc:
                    raise _translate(exc, f"create {STORE_ID} in {path}") from exc
                made = secrets.token_hex(STORE_ID_BYTES)
                try:
                    _write_all(fd, made.encode() + b"\n")
                finally:
                    os.close(fd)
                return made
            except OSError as exc:
                raise _translate(exc, f"read {STORE_ID} in {path}") from exc
            try:
                text = _read_bounded(fd, 256).decode("ascii", "replace").strip()
            finally:
                os.close(fd)
            if text and all(c in "0123456789abcdef" for c in text) and len(text) <= 64:
                return text
            if not text:
                continue  # being written by the PC that created it
            raise PermanentStoreError(
                f"{path / STORE_ID} is damaged (not a store id); restore it from a"
                " backup, or delete it to give the store a new identity (jobs posted"
                " before then no longer run)"
            )
    raise PermanentStoreError(f"cannot read or create {path / STORE_ID}")


def write_marker(walker: Walker) -> None:
    path = walker.path
    text = MARKER_TEXT
    try:
        if stat.S_ISDIR(os.lstat(path / INDEX_DIR).st_mode):
            text = MARKER_TEXT_MIXED  # made by an earlier version, without a marker
    except OSError:
        pass
    with walker.root() as root:
        try:
            fd = _create_excl(root, MARKER)
        except FileExistsError:
            return
        except OSError as exc:
            raise _translate(exc, f"mark {path} as a store") from exc
        try:
            _write_all(fd, text)
        finally:
            os.close(fd)


def probe(walker: Walker) -> None:
    """Refuse, with one line, a file system that lacks what create-once needs."""
    key = str(walker.path)
    with _probed_lock:
        if key not in _probed:
            _probed[key] = probe_features(walker)
        reason = _probed[key]
    if reason is not None:
        raise ConfigError(f"{walker.path} cannot hold a drivemr store: {reason}")


def probe_features(walker: Walker) -> str | None:
    name = f".drivemr-probe-{secrets.token_hex(6)}"
    try:
        with walker.root() as root:
            root.mkdir(name)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return None  # read-only for us: reading works; writes will say why
        return f"cannot make a folder in it ({exc})"
    try:
        with walker.walk(name, fresh=True) as folder:
            fd = _create_excl(folder, "a")
            _write_all(fd, b"1")
            os.close(fd)
            try:
                fd = _create_excl(folder, "a")
            except FileExistsError:
                pass
            else:
                os.close(fd)
                return "it does not honour exclusive create (O_EXCL): two PCs could win one claim"
            fd = folder.open("b", dirs._O_CREATE_EXCL)
            _write_all(fd, b"22")
            os.close(fd)
            folder.rename("b", "c")
            fd = folder.open("d", dirs._O_CREATE_EXCL)
            _write_all(fd, b"333")
            os.close(fd)
            try:
                folder.rename("d", "c", replace=True)
            except OSError as exc:
                return f"it cannot replace a file by rename ({exc})"
            fd = _open_file(folder, "c", "probe")
            try:
                if _read_bounded(fd, 16) != b"333":
                    return "a file replaced by rename reads back wrong"
            finally:
                os.close(fd)
        return None
    except (OSError, StoreError) as exc:
        return f"a file-system check failed ({exc})"
    finally:
        shutil.rmtree(walker.path / name, ignore_errors=True)
