"""The engine: the only writer of run state.

Every status change is a compare-and-set under a row lock, appends a RunEvent and
publishes after commit. A stale caller (a redelivered Celery message, a late heartbeat)
finds the run in another status and changes nothing.

    core        transitions, timeline events, shared helpers
    triggering  creating runs
    execution   attempts reported by workers
    actions     cancel, reschedule
    workers     worker registration
    queues      pausing queues and overriding their limits
    metadata    run metadata written while runs execute
    scheduler   time-driven work done by the engine process
"""

from runs.engine.actions import cancel_run, replay_run, reschedule_run
from runs.engine.batches import (
    MAX_BATCH_ITEMS,
    BatchEntry,
    BatchItemError,
    StagedItem,
    abort_batch,
    add_batch_items,
    batch_run_ids,
    create_batch,
    seal_batch,
    set_batch_run_count,
    trigger_batch,
)
from runs.engine.core import ENGINE, Actor, EngineError, RunNotFound, celery_task_id
from runs.engine.execution import complete_attempt, fail_attempt, heartbeat, start_attempt, system_failure
from runs.engine.metadata import MetadataTooLarge, RunFinished, read_metadata, update_metadata
from runs.engine.queues import (
    QueueNotFound,
    find_queue,
    lift_expired_controls,
    override_queue_limit,
    pause_queue,
    reset_queue_limit,
    resume_queue,
)
from runs.engine.scheduler import (
    ADMIT_BATCH,
    admit,
    expire_runs,
    promote_delayed,
    promote_pending_version,
    recover_stalled,
    requeue_lost,
    tick,
    time_out_runs,
)
from runs.engine.triggering import DEV_DEFAULT_TTL, MAX_TTL, TriggerOptions, TriggerResult, trigger
from runs.engine.waiting import add_waitpoint, resume_ready, suspend_run
from runs.engine.workers import register_worker, unregister_worker, worker_seen

__all__ = [
    "ADMIT_BATCH",
    "DEV_DEFAULT_TTL",
    "ENGINE",
    "MAX_BATCH_ITEMS",
    "MAX_TTL",
    "Actor",
    "BatchEntry",
    "BatchItemError",
    "EngineError",
    "MetadataTooLarge",
    "QueueNotFound",
    "RunFinished",
    "RunNotFound",
    "StagedItem",
    "TriggerOptions",
    "TriggerResult",
    "abort_batch",
    "add_batch_items",
    "add_waitpoint",
    "admit",
    "batch_run_ids",
    "cancel_run",
    "celery_task_id",
    "complete_attempt",
    "create_batch",
    "expire_runs",
    "fail_attempt",
    "find_queue",
    "heartbeat",
    "lift_expired_controls",
    "override_queue_limit",
    "pause_queue",
    "promote_delayed",
    "promote_pending_version",
    "read_metadata",
    "recover_stalled",
    "register_worker",
    "replay_run",
    "requeue_lost",
    "reschedule_run",
    "reset_queue_limit",
    "resume_queue",
    "resume_ready",
    "seal_batch",
    "set_batch_run_count",
    "start_attempt",
    "suspend_run",
    "system_failure",
    "tick",
    "time_out_runs",
    "trigger",
    "trigger_batch",
    "unregister_worker",
    "update_metadata",
    "worker_seen",
]
