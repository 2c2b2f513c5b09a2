"""A job's signature, checked before its document costs anything.

job.json carries every task, so it may be tens of megabytes; parsing 64 MiB of hostile
JSON into Python objects costs gigabytes of memory and tens of seconds of CPU. A worker
must not pay that for a file anyone with write access to the store can drop there. So a
signed job.json is written in a *signed layout*::

    <canonical bytes of the job without its signature, minus the closing brace>
    ,"signature":{...}}

The canonical bytes are exactly what :func:`drivemr.signing.sign_document` signs, so the
reader can check the Ed25519 signature over the raw bytes, with no parsing but the small
signature block, and only then parse the document (and check the signature again on the
parsed document, as before). A job.json that does not carry a valid signature by a trusted
key over its bytes is parsed only if it is small (:data:`MAX_UNVERIFIED_JOB_BYTES`: jobs
posted by earlier versions, and unsigned jobs, whose refusal then costs little).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from drivemr import signing
from drivemr.errors import SecurityError
from drivemr.limits import load_json_limited

__all__ = [
    "MAX_UNVERIFIED_JOB_BYTES",
    "SignatureVerifier",
    "job_bytes",
    "raw_signature_ok",
]

MAX_UNVERIFIED_JOB_BYTES = 1024 * 1024
"""A job.json without a signature over its bytes is parsed only up to this size (about
5,000 tasks; jobs posted by earlier versions, or unsigned): the worst such document costs
about 60 MiB of memory to parse, once (a 64 MiB one cost gigabytes)."""

_SIG_KEY = b',"signature":'
_MAX_SIG_BLOCK = 4096


def job_bytes(doc: Mapping[str, Any]) -> bytes:
    """job.json as written to the store: the signed layout when ``doc`` is signed."""
    block = doc.get("signature")
    if not isinstance(block, Mapping):
        return json.dumps(doc, separators=(",", ":")).encode()
    body = signing.canonical_bytes(doc)
    if body == b"{}":
        raise SecurityError("job document is empty")
    sig = json.dumps(dict(block), sort_keys=True, separators=(",", ":")).encode()
    return body[:-1] + _SIG_KEY + sig + b"}"


def raw_signature_ok(data: bytes, trusted: Mapping[str, signing.PublicKeyInfo]) -> bool:
    """True when ``data`` is in the signed layout, signed by a key in ``trusted``. Costs
    one search from the end, a parse of at most 4 KiB and one Ed25519 verification."""
    at = data.rfind(_SIG_KEY, max(0, len(data) - _MAX_SIG_BLOCK))
    if at <= 0 or not data.endswith(b"}"):
        return False
    try:
        block = load_json_limited(
            data[at + len(_SIG_KEY) : -1], max_bytes=_MAX_SIG_BLOCK, max_depth=2, max_items=16,
            what="job.json signature",
        )  # fmt: skip
        if not isinstance(block, dict) or block.get("alg") != signing.SIG_ALG:
            return False
        raw = base64.b64decode(str(block["public_key"]), validate=True)
        sig = base64.b64decode(str(block["sig"]), validate=True)
        if len(raw) != 32 or len(sig) != 64:
            return False
        if not any(info.raw == raw for info in trusted.values()):
            return False
        Ed25519PublicKey.from_public_bytes(raw).verify(sig, data[:at] + b"}")
    except (SecurityError, KeyError, ValueError, InvalidSignature):
        return False
    return True


class SignatureVerifier:
    """A worker's job check: signed by a key it trusts (``drivemr keys``), for this job id.

    ``precheck(data)`` runs on the raw job.json before it is parsed; ``fingerprint()`` names
    the trust a refusal was made under, so a refusal remembered across restarts is judged
    again once the operator trusts another key.
    """

    def __init__(self, config_dir: Path | None = None) -> None:
        self.config_dir = config_dir

    def _trusted(self) -> dict[str, signing.PublicKeyInfo]:
        return signing.load_trusted(self.config_dir or signing.config_dir())

    def __call__(self, job: Any) -> None:
        signing.verify_document(job.doc, self._trusted(), expected_job_id=job.id)

    def precheck(self, data: bytes) -> None:
        if len(data) <= MAX_UNVERIFIED_JOB_BYTES or raw_signature_ok(data, self._trusted()):
            return
        raise SecurityError(
            f"job.json is {len(data)} bytes and carries no valid signature by a trusted key"
            f" over its bytes; not parsed (unsigned jobs are read only up to"
            f" {MAX_UNVERIFIED_JOB_BYTES} bytes)"
        )

    def fingerprint(self) -> str:
        try:
            ids = sorted(self._trusted())
        except SecurityError:
            return "unreadable"
        return hashlib.sha256(",".join(ids).encode()).hexdigest()[:16]
