"""The S3 store: the same protocol on S3-compatible object storage (AWS, MinIO, R2, B2, ...).

Why this layout. S3 has two ways to find an object: by its exact key, and by a listing of a
key prefix; its conditional create (``PutObject`` + ``If-None-Match: *``, answered 412 when
the key exists) holds per key, and its listings carry no metadata. So each file is **one
key** that holds its folder, id and name::

    <prefix>/p/<parent>/<id>.<f|d>.<quoted name>

holding the content and, in its user metadata, the kind, parent, name and md5. Its create
is one conditional ``PutObject``: the create-once commit point for every creator that uses
the same parent and name (:attr:`S3Store.create_once_any_name` is False). drivemr's
protocol fixes every name by the role of its id (job format 3, :mod:`drivemr.protocol.names`),
so workers racing for one id create one key and exactly one wins. A by-parent listing is
one ``ListObjectsV2`` per thousand children (names, sizes, times and MD5s from the keys and
the listing), an update one ``PutObject`` of the same key (heartbeats: one write a beat).

Reads by id need the key: the client remembers where each file it created or listed is,
and callers pass the folder they know (the ``parent`` hint of :class:`~drivemr.stores.base.Store`);
else the store looks in the folders it knows, and never answers NotFound for a file it
could not look for. Folders, which are read by id without their parent (a job folder),
also have an **id index** ``<prefix>/i/<id>``, written first (their create-once point),
then their key; a creator killed in between is healed by the next create of that id, and a
create whose answer was lost is recognised on its retry (:class:`RetryingS3Store`). A key
planted at a taken id under another name is a second key: every reader picks the same one
(the oldest), and its seal decides whether it is believed.

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
