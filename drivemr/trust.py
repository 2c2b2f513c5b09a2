"""Trust: what this PC seals, and which of the store's liveness files a reader believes.

Anyone who can write the shared folder can write a claim, a heartbeat, a cancel marker or
a rejection note, and on Drive even set a file's ``modifiedTime``. So each PC seals what its
worker (or its user's ``drivemr cancel``) writes with the key that signs its jobs
(:func:`drivemr.signing.load_or_create_signing_key`), and every reader opens those files
against its trusted keys: the ``drivemr keys`` list plus this PC's own key, so one PC alone
needs no set-up. The list is re-read when it changes, so ``drivemr keys trust`` on a running
worker's PC takes effect without a restart. A file that does not open is not believed;
:class:`WarnOnce` names it once. What each kind of file then means (a burned claim id, a
worker that is not seen, a marker that is not there) is written down in
docs/security.md, "Who can forge what".

This module holds the bodies of the sealed liveness files (claims, heartbeats, markers,
rejection notes) and their readers, so the worker and the CLI read them the same way.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivemr import signing
from drivemr.errors import AuthError, NotFound, SecurityError, StoreError, TransientStoreError
from drivemr.limits import finite_number
from drivemr.safetext import safe
from drivemr.sealed import Sealed, Sealer, UntrustedFile, WarnOnce, open_sealed
from drivemr.signing import PublicKeyInfo
from drivemr.stores.base import FileInfo, Store

__all__ = [
    "MAX_DECLARED_LEASE",
    "MIN_DECLARED_LEASE",
    "NOTE_CODES",
    "Trust",
    "declared_lease",
    "note_code",
    "render_note",
]

log = logging.getLogger("drivemr.trust")

MAX_SEALED_BYTES = 1024 * 1024
MIN_DECLARED_LEASE = 1.0
MAX_DECLARED_LEASE = 24 * 3600.0
"""Every worker is judged by the lease its heartbeat declares, bounded to this range (a
forged or silly value can neither condemn a worker at once nor keep it alive for days)."""

UPGRADE_HINT = (
    "an unsealed file, written by a drivemr from before sealed liveness files or by"
    " someone without a trusted key; ignored (finish running jobs before upgrading:"
    " see docs/security.md)"
)

NOTE_CODES: Mapping[str, str] = {
    "untrusted-key": "the job is signed by a key this worker does not trust",
    "unsigned": "the job is not signed",
    "bad-signature": "the job's signature does not match its content (edited or forged)",
    "replay": "the job was already posted in another folder; a replayed copy is never run",
    "other-store": "the job was posted to another store; a copied job is never run",
    "format": "the job document is malformed or from an unsupported drivemr version",
    "refused": "the job was refused by the worker's security checks",
}
"""Why a worker rejected a job: ``status`` shows these fixed texts, never text from a file."""

_HEX = re.compile(r"[0-9a-f]{1,64}")


def declared_lease(value: object, default: float) -> float:
    """A heartbeat's declared lease in seconds, bounded; ``default`` when absent or bad."""
    number = finite_number(value)  # a 400-digit integer, NaN or a bool is no lease
    if number is None:
        return default
    return min(MAX_DECLARED_LEASE, max(MIN_DECLARED_LEASE, number))


def note_code(exc: BaseException) -> str:
    """The reason code of a job rejection (see NOTE_CODES)."""
    text = str(exc)
    if "does not trust" in text:
        return "untrusted-key"
    if "unsigned" in text:
        return "unsigned"
    if "signature does not match" in text or "malformed signature" in text:
        return "bad-signature"
    if "posted to another store" in text:
        return "other-store"
    if "replay" in text or "copied" in text or "a copy of the job folder" in text:
        return "replay"
    if isinstance(exc, SecurityError):
        return "refused"
    return "format"


def render_note(sealed: Sealed) -> str:
    """One line for ``status``: the signer (a name from our own trusted list), the worker
    and a fixed text for the reason code; nothing an attacker could have written."""
    body = sealed.body
    code = body.get("code")
    text = NOTE_CODES.get(code if isinstance(code, str) else "", "rejected (unknown reason)")
    key = body.get("key")
    if code == "untrusted-key" and isinstance(key, str) and _HEX.fullmatch(key):
        text += f" (key {key})"
    return f"{text} [note sealed by {safe(sealed.signer.name, max_len=64)}]"


_READERS: dict[str, Trust] = {}
_READERS_LOCK = threading.Lock()


class Trust:
    """This PC's sealer, its trusted keys (re-read on change) and the untrusted-file reports.

    Thread-safe. ``open``/``read`` never raise for a bad file: they return None and report
    it once (by ``key``, usually the file id)."""

    def __init__(
        self,
        key: Ed25519PrivateKey | None,
        *,
        config_dir: Path | str | None = None,
        trusted: Mapping[str, PublicKeyInfo] | None = None,
        report: Callable[[str], None] | None = None,
        refresh_every: float = 1.0,
    ) -> None:
        """``trusted``: a fixed list (no config directory is read); otherwise the
        config directory's trusted list, re-read when it changes. This PC's own key is
        always trusted."""
        self.sealer = None if key is None else Sealer(key)
        self.me = (
            None if key is None else signing._info(signing.SELF_NAME, signing._raw_public(key))
        )
        self._config_dir = None if trusted is not None else signing._dir(config_dir)
        self._fixed = dict(trusted) if trusted is not None else None
        self._refresh_every = refresh_every
        self._lock = threading.Lock()
        self._keys: dict[str, PublicKeyInfo] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._checked = float("-inf")
        self.generation = 0
        """Counts changes of the trusted list: what was untrusted may now open."""
        self.warn = WarnOnce(report or (lambda m: log.warning("%s", m)))
        self._cache: OrderedDict[tuple[str, str, float, str, int], Sealed | None] = OrderedDict()
        self._load(force=True)

    @classmethod
    def for_this_pc(
        cls, config_dir: Path | str | None = None, *, report: Callable[[str], None] | None = None
    ) -> Trust:
        """This PC's key (created on first use, as the first submit does) and trusted list."""
        key, _info = signing.load_or_create_signing_key(config_dir)
        return cls(key, config_dir=config_dir, report=report)

    @classmethod
    def reader(cls, config_dir: Path | str | None = None) -> Trust:
        """For commands that only read (status, joblog, workers): this PC's key if it has
        one (it trusts itself), never creating one. One per config directory and process,
        so `status --watch` reports each untrusted file once, not at every refresh."""
        where = str(signing._dir(config_dir))
        with _READERS_LOCK:
            trust = _READERS.get(where)
            if trust is not None and trust.me is None and signing.signing_key_path(where).exists():
                trust = None  # this PC made its key since (its first submit): trust it too
            if trust is None:
                try:
                    key: Ed25519PrivateKey | None = signing.load_signing_key(where)[0]
                except SecurityError:
                    key = None
                trust = _READERS[where] = cls(key, config_dir=where)
            return trust

    # -- writing --

    def seal(self, kind: str, body: Mapping[str, Any]) -> bytes:
        if self.sealer is None:
            raise SecurityError("this PC has no signing key to seal with (drivemr keys generate)")
        return self.sealer.seal(kind, body)

    # -- the trusted list --

    def keys(self) -> Mapping[str, PublicKeyInfo]:
        """The keys believed now (re-read from disk at most every ``refresh_every`` s)."""
        self._load()
        with self._lock:
            return self._keys

    def _load(self, *, force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if not force and now - self._checked < self._refresh_every:
                return
            self._checked = now
        if self._fixed is not None:
            keys = dict(self._fixed)
            stamp: tuple[int, int, int] | None = (0, 0, 0)
        else:
            path = signing.trusted_keys_path(self._config_dir)
            try:
                st = path.stat()
                stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            except OSError:
                stamp = None
            with self._lock:
                if not force and stamp == self._stamp:
                    return
            try:
                keys = signing.load_trusted(self._config_dir)
            except SecurityError as exc:
                self.warn(
                    f"trusted-list:{stamp}",
                    f"trusted keys not re-read ({exc}); keeping the previous list",
                )
                return
        if self.me is not None:
            keys[self.me.key_id] = keys.get(self.me.key_id, self.me)
        with self._lock:
            if keys != self._keys:
                if self._keys:
                    log.info("trusted keys changed: %d key(s) now trusted", len(keys))
                self._keys = keys
                self.generation += 1
                self._cache.clear()
            self._stamp = stamp

    # -- reading --

    def open(
        self,
        data: bytes,
        kind: str,
        *,
        expect: Mapping[str, Any] | None = None,
        what: str,
        key: str,
    ) -> Sealed | None:
        """The opened file, or None (reported once under ``key``) when it does not open."""
        try:
            return open_sealed(
                data, kind, self.keys(), expect=expect, what=what, max_bytes=MAX_SEALED_BYTES
            )
        except UntrustedFile as exc:
            reason = str(exc)
            if reason.endswith("not a sealed drivemr document"):
                # Old files from before the upgrade (or junk): said clearly once per kind,
                # naming the first; the others at debug level, so an upgraded store does not
                # flood the log.
                message = f"untrusted file ignored: {safe(what, max_len=200)}: {UPGRADE_HINT}"
                if not self.warn(
                    f"unsealed:{kind}", message + f" (further unsealed {kind}s: debug log)"
                ):
                    log.debug("%s", message)
                return None
            if reason.endswith("which this worker does not trust"):
                reason += (
                    " (if that key is another PC of your cluster: `drivemr keys show` there,"
                    " `drivemr keys trust` here)"
                )
            self.warn(key, f"untrusted file ignored: {safe(reason, max_len=300)}")
            return None

    def read(
        self,
        store: Store,
        info: FileInfo,
        kind: str,
        *,
        expect: Mapping[str, Any] | None = None,
        what: str,
        fresh: bool = False,
    ) -> Sealed | None:
        """Read and open a store file, once per version of it (a bounded cache; ``fresh``
        reads it again: a writer can change content without changing its time).

        Raises only store errors other than NotFound (a vanished file is None)."""
        ck = (info.id, kind, info.modified, repr(sorted((expect or {}).items())), self.generation)
        with self._lock:
            if not fresh and ck in self._cache:
                self._cache.move_to_end(ck)
                return self._cache[ck]
        try:
            data = store.read(info.id, max_bytes=MAX_SEALED_BYTES, parent=info.parent or None)
        except NotFound:
            return None
        except (AuthError, TransientStoreError):
            raise
        except StoreError as exc:  # too large, not a regular file, ...: not believed
            self.warn(info.id, f"untrusted file ignored: {what}: {safe(exc, max_len=200)}")
            data = b""
        opened = self.open(data, kind, expect=expect, what=what, key=info.id)
        with self._lock:
            self._cache[ck] = opened
            if len(self._cache) > 20_000:
                self._cache.popitem(last=False)
        return opened


# --------------------------------------------------------------------------- claims


def claim_body(
    job_id: str, task: str, attempt: int, worker: str, *, life: str, nonce: str, **extra: Any
) -> dict[str, Any]:
    """What a claim says: where it belongs (job, task, attempt), who made it (worker and
    the worker process's ``life``, so a "stopped" heartbeat ends only that life's claims)
    and the nonce that recognises our own create whose answer was lost."""
    return {
        "job": job_id,
        "task": task,
        "attempt": attempt,
        "worker": worker,
        "life": life,
        "nonce": nonce,
        **extra,
    }


def open_claim(
    trust: Trust, store: Store, job_id: str, task: str, attempt: int, worker: str, info: FileInfo
) -> Sealed | None:
    """A claim file found at the minted id of (task, attempt), opened (None: untrusted).

    ``worker``: the worker its name says (jobs of format 1 and 2), which the seal must
    name too; "" when names carry none (format 3: the seal alone says whose it is,
    :func:`claim_worker`). A claim that opens is remembered as its worker's."""
    expect: dict[str, Any] = {"job": job_id, "task": task, "attempt": attempt}
    if worker:
        expect["worker"] = worker
    sealed = trust.read(
        store,
        info,
        "claim",
        expect=expect,
        what=f"claim {info.name!r} (job {job_id}, task {task}, attempt {attempt + 1})",
    )
    if sealed is None:
        return None
    from drivemr.protocol.names import _WORKER_ID, remember_claimer  # (no import cycle)

    sealer = sealed.body.get("worker")
    if not isinstance(sealer, str) or not _WORKER_ID.fullmatch(sealer):
        trust.warn(info.id, f"untrusted file ignored: claim {safe(info.name)}: no valid worker")
        return None
    remember_claimer(info, sealer)
    return sealed


def claim_worker(sealed: Sealed) -> str:
    """The worker an opened claim (:func:`open_claim`) names."""
    return str(sealed.body["worker"])


# --------------------------------------------------------------------------- heartbeats


def open_heartbeat(
    trust: Trust, store: Store, worker: str, info: FileInfo, *, fresh: bool = False
) -> Sealed | None:
    """A heartbeat file of ``worker`` (from its name), opened (None: untrusted)."""
    return trust.read(
        store,
        info,
        "heartbeat",
        expect={"worker": worker},
        what=f"heartbeat {info.name!r}",
        fresh=fresh,
    )


def beat_counter(body: Mapping[str, Any]) -> tuple[str, int] | None:
    """(life, seq) of an opened heartbeat; None when malformed."""
    life, seq = body.get("life"), body.get("seq")
    if not isinstance(life, str) or not 0 < len(life) <= 64:
        return None
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 2**63:
        return None
    return life, seq


# --------------------------------------------------------------------------- rejection notes


def note_body(job_id: str, worker: str, exc: BaseException, job_doc: Any = None) -> dict[str, Any]:
    """A rejection note: a reason code (see NOTE_CODES), never free text, plus the id of
    the key that signed the job when this worker does not trust it."""
    code = note_code(exc)
    body: dict[str, Any] = {"job": job_id, "worker": worker, "code": code, "at": time.time()}
    sig = job_doc.get("signature") if isinstance(job_doc, Mapping) else None
    key = sig.get("key_id") if isinstance(sig, Mapping) else None
    if code == "untrusted-key" and isinstance(key, str) and _HEX.fullmatch(key):
        body["key"] = key
    return body


def open_note(trust: Trust, store: Store, job_id: str, info: FileInfo) -> Sealed | None:
    return trust.read(
        store, info, "note", expect={"job": job_id}, what=f"rejection note {info.name!r}"
    )
