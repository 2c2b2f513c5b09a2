"""Large files on S3: a multipart upload whose complete is the create-once commit point.

S3 (and MinIO, R2, B2, ...) accept ``If-None-Match: *`` on ``CompleteMultipartUpload``: the
object appears whole, and only if its key is free. Parts go up one after another (a worker
uploads its outputs while its slots run other tasks; no thread pool needed). A failure
aborts the upload, so no parts are left behind to pay for. A service that cannot complete
conditionally (501) gets the file in one conditional ``PutObject`` instead (up to 5 GB).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from drivemr.errors import AlreadyExists
from drivemr.stores.s3.wire import header_time, http_status, translate


def create_in_parts(
    store: Any, key: str, source: Path, meta: dict[str, str], file_id: str
) -> float | None:
    """A large file in parts; the complete is conditional (If-None-Match), so the id is
    taken exactly when the whole file is in place. None when the service does not
    support a conditional complete (then one conditional PUT sends it, up to 5 GB)."""
    what = f"create {file_id}"
    upload = store._request(
        what,
        lambda: store._client.create_multipart_upload(Bucket=store.bucket, Key=key, Metadata=meta),
    )["UploadId"]
    part_size = max(store.part_size, -(-Path(source).stat().st_size // 10_000))  # <= 10,000 parts
    try:
        parts = []
        with open(source, "rb") as fh:
            for number in range(1, 10_001):
                chunk = fh.read(part_size)
                if not chunk and number > 1:
                    break
                answer = store._request(
                    what,
                    partial(
                        store._client.upload_part, Bucket=store.bucket, Key=key,
                        UploadId=upload, PartNumber=number, Body=chunk,
                    ),
                )  # fmt: skip
                parts.append({"ETag": answer["ETag"], "PartNumber": number})
        try:
            done = store._client.complete_multipart_upload(
                Bucket=store.bucket, Key=key, UploadId=upload,
                MultipartUpload={"Parts": parts}, IfNoneMatch="*",
            )  # fmt: skip
        except store._exc.ClientError as exc:
            if http_status(exc) == 412:
                raise AlreadyExists(f"a file already exists with the id {file_id}") from None
            if http_status(exc) != 501:
                raise translate(exc, what, store.bucket) from exc
            store._abort(key, upload)
            return None
        except (store._exc.BotoCoreError, OSError) as exc:
            raise store._error(exc, what) from exc
        return header_time(done)
    except BaseException:
        store._abort(key, upload)
        raise
