"""The S3 store's wire level: boto3 (optional), URLs, clients, errors, names and times.

Kept apart from :mod:`drivemr.stores.s3.store` (the primitives) so the store module reads
as the mapping of drivemr's primitives onto S3 requests.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, unquote

from drivemr.errors import (
    AuthError,
    ConfigError,
    NotAvailable,
    NotFound,
    PermanentStoreError,
    StoreError,
    TransientStoreError,
)
from drivemr.stores.base import ROOT, FileInfo
from drivemr.stores.retry import parse_retry_after

INSTALL_HINT = 'pip install "drivemr[s3]"'

ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
MD5_RE = re.compile(r"[0-9a-f]{32}")
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "ConditionalRequestConflict",
        "OperationAborted",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequests",
    }
)
_AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AllAccessDisabled",
    }
)


def botocore_modules() -> tuple[Any, Any]:
    """boto3 and botocore.exceptions, or a clear NotAvailable naming the install command."""
    try:
        import boto3
        import botocore.exceptions
    except ImportError as exc:
        raise NotAvailable(
            f"the S3 store needs boto3, which is not installed here: run {INSTALL_HINT}"
        ) from exc
    return boto3, botocore.exceptions


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://BUCKET/PREFIX`` -> (bucket, prefix without surrounding slashes)."""
    if not url.startswith("s3://"):
        raise ConfigError(f"not an S3 store URL: {url!r} (expected s3://BUCKET/PREFIX)")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
        raise ConfigError(
            f"{url!r}: {bucket!r} is not a valid bucket name (3-63 lower-case letters, digits, "
            "dots and hyphens)"
        )
    prefix = prefix.strip("/")
    if "//" in prefix or len(prefix.encode()) > 512:
        raise ConfigError(f"{url!r}: the key prefix {prefix!r} is not usable")
    return bucket, prefix


def make_client() -> Any:
    """An S3 client from boto3's standard chain (env, profile, instance role; endpoint from
    ``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3``), with boto3's own retries off."""
    boto3, _ = botocore_modules()
    from botocore.config import Config

    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=32,
        connect_timeout=10,
        read_timeout=60,
        user_agent_extra="drivemr",
        # CRC checksums only where S3 requires them: many S3-compatible services reject
        # the aws-chunked uploads boto3 sends by default (drivemr sends Content-MD5).
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.session.Session().client("s3", config=config)


def check_id(file_id: str) -> None:
    if file_id != ROOT and not ID_RE.fullmatch(file_id or ""):
        raise PermanentStoreError(f"invalid id {file_id!r}")


def check_name(name: str) -> None:
    if not name or "/" in name or "\\" in name or "\0" in name or name.startswith("."):
        raise PermanentStoreError(f"create: invalid name {name!r}")


def md5_b64(md5_hex: str) -> str:
    return base64.b64encode(bytes.fromhex(md5_hex)).decode()


def header_time(response: dict[str, Any]) -> float:
    """The server's clock: the ``Date`` header of an answer (never this PC's clock)."""
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    try:
        return parsedate_to_datetime(headers["date"]).timestamp()
    except (KeyError, TypeError, ValueError) as exc:
        raise PermanentStoreError("the S3 service sent an answer without a valid Date") from exc


def http_status(exc: Any) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def translate(exc: Any, what: str, bucket: str) -> StoreError:
    """A botocore ClientError as one of drivemr's store errors."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    message = f"{what}: S3 answered {status} {code}".rstrip()
    if code == "NoSuchBucket":
        return PermanentStoreError(f"{what}: the bucket {bucket} does not exist")
    if status == 404 or code in ("NoSuchKey", "NotFound"):
        return NotFound(f"{what}: not found")
    if code in _TRANSIENT_CODES or status == 429 or status >= 500:
        headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders") or {}
        return TransientStoreError(message, parse_retry_after(headers.get("retry-after")))
    if code in _AUTH_CODES or status == 403:
        return AuthError(f"{message}: check the credentials and the bucket's permissions")
    return PermanentStoreError(f"{message} {error.get('Message', '')}".rstrip())


MAX_KEY_BYTES = 1024


@dataclass(frozen=True)
class KeyLayout:
    """Where a store under ``base`` keeps things (see :mod:`drivemr.stores.s3`)."""

    base: str

    def index(self, folder_id: str) -> str:
        """A folder's id index (folders only: the few ids read without their parent)."""
        return f"{self.base}i/{folder_id}"

    def folder(self, parent: str) -> str:
        return f"{self.base}p/{parent}/"

    def id_prefix(self, parent: str, file_id: str) -> str:
        """Every key of ``file_id`` in ``parent`` starts so (ids hold no dot)."""
        return f"{self.folder(parent)}{file_id}."

    def key(self, parent: str, file_id: str, name: str, folder: bool) -> str:
        """The one key of a file: ``p/<parent>/<id>.<f|d>.<quoted name>``."""
        key = f"{self.id_prefix(parent, file_id)}{'d' if folder else 'f'}.{quote(name, safe='')}"
        if len(key.encode()) > MAX_KEY_BYTES:
            raise PermanentStoreError(f"create: the name {name[:60]!r}... is too long for S3")
        return key

    def parse(self, parent: str, obj: dict[str, Any]) -> FileInfo | None:
        """A listed key, parsed totally (anything malformed is skipped, never trusted)."""
        rest = str(obj.get("Key", ""))[len(self.folder(parent)) :]
        parts = rest.split(".", 2)
        if "/" in rest or len(parts) != 3:
            return None
        fid, kind, qname = parts
        name = unquote(qname)
        if kind not in ("f", "d") or not ID_RE.fullmatch(fid) or not name or "/" in name:
            return None
        size = obj.get("Size")
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size < 1 << 50:
            return None
        modified = obj["LastModified"].timestamp()
        return FileInfo(
            id=fid,
            name=name,
            parent=parent,
            is_folder=kind == "d",
            size=None if kind == "d" else size,
            md5=etag_md5(obj.get("ETag")) if kind == "f" else None,
            modified=modified,
            created=modified,
        )


def etag_md5(etag: Any) -> str | None:
    """The MD5 an ETag is, when it is one (a single-part upload without SSE-KMS)."""
    text = str(etag or "").strip('"').lower()
    return text if MD5_RE.fullmatch(text) else None


def pick(infos: list[tuple[FileInfo, str]]) -> tuple[FileInfo, str] | None:
    """One file of those listed under one id, (info, key): the oldest, then the first key.
    Only a file planted beside a legitimate one makes two; every reader picks the same one
    (and the seal decides whether it is believed)."""
    return min(infos, key=lambda e: (e[0].modified, e[1]), default=None)


def store_error(exc: BaseException, what: str, bucket: str, errors: Any) -> StoreError:
    """A failed S3 request (``errors``: botocore.exceptions) as one of drivemr's store errors."""
    if isinstance(exc, errors.ClientError):
        return translate(exc, what, bucket)
    if isinstance(exc, errors.NoCredentialsError):
        return AuthError(
            f"{what}: no AWS credentials found (set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
        )
    if isinstance(exc, errors.ParamValidationError):
        return PermanentStoreError(f"{what}: {exc}")
    return TransientStoreError(f"{what}: {exc}")  # connection reset, timeout, ...


def bounded_chunks(body: Any, length: int, what: str, errors: Any) -> Iterator[bytes]:
    """The body's bytes, never more than the declared length (the server is untrusted)."""
    got = 0
    try:
        for chunk in body.iter_chunks(1 << 20):
            got += len(chunk)
            if got > length:
                raise PermanentStoreError(f"{what}: longer than its declared {length} bytes")
            yield chunk
    except (errors.BotoCoreError, OSError) as exc:
        raise TransientStoreError(f"{what}: {exc}") from exc
    finally:
        body.close()
    if got != length:
        raise TransientStoreError(f"{what}: cut short ({got} of {length} bytes)")
