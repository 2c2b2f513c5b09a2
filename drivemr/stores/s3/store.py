"""The S3 store proper: drivemr's primitives mapped onto S3 requests, one method each.

The key layout (an id index and a listing entry per file) is the package's
(:mod:`drivemr.stores.s3`); the wire details (clients, errors, keys, times) are in
:mod:`.wire`, multipart uploads in :mod:`.parts`, the change feed in :mod:`.feed` and the
retry layer that ``open_store`` returns in :mod:`.retrying`.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote

from drivemr.errors import (
    AlreadyExists,
    NotFound,
    PermanentStoreError,
    StoreError,
    TooLarge,
    TransientStoreError,
)
from drivemr.fileio import replacing
from drivemr.stores.base import ROOT, Changes, FileInfo, Store
from drivemr.stores.retry import content_digest
from drivemr.stores.s3.feed import ListingFeed, listing_digest
from drivemr.stores.s3.parts import create_in_parts
from drivemr.stores.s3.wire import (
    ID_RE,
    MD5_RE,
    KeyLayout,
    botocore_modules,
    bounded_chunks,
    check_id,
    check_name,
    header_time,
    http_status,
    make_client,
    md5_b64,
    parse_s3_url,
    store_error,
    translate,
)

MULTIPART_THRESHOLD = 64 << 20
"""Files uploaded from a path above this size go up as a multipart upload."""
PART_SIZE = 16 << 20
MAX_LIST_ENTRIES = 2_000_000
"""A listing bigger than this is refused (bounded cost against a flooded folder)."""
T = TypeVar("T")


class S3Store(Store):
    """Create-once files on S3; see :mod:`drivemr.stores.s3` for the key layout."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any = None,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        part_size: int = PART_SIZE,
    ) -> None:
        _, self._exc = botocore_modules()
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._keys = KeyLayout(f"{self.prefix}/" if self.prefix else "")
        self._client = client if client is not None else make_client()
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self._lock = threading.Lock()
        self._known: dict[str, tuple[str, str, bool, int | None]] = {}
        """id -> (parent, name, is_folder, size) as last seen by this client."""
        self._folders: set[str] = {ROOT}
        self._feed = ListingFeed(lambda folder: self._list_raw(self._keys.folder(folder), "poll"))

    @classmethod
    def from_url(cls, url: str, **options: Any) -> S3Store:
        bucket, prefix = parse_s3_url(url)
        return cls(bucket, prefix)

    # -- one request --

    def _request(self, what: str, fn: Callable[[], T]) -> T:
        """One S3 request; its failure as one of drivemr's store errors."""
        try:
            return fn()
        except (self._exc.ClientError, self._exc.BotoCoreError, OSError) as exc:
            raise self._error(exc, what) from exc

    def _error(self, exc: BaseException, what: str) -> StoreError:
        return store_error(exc, what, self.bucket, self._exc)

    def _head(self, file_id: str) -> dict[str, Any]:
        check_id(file_id)
        if file_id == ROOT:
            raise PermanentStoreError("the root has no index entry")
        return self._request(
            f"id {file_id}",
            lambda: self._client.head_object(Bucket=self.bucket, Key=self._keys.index(file_id)),
        )

    def _info_of(self, file_id: str, head: dict[str, Any]) -> FileInfo:
        meta = head.get("Metadata") or {}
        kind = meta.get("drivemr-kind")
        parent = meta.get("drivemr-parent", "")
        name = unquote(meta.get("drivemr-name", ""))
        if kind not in ("f", "d") or not name or (parent != ROOT and not ID_RE.fullmatch(parent)):
            raise PermanentStoreError(f"id {file_id}: not a drivemr object (metadata missing)")
        md5 = meta.get("drivemr-md5", "")
        size = None if kind == "d" else int(head.get("ContentLength") or 0)
        modified = head["LastModified"].timestamp()
        self._remember(file_id, parent, name, kind == "d", size)
        return FileInfo(
            id=file_id,
            name=name,
            parent=parent,
            is_folder=kind == "d",
            size=size,
            md5=md5 if MD5_RE.fullmatch(md5) else None,
            modified=modified,
            created=modified,
        )

    def _remember(
        self, file_id: str, parent: str, name: str, folder: bool, size: int | None
    ) -> None:
        with self._lock:
            self._known[file_id] = (parent, name, folder, size)
            if folder:
                self._folders.add(file_id)

    def _lookup(self, file_id: str) -> tuple[str, str, bool, int | None]:
        known = self._known.get(file_id)
        if known is None:
            info = self._info_of(file_id, self._head(file_id))
            known = (info.parent, info.name, info.is_folder, info.size)
        return known

    def _check_parent(self, parent: str, what: str) -> None:
        check_id(parent)
        if parent in self._folders:
            return
        try:
            info = self._info_of(parent, self._head(parent))
        except NotFound:
            raise NotFound(f"{what}: parent {parent} not found") from None
        if not info.is_folder:
            raise PermanentStoreError(f"{what}: parent {parent} is not a folder")

    # -- primitives --

    def mint_ids(self, count: int) -> list[str]:
        if not 1 <= count <= 1000:
            raise PermanentStoreError(f"mint_ids: count must be 1..1000, not {count}")
        return [secrets.token_urlsafe(21) for _ in range(count)]

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
        check_name(name)
        if file_id == ROOT:
            raise PermanentStoreError("create: the root id is reserved")
        check_id(file_id)
        self._check_parent(parent, f"create {name}")
        md5, size = ("", None) if folder else content_digest(data, source)
        meta = {
            "drivemr-kind": "d" if folder else "f",
            "drivemr-parent": parent,
            "drivemr-name": quote(name, safe=""),
            "drivemr-md5": md5,
        }
        key = self._keys.index(file_id)
        entry = self._keys.entry(parent, file_id, name, folder, size)  # checks the key length
        when = None
        try:
            if source is not None and (size or 0) > self.multipart_threshold:
                when = self._create_multipart(key, source, meta, file_id)
            if when is None:  # small, or the service cannot complete multipart conditionally
                when = self._create_single(key, data, source, meta, md5, file_id)
        except AlreadyExists:
            self._heal_entry(file_id)
            raise
        self._remember(file_id, parent, name, folder, size)
        self._put_entry(entry)
        if folder:
            self._feed.created_folder(file_id)
        return FileInfo(file_id, name, parent, folder, size, md5 or None, when, when)

    def _create_single(
        self,
        key: str,
        data: bytes | None,
        source: Path | None,
        meta: dict[str, str],
        md5: str,
        file_id: str,
    ) -> float:
        extra = {"ContentMD5": md5_b64(md5)} if md5 else {}

        def put() -> dict[str, Any]:
            if source is None:
                return self._client.put_object(
                    Bucket=self.bucket, Key=key, Body=data or b"", IfNoneMatch="*",
                    Metadata=meta, **extra,
                )  # fmt: skip
            with open(source, "rb") as fh:
                return self._client.put_object(
                    Bucket=self.bucket, Key=key, Body=fh, IfNoneMatch="*", Metadata=meta, **extra
                )

        try:
            return header_time(put())
        except self._exc.ClientError as exc:
            if http_status(exc) == 412:
                raise AlreadyExists(f"a file already exists with the id {file_id}") from None
            raise translate(exc, f"create {file_id}", self.bucket) from exc
        except (self._exc.BotoCoreError, OSError) as exc:
            raise self._error(exc, f"create {file_id}") from exc

    def _create_multipart(
        self, key: str, source: Path, meta: dict[str, str], file_id: str
    ) -> float | None:
        return create_in_parts(self, key, source, meta, file_id)

    def _abort(self, key: str, upload: str) -> None:
        try:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload)
        except Exception:  # best effort: a lifecycle rule cleans up what is left
            pass

    def _heal_entry(self, file_id: str) -> None:
        """The id is taken: make sure its file is listed too. Its creator may have died
        between the index and the entry (kill -9, a power cut); the entry is derived from
        the index alone, so writing it again is what the creator would have written."""
        try:
            info = self._info_of(file_id, self._head(file_id))
            self._put_entry(
                self._keys.entry(info.parent, file_id, info.name, info.is_folder, info.size)
            )
        except StoreError:
            pass  # best effort: a later collision or the creator's retry writes it

    def put_listing_entry(self, info: FileInfo) -> None:
        """Write the listing entry of the file ``info`` (its index exists): what a create
        whose answer was lost may not have got to."""
        self._put_entry(
            self._keys.entry(info.parent, info.id, info.name, info.is_folder, info.size)
        )
        if info.is_folder:
            self._feed.created_folder(info.id)

    def _put_entry(self, key: str) -> float:
        answer = self._request(
            "write listing entry",
            lambda: self._client.put_object(Bucket=self.bucket, Key=key, Body=b""),
        )
        return header_time(answer)

    def _list_raw(self, prefix: str, what: str) -> Iterator[dict[str, Any]]:
        token: str | None = None
        seen = 0
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._request(what, partial(self._client.list_objects_v2, **kwargs))
            contents = page.get("Contents") or []
            seen += len(contents)
            if seen > MAX_LIST_ENTRIES:
                raise PermanentStoreError(f"{what}: more than {MAX_LIST_ENTRIES} entries")
            yield from contents
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def list(self, parent: str) -> builtins.list[FileInfo]:
        what = f"list {parent}"
        self._check_parent(parent, what)
        objects = builtins.list(self._list_raw(self._keys.folder(parent), what))
        self._feed.listed(parent, listing_digest(objects))  # the feed watches it from here
        newest: dict[str, FileInfo] = {}
        for obj in objects:
            info = self._keys.parse(parent, obj)
            if info is None:
                continue
            old = newest.get(info.id)
            if old is None or info.modified >= old.modified:  # an update's two entries
                newest[info.id] = info
        with self._lock:
            for info in newest.values():
                self._known.setdefault(info.id, (parent, info.name, info.is_folder, info.size))
                if info.is_folder:
                    self._folders.add(info.id)
        return builtins.list(newest.values())

    def get(self, file_id: str) -> FileInfo:
        if file_id == ROOT:
            return FileInfo(ROOT, "", "", is_folder=True)
        return self._info_of(file_id, self._head(file_id))

    def _open(self, file_id: str, what: str) -> tuple[Any, int]:
        """GET a file's index object: (streaming body, declared length)."""
        check_id(file_id)
        answer = self._request(
            what, lambda: self._client.get_object(Bucket=self.bucket, Key=self._keys.index(file_id))
        )
        body = answer["Body"]
        if (answer.get("Metadata") or {}).get("drivemr-kind") != "f":
            body.close()
            raise PermanentStoreError(f"{what}: not a drivemr file")
        return body, int(answer.get("ContentLength") or 0)

    def read(self, file_id: str, *, max_bytes: int | None = None) -> bytes:
        what = f"read {file_id}"
        body, length = self._open(file_id, what)
        if max_bytes is not None and length > max_bytes:
            body.close()
            raise TooLarge(f"{what}: larger than the limit of {max_bytes} bytes")
        return b"".join(bounded_chunks(body, length, what, self._exc))

    def download(self, file_id: str, dest: Path, *, max_bytes: int | None = None) -> None:
        what = f"download {file_id}"
        dest = Path(dest)
        body, length = self._open(file_id, what)
        if max_bytes is not None and length > max_bytes:
            body.close()
            raise TooLarge(f"{what}: {length} bytes, over the limit of {max_bytes} bytes")
        try:
            with replacing(dest) as out:
                for chunk in bounded_chunks(body, length, what, self._exc):
                    out.write(chunk)
        except OSError as exc:
            raise PermanentStoreError(f"{what}: cannot write {dest}: {exc}") from exc

    def update(self, file_id: str, data: bytes) -> FileInfo:
        what = f"update {file_id}"
        parent, name, folder, old_size = self._lookup(file_id)
        if folder:
            raise PermanentStoreError(f"{what}: a folder has no content")
        md5 = hashlib.md5(data).hexdigest()
        meta = {
            "drivemr-kind": "f",
            "drivemr-parent": parent,
            "drivemr-name": quote(name, safe=""),
            "drivemr-md5": md5,
        }
        answer = self._request(
            what,
            lambda: self._client.put_object(
                Bucket=self.bucket, Key=self._keys.index(file_id), Body=data,
                Metadata=meta, ContentMD5=md5_b64(md5),
            ),
        )  # fmt: skip
        when = header_time(answer)
        entry = self._keys.entry(parent, file_id, name, False, len(data))
        self._put_entry(entry)
        if old_size != len(data):  # the size is in the entry's key: drop the old entry
            # (listings keep the newest entry of an id, should an old one ever be left)
            self._delete_keys([self._keys.entry(parent, file_id, name, False, old_size)], what)
        self._remember(file_id, parent, name, False, len(data))
        return FileInfo(file_id, name, parent, False, len(data), md5, when, when)

    def _delete_keys(self, keys: builtins.list[str], what: str) -> None:
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            answer = self._request(
                what,
                partial(
                    self._client.delete_objects,
                    Bucket=self.bucket,
                    Delete={"Objects": batch, "Quiet": True},
                ),
            )
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise TransientStoreError(f"{what}: {first.get('Code')} on {first.get('Key')}")

    def delete(self, file_id: str) -> None:
        what = f"delete {file_id}"
        try:
            parent, _name, folder, _size = self._lookup(file_id)
        except NotFound:
            return
        keys: builtins.list[str] = []
        if folder:
            pending = [file_id]
            while pending:  # everything under it: entries and indexes
                current = pending.pop()
                for obj in self._list_raw(self._keys.folder(current), what):
                    info = self._keys.parse(current, obj)
                    keys.append(obj["Key"])
                    if info is not None:
                        keys.append(self._keys.index(info.id))
                        if info.is_folder:
                            pending.append(info.id)
        kind = "d" if folder else "f"
        keys += [
            o["Key"] for o in self._list_raw(f"{self._keys.folder(parent)}{kind}.{file_id}.", what)
        ]
        keys.append(self._keys.index(file_id))
        self._delete_keys(keys, what)
        with self._lock:
            self._known.pop(file_id, None)
            self._folders.discard(file_id)
        self._feed.forget(file_id)

    # -- change feed: listings compared with the previous poll's --

    def changes_cursor(self) -> str:
        return self._feed.cursor()

    def poll_changes(self, cursor: str) -> Changes:
        return self._feed.poll(cursor)

    def close(self) -> None:
        close = getattr(self._client, "close", None)
        if close is not None:
            close()
