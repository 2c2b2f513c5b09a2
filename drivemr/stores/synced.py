"""Recognise folders kept by a sync client (Dropbox, OneDrive, Google Drive for desktop,
iCloud Drive, Syncthing, Nextcloud/ownCloud), where a folder store must not live.

A sync client copies files between PCs after the fact: an exclusive create on one PC does
not exclude the other PC, so two workers can both win one claim, and "conflicted copies"
appear later. A real share (NFS, SMB, sshfs) or the Drive store (``drive://``) gives
create-once; a synced folder does not. The check looks for the clients' marker files in
the folder and its ancestors and for the path components they create; it is a heuristic,
so ``DRIVEMR_ALLOW_SYNCED_FOLDER=1`` (or ``drivemr init --allow-synced-folder``)
overrides it for users who know better (one PC only, or sync paused).
"""

from __future__ import annotations

import os
from pathlib import Path

ALLOW_ENV = "DRIVEMR_ALLOW_SYNCED_FOLDER"

MARKERS: tuple[tuple[str, str], ...] = (
    (".dropbox", "Dropbox"),
    (".dropbox.cache", "Dropbox"),
    (".stfolder", "Syncthing"),
    (".owncloudsync.log", "Nextcloud/ownCloud"),
    (".nextcloudsync.log", "Nextcloud/ownCloud"),
)
"""Files or folders a sync client keeps at the top of the folders it syncs."""


def _client_of_component(parts: list[str], i: int) -> str | None:
    """The sync client a path component belongs to (case-insensitive), if any."""
    part = parts[i].casefold()
    before = parts[i - 1].casefold() if i else ""
    if part == "dropbox" or part.startswith("dropbox ("):
        return "Dropbox"
    if part == "onedrive" or part.startswith("onedrive - ") or part.startswith("onedrive-"):
        return "OneDrive"
    if part in ("google drive", "my drive", "googledrive") or part.startswith("googledrive-"):
        return "Google Drive for desktop"
    if part in ("icloud drive", "iclouddrive") or (
        part == "mobile documents" and before == "library"
    ):
        return "iCloud Drive"
    if part == "cloudstorage" and before == "library":
        return "a macOS cloud-storage provider"
    return None


def synced_folder_reason(path: Path) -> str | None:
    """A one-line refusal if ``path`` (or an ancestor) is a sync client's folder, else None."""
    path = Path(path).expanduser().absolute()
    candidates = [path]
    try:
        real = path.resolve()
        if real != path:
            candidates.append(real)
    except (OSError, RuntimeError):
        pass
    evidence: tuple[str, str] | None = None
    for candidate in candidates:
        parts = [p for p in candidate.parts if p not in ("/", "\\")]
        for i in range(len(parts)):
            client = _client_of_component(parts, i)
            if client is not None:
                evidence = (client, f"path component {parts[i]!r}")
                break
        if evidence is not None:
            break
        for folder in (candidate, *candidate.parents):
            for marker, client in MARKERS:
                if os.path.lexists(folder / marker):
                    evidence = (client, f"{folder / marker} exists")
                    break
            if evidence is not None:
                break
        if evidence is not None:
            break
    if evidence is None:
        return None
    client, why = evidence
    return (
        f"{path} looks like a {client} folder ({why}): sync clients copy files after the "
        "fact, so two PCs could both win one claim; use a real share (NFS, SMB, sshfs) or "
        f"the Drive store (drive://), or set {ALLOW_ENV}=1 if you know better"
    )


def allow_synced_from_env() -> bool:
    return os.environ.get(ALLOW_ENV, "").strip().lower() in ("1", "true", "yes", "on")
