"""The store interface: the only thing that differs between a folder and Google Drive.

Every store offers the primitives Drive has and nothing more:

* ``mint_ids``  - ids are minted before use (Drive's ``files.generateIds``);
* ``create``    - create a file (or folder) *once* under a minted id: a second create with
                  the same id raises :class:`AlreadyExists`, whoever tries it (Drive's 409).
                  A store whose :attr:`Store.create_once_any_name` is False (S3) promises it
                  for creates with the same parent and name: the protocol fixes a file's
                  name by its id's role, so every legitimate creator of an id uses one.
                  Content is published atomically: a reader sees all of it or no file;
* ``list``      - a folder's children, complete and consistent (Drive's by-parent listing);
                  a failed listing raises, it never looks like an empty folder;
* ``get``       - one file's metadata by id (consistent); ``read`` / ``download`` content.
                  These, ``update`` and ``delete`` take an optional ``parent``: the folder
                  the caller knows the file is in. A store that cannot find a file by its
                  id alone (S3) looks there; the others ignore it;
* ``update``    - replace a file's content (no compare-and-swap: Drive has none);
* ``delete``;
* ``poll_changes`` - a cheap "which folders changed since this cursor" feed.

Names are labels, never keys: two files in a folder may share a name. Everything above
this interface (claims, leases, commits, the reduce barrier) lives in
:mod:`drivemr.protocol` and is written once for every store.

Timestamps in :class:`FileInfo` are the store's (the Drive server's, the file server's),
never the caller's clock: leases are judged on them.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

_S = TypeVar("_S", bound="Store")

ROOT = "root"
"""Alias of the store's root folder, as on Drive."""

FOLDER_MIME = "application/vnd.google-apps.folder"


@dataclass(frozen=True)
class FileInfo:
    """Metadata of one file or folder, as the store reports it."""

    id: str
    name: str
    parent: str
    is_folder: bool = False
    size: int | None = None
    md5: str | None = None
    modified: float = 0.0
    """Store-side modification time, seconds since the epoch (UTC)."""
    created: float = 0.0
    """Store-side creation time, seconds since the epoch (UTC)."""


@dataclass(frozen=True)
class Changes:
    """What :meth:`Store.poll_changes` saw.

    ``folders`` holds the ids of folders whose children (or their content) may have
    changed; ``None`` means "could not tell, assume anything changed".
    """

    cursor: str
    folders: frozenset[str] | None = field(default=None)

    @property
    def anything(self) -> bool:
        return self.folders is None or bool(self.folders)


class Store(abc.ABC):
    """A shared place where drivemr keeps jobs, claims, results and heartbeats."""

    url: str
    """The URL this store was opened from (``file:///...`` or ``drive://...``)."""

    root_id: str = ROOT
    """Id of the drivemr root folder inside the store."""

    create_once_any_name: bool = True
    """True: a second create of an id raises AlreadyExists whatever its parent and name.
    False (S3, whose conditional create is per key): only one with the same parent and
    name does; readers of an id that two creates with different names made see one of the
    two, the same one for every reader."""

    @abc.abstractmethod
    def mint_ids(self, count: int) -> list[str]:
        """Return ``count`` fresh ids usable with :meth:`create` by any client of the store."""

    @abc.abstractmethod
    def create(
        self,
        parent: str,
        name: str,
        file_id: str,
        data: bytes | None = None,
        *,
        source: Path | None = None,
        folder: bool = False,
    ) -> FileInfo:
        """Create a file (content from ``data`` or the local file ``source``) or a folder, once.

        Raises :class:`AlreadyExists` when ``file_id`` was used before, :class:`NotFound`
        when ``parent`` does not exist.
        """

    @abc.abstractmethod
    def list(self, parent: str) -> list[FileInfo]:
        """Every child of ``parent`` (all pages). Raises on failure; never returns a partial list."""

    @abc.abstractmethod
    def get(self, file_id: str, *, parent: str | None = None) -> FileInfo:
        """Metadata of one file. Raises :class:`NotFound`.

        ``parent`` (a hint, every by-id call takes it): the folder the caller knows the
        file is in. With it a store may answer NotFound for a file that is elsewhere;
        without it a store that cannot find the file never answers NotFound wrongly (it
        raises another :class:`StoreError`)."""

    @abc.abstractmethod
    def read(
        self, file_id: str, *, max_bytes: int | None = None, parent: str | None = None
    ) -> bytes:
        """The whole content of a file. Raises :class:`NotFound`, or :class:`StoreError`
        when the file is larger than ``max_bytes``."""

    @abc.abstractmethod
    def download(
        self,
        file_id: str,
        dest: Path,
        *,
        max_bytes: int | None = None,
        parent: str | None = None,
    ) -> None:
        """Write a file's content to ``dest`` (atomically: complete or absent). With
        ``max_bytes`` the transfer stops soon after that many bytes (at most one transfer
        chunk later) and raises :class:`TooLarge`, leaving nothing at ``dest``."""

    @abc.abstractmethod
    def update(self, file_id: str, data: bytes, *, parent: str | None = None) -> FileInfo:
        """Replace a file's content atomically and return the new metadata (``parent``:
        a hint, as for :meth:`get`)."""

    @abc.abstractmethod
    def delete(self, file_id: str, *, parent: str | None = None) -> None:
        """Delete a file or a folder with everything under it. Missing is not an error
        (``parent``: a hint, as for :meth:`get`)."""

    @abc.abstractmethod
    def changes_cursor(self) -> str:
        """A cursor for :meth:`poll_changes` that marks "now"."""

    @abc.abstractmethod
    def poll_changes(self, cursor: str) -> Changes:
        """Folders that changed since ``cursor``, and the cursor to use next time."""

    @property
    def identity(self) -> str:
        """This store's identity: a string that names *this* store and no other.

        Guarantee: two opens of the same store (from any PC, any time) give the same
        identity, and a different store (another folder, another Drive folder, a copy of
        this one made by copying its files) gives a different one. drivemr signs it into
        every job, so a signed job runs only in the store it was posted to: a job folder
        copied into another store is refused there. Stores override this; the default
        (the URL) is only a fallback for stores that have nothing better.
        """
        return f"url:{self.url}"

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. The store must not be used afterwards."""

    # -- helpers built on the primitives (stores may override them for speed) --

    def create_many(self, items: Iterable[tuple[str, str, str, bytes]]) -> builtins.list[FileInfo]:
        """Create several small files ``(parent, name, id, data)``; stops at the first error."""
        return [self.create(parent, name, fid, data) for parent, name, fid, data in items]

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
