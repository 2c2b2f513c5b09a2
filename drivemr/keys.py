"""Keys: this user's Ed25519 signing key, the keys this worker trusts, private files.

A worker runs a job only if it is signed by a key the worker was told to trust, so the
two files that decide it (the private signing key and the trusted-key list) are secrets or
trust anchors: they live in the user's config directory, are written atomically with mode
0600 in a 0700 directory, and are refused when group or others could read or change them.
This module is those files; :mod:`drivemr.signing` is what is done with the keys
(canonical form, signatures, digests).

Layout of the config directory (``DRIVEMR_CONFIG_DIR`` or the platform's user config dir)::

    keys/signing_key.pem    private key, PKCS#8 PEM, mode 0600, directory 0700
    trusted_keys.json       {"version": 1, "keys": {name: base64 raw public key}}, 0600

The trusted list is JSON rather than TOML because Python 3.10 cannot read TOML without an
extra package, and it is written by ``drivemr keys`` rather than by hand anyway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import shlex
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import platformdirs
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from drivemr.errors import SecurityError
from drivemr.fileio import atomic_write
from drivemr.limits import MAX_SMALL_BYTES, load_json_limited

__all__ = [
    "ENV_CONFIG_DIR",
    "PUBKEY_PREFIX",
    "SELF_NAME",
    "PublicKeyInfo",
    "check_private_dir",
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
    "signing_key_path",
    "trust_key",
    "trusted_keys_path",
    "write_private_file",
]

ENV_CONFIG_DIR = "DRIVEMR_CONFIG_DIR"
PUBKEY_PREFIX = "drivemr-ed25519:"
SELF_NAME = "self"
"""Name under which a machine trusts its own signing key (first-run convenience)."""

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_MAX_KEY_FILE_BYTES = 64 * 1024
_POSIX = os.name == "posix"


@dataclass(frozen=True)
class PublicKeyInfo:
    """A public key as users see it: a local name, a short id and the key itself."""

    name: str
    key_id: str
    public_b64: str

    @property
    def line(self) -> str:
        """The single copy-pasteable form: ``drivemr-ed25519:<base64>``."""
        return PUBKEY_PREFIX + self.public_b64

    @property
    def raw(self) -> bytes:
        """The 32 raw public-key bytes."""
        return base64.b64decode(self.public_b64)


# --------------------------------------------------------------------------- config dir


def config_dir() -> Path:
    """The config directory: ``$DRIVEMR_CONFIG_DIR``, else the platform's user config dir."""
    env = os.environ.get(ENV_CONFIG_DIR)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_config_dir("drivemr"))


def _dir(value: Path | str | None) -> Path:
    return config_dir() if value is None else Path(value)


def signing_key_path(config_dir: Path | str | None = None) -> Path:
    """Where the private signing key lives."""
    return _dir(config_dir) / "keys" / "signing_key.pem"


def trusted_keys_path(config_dir: Path | str | None = None) -> Path:
    """Where the list of trusted public keys lives."""
    return _dir(config_dir) / "trusted_keys.json"


# --------------------------------------------------------------------------- private files


def _chmod(path: Path | str, mode: int) -> None:
    """chmod that must work on POSIX and is best-effort on Windows (no such permissions)."""
    try:
        os.chmod(path, mode)
    except OSError:
        if _POSIX:
            raise


def _private_dir(path: Path) -> None:
    """Create ``path`` as a 0700 directory, or tighten it to 0700.

    The home directory itself is never re-moded: private files belong in a drivemr-owned
    directory, and silently locking down someone's home would be a surprise.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    with suppress(RuntimeError, KeyError):  # no resolvable home directory
        if path.resolve() == Path.home().resolve():
            return
    _chmod(path, 0o700)


def write_private_file(path: Path, data: bytes) -> None:
    """Atomically write a secret (token, key): file 0600, parent directory 0700.

    Readers see the old content or the new, never a torn file; on Windows the modes are
    best-effort (the user profile's ACLs protect it).
    """
    path = Path(path)
    _private_dir(path.parent)
    atomic_write(path, bytes(data), mode=0o600)


def check_private_file(path: Path, *, what: str = "token file") -> None:
    """Refuse a secret file that group or others can access (POSIX; no-op on Windows).

    A worker refuses to start on a loose token file rather than keep using a credential
    that other local users may already have copied. FileNotFoundError propagates, so the
    caller can say "sign in first" instead.
    """
    if not _POSIX:
        return
    mode = os.stat(path).st_mode
    if mode & 0o077:
        shown = shlex.quote(str(path))
        raise SecurityError(f"{what} {path} is readable by group or others; run chmod 600 {shown}")


def check_private_dir(path: Path, *, what: str = "config directory") -> None:
    """Refuse a directory of secrets or trust that group or others can change (POSIX).

    Whoever can write the config directory can replace the trusted-key list or the signing
    key, so it gets the same check as the files in it. A missing directory passes (it is
    created private when first needed).
    """
    if not _POSIX:
        return
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if st.st_mode & 0o022:
        shown = shlex.quote(str(path))
        raise SecurityError(f"{what} {path} is writable by group or others; run chmod 700 {shown}")


# --------------------------------------------------------------------------- keys


def key_id_of(raw_public: bytes) -> str:
    """Short key id: first 16 hex digits of the SHA-256 of the raw public key."""
    return hashlib.sha256(raw_public).hexdigest()[:16]


def _raw_public(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _info(name: str, raw: bytes) -> PublicKeyInfo:
    return PublicKeyInfo(
        name=name, key_id=key_id_of(raw), public_b64=base64.b64encode(raw).decode("ascii")
    )


def _b64(text: object, *, length: int, what: str) -> bytes:
    """Strict base64 of exactly ``length`` bytes, or SecurityError."""
    if not isinstance(text, str):
        raise SecurityError(f"{what} must be a base64 string")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise SecurityError(f"{what} is not valid base64") from exc
    if len(raw) != length:
        raise SecurityError(f"{what} must be {length} bytes, not {len(raw)}")
    return raw


def parse_public_key(text: str) -> bytes:
    """Raw public key from ``drivemr-ed25519:<base64>`` (or bare base64)."""
    body = text.strip()
    if body.startswith(PUBKEY_PREFIX):
        body = body[len(PUBKEY_PREFIX) :]
    elif ":" in body:
        raise SecurityError(
            f"unsupported public key {text[:40]!r}: expected {PUBKEY_PREFIX}<base64>"
        )
    raw = _b64(body, length=32, what="public key")
    try:
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise SecurityError(f"not an Ed25519 public key: {exc}") from exc
    return raw


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise SecurityError(
            f"invalid key name {name!r}: use 1-64 letters, digits, '.', '_', '-' or '@',"
            " starting with a letter or digit"
        )
    return name


def generate_key(config_dir: Path | str | None = None, *, overwrite: bool = False) -> PublicKeyInfo:
    """Create this user's signing key, and trust it locally as ``self``.

    Trusting it here is what lets a worker on the same machine and user run the jobs this
    user submits with no set-up. With ``overwrite`` the old key is replaced, and so is the
    ``self`` entry: workers elsewhere must trust the new key.
    """
    path = signing_key_path(config_dir)
    try:
        return _generate(_dir(config_dir), overwrite=overwrite)
    except FileExistsError as exc:
        raise SecurityError(
            f"a signing key already exists at {path}; replacing it (--force) means every"
            " worker must trust the new key"
        ) from exc


def _generate(d: Path, *, overwrite: bool) -> PublicKeyInfo:
    """generate_key; FileExistsError if a key exists and ``overwrite`` is false."""
    path = signing_key_path(d)
    if path.exists() and not overwrite:
        raise FileExistsError(str(path))
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _private_dir(d)
    _private_dir(path.parent)
    atomic_write(path, pem, mode=0o600, overwrite=overwrite)
    info = _info(SELF_NAME, _raw_public(key))
    entries = {n: b for n, b in _read_trusted(d).items() if n != SELF_NAME}
    entries[SELF_NAME] = info.public_b64
    _write_trusted(d, entries)
    return info


def load_signing_key(
    config_dir: Path | str | None = None,
) -> tuple[Ed25519PrivateKey, PublicKeyInfo]:
    """Load this user's private key; refuse it if group or others can read it."""
    path = signing_key_path(config_dir)
    if not path.exists():
        raise SecurityError(f"no signing key at {path}; run: drivemr keys generate")
    check_private_dir(path.parent.parent)
    check_private_dir(path.parent, what="keys directory")
    check_private_file(path, what="signing key")
    data = path.read_bytes()
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise SecurityError(f"signing key {path} is too large to be a key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SecurityError(f"signing key {path} cannot be loaded: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SecurityError(f"signing key {path} is not an Ed25519 key")
    return key, _info(SELF_NAME, _raw_public(key))


def load_or_create_signing_key(
    config_dir: Path | str | None = None,
) -> tuple[Ed25519PrivateKey, PublicKeyInfo]:
    """The first submit on a machine creates (and locally trusts) a key; later ones load it.

    If another process creates the key at the same moment, its key wins and is loaded.
    """
    d = _dir(config_dir)
    if not signing_key_path(d).exists():
        with suppress(FileExistsError):
            _generate(d, overwrite=False)
    return load_signing_key(d)


def show_public_key(config_dir: Path | str | None = None) -> str:
    """This user's public key as one line to paste into ``drivemr keys trust`` elsewhere."""
    return load_signing_key(config_dir)[1].line


# --------------------------------------------------------------------------- trusted keys


def _read_trusted(d: Path) -> dict[str, str]:
    """name -> base64 public key. Fails closed: a damaged list is an error, not "no keys"."""
    path = trusted_keys_path(d)
    check_private_dir(d)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return {}
    with os.fdopen(fd, "rb") as fh:
        if _POSIX and os.fstat(fh.fileno()).st_mode & 0o022:
            shown = shlex.quote(str(path))
            raise SecurityError(
                f"trusted keys file {path} is writable by group or others, who could add"
                f" keys; run chmod 600 {shown}"
            )
        data = fh.read(MAX_SMALL_BYTES + 1)
    doc = load_json_limited(data, max_bytes=MAX_SMALL_BYTES, what=f"trusted keys file {path}")
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(keys, dict):
        raise SecurityError(f"trusted keys file {path} is not in the expected format")
    out: dict[str, str] = {}
    for name, b64 in keys.items():
        _check_name(name)
        raw = _b64(b64, length=32, what=f"trusted key {name!r} in {path}")
        out[name] = base64.b64encode(raw).decode("ascii")
    return out


def _write_trusted(d: Path, entries: Mapping[str, str]) -> None:
    doc = {"version": 1, "keys": dict(sorted(entries.items()))}
    write_private_file(trusted_keys_path(d), (json.dumps(doc, indent=2) + "\n").encode())


def trust_key(
    config_dir: Path | str | None, pubkey_text: str, name: str | None = None
) -> PublicKeyInfo:
    """Trust a public key (as printed by ``drivemr keys show``) under a local name.

    Trusting the same key under the same name again is a no-op; a name already used by a
    different key, or a key already trusted under another name, is refused so that a
    typo never silently replaces trust.
    """
    d = _dir(config_dir)
    raw = parse_public_key(pubkey_text)
    info = _info(_check_name(name) if name is not None else f"key-{key_id_of(raw)}", raw)
    entries = _read_trusted(d)
    for other, b64 in entries.items():
        if b64 == info.public_b64:
            if other == info.name:
                return info
            raise SecurityError(
                f"key {info.key_id} is already trusted as {other!r};"
                f" revoke {other!r} first to rename it"
            )
    if info.name in entries:
        raise SecurityError(
            f"a different key is already trusted as {info.name!r}; choose another --name"
            f" or run: drivemr keys revoke {info.name}"
        )
    entries[info.name] = info.public_b64
    _write_trusted(d, entries)
    return info


def list_trusted(config_dir: Path | str | None = None) -> list[PublicKeyInfo]:
    """Trusted keys, sorted by name."""
    entries = _read_trusted(_dir(config_dir))
    return [_info(n, base64.b64decode(b)) for n, b in sorted(entries.items())]


def load_trusted(config_dir: Path | str | None = None) -> dict[str, PublicKeyInfo]:
    """Trusted keys by key id: what :func:`verify_document` takes."""
    return {info.key_id: info for info in list_trusted(config_dir)}


def revoke(config_dir: Path | str | None, name: str) -> None:
    """Stop trusting the key called ``name``; jobs it signed are refused from now on."""
    d = _dir(config_dir)
    entries = _read_trusted(d)
    if name not in entries:
        raise SecurityError(f"no trusted key named {name!r} (see: drivemr keys list)")
    del entries[name]
    _write_trusted(d, entries)
