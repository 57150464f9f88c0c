"""Run statuses, their labels and meanings, and the table of allowed transitions.

No database access here: the engine consults this table for every status change.
"""

from __future__ import annotations

from django.db import models


class RunStatus(models.TextChoices):
    # Waiting for a worker that serves the task (unknown task at trigger time).
    PENDING_VERSION = "PENDING_VERSION", "Pending version"
    # Waiting for delay_until; not in any queue yet.
    DELAYED = "DELAYED", "Delayed"
    # In its queue, waiting for a free concurrency slot (also between retry attempts).
    QUEUED = "QUEUED", "Queued"
    # Admitted by the engine and handed to Celery; the attempt has not started.
    DEQUEUED = "DEQUEUED", "Dequeued"
    # An attempt is running on a worker.
    EXECUTING = "EXECUTING", "Executing"
    # Suspended until its child runs finish; holds no worker slot.
    WAITING = "WAITING", "Waiting"
    # Finished successfully with an output.
    COMPLETED = "COMPLETED", "Completed"
    # Canceled by a user, an API call or its parent.
    CANCELED = "CANCELED", "Canceled"
    # The task's code failed on its last attempt.
    FAILED = "FAILED", "Failed"
    # The worker died mid-attempt and no attempt was left.
    CRASHED = "CRASHED", "Crashed"
    # Runyard itself could not run it.
    SYSTEM_FAILURE = "SYSTEM_FAILURE", "System failure"
    # Its TTL passed before it started.
    EXPIRED = "EXPIRED", "Expired"
    # It ran longer than its maxDuration.
    TIMED_OUT = "TIMED_OUT", "Timed out"


S = RunStatus

FINAL_STATUSES: frozenset[str] = frozenset(
    {S.COMPLETED, S.CANCELED, S.FAILED, S.CRASHED, S.SYSTEM_FAILURE, S.EXPIRED, S.TIMED_OUT}
)
# Idempotency keys of runs ending in these are released so a retrigger makes a new run.
KEY_RELEASING_STATUSES: frozenset[str] = frozenset({S.FAILED, S.CRASHED, S.SYSTEM_FAILURE, S.TIMED_OUT, S.EXPIRED})
ACTIVE_STATUSES: frozenset[str] = frozenset({S.DEQUEUED, S.EXECUTING})  # hold a concurrency slot

TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING_VERSION: frozenset({S.QUEUED, S.DELAYED, S.CANCELED, S.EXPIRED}),
    S.DELAYED: frozenset({S.QUEUED, S.CANCELED, S.EXPIRED}),
    S.QUEUED: frozenset({S.DEQUEUED, S.PENDING_VERSION, S.CANCELED, S.EXPIRED, S.SYSTEM_FAILURE}),
    # DEQUEUED -> QUEUED: the worker never picked it up (lost message), so it is requeued.
    S.DEQUEUED: frozenset({S.EXECUTING, S.QUEUED, S.CANCELED, S.SYSTEM_FAILURE}),
    # EXECUTING -> QUEUED: a failed attempt waits out its backoff in the queue.
    S.EXECUTING: frozenset(
        {
            S.COMPLETED,
            S.FAILED,
            S.QUEUED,
            S.WAITING,
            S.CANCELED,
            S.CRASHED,
            S.SYSTEM_FAILURE,
            S.TIMED_OUT,
        }
    ),
    # WAITING -> QUEUED: children finished, the parent is queued to resume.
    S.WAITING: frozenset({S.QUEUED, S.CANCELED, S.SYSTEM_FAILURE, S.TIMED_OUT}),
    **{final: frozenset() for final in FINAL_STATUSES},
}

LABELS: dict[str, str] = {status.value: str(status.label) for status in RunStatus}

DESCRIPTIONS: dict[str, str] = {
    S.PENDING_VERSION: "No worker serves this task yet; it starts when one does.",
    S.DELAYED: "Triggered with a delay; it joins its queue when the delay is over.",
    S.QUEUED: "Waiting in its queue for a free worker slot.",
    S.DEQUEUED: "Taken from the queue and sent to a worker; about to start.",
    S.EXECUTING: "An attempt is running on a worker.",
    S.WAITING: "Paused until the runs it triggered finish; holds no worker slot.",
    S.COMPLETED: "Finished successfully.",
    S.CANCELED: "Canceled before it finished.",
    S.FAILED: "The task raised an error on its last attempt.",
    S.CRASHED: "The worker running it died and no attempt was left.",
    S.SYSTEM_FAILURE: "Runyard could not run it because of an internal error.",
    S.EXPIRED: "Its TTL passed before it started, so it will not run.",
    S.TIMED_OUT: "It ran longer than its maximum duration.",
}

# Colour family per status, after the reference dashboard: grey, blue, green, red, amber.
COLOURS: dict[str, str] = {
    S.PENDING_VERSION: "amber",
    S.DELAYED: "grey",
    S.QUEUED: "grey",
    S.DEQUEUED: "blue",
    S.EXECUTING: "blue",
    S.WAITING: "grey",
    S.COMPLETED: "green",
    S.CANCELED: "grey",
    S.FAILED: "red",
    S.CRASHED: "red",
    S.SYSTEM_FAILURE: "red",
    S.EXPIRED: "grey",
    S.TIMED_OUT: "red",
}


def is_final(status: str) -> bool:
    return status in FINAL_STATUSES


def can_transition(from_status: str, to_status: str) -> bool:
    return to_status in TRANSITIONS[from_status]


def sources_of(to_status: str) -> list[str]:
    """Every status from which to_status may be reached, for compare-and-set updates."""
    return sorted(frm for frm, targets in TRANSITIONS.items() if to_status in targets)


def api_flags(status: str) -> dict[str, bool]:
    """The boolean helpers of the wire protocol, exactly as the reference server computes them."""
    failed = {S.CANCELED, S.FAILED, S.CRASHED, S.SYSTEM_FAILURE}
    return {
        "isQueued": status in {S.PENDING_VERSION, S.DELAYED, S.QUEUED},
        "isExecuting": status in {S.DEQUEUED, S.EXECUTING},
        "isWaiting": status == S.WAITING,
        "isCompleted": status in failed | {S.COMPLETED},
        "isSuccess": status == S.COMPLETED,
        "isFailed": status in failed,
        "isCancelled": status == S.CANCELED,
    }
