"""The S3 store: the same protocol on S3-compatible object storage (AWS, MinIO, R2, B2, ...).

Why this layout. S3 has two ways to find an object: by its exact key, and by a listing of a
key prefix. drivemr needs three: create-once by id (whatever the name), get by id, and a
by-parent listing that shows names. One key cannot serve all three, so every file or folder
has two keys, the S3 analogue of the folder store's id index and visible name:

* ``<prefix>/i/<id>`` - the **id index**, holding the content and, in its user metadata, the
  kind, parent, name and md5. It is created with ``PutObject`` + ``If-None-Match: *``: the
  service answers 412 when the id is taken, which is the create-once commit point. Get, read
  and download go here (one request each, strongly consistent).
* ``<prefix>/p/<parent>/<kind>.<id>.<size>.<name>`` - the **listing entry**, an empty object
  written right after the index; a by-parent listing is one ``ListObjectsV2`` per thousand
  children and needs no read per child.

Readers by id see the file once the index exists; readers of a listing once the entry does.
A create whose answer was lost is recognised on its retry (``is_what_we_sent``) and then
writes the entry, in case the first try did not get that far (:class:`RetryingS3Store`).

The change feed (:mod:`.feed`) compares listings, one folder per poll:
an idle worker costs one listing request per poll interval.

Timestamps are the service's: ``LastModified`` of listings and HEADs, the ``Date`` header of
write answers. boto3 retries are switched off: throttling (``503 SlowDown``), 5xx, a
``409 ConditionalRequestConflict`` and dropped connections raise
:class:`~drivemr.errors.TransientStoreError`, which the shared retry layer retries.
"""

from drivemr.stores.s3.retrying import S3_POLICY, RetryingS3Store
from drivemr.stores.s3.store import MAX_LIST_ENTRIES, MULTIPART_THRESHOLD, PART_SIZE, S3Store
from drivemr.stores.s3.wire import parse_s3_url

__all__ = [
    "MAX_LIST_ENTRIES",
    "MULTIPART_THRESHOLD",
    "PART_SIZE",
    "S3_POLICY",
    "RetryingS3Store",
    "S3Store",
    "parse_s3_url",
]
