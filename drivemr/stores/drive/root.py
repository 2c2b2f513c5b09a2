"""Where a Drive store's root lives: My Drive or a shared drive, and under which real id.

Kept apart from the store proper because these answers are asked of Drive once and then
remembered (a root never moves between drives, and Drive ids are never reused), and because
they shape other calls: listings and the change feed of a shared drive need its id, and a
missing root is almost always a sign-in mismatch, which earns a hint rather than a bare
"not found". Also here: :class:`instance_or_class`, which lets ``create_root`` be called on
the class, before any root exists.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from drivemr.errors import NotFound
from drivemr.stores.base import ROOT, FileInfo
from drivemr.stores.drive.fields import SCHEME
from drivemr.stores.drive.transfer import Call
from drivemr.stores.drive.translate import ROOT_NOT_VISIBLE, with_hint

__all__ = ["RootPlace", "instance_or_class"]


class instance_or_class:
    """A method that also works on the class: then it runs on a temporary
    ``DriveStore.from_url("drive://", **options)`` (options = unknown keyword arguments)."""

    def __init__(self, func: Callable[..., str]) -> None:
        self.func = func
        self.__doc__ = func.__doc__

    def __get__(self, obj: Any, cls: Any) -> Callable[..., str]:
        if obj is not None:
            return functools.partial(self.func, obj)

        def on_class(
            name: str = "drivemr",
            parent: str = ROOT,
            shared_drive: str | None = None,
            **options: Any,
        ) -> str:
            with cls.from_url(SCHEME, **options) as store:
                return self.func(store, name, parent, shared_drive)

        return on_class


class RootPlace:
    """The root folder's drive and identity, each asked once; safe to share between threads
    (a race asks Drive twice for the same answer, never answers wrongly)."""

    def __init__(self, root_id: str, shared_drive: str | bool) -> None:
        self.root_id = root_id
        # shared_drive: True = ask Drive which drive the root is in (once); False = My
        # Drive; a string = that shared drive's id.
        self._drive_id: str | None = shared_drive if isinstance(shared_drive, str) else None
        self._drive_known = shared_drive is not True
        self._identity: str | None = None

    def hint(self, exc: NotFound, folder_id: str) -> NotFound:
        """A missing *root* is almost always a sign-in mismatch: say so."""
        if folder_id != self.root_id or self.root_id == ROOT:
            return exc
        return NotFound(with_hint(exc, ROOT_NOT_VISIBLE))

    def shared_drive_id(self, call: Call) -> str | None:
        """The id of the shared drive the root lives in, or None (My Drive), asked through
        the store's ``call`` the first time."""
        if self._drive_known:
            return self._drive_id
        if self.root_id == ROOT:
            drive_id = None
        else:
            try:
                got = call(
                    f"get {self.root_id}",
                    "read",
                    lambda svc: (
                        svc.files()
                        .get(fileId=self.root_id, fields="id,driveId", supportsAllDrives=True)
                        .execute()
                    ),
                )
            except NotFound as exc:
                raise self.hint(exc, self.root_id) from exc
            value = got.get("driveId") if isinstance(got, dict) else None
            drive_id = value if isinstance(value, str) and value else None
        self._drive_id, self._drive_known = drive_id, True
        return drive_id

    def identity(self, get: Callable[[str], FileInfo]) -> str:
        """``drive:<root folder id>``, an alias root (``root``: My Drive) resolved once
        with the store's ``get``."""
        if self._identity is None:
            real = self.root_id if self.root_id != ROOT else get(ROOT).id
            self._identity = f"drive:{real}"
        return self._identity
