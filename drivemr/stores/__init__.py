"""Opening a store from its URL.

* a plain path or ``file:///path``  -> :class:`~drivemr.stores.folder.FolderStore`
* ``drive://FOLDER_ID``             -> :class:`~drivemr.stores.drive.DriveStore`
* ``s3://BUCKET/PREFIX``            -> :class:`~drivemr.stores.s3.S3Store` (needs boto3)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from drivemr.errors import ConfigError, NotAvailable
from drivemr.stores.base import ROOT, Changes, FileInfo, Store

__all__ = ["ROOT", "Changes", "FileInfo", "Store", "open_store", "store_kind"]


def store_kind(url: str) -> str:
    """``"drive"``, ``"s3"`` or ``"folder"``; raises ConfigError for other schemes."""
    if url.startswith("drive://"):
        return "drive"
    if url.startswith("s3://"):
        return "s3"
    if url.startswith("file://") or "://" not in url:
        return "folder"
    raise ConfigError(
        f"unknown store URL {url!r}: use a folder path, file:///path, drive://FOLDER_ID or s3://BUCKET/PREFIX"
    )


def folder_path(url: str) -> Path:
    if url.startswith("file://"):
        parsed = urlparse(url)
        path = unquote(parsed.path)
        if os.name == "nt" and len(path) > 2 and path[0] == "/" and path[2] == ":":
            path = path[1:]  # file:///C:/x -> C:/x
        if parsed.netloc and parsed.netloc != "localhost":
            path = f"//{parsed.netloc}{path}"  # file://server/share/x -> UNC path
        return Path(path)
    return Path(url).expanduser()


def open_store(url: str, **options: Any) -> Store:
    """Open the store at ``url``. ``options`` are store-specific (ignored by others)."""
    if not url:
        raise ConfigError(
            "no store given: pass --store, set DRIVEMR_STORE, or set `store` in the config file"
        )
    kind = store_kind(url)
    if kind == "drive":
        try:
            from drivemr.stores.drive import DriveStore
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise NotAvailable(
                f"the Drive store is not available in this installation: {exc}"
            ) from exc
        return DriveStore.from_url(url, **options)
    if kind == "s3":
        from drivemr.stores.s3 import RetryingS3Store

        return RetryingS3Store.from_url(url)
    from drivemr.stores.retrying import RetryingFolderStore

    # A share that hiccups (EIO, ESTALE, ...) is retried, as the Drive store retries 5xx/429.
    return RetryingFolderStore(
        folder_path(url),
        create=bool(options.get("create", False)),
        allow_synced=options.get("allow_synced"),
    )
