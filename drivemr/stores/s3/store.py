"""The S3 store proper: drivemr's primitives mapped onto S3 requests, one method each.

The key layout (one key per file, holding its parent and name) is the package's
(:mod:`drivemr.stores.s3`); the wire details (clients, errors, keys, times) are in
:mod:`.wire`, multipart uploads in :mod:`.parts`, the change feed in :mod:`.feed` and the
retry layer that ``open_store`` returns in :mod:`.retrying`.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from drivemr.errors import (
    AlreadyExists,
    AuthError,
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
from drivemr.stores.s3.locate import Locations, Where
from drivemr.stores.s3.parts import create_in_parts
from drivemr.stores.s3.wire import (
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
    pick,
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

    create_once_any_name = False
    """A file's key holds its parent and name, so the conditional create that commits it
    refuses a second create of the same id *with the same parent and name* (every creator
    drivemr's protocol has for one id uses one name: it is fixed by the id's role)."""

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
        self._where = Locations(self._keys, self._list_raw, self._head)
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

    def _head(self, key: str, what: str) -> dict[str, Any]:
        return self._request(what, lambda: self._client.head_object(Bucket=self.bucket, Key=key))

    # -- where a file's key is --

    def _check_parent(self, parent: str, what: str) -> None:
        check_id(parent)
        if self._where.is_folder(parent):
            return
        info = self._where.folder_index(parent, what)
        if info is None:
            raise NotFound(f"{what}: parent {parent} not found")

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
        """Create once: one conditional ``PutObject`` (``If-None-Match: *``) of the file's
        one key, which holds its parent and name. A second create of the id with the same
        parent and name raises AlreadyExists; with another name it would make a second key
        (:attr:`create_once_any_name` is False: readers then pick one of the two the same
        way). A folder also gets an id index, written first (its create-once point)."""
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
        key = self._keys.key(parent, file_id, name, folder)  # checks the key length
        where = Where(key, parent, name, folder)
        if folder:
            when = self._create_folder(where, file_id, meta)
            self._feed.created_folder(file_id)
            return FileInfo(file_id, name, parent, True, None, None, when, when)
        done: float | None = None
        try:
            if source is not None and (size or 0) > self.multipart_threshold:
                done = self._create_multipart(key, source, meta, file_id)
            if done is None:  # small, or the service cannot complete multipart conditionally
                done = self._create_single(key, data, source, meta, md5, file_id)
        except AlreadyExists:
            self._where.remember(file_id, where)  # taken at this very key
            raise
        self._where.remember(file_id, where)
        return FileInfo(file_id, name, parent, False, size, md5 or None, done, done)

    def _create_folder(self, where: Where, file_id: str, meta: dict[str, str]) -> float:
        """A folder: its id index (conditional: the commit point), then its listing key."""
        try:
            when = self._create_single(self._keys.index(file_id), b"", None, meta, "", file_id)
        except AlreadyExists:
            self._heal_folder(file_id)
            raise
        self._where.remember(file_id, where)
        self.put_folder_entry(where.key)
        return when

    def _heal_folder(self, file_id: str) -> None:
        """The folder id is taken: make sure it is listed too. Its creator may have died
        between the index and the listing key (kill -9, a power cut); the key is derived
        from the index alone, so writing it again is what the creator would have written."""
        try:
            info = self._where.folder_index(file_id, f"create {file_id}")
            if info is not None:
                self.put_folder_entry(self._keys.key(info.parent, file_id, info.name, True))
        except StoreError:
            pass  # best effort: a later collision or the creator's retry writes it

    def put_folder_entry(self, key: str) -> None:
        """Write a folder's listing key (empty; what a folder create writes after its index)."""
        self._request(
            "write folder entry",
            lambda: self._client.put_object(Bucket=self.bucket, Key=key, Body=b""),
        )

    def finish_own_create(self, info: FileInfo) -> None:
        """A create whose answer was lost was ours: a folder's listing key may be missing."""
        if info.is_folder:
            self.put_folder_entry(self._keys.key(info.parent, info.id, info.name, True))
            self._feed.created_folder(info.id)

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
        by_id: dict[str, builtins.list[tuple[FileInfo, str]]] = {}
        for obj in objects:
            info = self._keys.parse(parent, obj)
            if info is not None:
                by_id.setdefault(info.id, []).append((info, str(obj["Key"])))
        out = []
        for fid, found in by_id.items():
            chosen = pick(found)
            assert chosen is not None
            info, key = chosen
            self._where.remember(fid, Where(key, parent, info.name, info.is_folder))
            out.append(info)
        return out

    def get(self, file_id: str, *, parent: str | None = None) -> FileInfo:
        if file_id == ROOT:
            return FileInfo(ROOT, "", "", is_folder=True)
        what = f"id {file_id}"
        known = self._where.known(file_id)
        if known is not None and known.folder and parent in (None, known.parent):
            info = self._where.folder_index(file_id, what)
            if info is None:
                raise NotFound(f"{what}: not found")
            return info
        info = self._where.find(file_id, parent, what)
        if info.md5 is None and not info.is_folder:  # an ETag that is no MD5 (SSE-KMS, parts)
            where = self._where.known(file_id)
            assert where is not None  # found just now
            head = self._head(where.key, what)
            md5 = (head.get("Metadata") or {}).get("drivemr-md5", "")
            info = replace(info, md5=md5 if MD5_RE.fullmatch(md5) else None)
        return info

    def _open(self, file_id: str, parent: str | None, what: str) -> tuple[Any, int]:
        """GET a file's object: (streaming body, declared length). A key this client knew
        that is gone is looked for once more (by a listing of its folder)."""
        for fresh in (False, True):
            where = self._where.key_of(file_id, parent, what)
            if where.folder:
                raise PermanentStoreError(f"{what}: a folder has no content")
            try:
                answer = self._request(
                    what, partial(self._client.get_object, Bucket=self.bucket, Key=where.key)
                )
            except NotFound:
                if fresh or where.folder:
                    raise
                parent = where.parent  # gone from there: look in its folder once more
                self._where.forget(file_id)
                continue
            except AuthError as exc:
                # This key was listed, so the credentials work: an object that refuses to
                # be read (archived to Glacier, another account's without the owner's
                # grant) is a bad file, not a reason to stop the worker.
                raise PermanentStoreError(f"{what}: the object cannot be read: {exc}") from exc
            body = answer["Body"]
            if (answer.get("Metadata") or {}).get("drivemr-kind") != "f":
                body.close()
                raise PermanentStoreError(f"{what}: not a drivemr file")
            return body, int(answer.get("ContentLength") or 0)
        raise NotFound(f"{what}: not found")  # pragma: no cover - the loop returns or raises

    def read(
        self, file_id: str, *, max_bytes: int | None = None, parent: str | None = None
    ) -> bytes:
        what = f"read {file_id}"
        body, length = self._open(file_id, parent, what)
        if max_bytes is not None and length > max_bytes:
            body.close()
            raise TooLarge(f"{what}: larger than the limit of {max_bytes} bytes")
        return b"".join(bounded_chunks(body, length, what, self._exc))

    def download(
        self,
        file_id: str,
        dest: Path,
        *,
        max_bytes: int | None = None,
        parent: str | None = None,
    ) -> None:
        what = f"download {file_id}"
        dest = Path(dest)
        body, length = self._open(file_id, parent, what)
        if max_bytes is not None and length > max_bytes:
            body.close()
            raise TooLarge(f"{what}: {length} bytes, over the limit of {max_bytes} bytes")
        try:
            with replacing(dest) as out:
                for chunk in bounded_chunks(body, length, what, self._exc):
                    out.write(chunk)
        except OSError as exc:
            raise PermanentStoreError(f"{what}: cannot write {dest}: {exc}") from exc

    def update(self, file_id: str, data: bytes, *, parent: str | None = None) -> FileInfo:
        """Replace the content in place: one unconditional ``PutObject`` of the file's key
        (where this client saw it last, else found by a listing)."""
        what = f"update {file_id}"
        where = self._where.key_of(file_id, parent, what)
        if where.folder:
            raise PermanentStoreError(f"{what}: a folder has no content")
        md5 = hashlib.md5(data).hexdigest()
        meta = {
            "drivemr-kind": "f",
            "drivemr-parent": where.parent,
            "drivemr-name": quote(where.name, safe=""),
            "drivemr-md5": md5,
        }
        answer = self._request(
            what,
            lambda: self._client.put_object(
                Bucket=self.bucket, Key=where.key, Body=data,
                Metadata=meta, ContentMD5=md5_b64(md5),
            ),
        )  # fmt: skip
        when = header_time(answer)
        return FileInfo(file_id, where.name, where.parent, False, len(data), md5, when, when)

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

    def delete(self, file_id: str, *, parent: str | None = None) -> None:
        what = f"delete {file_id}"
        try:
            where = self._where.key_of(file_id, parent, what)
        except NotFound:
            return
        keys: builtins.list[str] = []
        if where.folder:
            pending = [file_id]
            while pending:  # everything under it, and the indexes of the folders
                current = pending.pop()
                keys.append(self._keys.index(current))
                for obj in self._list_raw(self._keys.folder(current), what):
                    keys.append(obj["Key"])
                    info = self._keys.parse(current, obj)
                    if info is not None and info.is_folder:
                        pending.append(info.id)
        keys += [
            o["Key"] for o in self._list_raw(self._keys.id_prefix(where.parent, file_id), what)
        ]
        self._delete_keys(keys, what)
        self._where.folder_gone(file_id)
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
