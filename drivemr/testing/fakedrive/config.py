"""The fake's knobs and its request accounting.

:class:`FakeConfig` holds every setting that tests, the CLI and ``POST /_fake/config`` can
change while the server runs: injected faults, the write quota, the account and shared-drive
policies, and deliberate misbehaviour (for ``drivemr doctor``'s tests). :class:`Stats` counts
what clients did, for benchmarks that compare request counts.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, fields
from typing import Any

READ_ENDPOINTS = frozenset(
    {
        "files.get",
        "files.list",
        "files.generateIds",
        "changes.list",
        "changes.getStartPageToken",
        "about.get",
        "drives.get",
        "drives.list",
    }
)
WRITE_ENDPOINTS = frozenset(
    {
        "files.create",
        "files.update",
        "files.delete",
        "files.copy",
        "files.emptyTrash",
        "drives.create",
        "permissions.create",
    }
)

MISBEHAVIOURS = frozenset({"create-once", "listing", "changes"})
"""``create-once``: a create with a used id overwrites the file instead of answering 409;
``listing``: by-parent listings miss files younger than ``misbehave_listing_seconds``;
``changes``: the change feed is always empty."""
MINTED_ID_POLICIES = ("account", "anyone")


@dataclass
class FakeConfig:
    """Fault and policy knobs; every field can be changed while the server runs."""

    latency_ms: float = 0.0
    write_rate: float | None = None
    """Sustained writes per second for the account; ``None`` = unlimited."""
    write_burst: float | None = None
    """Quota-bucket size; default ``max(1, write_rate)``."""
    fault_rate: float = 0.0
    fault_codes: tuple[int, ...] = (500, 503, 429)
    lost_ack_rate: float = 0.0
    lost_ack_methods: tuple[str, ...] = ("files.create",)
    name_query_lag: float = 0.0
    auth_error: bool = False
    """Answer every API call with 401 authError, as Drive does once an access token
    expired or the grant was revoked."""
    short_page_rate: float = 0.0
    """Probability that a files.list page comes back short (even empty) with a next page
    token, as Drive documents it may."""
    upload_session_ttl: float = 7 * 86400.0
    max_body_bytes: int = 512 * 1024 * 1024
    seed: int | None = None
    minted_ids: str = "account"
    """``account``: only the account that minted an id may create a file with it (the
    conservative reading of "generated for the requesting user"); ``anyone``: any account."""
    drive_item_limit: int = 400_000
    """Items a shared drive may hold (``teamDriveFileLimitExceeded`` beyond)."""
    misbehave: tuple[str, ...] = ()
    """Deliberately broken assumptions, a subset of :data:`MISBEHAVIOURS`."""
    misbehave_listing_seconds: float = 5.0
    """How long ``misbehave=listing`` hides a new file from by-parent listings."""

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def misbehaves(self, what: str) -> bool:
        return what in self.misbehave


CONFIG_KEYS = frozenset(f.name for f in fields(FakeConfig))


def coerce_config(key: str, value: Any) -> Any:
    """Validate one configuration value (from Python or from POST /_fake/config JSON)."""
    if key in ("fault_codes",):
        codes = tuple(int(c) for c in value)
        if not codes or any(c < 400 or c > 599 for c in codes):
            raise ValueError("fault_codes must be HTTP error codes")
        return codes
    if key in ("lost_ack_methods", "misbehave"):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v] if key == "misbehave" else [value]
        out = tuple(str(m) for m in value)
        bad = set(out) - MISBEHAVIOURS if key == "misbehave" else set()
        if bad:
            raise ValueError(
                f"unknown misbehaviour(s) {', '.join(sorted(bad))}; "
                f"known: {', '.join(sorted(MISBEHAVIOURS))}"
            )
        return out
    if key == "minted_ids":
        if value not in MINTED_ID_POLICIES:
            raise ValueError(f"minted_ids must be one of {', '.join(MINTED_ID_POLICIES)}")
        return str(value)
    if key in ("write_rate", "write_burst"):
        if value is None:
            return None
        v = float(value)
        if v <= 0:
            raise ValueError(f"{key} must be > 0 (or null for unlimited)")
        return v
    if key == "auth_error":
        return bool(value)
    if key == "seed":
        return None if value is None else int(value)
    if key in ("max_body_bytes", "drive_item_limit"):
        n = int(value)
        if n < 0:
            raise ValueError(f"{key} must be >= 0")
        return n
    v = float(value)
    if key in ("fault_rate", "lost_ack_rate", "short_page_rate") and not 0.0 <= v <= 1.0:
        raise ValueError(f"{key} must be within [0, 1]")
    if v < 0:
        raise ValueError(f"{key} must be >= 0")
    return v


class QuotaBucket:
    """The fake's write quota: ``rate`` writes per second, at most ``burst`` saved up.

    Thread-safe (own lock). Not to be confused with the Drive store's client-side pacer.
    """

    def __init__(self, rate: float | None, burst: float | None) -> None:
        self._lock = threading.Lock()
        self.set(rate, burst)

    def set(self, rate: float | None, burst: float | None) -> None:
        with self._lock:
            self.rate = rate
            self.burst = burst if burst is not None else max(1.0, rate or 1.0)
            self.tokens = self.burst
            self.stamp = time.monotonic()

    def take(self) -> bool:
        if self.rate is None:
            return True
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            return False


class Stats:
    """Request accounting, as served by ``GET /_fake/stats``; thread-safe (own lock).

    ``requests`` counts HTTP requests to the API (a batch is one); ``calls`` counts API
    calls (each part of a batch is one); ``reads``/``writes``/``by_endpoint`` count calls.
    ``faults`` counts every injected fault: random errors (``fault_errors``), write-quota
    refusals (``rate_limited``) and dropped acknowledgements (``lost_acks``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.requests = 0
            self.calls = 0
            self.reads = 0
            self.writes = 0
            self.faults = 0
            self.fault_errors = 0
            self.rate_limited = 0
            self.lost_acks = 0
            self.errors = 0
            self.bytes_in = 0
            self.bytes_out = 0
            self.by_endpoint: dict[str, int] = {}
            self.by_status: dict[str, int] = {}

    def count_call(self, endpoint: str) -> None:
        with self._lock:
            self.calls += 1
            self.by_endpoint[endpoint] = self.by_endpoint.get(endpoint, 0) + 1
            if endpoint in READ_ENDPOINTS:
                self.reads += 1
            elif endpoint in WRITE_ENDPOINTS:
                self.writes += 1

    def count_request(self, nbytes_in: int) -> None:
        with self._lock:
            self.requests += 1
            self.bytes_in += nbytes_in

    def count_response(self, status: int, dropped: bool, nbytes_out: int) -> None:
        with self._lock:
            key = "dropped" if dropped else str(status)
            self.by_status[key] = self.by_status.get(key, 0) + 1
            if status >= 400:
                self.errors += 1
            self.bytes_out += nbytes_out

    def count_fault(self, kind: str) -> None:
        with self._lock:
            self.faults += 1
            setattr(self, kind, getattr(self, kind) + 1)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "calls": self.calls,
                "reads": self.reads,
                "writes": self.writes,
                "faults": self.faults,
                "fault_errors": self.fault_errors,
                "rate_limited": self.rate_limited,
                "lost_acks": self.lost_acks,
                "errors": self.errors,
                "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out,
                "by_endpoint": dict(self.by_endpoint),
                "by_status": dict(self.by_status),
            }
