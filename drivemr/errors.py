"""One exception tree for drivemr.

Stores translate their own failures (OSError, googleapiclient's HttpError, ...) into
these, so the protocol, the worker and the CLI never see a backend's exception types.
"""

from __future__ import annotations

from dataclasses import dataclass


class DrivemrError(Exception):
    """Root of every error drivemr raises on purpose."""


class ConfigError(DrivemrError):
    """A setting, a store URL or a command-line value is wrong."""


class JobSpecError(DrivemrError):
    """A job file is invalid. The message names the file, the key and the problem."""

    def __init__(self, path: str, key: str, problem: str) -> None:
        self.path = path
        self.key = key
        self.problem = problem
        where = f"{path}: {key}: " if key else f"{path}: "
        super().__init__(where + problem)


class SecurityError(DrivemrError):
    """A job, a path or a key failed a safety check; nothing of it is used."""


class JobStateError(DrivemrError):
    """The job is not in a state that allows this (cancel a finished job, reduce one
    whose maps have not all succeeded, ...)."""


class WaitTimeout(DrivemrError, TimeoutError):
    """A wait for a job to end ran out of time (the job itself goes on)."""


class NoWorkerError(DrivemrError):
    """Nothing will run the job: no live worker serves the store, or every live worker
    rejected the job (``Job.wait(on_notice="raise")``)."""


class MapInputError(DrivemrError):
    """``Client.map`` refused its function or items before anything reached the store."""


class MapError(DrivemrError):
    """Items of a ``Client.map`` failed; ``failures`` names every one (index, item, error)."""

    def __init__(self, job_id: str, total: int, failures: tuple[MapFailure, ...]) -> None:
        self.job_id = job_id
        self.total = total
        self.failures = failures
        lines = [f"{len(failures)} of {total} item(s) failed in job {job_id}:"]
        lines += [f"  item {f.index} ({f.task}) {f.item_json}: {f.error}" for f in failures]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class MapFailure:
    """One failed item of a ``Client.map``."""

    index: int
    """Position of the item in the list given to ``map``."""
    task: str
    item_json: str
    """The item as JSON (cut short past 200 characters)."""
    error: str
    """The function's exception (last line of its traceback) or why the attempt failed."""


class StoreError(DrivemrError):
    """A store operation failed."""


class TransientStoreError(StoreError):
    """Worth retrying: rate limits, 5xx, resets, timeouts, a share that went away briefly.

    ``retry_after`` is the server's hint (seconds, from an HTTP ``Retry-After``) when it
    gave one: the retry layer waits at least that long (up to its longest backoff)."""

    def __init__(self, message: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentStoreError(StoreError):
    """Retrying will not help: bad request, permission denied, quota exhausted for good."""


class NotFound(PermanentStoreError):
    """No file with that id (or it was deleted)."""


class UnreadableJob(NotFound):
    """A job's job.json is in the store's listing but cannot be read (a store fault, e.g. a
    share that hides published files). Never "not posted yet" and never "finished": report
    it (file and error) and retry it with backoff. It is a NotFound only so that code which
    skips "not posted yet" keeps skipping it; catch it before NotFound."""


class AlreadyExists(PermanentStoreError):
    """A create-once with an id that is already taken (Drive's 409)."""


class UnusableId(PermanentStoreError):
    """The store refused a create at a minted id as not usable by this sign-in (Drive's 400
    "The provided file ID is not usable": typically an id another account minted)."""


class TooLarge(PermanentStoreError):
    """A read or download stopped at its limit: the file is larger than it may be (a
    shipped file swapped for a bigger one, an oversize document)."""


class AuthError(PermanentStoreError):
    """Credentials are missing, expired or revoked; the user must sign in again."""


class NotAvailable(DrivemrError):
    """A feature or store that this installation cannot provide."""
