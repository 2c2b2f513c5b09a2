"""The fake's storage: files, accounts' roots, shared drives, minted ids, the change logs.

Everything lives in memory behind one lock (Drive's consistency for by-id and by-parent
reads is what drivemr relies on, and one lock gives exactly that). With a state file the
whole state is written atomically (temp file + rename) so a restarted fake sees the same
files, minted ids and change tokens.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from drivemr.fileio import atomic_write

FOLDER_MIME = "application/vnd.google-apps.folder"
GOOGLE_APPS_PREFIX = "application/vnd.google-apps."
SHORTCUT_MIME = "application/vnd.google-apps.shortcut"
STATE_FORMAT = 2
DEFAULT_ACCOUNT = "default"


LogEntry = tuple[int, str, int, bool, str | None]
"""(sequence, file id, time in ms, removed, shared drive id or None for the users' log)."""


def now_ms() -> int:
    """Server time in milliseconds since the epoch (Drive's timestamps have ms precision)."""
    return int(time.time() * 1000)


def rfc3339(ms: int) -> str:
    """``2026-11-28T01:02:03.456Z``: Drive's timestamp format (UTC, milliseconds)."""
    secs, milli = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{milli:03d}Z"


def new_file_id() -> str:
    """A Drive-looking id: 33 characters of the urlsafe alphabet, starting with '1'."""
    return "1" + secrets.token_urlsafe(24)


@dataclass(slots=True)
class FileRecord:
    """One file or folder, with everything the fake reports about it."""

    id: str
    name: str
    mime_type: str
    parents: list[str]
    created_ms: int
    modified_ms: int
    born: float
    """Server wall time (s) of creation; the lagging name index is judged on it."""
    version: int = 1
    content: bytes | None = None
    md5: str | None = None
    sha1: str | None = None
    sha256: str | None = None
    head_revision: int = 0
    trashed: bool = False
    explicitly_trashed: bool = False
    trashed_ms: int | None = None
    app_properties: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    starred: bool = False
    original_filename: str | None = None
    owner: str = DEFAULT_ACCOUNT
    """The account that created the file (items in a shared drive belong to the drive)."""
    drive_id: str | None = None
    """The shared drive the item lives in; ``None`` for My Drive items."""
    shared_with: dict[str, str] = field(default_factory=dict)
    """account -> role granted with ``permissions.create``."""

    @property
    def is_folder(self) -> bool:
        return self.mime_type == FOLDER_MIME

    def set_content(self, data: bytes) -> None:
        """Replace the bytes and the checksums Drive derives from them."""
        self.content = bytes(data)
        self.md5 = hashlib.md5(self.content).hexdigest()
        self.sha1 = hashlib.sha1(self.content).hexdigest()
        self.sha256 = hashlib.sha256(self.content).hexdigest()
        self.head_revision += 1

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "mime_type": self.mime_type,
            "parents": self.parents,
            "created_ms": self.created_ms,
            "modified_ms": self.modified_ms,
            "born": self.born,
            "version": self.version,
            "head_revision": self.head_revision,
            "trashed": self.trashed,
            "explicitly_trashed": self.explicitly_trashed,
            "trashed_ms": self.trashed_ms,
            "app_properties": self.app_properties,
            "properties": self.properties,
            "description": self.description,
            "starred": self.starred,
            "original_filename": self.original_filename,
            "owner": self.owner,
            "drive_id": self.drive_id,
            "shared_with": self.shared_with,
        }
        if self.content is not None:
            d["content"] = base64.b64encode(self.content).decode("ascii")
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FileRecord:
        content = d.pop("content", None)
        head = d.pop("head_revision", 0)
        rec = cls(**d)
        if content is not None:
            rec.set_content(base64.b64decode(content))
        rec.head_revision = head
        return rec


@dataclass(slots=True)
class SharedDrive:
    """A shared drive: its members (account -> role) and how many items it holds."""

    id: str
    name: str
    created_ms: int
    request_id: str
    creator: str
    members: dict[str, str] = field(default_factory=dict)
    items: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "created_ms": self.created_ms,
            "request_id": self.request_id,
            "creator": self.creator,
            "members": self.members,
            "items": self.items,
        }


def _root_like_id() -> str:
    return "0A" + secrets.token_urlsafe(9)[:11] + "Uk9PVA"


class DriveState:
    """All accounts' files and shared drives. Callers hold :attr:`lock`."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.root_id = _root_like_id()
        """The default account's My Drive."""
        self.roots: dict[str, str] = {DEFAULT_ACCOUNT: self.root_id}
        self.drives: dict[str, SharedDrive] = {}
        self.files: dict[str, FileRecord] = {}
        self.children: dict[str, set[str]] = {}
        self.minted: dict[str, str] = {}
        """Minted, not yet used id -> the account that minted it."""
        self.used: set[str] = set()
        """Every id a file ever had: a deleted file's id is not reusable either."""
        self.next_seq = 1
        self._log_seqs: list[int] = []
        self._log: list[LogEntry] = []
        self._latest: dict[str, int] = {}
        self.dirty = False
        t = now_ms()
        root = FileRecord(
            id=self.root_id,
            name="My Drive",
            mime_type=FOLDER_MIME,
            parents=[],
            created_ms=t,
            modified_ms=t,
            born=0.0,
        )
        self.files[root.id] = root
        self.used.add(root.id)

    # -- ids, accounts and shared drives ------------------------------------------------

    def mint(self, count: int, account: str = DEFAULT_ACCOUNT) -> list[str]:
        """files.generateIds: ids that a later create may use, once."""
        ids: list[str] = []
        while len(ids) < count:
            fid = new_file_id()
            if fid in self.used or fid in self.minted:
                continue
            self.minted[fid] = account
            ids.append(fid)
        self.dirty = True
        return ids

    def root_of(self, account: str) -> str:
        """The id of ``account``'s My Drive, made on first use."""
        rid = self.roots.get(account)
        if rid is None:
            rid = _root_like_id()
            t = now_ms()
            root = FileRecord(rid, "My Drive", FOLDER_MIME, [], t, t, 0.0, owner=account)
            self.files[rid] = root
            self.used.add(rid)
            self.roots[account] = rid
            self.dirty = True
        return rid

    def resolve(self, file_id: str, account: str = DEFAULT_ACCOUNT) -> str:
        """Map the ``root`` alias to ``account``'s root folder id."""
        return self.root_of(account) if file_id == "root" else file_id

    def is_root(self, file_id: str) -> bool:
        """A My Drive root or a shared drive's top folder: neither can be changed."""
        rec = self.files.get(file_id)
        return rec is not None and not rec.parents

    def add_drive(self, name: str, creator: str, request_id: str) -> SharedDrive:
        """drives.create: the drive and its top folder (whose id is the drive id)."""
        did = _root_like_id()
        t = now_ms()
        drive = SharedDrive(did, name, t, request_id, creator, {creator: "organizer"})
        self.drives[did] = drive
        top = FileRecord(did, name, FOLDER_MIME, [], t, t, 0.0, owner=creator, drive_id=did)
        self.files[did] = top
        self.used.add(did)
        self.dirty = True
        return drive

    # -- tree ----------------------------------------------------------------------------

    def add(self, rec: FileRecord) -> None:
        self.files[rec.id] = rec
        self.used.add(rec.id)
        self.minted.pop(rec.id, None)
        if rec.drive_id is not None:
            self.drives[rec.drive_id].items += 1
        for p in rec.parents:
            self.children.setdefault(p, set()).add(rec.id)
        self.record_change(rec.id, removed=False)

    def set_parents(self, rec: FileRecord, parents: list[str]) -> None:
        for p in rec.parents:
            kids = self.children.get(p)
            if kids is not None:
                kids.discard(rec.id)
        rec.parents = list(parents)
        for p in parents:
            self.children.setdefault(p, set()).add(rec.id)

    def descendants(self, file_id: str) -> list[str]:
        """Ids below ``file_id`` (not including it), parents before children."""
        out: list[str] = []
        todo = [file_id]
        seen = {file_id}
        while todo:
            cur = todo.pop()
            for kid in sorted(self.children.get(cur, ())):
                if kid not in seen:
                    seen.add(kid)
                    out.append(kid)
                    todo.append(kid)
        return out

    def remove(self, file_id: str) -> None:
        rec = self.files.pop(file_id)
        self.set_parents(rec, [])
        self.children.pop(file_id, None)
        if rec.drive_id is not None and rec.drive_id in self.drives:
            self.drives[rec.drive_id].items -= 1
        self._append(file_id, True, rec.drive_id)

    def touch(self, rec: FileRecord) -> None:
        """Count one change to ``rec``: version up, change feed entry, state to be saved."""
        rec.version += 1
        self.record_change(rec.id, removed=False)

    # -- changes ---------------------------------------------------------------------------

    def record_change(self, file_id: str, removed: bool) -> None:
        rec = self.files.get(file_id)
        self._append(file_id, removed, rec.drive_id if rec is not None else None)

    def _append(self, file_id: str, removed: bool, drive_id: str | None) -> None:
        """One entry in the log of ``drive_id`` (``None``: the users' log)."""
        seq = self.next_seq
        self.next_seq += 1
        self._log_seqs.append(seq)
        self._log.append((seq, file_id, now_ms(), removed, drive_id))
        self._latest[file_id] = seq
        self.dirty = True
        if len(self._log) > 1024 and len(self._log) > 4 * len(self._latest):
            self._compact()

    def _compact(self) -> None:
        """Drop superseded entries: Drive reports a file once, in its latest state."""
        self._log = [e for e in self._log if self._latest.get(e[1]) == e[0]]
        self._log_seqs = [e[0] for e in self._log]

    def changes_since(
        self, seq: int, limit: int, drive_id: str | None = None
    ) -> tuple[list[LogEntry], int]:
        """Latest change per file with sequence >= ``seq`` in the log of ``drive_id``
        (``None``: the users' log): (entries, next sequence to read)."""
        i = bisect.bisect_left(self._log_seqs, seq)
        out: list[LogEntry] = []
        while i < len(self._log):
            entry = self._log[i]
            i += 1
            if self._latest.get(entry[1]) != entry[0] or entry[4] != drive_id:
                continue
            out.append(entry)
            if len(out) >= limit:
                break
        # Skip superseded entries so that "more to come" is exact.
        while i < len(self._log) and self._latest.get(self._log[i][1]) != self._log[i][0]:
            i += 1
        nxt = self._log[i][0] if i < len(self._log) else self.next_seq
        return out, nxt

    # -- persistence -------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "root_id": self.root_id,
            "roots": self.roots,
            "drives": [d.to_json() for d in self.drives.values()],
            "files": [rec.to_json() for rec in self.files.values()],
            "minted": self.minted,
            "used": sorted(self.used),
            "next_seq": self.next_seq,
            "log": [list(e) for e in self._log if self._latest.get(e[1]) == e[0]],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DriveState:
        if d.get("format") not in (1, STATE_FORMAT):
            raise ValueError(f"unknown fake-drive state format {d.get('format')!r}")
        st = cls()
        st.files.clear()
        st.root_id = d["root_id"]
        st.roots = dict(d.get("roots") or {DEFAULT_ACCOUNT: st.root_id})
        st.drives = {x["id"]: SharedDrive(**x) for x in d.get("drives", [])}
        for fd in d["files"]:
            rec = FileRecord.from_json(dict(fd))
            st.files[rec.id] = rec
            for p in rec.parents:
                st.children.setdefault(p, set()).add(rec.id)
        minted = d["minted"]
        st.minted = (
            {str(k): str(v) for k, v in minted.items()}
            if isinstance(minted, dict)
            else dict.fromkeys(map(str, minted), DEFAULT_ACCOUNT)
        )
        st.used = set(d["used"])
        st.next_seq = int(d["next_seq"])
        st._log = [
            (int(e[0]), str(e[1]), int(e[2]), bool(e[3]), e[4] if len(e) > 4 else None)
            for e in d["log"]
        ]
        st._log_seqs = [e[0] for e in st._log]
        st._latest = {e[1]: e[0] for e in st._log}
        st.dirty = False
        return st

    def save(self, path: str) -> None:
        """Write the state atomically; callers hold the lock."""
        data = json.dumps(self.to_json(), separators=(",", ":"))
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        atomic_write(path, data, mode=0o644)
        self.dirty = False

    @classmethod
    def load(cls, path: str) -> DriveState:
        """A fresh state when ``path`` does not exist or is empty, else the saved one."""
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except FileNotFoundError:
            return cls()
        if not text.strip():
            return cls()
        return cls.from_json(json.loads(text))
