"""Sealed files: the small signed documents workers leave in the store.

A signed job.json proves who posted a job, but the job then lives through many other files:
claims, results, heartbeats, cancel and finished markers, rejection notes. Anyone who can
write the shared folder can write those too, and on Drive even a file's ``modifiedTime`` is
client-settable. So every file that changes what a worker or a reader does is *sealed*: a
JSON envelope whose body is signed with the writing PC's Ed25519 key (the same key that signs
its jobs), bound to where it belongs (its kind, job, task and attempt), and opened only
against the reader's trusted keys. A file that does not open is not believed: it is reported
once and treated as if it were not there (see docs/security.md for what each kind then
means).

The envelope::

    {"sealed": 1, "kind": "claim", "body": {...}, "signature": {alg, key_id, public_key, sig}}

The signature covers the canonical form (compact, sorted keys) of everything but the
signature block, exactly as for job documents, so one verifier serves both. Opening costs at
most ``max_bytes`` of parsing and one signature check, and never raises anything but
:class:`UntrustedFile`.
"""

from __future__ import annotations

import base64
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivemr import signing
from drivemr.errors import SecurityError
from drivemr.limits import MAX_SMALL_BYTES, load_json_limited
from drivemr.signing import PublicKeyInfo, verify_document

__all__ = [
    "KINDS",
    "Sealed",
    "Sealer",
    "UntrustedFile",
    "WarnOnce",
    "open_sealed",
]

FORMAT = 1
KINDS = frozenset({"claim", "result", "heartbeat", "marker", "note", "round"})
"""Every kind of sealed file; a body sealed as one kind never opens as another."""


class UntrustedFile(SecurityError):
    """A store file that is not sealed by a trusted key, or not for where it was found."""


@dataclass(frozen=True)
class Sealed:
    """An opened sealed file: what it says, and which trusted key said it."""

    kind: str
    body: Mapping[str, Any]
    signer: PublicKeyInfo


class Sealer:
    """Seals documents with this PC's key. Stateless apart from the key: thread-safe.

    Sealing is on every task's path (its claim and its result), so it does the least that
    gives a document :func:`drivemr.signing.verify_document` accepts: one canonical dump
    (compact, sorted keys, UTF-8), one Ed25519 signature, and the signature block spliced
    in as the last key ("signature" sorts after "sealed"), with the public half of the key
    worked out once."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        raw = signing._raw_public(private_key)
        self._block = {
            "alg": signing.SIG_ALG,
            "key_id": signing.key_id_of(raw),
            "public_key": base64.b64encode(raw).decode("ascii"),
        }

    def seal(self, kind: str, body: Mapping[str, Any]) -> bytes:
        """The bytes of a sealed ``kind`` document holding ``body`` (UTF-8 JSON)."""
        if kind not in KINDS:
            raise ValueError(f"unknown sealed kind {kind!r}")
        doc = {"body": body, "kind": kind, "sealed": FORMAT}
        try:
            text = json.dumps(
                doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            )
        except (TypeError, ValueError) as exc:
            raise SecurityError(f"cannot seal a {kind}: {exc}") from exc
        canonical = text.encode("utf-8")
        block = dict(self._block, sig=base64.b64encode(self._key.sign(canonical)).decode())
        tail = json.dumps(block, sort_keys=True, separators=(",", ":"))
        return canonical[:-1] + b',"signature":' + tail.encode("ascii") + b"}"


def open_sealed(
    data: bytes,
    kind: str,
    trusted: Mapping[str, PublicKeyInfo],
    *,
    expect: Mapping[str, Any] | None = None,
    what: str = "file",
    max_bytes: int = MAX_SMALL_BYTES,
    max_items: int = 10_000,
) -> Sealed:
    """Open a sealed document, or raise :class:`UntrustedFile` saying why in one line.

    ``expect`` lists body fields that must hold exactly these values (the job id, task and
    attempt the file was found under), so a genuine file copied elsewhere does not open.
    """
    try:
        doc = load_json_limited(data, max_bytes=max_bytes, max_items=max_items, what=what)
    except SecurityError as exc:
        raise UntrustedFile(str(exc)) from None
    if not isinstance(doc, dict) or doc.get("sealed") != FORMAT:
        raise UntrustedFile(f"{what}: not a sealed drivemr document")
    if doc.get("kind") != kind:
        raise UntrustedFile(f"{what}: sealed as {_short(doc.get('kind'))}, not as {kind}")
    body = doc.get("body")
    if not isinstance(body, dict):
        raise UntrustedFile(f"{what}: sealed document without a body")
    try:
        signer = verify_document(doc, trusted, subject=what)
    except SecurityError as exc:
        # The first clause only: the rest of a job refusal suggests trusting the key, which
        # is no advice to give about a file anyone could have planted.
        raise UntrustedFile(str(exc).split(";")[0]) from None
    for key, value in (expect or {}).items():
        if body.get(key) != value:
            raise UntrustedFile(
                f"{what}: sealed for {key} {_short(body.get(key))}, found under {_short(value)}"
            )
    return Sealed(kind, body, signer)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class WarnOnce:
    """Reports each untrusted file once, remembering a bounded number of them.

    A worker meets the same forged file at every listing; one line per file is enough, and
    a flood of forged files must cost bounded memory (the oldest are forgotten first, so at
    worst a very old one is reported again). Thread-safe.
    """

    def __init__(self, report: Callable[[str], None], *, capacity: int = 4096) -> None:
        self._report = report
        self._capacity = capacity
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, key: str, message: str) -> bool:
        """Report ``message`` unless ``key`` was reported before; True if it was reported."""
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return False
            self._seen[key] = None
            if len(self._seen) > self._capacity:
                self._seen.popitem(last=False)
        self._report(message)
        return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)
