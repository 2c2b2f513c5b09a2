"""Signed jobs: the canonical form of a document, its signature, and file digests.

Anyone who can write to the shared folder can post a job, and a job is a command line that
every worker runs. So ``drivemr submit`` signs the job document with the submitter's
private key, and a worker runs a job only if the signature verifies against a public key
it was told to trust, the job id inside the signed document is the id the job was found
under (no replay under another id), and every shipped file matches the digest the document
carries. The keys themselves (the signing key, the trusted list, the config directory and
its private files) are :mod:`drivemr.keys`; this module re-exports them, so
``drivemr.signing`` stays the one import for both.
"""

from __future__ import annotations

import base64
import copy
import hmac
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from drivemr.errors import SecurityError
from drivemr.fileio import sha256_file
from drivemr.keys import (
    ENV_CONFIG_DIR,
    PUBKEY_PREFIX,
    SELF_NAME,
    PublicKeyInfo,
    check_private_file,
    config_dir,
    generate_key,
    key_id_of,
    list_trusted,
    load_or_create_signing_key,
    load_signing_key,
    load_trusted,
    parse_public_key,
    revoke,
    show_public_key,
    signing_key_path,
    trust_key,
    trusted_keys_path,
    write_private_file,
)
from drivemr.keys import _b64 as _b64
from drivemr.keys import _dir as _dir
from drivemr.keys import _info as _info
from drivemr.keys import _raw_public as _raw_public
from drivemr.keys import check_private_dir as check_private_dir

__all__ = [
    "ENV_CONFIG_DIR",
    "PUBKEY_PREFIX",
    "SELF_NAME",
    "PublicKeyInfo",
    "canonical_bytes",
    "check_private_file",
    "config_dir",
    "generate_key",
    "key_id_of",
    "list_trusted",
    "load_or_create_signing_key",
    "load_signing_key",
    "load_trusted",
    "parse_public_key",
    "revoke",
    "show_public_key",
    "sign_document",
    "signing_key_path",
    "trust_key",
    "trusted_keys_path",
    "verify_document",
    "verify_file_digest",
    "write_private_file",
]

SIG_ALG = "ed25519"
_SIG_FIELDS = frozenset({"alg", "key_id", "public_key", "sig"})
_HEX64_RE = re.compile(r"[0-9a-f]{64}")
_MAX_CANONICAL_DEPTH = 512

# --------------------------------------------------------------------------- documents


def _check_plain_json(value: Any) -> None:
    """Only JSON data with string keys, so the canonical form has exactly one meaning."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > _MAX_CANONICAL_DEPTH:
            raise SecurityError("job document nests too deeply (or contains a cycle)")
        if isinstance(node, dict):
            for key, child in node.items():
                if not isinstance(key, str):
                    raise SecurityError(f"job document has a non-string key {key!r}")
                stack.append((child, depth + 1))
        elif isinstance(node, (list, tuple)):
            stack.extend((child, depth + 1) for child in node)
        elif node is not None and not isinstance(node, (str, int, float)):
            raise SecurityError(f"job document holds a {type(node).__name__}, not JSON data")


def canonical_bytes(doc: Mapping[str, Any]) -> bytes:
    """The bytes that are signed: the document minus its top-level ``signature``, as
    compact sorted-key UTF-8 JSON. NaN and infinities are refused (JSON has none)."""
    if not isinstance(doc, Mapping):
        raise SecurityError("job document is not a JSON object")
    body = {k: v for k, v in doc.items() if k != "signature"}
    _check_plain_json(body)
    try:
        text = json.dumps(
            body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SecurityError("job document contains a lone surrogate character") from exc
    except (TypeError, ValueError, RecursionError) as exc:
        raise SecurityError(f"job document cannot be put in canonical form: {exc}") from exc


def sign_document(doc: Mapping[str, Any], private_key: Ed25519PrivateKey) -> dict[str, Any]:
    """Return a copy of ``doc`` with a ``signature`` block over :func:`canonical_bytes`."""
    body = copy.deepcopy({k: v for k, v in doc.items() if k != "signature"})
    sig = private_key.sign(canonical_bytes(body))
    raw = _raw_public(private_key)
    body["signature"] = {
        "alg": SIG_ALG,
        "key_id": key_id_of(raw),
        "public_key": base64.b64encode(raw).decode("ascii"),
        "sig": base64.b64encode(sig).decode("ascii"),
    }
    return body


def _short(value: object) -> str:
    """repr() cut to a log-line-friendly length (ids come from untrusted documents)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def verify_document(
    doc: Mapping[str, Any],
    trusted: Mapping[str, PublicKeyInfo],
    *,
    expected_job_id: str | None = None,
    subject: str | None = None,
) -> PublicKeyInfo:
    """Check a job's signature against ``trusted`` (by key id); return the signer's entry.

    ``expected_job_id`` is the id the job was found under (its folder name): the signed
    ``id`` must equal it, so a signed job copied under another id is not run. Every
    refusal is one SecurityError line: the job, the reason and, for an unknown key, the
    command that trusts it. ``subject`` names the document in those lines (default: the job).
    """
    if not isinstance(doc, Mapping):
        raise SecurityError("job document is not a JSON object; refused")
    doc_id = doc.get("id")
    label = _short(expected_job_id if expected_job_id is not None else doc_id)
    name = subject if subject is not None else f"job {label}"
    block = doc.get("signature")
    if block is None:
        raise SecurityError(
            f"{name} is unsigned; refused (workers run only jobs signed by a trusted key)"
        )
    if not isinstance(block, Mapping) or set(block) != _SIG_FIELDS:
        raise SecurityError(
            f"{name} has a malformed signature block; refused"
            f" (expected exactly the fields {', '.join(sorted(_SIG_FIELDS))})"
        )
    if block["alg"] != SIG_ALG:
        raise SecurityError(f"{name}: unsupported signature algorithm {_short(block['alg'])}")
    try:
        raw = _b64(block["public_key"], length=32, what="signature public_key")
        sig = _b64(block["sig"], length=64, what="signature sig")
    except SecurityError as exc:
        raise SecurityError(f"{name} has a malformed signature block: {exc}") from exc
    key_id = key_id_of(raw)
    if block["key_id"] != key_id:
        raise SecurityError(
            f"{name} has a malformed signature block: key_id does not match public_key"
        )
    info = trusted.get(key_id)
    if info is None or info.public_b64 != base64.b64encode(raw).decode("ascii"):
        info = next((i for i in trusted.values() if i.raw == raw), None)
    if info is None:
        line = PUBKEY_PREFIX + base64.b64encode(raw).decode("ascii")
        raise SecurityError(
            f"{name} is signed by key {key_id}, which this worker does not trust;"
            f" refused. If you trust its author, run on this worker: drivemr keys trust"
            f" {line} --name NAME"
        )
    try:
        Ed25519PublicKey.from_public_bytes(info.raw).verify(sig, canonical_bytes(doc))
    except InvalidSignature:
        raise SecurityError(
            f"{name}: the signature does not match the content (modified after signing,"
            f" or forged); refused"
        ) from None
    if expected_job_id is not None and doc_id != expected_job_id:
        raise SecurityError(
            f"{name}: the signed job id is {_short(doc_id)}, not {label}; a signed"
            " job copied or replayed under another id is refused"
        )
    return info


# --------------------------------------------------------------------------- file digests


def verify_file_digest(path: Path | str, expected: str, *, what: str = "file") -> None:
    """Refuse a file whose content is not what the signed job says it is."""
    want = expected.lower() if isinstance(expected, str) else ""
    if not _HEX64_RE.fullmatch(want):
        raise SecurityError(f"{what} {path}: malformed sha256 digest {expected!r}")
    try:
        got = sha256_file(path)
    except OSError as exc:
        raise SecurityError(f"{what} {path} cannot be read to check its digest: {exc}") from exc
    if not hmac.compare_digest(got, want):
        raise SecurityError(
            f"{what} {path} does not match its signed digest (expected sha256 {want},"
            f" got {got}): it was modified or replaced; refused"
        )
