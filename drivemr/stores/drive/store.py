"""The Google Drive store proper: the store interface on Drive API v3.

Its layers live next to it: :mod:`.strict_http` (no silent resends), :mod:`.translate`
(Drive's errors to drivemr's), :mod:`.pacing` (the write quota), :mod:`.session`
(connections, retries, counters), :mod:`.fields` (the wire format) and :mod:`.root`
(where the root lives: its shared drive and identity, asked once). The retry policy
and the recognition of a lost create's answer are every store's, in
:mod:`drivemr.stores.retry`.
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from googleapiclient.http import MediaIoBaseUpload

from drivemr.errors import (
    AlreadyExists,
    ConfigError,
    NotFound,
    PermanentStoreError,
    UnusableId,
)
from drivemr.stores.base import FOLDER_MIME, ROOT, Changes, FileInfo, Store
from drivemr.stores.drive.feeds import changes_since, list_children, start_cursor
from drivemr.stores.drive.fields import (
    CHUNK_SIZE,
    FILE_FIELDS,
    GET_FIELDS,
    MULTIPART_LIMIT,
    SCHEME,
    file_info,
    mimetype,
)
from drivemr.stores.drive.pacing import DEFAULT_WRITE_RATE, WritePacer, burst_for, shared_pacer
from drivemr.stores.drive.root import RootPlace, instance_or_class
from drivemr.stores.drive.session import DriveSession
from drivemr.stores.drive.transfer import download_to, resumable_upload
from drivemr.stores.drive.translate import (
    SAME_ACCOUNT_HELP,
    http_status,
    with_hint,
)
from drivemr.stores.retry import RetryPolicy, content_digest, own_earlier_create

__all__ = ["ENDPOINT_ENV", "TOKEN_ENV", "DriveStore"]

T = TypeVar("T")

ENDPOINT_ENV = "DRIVEMR_DRIVE_ENDPOINT"
"""Base URL of a Drive-compatible server (the fake); no sign-in is used then."""
TOKEN_ENV = "DRIVEMR_DRIVE_TOKEN"
"""With :data:`ENDPOINT_ENV`: the bearer token sent to that server (the fake's account)."""


_OPTION_NAMES = (
    "write_rate",
    "write_burst",
    "config_dir",
    "endpoint",
    "credentials",
    "max_attempts",
    "max_retry_time",
    "backoff_base",
    "backoff_max",
    "timeout",
    "page_size",
    "changes_page_size",
    "sleep",
    "pacer",
    "policy",
    "http_factory",
    "shared_drive",
)


class DriveStore(Store):
    """A drivemr store in one Google Drive folder (``drive://FOLDER_ID``).

    Thread-safe: share one instance between all slots of a worker. ``stats`` counts
    requests by kind for benchmarks and tests.
    """

    def __init__(
        self,
        root_id: str | None = None,
        *,
        url: str | None = None,
        endpoint: str | None = None,
        credentials: Any = None,
        config_dir: Path | None = None,
        write_rate: float | None = DEFAULT_WRITE_RATE,
        write_burst: float | None = None,
        pacer: WritePacer | None = None,
        max_attempts: int = 8,
        max_retry_time: float = 300.0,
        backoff_base: float = 1.0,
        backoff_max: float = 32.0,
        sleep: Callable[[float], None] = time.sleep,
        policy: RetryPolicy | None = None,
        timeout: float = 60.0,
        page_size: int = 1000,
        changes_page_size: int = 1000,
        http_factory: Callable[[], Any] | None = None,
        shared_drive: str | bool = True,
    ) -> None:
        self.root_id = root_id or ROOT
        self.url = url or f"{SCHEME}{root_id or ''}"
        self.endpoint = endpoint if endpoint is not None else (os.environ.get(ENDPOINT_ENV) or None)
        if self.endpoint is None and credentials is None and http_factory is None:
            from drivemr.auth import load_credentials

            credentials = load_credentials(config_dir=config_dir)
        elif self.endpoint is not None and credentials is None and os.environ.get(TOKEN_ENV):
            from google.oauth2.credentials import Credentials

            # A fixed bearer token, never refreshed: the fake names its account by it.
            credentials = Credentials(token=os.environ[TOKEN_ENV].strip())
        if pacer is None and write_rate:
            burst = burst_for(float(write_rate)) if write_burst is None else write_burst
            pacer = shared_pacer(self.endpoint or "google", float(write_rate), burst)
        if policy is None:
            policy = RetryPolicy(
                max_attempts=max(1, int(max_attempts)),
                max_delay=float(max_retry_time),
                backoff_base=float(backoff_base),
                backoff_max=float(backoff_max),
                sleep=sleep,
            )
        self.root = RootPlace(self.root_id, shared_drive)
        """Where the root lives (shared drive, real id), asked once."""
        self.page_size = max(1, min(1000, int(page_size)))
        self.changes_page_size = max(1, min(1000, int(changes_page_size)))
        self.session = DriveSession(
            endpoint=self.endpoint,
            credentials=credentials,
            policy=policy,
            pacer=pacer,
            timeout=float(timeout),
            http_factory=http_factory,
            service_account=type(credentials).__module__.endswith("service_account"),
        )

    # -- construction --

    @classmethod
    def from_url(cls, url: str, **options: Any) -> DriveStore:
        """Open ``drive://FOLDER_ID`` (or ``drive://``, only good for :meth:`create_root`).

        Understood options: ``write_rate`` (writes/s; None or 0 = unpaced), ``config_dir``,
        and the keyword arguments of :class:`DriveStore`; others are ignored (they belong
        to other stores)."""
        if not url.startswith(SCHEME):
            raise ConfigError(f"not a Drive store URL: {url!r} (expected drive://FOLDER_ID)")
        folder = url[len(SCHEME) :].strip("/")
        if folder and not re.fullmatch(r"[A-Za-z0-9_-]+", folder):
            raise ConfigError(f"bad Drive folder id in {url!r}: expected drive://FOLDER_ID")
        kwargs = {k: options[k] for k in _OPTION_NAMES if k in options}
        if "write_rate" in kwargs and not kwargs["write_rate"]:
            kwargs["write_rate"] = None
        if kwargs.get("config_dir") is not None:
            kwargs["config_dir"] = Path(kwargs["config_dir"])
        return cls(folder or None, url=f"{SCHEME}{folder}", **kwargs)

    @instance_or_class
    def create_root(
        self, name: str = "drivemr", parent: str = ROOT, shared_drive: str | None = None
    ) -> str:
        """Create a drivemr root folder (in My Drive, under ``parent``, or at the top of
        the shared drive ``shared_drive``) and return its ``drive://FOLDER_ID`` URL.

        ``parent="root"`` here means the account's My Drive, whatever this store's root.
        Callable on an instance, or on the class (``DriveStore.create_root(name=...,
        shared_drive=..., **store_options)`` opens ``drive://`` for the call)."""
        (fid,) = self.mint_ids(1)
        info = self._create(shared_drive or parent, name, fid, None, None, True)
        return f"{SCHEME}{info.id}"

    # -- plumbing (in the session) --

    @property
    def stats(self) -> dict[str, float]:
        """A snapshot of the counters: requests (HTTP attempts), reads, writes, retries,
        transient (failed attempts), gave_up, recovered_creates (lost acks recognised),
        paced_seconds."""
        return self.session.stats

    def reset_stats(self) -> None:
        self.session.reset_stats()

    @property
    def max_attempts(self) -> int:
        return self.session.policy.max_attempts

    @property
    def pacer(self) -> WritePacer | None:
        """The write pacer this store's writes pass (None: unpaced)."""
        return self.session.pacer

    def _call(
        self,
        what: str,
        kind: str,
        fn: Callable[[Any], T],
        attempts: list[int] | None = None,
    ) -> T:
        """Run ``fn(service)`` under the retry policy (see :meth:`DriveSession.call`)."""
        return self.session.call(what, kind, fn, attempts)

    def _resolve(self, file_id: str) -> str:
        return self.root_id if file_id == ROOT else file_id

    # -- the interface --

    def mint_ids(self, count: int) -> list[str]:
        if count < 1:
            raise PermanentStoreError(f"mint_ids: count must be at least 1, not {count}")
        ids: list[str] = []
        while len(ids) < count:
            n = min(1000, count - len(ids))

            def generate(svc: Any, n: int = n) -> Any:
                return svc.files().generateIds(count=n, space="drive", type="files").execute()

            result = self._call("mint ids", "read", generate)
            got = list(result.get("ids") or [])
            if not got:
                raise PermanentStoreError("mint ids: Drive returned no ids")
            ids.extend(got[:n])
        return ids

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
        if folder and (data is not None or source is not None):
            raise ValueError("a folder has no content")
        if data is not None and source is not None:
            raise ValueError("give data or source, not both")
        return self._create(self._resolve(parent), name, file_id, data, source, folder)

    def _create(
        self,
        parent: str,
        name: str,
        file_id: str,
        data: bytes | None,
        source: Path | None,
        folder: bool,
    ) -> FileInfo:
        what = f"create {name!r} ({file_id}) in {parent}"
        body: dict[str, Any] = {"id": file_id, "name": name, "parents": [parent]}
        md5: str | None = None
        size: int | None = None
        media_type = mimetype(name)
        if folder:
            body["mimeType"] = FOLDER_MIME
        elif source is not None:
            md5, size = content_digest(None, Path(source))
            if size <= MULTIPART_LIMIT:
                data, source = Path(source).read_bytes(), None
        else:
            data = data if data is not None else b""
            md5, size = content_digest(data, None)
        attempts = [0]
        try:
            if source is not None or (data is not None and len(data) > MULTIPART_LIMIT):
                # Google's guidance: multipart up to 5 MB, resumable above.
                with open(source, "rb") if source is not None else io.BytesIO(data or b"") as fh:
                    result = resumable_upload(
                        self._call,
                        what,
                        lambda svc: svc.files().create(
                            body=body,
                            media_body=MediaIoBaseUpload(
                                fh, media_type, chunksize=CHUNK_SIZE, resumable=True
                            ),
                            fields=FILE_FIELDS,
                            supportsAllDrives=True,
                        ),
                        attempts,
                    )
            else:
                payload = data

                def send(svc: Any) -> Any:
                    media = None
                    if payload is not None:
                        media = MediaIoBaseUpload(io.BytesIO(payload), media_type, resumable=False)
                    return (
                        svc.files()
                        .create(
                            body=body, media_body=media, fields=FILE_FIELDS, supportsAllDrives=True
                        )
                        .execute()
                    )

                result = self._call(what, "write", send, attempts)
        except AlreadyExists:
            if attempts[0] <= 1:
                raise
            mine = own_earlier_create(self.get, file_id, name, parent, folder, md5, size)
            if mine is None:
                raise
            self.session.count("recovered_creates")
            return mine
        except NotFound as exc:
            hinted = self.root.hint(exc, parent)
            if hinted is exc:
                raise
            raise hinted from exc
        except PermanentStoreError as exc:
            if http_status(exc) == 400:
                cls = UnusableId if "not usable" in str(exc) else PermanentStoreError
                raise cls(with_hint(exc, SAME_ACCOUNT_HELP)) from exc
            raise
        return file_info(result)

    def list(self, parent: str) -> list[FileInfo]:
        pid = self._resolve(parent)
        found = list_children(self._call, pid, self.page_size, self.shared_drive_id())
        # An empty answer must not hide a missing folder: confirm it exists.
        if not found and not self.get(pid).is_folder:
            raise PermanentStoreError(f"list {pid}: not a folder")
        return found

    def get(self, file_id: str, *, parent: str | None = None) -> FileInfo:
        fid = self._resolve(file_id)
        try:
            result = self._call(
                f"get {fid}",
                "read",
                lambda svc: (
                    svc.files().get(fileId=fid, fields=GET_FIELDS, supportsAllDrives=True).execute()
                ),
            )
        except NotFound as exc:
            hinted = self.root.hint(exc, fid)
            if hinted is exc:
                raise
            raise hinted from exc
        if result.get("trashed"):
            raise NotFound(f"get {fid}: the file is in the trash")
        return file_info(result)

    @property
    def identity(self) -> str:
        """``drive:<root folder id>``: Drive ids are global and never reused, so a copy of
        the folder (even with every file copied) is another store. An alias root (``root``,
        My Drive) is resolved to its real id once."""
        return self.root.identity(self.get)

    def read(
        self, file_id: str, *, max_bytes: int | None = None, parent: str | None = None
    ) -> bytes:
        fid = self._resolve(file_id)
        what = f"read {fid}"

        def fetch(svc: Any) -> bytes:
            request = svc.files().get_media(fileId=fid, supportsAllDrives=True)
            if max_bytes is not None:
                # One byte past the limit tells "too big" apart without a metadata call.
                request.headers["range"] = f"bytes=0-{max_bytes}"
            return bytes(request.execute())

        try:
            content = self._call(what, "read", fetch)
        except PermanentStoreError as exc:
            if http_status(exc) == 416:  # a range on an empty file
                return b""
            raise
        if max_bytes is not None and len(content) > max_bytes:
            raise PermanentStoreError(f"{what}: larger than the limit of {max_bytes} bytes")
        return content

    def download(
        self,
        file_id: str,
        dest: Path,
        *,
        max_bytes: int | None = None,
        parent: str | None = None,
    ) -> None:
        download_to(self._call, self._resolve(file_id), Path(dest), max_bytes=max_bytes)

    def update(self, file_id: str, data: bytes, *, parent: str | None = None) -> FileInfo:
        fid = self._resolve(file_id)
        what = f"update {fid}"
        media_type = "application/octet-stream"
        if len(data) > MULTIPART_LIMIT:
            stream = io.BytesIO(data)
            result = resumable_upload(
                self._call,
                what,
                lambda svc: svc.files().update(
                    fileId=fid,
                    media_body=MediaIoBaseUpload(
                        stream, media_type, chunksize=CHUNK_SIZE, resumable=True
                    ),
                    fields=FILE_FIELDS,
                    supportsAllDrives=True,
                ),
                [0],
            )
            return file_info(result)
        result = self._call(
            what,
            "write",
            lambda svc: (
                svc.files()
                .update(
                    fileId=fid,
                    media_body=MediaIoBaseUpload(io.BytesIO(data), media_type, resumable=False),
                    fields=FILE_FIELDS,
                    supportsAllDrives=True,
                )
                .execute()
            ),
        )
        return file_info(result)

    def delete(self, file_id: str, *, parent: str | None = None) -> None:
        fid = self._resolve(file_id)
        try:
            self._call(
                f"delete {fid}",
                "write",
                lambda svc: svc.files().delete(fileId=fid, supportsAllDrives=True).execute(),
            )
        except NotFound:
            return

    def shared_drive_id(self) -> str | None:
        """The id of the shared drive the root lives in, or None (My Drive). Asked once:
        a root never moves between drives (Drive does not move folders across drives)."""
        return self.root.shared_drive_id(self._call)

    def account_id(self) -> str:
        """This sign-in's Drive ``permissionId`` (stable, and no e-mail address in it)."""
        got = self._call(
            "who am I",
            "read",
            lambda svc: svc.about().get(fields="user(permissionId)").execute(),
        )
        user = got.get("user") if isinstance(got, dict) else None
        value = user.get("permissionId") if isinstance(user, dict) else None
        if not isinstance(value, str) or not value or len(value) > 100:
            raise PermanentStoreError("who am I: Drive returned no permissionId for this sign-in")
        return value

    def changes_cursor(self) -> str:
        """A start token of the right change log (see :func:`.feeds.start_cursor`)."""
        return start_cursor(self._call, self.shared_drive_id())

    def poll_changes(self, cursor: str) -> Changes:
        """Folders that changed since ``cursor`` (see :func:`.feeds.changes_since`)."""
        try:
            new_cursor, folders = changes_since(
                self._call, cursor, self.changes_page_size, self.shared_drive_id()
            )
        except PermanentStoreError as exc:
            if http_status(exc) in (400, 404, 410):  # a cursor Drive no longer knows
                return Changes(self.changes_cursor(), None)
            raise
        if folders is not None and self.root_id in folders:
            folders.add(ROOT)
        return Changes(new_cursor, frozenset(folders) if folders is not None else None)

    def close(self) -> None:
        self.session.close()
