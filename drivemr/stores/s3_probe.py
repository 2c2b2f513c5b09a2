"""`drivemr init --store s3://...`: check that a bucket can hold a drivemr store.

Nothing is created on S3 (buckets are made with the provider's own tools, which also set
their region, lifecycle and access rules). Three checks, each reported in one line: the
bucket exists and these credentials reach it; a file can be written; and the service
honours conditional creates - the second of two creates of one key must be refused with
412 and leave the first content in place. A service that ignores ``If-None-Match`` would
let two workers claim one task, so drivemr refuses to run on it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

from drivemr.errors import AlreadyExists, DrivemrError, NotFound, StoreError
from drivemr.stores.base import ROOT
from drivemr.stores.s3 import S3Store, parse_s3_url

PROBE_NAME = "drivemr-probe"


def check_bucket(url: str) -> Iterator[str]:
    """Run the checks; yield one line per check passed, raise DrivemrError on the first failure."""
    bucket, prefix = parse_s3_url(url)
    store = S3Store(bucket, prefix)
    try:
        endpoint = getattr(store._client.meta, "endpoint_url", "S3")
        try:
            store._request(f"bucket {bucket}", lambda: store._client.head_bucket(Bucket=bucket))
        except NotFound:
            raise DrivemrError(
                f"bucket {bucket} does not exist at {endpoint}: create it with your provider's "
                f"tools (for example `aws s3 mb s3://{bucket}`) and run init again"
            ) from None
        yield f"bucket {bucket} exists and is reachable at {endpoint}"
        (probe,) = store.mint_ids(1)
        first = f"probe {secrets.token_hex(8)}".encode()
        try:
            store.create(ROOT, PROBE_NAME, probe, first)
        except StoreError as exc:
            raise DrivemrError(
                f"bucket {bucket} is not writable with these credentials: {exc}"
            ) from exc
        try:
            yield f"writable: created a probe object under {store.url}"
            try:
                store.create(ROOT, PROBE_NAME, probe, b"second create of the same key")
            except AlreadyExists:
                pass
            else:
                raise DrivemrError(
                    f"{endpoint} ignored If-None-Match: a second create of one key succeeded. "
                    "drivemr needs conditional creates (two workers could claim one task); "
                    "use a service or version that supports them"
                )
            if store.read(probe) != first:
                raise DrivemrError(
                    f"{endpoint} refused the second create but replaced the content anyway: "
                    "conditional creates are not reliable there"
                )
            yield "conditional creates honoured: a second create of one key was refused (412)"
        finally:
            store.delete(probe)
    finally:
        store.close()
