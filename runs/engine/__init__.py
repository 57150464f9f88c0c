"""The engine: the only writer of run state.

Every status change is a compare-and-set under a row lock, appends a RunEvent and
publishes after commit. A stale caller (a redelivered Celery message, a late heartbeat)
finds the run in another status and changes nothing.

    transitions the one transition path: compare-and-set, timeline events, after-commit effects
    sql         the engine's hand-written statements, one named constant each
    core        shared helpers (and the transition names, from transitions)
    triggering  creating runs
    execution   attempts reported by workers
    actions     cancel, reschedule
    workers     worker registration, draining workers
    queues      pausing queues and overriding their limits
    metadata    run metadata written while runs execute
    pauses      pausing a task of an environment, or a whole environment
    schedules   cron schedules and their ticks
    scheduler   time-driven work done by the engine process
"""

from runs.engine.actions import cancel_run, replay_run, reschedule_run, start_now, try_cancel_run
from runs.engine.batches import (
    MAX_BATCH_ITEMS,
    BatchEntry,
    BatchItemError,
    BatchRateLimited,
    Filled,
    StagedItem,
    abort_batch,
    add_batch_items,
    batch_run_ids,
    create_batch,
    fill_batch,
    seal_batch,
    set_batch_run_count,
    trigger_batch,
    trigger_batch_items,
)
from runs.engine.bulk import ACTIONS as BULK_ACTIONS
from runs.engine.bulk import MAX_SELECTED as MAX_BULK_SELECTED
from runs.engine.bulk import create_bulk_action
from runs.engine.core import ENGINE, Actor, EngineError, RunNotFound, celery_task_id
from runs.engine.execution import complete_attempt, fail_attempt, heartbeat, start_attempt, system_failure
from runs.engine.metadata import MetadataTooLarge, RunFinished, read_metadata, update_metadata
from runs.engine.pauses import REASON_LENGTH as PAUSE_REASON_LENGTH
from runs.engine.pauses import (
    TaskNotFound,
    lift_expired_pauses,
    pause_environment,
    pause_task,
    resume_environment,
    resume_task,
    task_known,
)
from runs.engine.queues import MAX_LIMIT as MAX_QUEUE_LIMIT
from runs.engine.queues import (
    QUEUE_KINDS,
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
    EXECUTE_RUN,
    admit,
    expire_runs,
    promote_delayed,
    promote_pending_version,
    recover_stalled,
    requeue_lost,
    tick,
    time_out_runs,
)
from runs.engine.schedules import (
    DeclarativeSchedule,
    ScheduleNotFound,
    create_schedule,
    delete_schedule,
    find_schedule,
    fire_due_schedules,
    run_schedule_now,
    set_schedule_active,
    upcoming,
    update_schedule,
)
from runs.engine.triggering import (
    DEV_DEFAULT_TTL,
    MAX_TTL,
    TriggerOptions,
    TriggerResult,
    definition_from_row,
    trigger,
)
from runs.engine.waiting import add_waitpoint, open_children, resume_ready, suspend_run
from runs.engine.workers import REASON_LENGTH as WORKER_REASON_LENGTH
from runs.engine.workers import (
    WorkerNotFound,
    drain_worker,
    register_worker,
    undrain_worker,
    unregister_worker,
    worker_seen,
)

__all__ = [
    "ADMIT_BATCH",
    "BULK_ACTIONS",
    "DEV_DEFAULT_TTL",
    "ENGINE",
    "EXECUTE_RUN",
    "MAX_BATCH_ITEMS",
    "MAX_BULK_SELECTED",
    "MAX_QUEUE_LIMIT",
    "MAX_TTL",
    "PAUSE_REASON_LENGTH",
    "QUEUE_KINDS",
    "WORKER_REASON_LENGTH",
    "Actor",
    "BatchEntry",
    "BatchItemError",
    "BatchRateLimited",
    "DeclarativeSchedule",
    "EngineError",
    "Filled",
    "MetadataTooLarge",
    "QueueNotFound",
    "RunFinished",
    "RunNotFound",
    "ScheduleNotFound",
    "StagedItem",
    "TaskNotFound",
    "TriggerOptions",
    "TriggerResult",
    "WorkerNotFound",
    "abort_batch",
    "add_batch_items",
    "add_waitpoint",
    "admit",
    "batch_run_ids",
    "cancel_run",
    "celery_task_id",
    "complete_attempt",
    "create_batch",
    "create_bulk_action",
    "create_schedule",
    "definition_from_row",
    "delete_schedule",
    "drain_worker",
    "expire_runs",
    "fail_attempt",
    "fill_batch",
    "find_queue",
    "find_schedule",
    "fire_due_schedules",
    "heartbeat",
    "lift_expired_controls",
    "lift_expired_pauses",
    "open_children",
    "override_queue_limit",
    "pause_environment",
    "pause_queue",
    "pause_task",
    "promote_delayed",
    "promote_pending_version",
    "read_metadata",
    "recover_stalled",
    "register_worker",
    "replay_run",
    "requeue_lost",
    "reschedule_run",
    "reset_queue_limit",
    "resume_environment",
    "resume_queue",
    "resume_ready",
    "resume_task",
    "run_schedule_now",
    "seal_batch",
    "set_batch_run_count",
    "set_schedule_active",
    "start_attempt",
    "start_now",
    "suspend_run",
    "system_failure",
    "task_known",
    "tick",
    "time_out_runs",
    "trigger",
    "trigger_batch",
    "trigger_batch_items",
    "try_cancel_run",
    "undrain_worker",
    "unregister_worker",
    "upcoming",
    "update_metadata",
    "update_schedule",
    "worker_seen",
]
