"""`drivemr doctor`: check, on the user's own store, every assumption the protocol makes.

drivemr's guarantees rest on a few properties of the store that no documentation
promises in full (Drive's minted ids across accounts, how soon a listing shows a new file,
whether the change feed covers a shared drive, a network file system's caching). The
tests prove them on drivemr's fake; this command checks them where the user's jobs will
actually run, with the user's sign-in, and says in one table what holds, what does not,
and what that means. Everything it creates lives in one scratch folder in the root,
removed at the end.

Each check is a small function returning :class:`Check`; :func:`run_checks` runs them in
order and never lets one failure stop the others (a failed step is a failed check).
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivemr.errors import AlreadyExists, DrivemrError, NotFound, StoreError
from drivemr.stores.base import ROOT, Store

__all__ = ["Check", "Probe", "render", "run_checks"]

OK, FAIL, WARN, SKIP = "ok", "FAIL", "warn", "skip"
BURST_WRITES = 10
FEED_WAIT = 6.0
"""Seconds the change-feed check waits for the new file to show (Drive's feed can lag)."""
SKEW_WARN, SKEW_FAIL = 5.0, 60.0


@dataclass(frozen=True)
class Check:
    """One row of the table."""

    name: str
    status: str
    result: str
    meaning: str

    @property
    def failed(self) -> bool:
        return self.status == FAIL


@dataclass
class Probe:
    """What the checks share: the store, the scratch folder, a second sign-in."""

    store: Store
    second: Store | None = None
    scratch: str | None = None
    ids: list[str] = field(default_factory=list)
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep

    @property
    def kind(self) -> str:
        url = self.store.url
        return (
            url.split("://", 1)[0] if "://" in url and not url.startswith("file://") else "folder"
        )

    def mint(self) -> str:
        if not self.ids:
            self.ids = self.store.mint_ids(2 * BURST_WRITES + 8)
        return self.ids.pop()


def _try(name: str, meaning: str, fn: Callable[[], Check]) -> Check:
    try:
        return fn()
    except DrivemrError as exc:
        return Check(name, FAIL, f"error: {exc}", meaning)


# --------------------------------------------------------------------------- the checks


def check_mint(p: Probe) -> Check:
    meaning = "Claims and results are created once at ids minted in advance."
    (folder_id,) = p.store.mint_ids(1)
    info = p.store.create(ROOT, f"drivemr-doctor-{secrets.token_hex(4)}", folder_id, folder=True)
    p.scratch = info.id
    fid = p.mint()
    p.store.create(p.scratch, "minted", fid, b"first")
    return Check("minted ids", OK, "an id from mint_ids was accepted by create", meaning)


def check_create_once(p: Probe) -> Check:
    name, meaning = "create once", "Two PCs claiming one task: exactly one create may win."
    assert p.scratch is not None
    fid = p.mint()
    p.store.create(p.scratch, "once", fid, b"first")
    try:
        p.store.create(p.scratch, "once-again", fid, b"second")
    except AlreadyExists:
        return Check(name, OK, "a second create with a used id was refused (409)", meaning)
    content = p.store.read(fid, max_bytes=64)
    how = "overwrote the file" if content == b"second" else "was accepted"
    return Check(
        name,
        FAIL,
        f"a second create with a used id {how}",
        "Two PCs could both claim a task and both commit: this store cannot run drivemr.",
    )


def check_unminted(p: Probe) -> Check:
    name = "unminted id"
    if p.kind == "folder":
        return Check(
            name,
            SKIP,
            "a folder accepts any well-formed id",
            "Ids are random 168-bit values here; nothing to refuse.",
        )
    assert p.scratch is not None
    fake = "1" + secrets.token_urlsafe(24).replace("-", "a").replace("_", "b")[:32]
    try:
        p.store.create(p.scratch, "unminted", fake, b"x")
    except AlreadyExists:
        return Check(name, WARN, "answered 409 for an id never minted", "Unexpected, but safe.")
    except StoreError as exc:
        return Check(
            name,
            OK,
            f"refused ({_short(exc)})",
            "Only minted ids create files: no PC can guess another job's ids.",
        )
    return Check(
        name,
        FAIL,
        "a create with an id never minted was accepted",
        "Ids are not reserved by minting here; create-once by id is not what drivemr assumes.",
    )


def check_visible(p: Probe) -> Check:
    name = "visible at once"
    assert p.scratch is not None
    fid = p.mint()
    p.store.create(p.scratch, "visible", fid, b"v")
    by_id = True
    try:
        p.store.get(fid)
    except NotFound:
        by_id = False
    listed = any(e.id == fid for e in p.store.list(p.scratch))
    if by_id and listed:
        return Check(
            name,
            OK,
            "a new file showed at once in its folder's listing and by id",
            "A PC sees another's claim as soon as it exists.",
        )
    missing = " and ".join(w for w, ok in (("the listing", listed), ("get-by-id", by_id)) if not ok)
    return Check(
        name,
        FAIL,
        f"a new file was missing from {missing} right after its create",
        "Workers would miss claims and results and redo work; the reduce could start early.",
    )


def check_feed(p: Probe) -> Check:
    name = "change feed"
    assert p.scratch is not None
    feed = _feed_name(p.store)
    cursor = p.store.changes_cursor()
    fid = p.mint()
    p.store.create(p.scratch, "feed", fid, b"f")
    deadline = p.clock() + FEED_WAIT
    while True:
        changes = p.store.poll_changes(cursor)
        cursor = changes.cursor
        if changes.folders is None or p.scratch in changes.folders:
            return Check(
                name,
                OK,
                f"{feed} reported the new file",
                "Idle workers see new jobs and results within one poll interval.",
            )
        if p.clock() >= deadline:
            return Check(
                name,
                FAIL,
                f"{feed} did not report a new file within {FEED_WAIT:.0f} s",
                "Idle workers would see new jobs and results only at the full re-listing "
                "(every reconcile_interval, 2 minutes by default).",
            )
        p.sleep(0.5)


def _feed_name(store: Store) -> str:
    drive_id = getattr(store, "shared_drive_id", None)
    if callable(drive_id):
        found = drive_id()
        return f"the shared drive's change log ({found})" if found else "the account's change log"
    return "the change feed"


def check_quota(p: Probe) -> Check:
    name = "write quota"
    assert p.scratch is not None
    stats = getattr(p.store, "stats", None)
    before = dict(stats) if isinstance(stats, dict) else {}
    times: list[float] = []
    start = time.monotonic()
    for n in range(BURST_WRITES):
        p.store.create(p.scratch, f"burst-{n}", p.mint(), b"b")
        times.append(time.monotonic())
    total = times[-1] - start
    half = times[len(times) // 2 :]
    settled = (len(half) - 1) / (half[-1] - half[0]) if len(half) > 1 and half[-1] > half[0] else 0
    after = dict(getattr(p.store, "stats", {}) or {})
    refused = int(after.get("transient", 0) - before.get("transient", 0))
    rate = BURST_WRITES / total if total > 0 else float("inf")
    text = f"{BURST_WRITES} writes in {total:.1f} s ({rate:.1f}/s), settling at {settled:.1f}/s"
    if refused:
        text += f"; {refused} refused and retried"
    meaning = (
        "drivemr paces writes at 3/s per PC by default (`write_rate`); Drive allows about "
        "3/s per account, shared by every PC signed in to it."
        if p.kind == "drive"
        else "Writes are not paced on this store."
    )
    return Check(name, OK, text, meaning)


def check_skew(p: Probe) -> Check:
    name = "clock skew"
    assert p.scratch is not None
    before = p.clock()
    info = p.store.create(p.scratch, "clock", p.mint(), b"c")
    after = p.clock()
    if not info.created and not info.modified:
        return Check(name, SKIP, "the store reports no times", "")
    skew = (info.created or info.modified) - (before + after) / 2
    text = f"store clock - this PC's clock = {skew:+.1f} s (request took {after - before:.2f} s)"
    meaning = "Workers judge leases on their own clocks; status, logs and reports mix both clocks."
    if abs(skew) >= SKEW_FAIL:
        return Check(name, FAIL, text, meaning + " Set this PC's clock (NTP).")
    if abs(skew) >= SKEW_WARN:
        return Check(name, WARN, text, meaning + " Consider syncing this PC's clock (NTP).")
    return Check(name, OK, text, meaning)


def check_second_account(p: Probe) -> Check:
    name = "second account"
    meaning = (
        "PCs signed in to different accounts create claims and results at ids the "
        "submitter's account minted."
    )
    if p.second is None:
        return Check(
            name, SKIP, "not asked (--second-account)", "Needed only when PCs use several accounts."
        )
    assert p.scratch is not None
    fid = p.mint()
    try:
        p.second.create(p.scratch, "second-account", fid, b"2")
    except AlreadyExists:
        return Check(name, WARN, "the id was already used (409)", meaning)
    except StoreError as exc:
        return Check(
            name,
            FAIL,
            f"the second account may not create with ids the first minted ({_short(exc)})",
            "Every PC must sign in to the same account (or service account); workers on "
            "other accounts refuse to start.",
        )
    return Check(name, OK, "the second account created a file at an id the first minted", meaning)


def _short(exc: BaseException, limit: int = 120) -> str:
    text = str(exc).split(": Drive answered ", 1)[-1]
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- folder extras


def _mount_of(path: Path) -> tuple[str, str] | None:
    """(mount point, fs type) of ``path`` on Linux, from /proc/mounts; None elsewhere."""
    try:
        lines = Path("/proc/mounts").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    target = str(path.resolve())
    best: tuple[str, str] | None = None
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1].replace("\\040", " ")
        if (target == mount or target.startswith(mount.rstrip("/") + "/")) and (
            best is None or len(mount) > len(best[0])
        ):
            best = (mount, parts[2])
    return best


NETWORK_FS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "9p", "afs")


def check_atomic_publish(p: Probe) -> Check:
    """A reader polling a new file by id while it is written must see all of it or nothing."""
    import threading

    name = "atomic publish"
    assert p.scratch is not None
    fid = p.mint()
    data = secrets.token_bytes(4 * 1024 * 1024)
    seen: list[int] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            try:
                seen.append(len(p.store.read(fid)))
            except StoreError:
                continue
            if seen[-1] == len(data):
                return

    thread = threading.Thread(target=reader, name="doctor-reader", daemon=True)
    thread.start()
    try:
        p.store.create(p.scratch, "atomic", fid, data)
        thread.join(timeout=30)
    finally:
        done.set()
    partial = [n for n in seen if n != len(data)]
    meaning = "A reader sees a whole claim or result, or none: never half of one."
    if partial:
        return Check(name, FAIL, f"a reader saw {len(partial)} partial version(s)", meaning)
    return Check(
        name, OK, f"a reader polling by id saw the 4 MiB file whole ({len(seen)} read(s))", meaning
    )


def check_fs_probe(p: Probe) -> Check:
    """The folder store's own file-system probe (run afresh, not the per-process cache)."""
    name = "file-system probe"
    meaning = "Create-once is one exclusive create; a publish is one replacing rename."
    inner = getattr(p.store, "inner", p.store)
    probe = getattr(inner, "_probe_features", None)
    if not callable(probe):
        return Check(name, SKIP, "this store has no file-system probe", meaning)
    reason = probe()
    if reason is None:
        return Check(name, OK, "exclusive create and replace-by-rename both hold", meaning)
    return Check(name, FAIL, str(reason), meaning + " This file system cannot hold a store.")


def check_filesystem(p: Probe) -> Check:
    name = "file system"
    root = getattr(p.store, "path", None)
    if not isinstance(root, Path):
        return Check(name, SKIP, "not a folder on this PC", "")
    found = _mount_of(root) if sys.platform.startswith("linux") else None
    if found is None:
        return Check(name, SKIP, "file system type unknown on this OS", "")
    mount, fstype = found
    if fstype in NETWORK_FS:
        return Check(
            name,
            WARN,
            f"{fstype} at {mount}",
            "Network file systems cache attributes (NFS actimeo): other PCs may see a new "
            "file a few seconds late. Create-once still holds; the change feed may lag to "
            "the full re-listing. Mount with `actimeo=1` (or `noac`) for quicker notice.",
        )
    return Check(name, OK, f"{fstype} at {mount}", "A local file system: nothing is cached.")


# --------------------------------------------------------------------------- running


def _checks(p: Probe) -> Iterator[tuple[str, str, Callable[[Probe], Check]]]:
    yield "minted ids", "Claims and results are created once at minted ids.", check_mint
    yield "create once", "Exactly one create may win a claim.", check_create_once
    yield "unminted id", "Only minted ids create files.", check_unminted
    yield "visible at once", "New files show at once.", check_visible
    yield "change feed", "Idle workers notice new files.", check_feed
    yield "write quota", "How fast this store takes writes.", check_quota
    yield "clock skew", "Workers judge leases on their own clocks.", check_skew
    if p.kind == "drive":
        yield "second account", "Several accounts on one root.", check_second_account
    if p.kind == "folder":
        yield "file-system probe", "Exclusive create and rename.", check_fs_probe
        yield "atomic publish", "Readers see whole files.", check_atomic_publish
        yield "file system", "What the folder lives on.", check_filesystem


def run_checks(p: Probe) -> list[Check]:
    """Every check, in order; the scratch folder is removed at the end."""
    rows: list[Check] = []
    try:
        for name, meaning, fn in _checks(p):
            if fn is not check_mint and p.scratch is None:
                rows.append(Check(name, SKIP, "no scratch folder (see above)", meaning))
                continue
            rows.append(_try(name, meaning, lambda fn=fn: fn(p)))  # type: ignore[misc]
    finally:
        if p.scratch is not None:
            try:
                p.store.delete(p.scratch)
            except StoreError as exc:
                rows.append(
                    Check(
                        "clean up",
                        WARN,
                        f"could not remove the scratch folder {p.scratch}: {_short(exc)}",
                        "Remove it by hand (it holds only the doctor's small test files).",
                    )
                )
    return rows


def render(rows: list[Check], out: Any = None, width: int | None = None) -> None:
    """The table, with rich (plain text when not a terminal)."""
    from rich.console import Console
    from rich.table import Table

    from drivemr.safetext import safe

    table = Table(show_lines=False)
    table.add_column("check", no_wrap=True)
    table.add_column("result")
    table.add_column("what it means")
    styles = {OK: "green", FAIL: "bold red", WARN: "yellow", SKIP: "dim"}
    for row in rows:
        table.add_row(
            f"[{styles[row.status]}]{row.status:4}[/] {row.name}",
            safe(row.result),
            safe(row.meaning),
        )
    stream = out or sys.stdout
    if width is None and not (hasattr(stream, "isatty") and stream.isatty()):
        width = 140  # a log or a pipe: no terminal to fit
    console = Console(file=stream, width=width)
    console.print(table)
    failed = [r.name for r in rows if r.failed]
    if failed:
        console.print(f"[bold red]FAILED:[/] {', '.join(failed)}")
    else:
        console.print("every assumption drivemr makes holds on this store")


def second_store(url: str, value: str) -> Store:
    """The same Drive root opened as another sign-in: ``value`` is a bearer token when
    ``DRIVEMR_DRIVE_ENDPOINT`` points at a Drive-compatible server, else a config folder
    holding another `drivemr auth login` (``DRIVEMR_CONFIG_DIR=FOLDER drivemr auth login``)."""
    from drivemr.stores.drive import ENDPOINT_ENV, DriveStore

    if os.environ.get(ENDPOINT_ENV):
        from google.oauth2.credentials import Credentials

        return DriveStore.from_url(url, write_rate=None, credentials=Credentials(token=value))
    return DriveStore.from_url(url, write_rate=None, config_dir=Path(value).expanduser())
