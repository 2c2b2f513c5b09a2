"""How this PC is wired to drivemr: which store it opens, how it signs the jobs it submits
and verifies the ones it runs, and a worker built from flags and settings.

Shared by the Python API (:mod:`drivemr.api`) and the ``drivemr`` command, so ``--store``,
``$DRIVEMR_STORE`` and the config file mean the same everywhere.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drivemr import config as cfg
from drivemr.errors import DrivemrError
from drivemr.stores import open_store, store_kind
from drivemr.stores.base import Store

__all__ = ["build_worker", "lease", "open_configured_store", "signer", "verifier"]

log = logging.getLogger("drivemr")


# ---------------------------------------------------------------------------- the store


def open_configured_store(url: str | None = None, **options: Any) -> Store:
    """Open the store named by ``url``, else ``$DRIVEMR_STORE``, else the config file's
    ``store`` (the resolution every ``--store`` option uses)."""
    resolved = cfg.value("store", url)
    if not resolved:
        raise DrivemrError(
            "no store given: pass --store URL, set DRIVEMR_STORE, or set `store` in "
            + str(cfg.config_file())
        )
    if store_kind(resolved) == "drive":
        rate = cfg.value("write_rate", options.pop("write_rate", None))
        options["write_rate"] = rate or None
    else:
        options.pop("write_rate", None)
    return open_store(resolved, **options)


def lease() -> float:
    """The configured lease: seconds without a heartbeat before a worker counts as lost."""
    return float(cfg.value("lease"))


# ---------------------------------------------------------------------------- signing hooks


def signer() -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Signs a job document with this PC's key (created on first use)."""
    from drivemr import signing

    key, _info = signing.load_or_create_signing_key(signing.config_dir())
    return lambda doc: signing.sign_document(doc, key)


def verifier(insecure: bool) -> Callable[[Any], None]:
    """Checks a job's signature against the trusted keys (nothing with ``insecure``)."""
    from drivemr import signing

    if insecure:
        log.warning(
            "--insecure-accept-unsigned: this worker runs ANY job anyone with write access to the store posts"
        )

    def verify(job: Any) -> None:
        return

    if insecure:
        return verify
    from drivemr.jobtrust import SignatureVerifier

    return SignatureVerifier(signing.config_dir())


def parse_pass_env(text: str | None) -> frozenset[str]:
    """``pass_env`` from flags or the config: names separated by commas or spaces."""
    names = frozenset(n for n in re.split(r"[,\s]+", text or "") if n)
    bad = sorted(n for n in names if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n))
    if bad:
        raise DrivemrError(f"pass_env: {', '.join(bad)} is not an environment variable name")
    return names


def build_worker(store: Store, **kw: Any) -> Any:
    """A :class:`~drivemr.worker.Worker` configured from flags (``kw``) and settings."""
    from drivemr.protocol import check_worker_id, default_worker_id
    from drivemr.worker import Worker, WorkerConfig

    slots = int(cfg.value("slots", kw.get("slots"))) or os.cpu_count() or 1
    workdir = kw.get("workdir") or cfg.value("workdir") or cfg.default_workdir()
    poll = float(cfg.value("poll_interval", kw.get("poll_interval")))
    if not poll:
        # Polls cost quota on Drive and money on S3 (a listing each): 5 s there, 0.5 s on a folder.
        poll = 5.0 if store.url.startswith(("drive://", "s3://")) else 0.5
    identity = None
    if kw.get("keep_id"):
        from drivemr.worker.identity import resolve_identity

        identity = resolve_identity(Path(workdir), kw.get("worker_id"))
        worker_id = identity.worker_id
    else:
        worker_id = check_worker_id(kw.get("worker_id") or default_worker_id())
    config = WorkerConfig(
        worker_id=worker_id,
        slots=slots,
        workdir=Path(workdir),
        lease=float(cfg.value("lease", kw.get("lease"))),
        poll_interval=poll,
        reconcile_interval=float(cfg.value("reconcile_interval")),
        retry_backoff=float(cfg.value("retry_backoff", kw.get("retry_backoff"))),
        exit_when_idle=bool(kw.get("exit_when_idle")),
        keep_workdirs=bool(kw.get("keep_workdirs")),
        jobs=kw.get("jobs"),
        run_reduce=kw.get("run_reduce", True),
        when_idle=bool(kw.get("when_idle")),
        idle_threshold=float(cfg.value("idle_threshold", kw.get("idle_threshold"))),
        pass_env=parse_pass_env(cfg.value("pass_env", ",".join(kw.get("pass_env") or ()) or None)),
    )
    w = Worker(store, config, verify=kw.get("verify"))
    w.identity = identity  # holds the working folder's id lock for the worker's life
    return w
