"""The drivemr protocol, written once on top of the store primitives.

Layout in the store's root folder::

    job-<job id>/             one folder per job (created once, with a minted id)
        job.json              the immutable spec: every task, command and minted id
        files/                code and inputs shipped with the job
        claims/<task>.g<gen>.<worker>        create-once with claim id [task][gen]
        results/<task>.<state>.g<gen>.x<exit>.d<ms>   create-once with result id [task]
        outputs/              outputs too large to ride inside a result manifest
        logs/<task>.g<gen>.log  stdout/stderr of attempts that failed
        cancel, finished      markers, created once with their minted ids
    worker-<worker id>.json   each worker's heartbeat, rewritten every lease/3

Names carry facts (who claimed, how a task ended) so one by-parent listing answers
"what is the state of this job" without downloading anything; names are never used as
locks: every exclusive step is a create with a minted id. Only files at minted ids count,
and what a reader acts on (a claim it would wait for or take over, a heartbeat, a marker,
a rejection note) is opened first: sealed by a trusted key (see drivemr.trust).

The protocol is split by concept: :mod:`~drivemr.protocol.names` (names and their total
parsing), :mod:`~drivemr.protocol.jobdoc` (job.json and the Job it describes),
:mod:`~drivemr.protocol.publish` (publishing a job), :mod:`~drivemr.protocol.view` (a job's
state and the reduce barrier), :mod:`~drivemr.protocol.find` (finding a job by id) and
:mod:`~drivemr.protocol.liveness` (heartbeats and dead claims). This package re-exports
them, so ``from drivemr.protocol import ...`` is the one way in.
"""

from __future__ import annotations

from drivemr.protocol.find import (
    MAX_DUPLICATE_FOLDERS,
    find_job,
    list_jobs,
)
from drivemr.protocol.jobdoc import (
    Item,
    Job,
    JobFormatError,
    JobNotPublished,
    Stage,
    StoredFile,
    Task,
    check_store_binding,
    id_list,
    job_from_doc,
    parse_json,
    read_job,
    result_slots,
)
from drivemr.protocol.liveness import (
    Heartbeat,
    claim_is_dead,
    heartbeat_files,
    heartbeats,
)
from drivemr.protocol.names import (
    FIXED_NAMES_FORMAT,
    FORMAT,
    FORMATS,
    INLINE_OUTPUT_LIMIT,
    JOB_PREFIX,
    MAX_EXIT_DIGITS,
    MAX_GEN_DIGITS,
    MAX_HEARTBEAT_BYTES,
    MAX_JOB_BYTES,
    MAX_JOB_ITEMS,
    MAX_MANIFEST_BYTES,
    MAX_MS_DIGITS,
    MAX_RESULT_SLOTS,
    NAMED_FORMATS,
    PACKED_FORMAT,
    REDUCE,
    RESULT_SLOTS,
    ROUND_PREFIX,
    WORKER_PREFIX,
    WORKER_SUFFIX,
    ClaimRef,
    ResultRef,
    check_worker_id,
    claim_name,
    claimer_of,
    default_worker_id,
    heartbeat_name,
    is_result_name,
    new_job_id,
    parse_claim_name,
    parse_result,
    parse_slot_result_name,
    remember_claimer,
    result_name,
    slot_result_name,
)
from drivemr.protocol.publish import (
    IdPool,
    build_job_doc,
    submit,
)
from drivemr.protocol.view import (
    JobView,
    job_complete,
    job_succeeded,
    load_view,
    mark,
    nothing_left,
    open_marker,
    reduce_due,
    verify_hints,
)

__all__ = [
    "FIXED_NAMES_FORMAT",
    "FORMAT",
    "FORMATS",
    "INLINE_OUTPUT_LIMIT",
    "JOB_PREFIX",
    "MAX_DUPLICATE_FOLDERS",
    "MAX_EXIT_DIGITS",
    "MAX_GEN_DIGITS",
    "MAX_HEARTBEAT_BYTES",
    "MAX_JOB_BYTES",
    "MAX_JOB_ITEMS",
    "MAX_MANIFEST_BYTES",
    "MAX_MS_DIGITS",
    "MAX_RESULT_SLOTS",
    "NAMED_FORMATS",
    "PACKED_FORMAT",
    "REDUCE",
    "RESULT_SLOTS",
    "ROUND_PREFIX",
    "WORKER_PREFIX",
    "WORKER_SUFFIX",
    "ClaimRef",
    "Heartbeat",
    "IdPool",
    "Item",
    "Job",
    "JobFormatError",
    "JobNotPublished",
    "JobView",
    "ResultRef",
    "Stage",
    "StoredFile",
    "Task",
    "build_job_doc",
    "check_store_binding",
    "check_worker_id",
    "claim_is_dead",
    "claim_name",
    "claimer_of",
    "default_worker_id",
    "find_job",
    "heartbeat_files",
    "heartbeat_name",
    "heartbeats",
    "id_list",
    "is_result_name",
    "job_complete",
    "job_from_doc",
    "job_succeeded",
    "list_jobs",
    "load_view",
    "mark",
    "new_job_id",
    "nothing_left",
    "open_marker",
    "parse_claim_name",
    "parse_json",
    "parse_result",
    "parse_slot_result_name",
    "read_job",
    "reduce_due",
    "remember_claimer",
    "result_name",
    "result_slots",
    "slot_result_name",
    "submit",
    "verify_hints",
]
