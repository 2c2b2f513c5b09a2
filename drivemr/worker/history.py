"""What a worker remembers of jobs across restarts: the ones it saw end, the ones it refused.

The store is not a trustworthy memory: anyone who can write it can delete a finished job's
claims, results and marker (a *replay by wipe*) and the signed job.json would look new
again; a hostile job.json refused once would be downloaded and refused again after every
restart. So a worker keeps its own record, in its working folder:

* **finished jobs**: each job id it saw finished or cancelled, with the round it ended at
  (``drivemr.rounds``: 0 is the job as submitted) and the *signed* time of that round (or
  of job.json). Such a job is never run again by this worker at that round or an earlier
  one, whatever the store says; a newer signed round (``drivemr retry``) re-opens it
  legitimately. The list is bounded (:data:`MAX_FINISHED`); when it is full the
  oldest entries are dropped and their time becomes a *floor*: a job (or round) signed at
  or before the floor that is not remembered is refused too (it is older than everything
  this worker still remembers, so it may be one it forgot).
* **refused job folders**: folder id, why, and the trust it was judged under (a fingerprint
  of the trusted keys), so trusting a new key lets a refused job be judged again. Bounded
  (:data:`MAX_REFUSED`), oldest dropped first.

The file is append-only lines, rewritten compactly when it holds twice the bound; a damaged
line is skipped, a damaged file costs the memory, never the worker.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from pathlib import Path

from drivemr.fileio import atomic_write

log = logging.getLogger("drivemr.worker")

MAX_FINISHED = 10_000
MAX_REFUSED = 10_000
MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_REASON = 300
FILE_NAME = "job-history.tsv"


def _clean(text: str, limit: int = MAX_REASON) -> str:
    return text.replace("\t", " ").replace("\n", " ").replace("\r", " ")[:limit]


class JobHistory:
    """The finished and refused jobs of one worker (its working folder); thread-safe."""

    def __init__(
        self, workdir: Path, *, max_finished: int = MAX_FINISHED, max_refused: int = MAX_REFUSED
    ) -> None:
        self.path = Path(workdir) / FILE_NAME
        self.max_finished = max_finished
        self.max_refused = max_refused
        self._finished: OrderedDict[str, tuple[float, int]] = OrderedDict()
        """job id -> (signed time, round) it was last seen ending at."""
        self._refused: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self.floor = -math.inf
        """Jobs created at or before this (and not remembered) are refused."""
        self._lines = 0
        self._loaded = False
        self._lock = threading.Lock()

    # -- reading --

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        try:
            with open(self.path, "rb") as fh:
                data = fh.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("cannot read %s (%s): starting with no memory of past jobs", self.path, exc)
            return
        if len(data) > MAX_FILE_BYTES:
            log.warning("%s is over %d bytes: only its start is used", self.path, MAX_FILE_BYTES)
        for raw in data.decode("utf-8", "replace").splitlines():
            self._lines += 1
            fields = raw.split("\t")
            try:
                if fields[0] == "F" and len(fields) in (3, 4):
                    rnd = int(fields[3]) if len(fields) == 4 and len(fields[3]) <= 6 else 0
                    self._add_finished(fields[1], float(fields[2]), rnd)
                elif fields[0] == "O" and len(fields) == 2:
                    self.floor = max(self.floor, float(fields[1]))
                elif fields[0] == "R" and len(fields) == 4:
                    self._add_refused(fields[1], fields[2], fields[3])
            except (ValueError, OverflowError):
                continue  # a damaged line: skipped

    def is_finished(self, job_id: str, round: int = 0) -> bool:
        """Seen ending at ``round`` or a later one (so not to be run at ``round``)."""
        with self._lock:
            self._load()
            entry = self._finished.get(job_id)
            return entry is not None and entry[1] >= round

    def too_old(self, job_id: str, created: float, round: int = 0) -> bool:
        """Signed at or before the floor and not remembered: maybe a job (or a round of
        one) we forgot. ``created``: the signed time of the job's latest round."""
        with self._lock:
            self._load()
            entry = self._finished.get(job_id)
            if entry is not None and entry[1] < round:
                return False  # a newer round of a job we remember: judged by what we remember
            return entry is None and created <= self.floor

    def refused(self, folder_id: str, trust: str) -> str | None:
        """Why the folder was refused under this trust, or None."""
        with self._lock:
            self._load()
            entry = self._refused.get(folder_id)
            return entry[1] if entry is not None and entry[0] == trust else None

    def refused_folders(self, trust: str) -> dict[str, str]:
        with self._lock:
            self._load()
            return {f: reason for f, (t, reason) in self._refused.items() if t == trust}

    # -- remembering --

    def remember_finished(self, job_id: str, created: float, round: int = 0) -> None:
        """``job_id`` ended at ``round``, whose signed time is ``created``."""
        if not math.isfinite(created):
            created = 0.0
        with self._lock:
            self._load()
            entry = self._finished.get(job_id)
            if entry is not None and entry[1] >= round:
                return
            floor = self.floor
            self._add_finished(_clean(job_id, 200), created, round)
            lines = [f"F\t{_clean(job_id, 200)}\t{created!r}\t{round}"]
            if self.floor != floor:
                lines.append(f"O\t{self.floor!r}")
            self._append(lines)

    def remember_refused(self, folder_id: str, trust: str, reason: str) -> None:
        with self._lock:
            self._load()
            if self._refused.get(folder_id, ("", ""))[0] == trust:
                return
            fid, tr, why = _clean(folder_id, 200), _clean(trust, 100), _clean(reason)
            self._add_refused(fid, tr, why)
            self._append([f"R\t{fid}\t{tr}\t{why}"])

    def _add_finished(self, job_id: str, created: float, round: int = 0) -> None:
        old = self._finished.get(job_id)
        if old is not None and old[1] > round:
            return
        self._finished[job_id] = (created, round)
        while len(self._finished) > self.max_finished:
            # Forget the oldest-signed; everything signed up to it is refused from now on.
            oldest = min(self._finished, key=lambda j: self._finished[j][0])
            self.floor = max(self.floor, self._finished.pop(oldest)[0])

    def _add_refused(self, folder_id: str, trust: str, reason: str) -> None:
        self._refused[folder_id] = (trust, reason)
        self._refused.move_to_end(folder_id)
        while len(self._refused) > self.max_refused:
            self._refused.popitem(last=False)

    def _append(self, lines: list[str]) -> None:
        try:
            if self._lines + len(lines) > 2 * (self.max_finished + self.max_refused) + 16:
                self._rewrite()
                return
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write("".join(line + "\n" for line in lines))
            self._lines += len(lines)
        except OSError as exc:
            log.warning("cannot record in %s: %s", self.path, exc)

    def _rewrite(self) -> None:
        lines = [f"O\t{self.floor!r}"] if self.floor != -math.inf else []
        lines += [f"F\t{j}\t{c!r}\t{r}" for j, (c, r) in self._finished.items()]
        lines += [f"R\t{f}\t{t}\t{r}" for f, (t, r) in self._refused.items()]
        atomic_write(self.path, "".join(line + "\n" for line in lines).encode())
        self._lines = len(lines)
