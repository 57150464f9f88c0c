"""The engine: the only writer of run state.

Every status change is a compare-and-set under a row lock, appends a RunEvent and
publishes after commit. A stale caller (a redelivered Celery message, a late heartbeat)
finds the run in another status and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from runs import events, registry
from runs.models import (
    Environment,
    Queue,
    RequestIdempotency,
    Run,
    RunAttempt,
    RunEvent,
    TaskDefinition,
    Worker,
)
from runs.states import ACTIVE_STATUSES, FINAL_STATUSES, RunStatus, can_transition, sources_of

log = logging.getLogger(__name__)

Actor = str  # "engine", "worker:<host>", "api:<key hint>", "user:<username>", "sdk"
ENGINE: Actor = "engine"
DEV_DEFAULT_TTL = 600  # seconds; the reference gives dev runs a 10 minute TTL by default
ADMIT_BATCH = 500


class EngineError(Exception):
    """A request the engine refuses; the message is safe to show to the caller."""


class RunNotFound(EngineError):
    pass


@dataclass
class TriggerOptions:
    """Validated trigger options (runs.options parses them from every entry point)."""

    queue: str | None = None
    concurrency_key: str = ""
    machine: str | None = None
    region: str = ""
    priority: float = 0.0
    max_attempts: int | None = None
    max_duration: int | None = None
    ttl: int | None = None
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    parent_run_id: str | None = None
    trigger_function: str = "trigger"
    raw: dict[str, Any] = field(default_factory=dict)  # every option as given, for display


@dataclass
class TriggerResult:
    run: Run
    is_cached: bool = False


# --- triggering ---------------------------------------------------------------------------


def trigger(
    *,
    environment: Environment,
    task_id: str,
    payload: str = "",
    payload_type: str = "application/json",
    options: TriggerOptions | None = None,
    actor: Actor,
    source: str = "api",
    request_key: str | None = None,
    now: datetime | None = None,
) -> TriggerResult:
    """Create a run of task_id; returns it, or the run a repeated request_key already made."""
    now = now or timezone.now()
    options = options or TriggerOptions()
    with transaction.atomic():
        if request_key:
            earlier = _run_for_request_key(environment, task_id, request_key)
            if earlier is not None:
                return TriggerResult(run=earlier, is_cached=False)
        run = _insert_run(environment, task_id, payload, payload_type, options, actor, source, now)
        if request_key:
            RequestIdempotency.objects.create(
                environment=environment, task_identifier=task_id, key=request_key, run=run, created_at=now
            )
    return TriggerResult(run=run)


def _run_for_request_key(environment: Environment, task_id: str, key: str) -> Run | None:
    found = (
        RequestIdempotency.objects.select_related("run")
        .filter(environment=environment, task_identifier=task_id, key=key)
        .first()
    )
    return found.run if found else None


def _insert_run(
    environment: Environment,
    task_id: str,
    payload: str,
    payload_type: str,
    options: TriggerOptions,
    actor: Actor,
    source: str,
    now: datetime,
) -> Run:
    definition = TaskDefinition.objects.filter(task_id=task_id).first()
    queue_name = options.queue or (definition.queue if definition else f"task/{task_id}")
    _ensure_queue(environment, queue_name, definition)
    status = RunStatus.QUEUED if definition else RunStatus.PENDING_VERSION
    ttl = options.ttl if options.ttl is not None else _default_ttl(environment)
    run = Run(
        environment=environment,
        task_identifier=task_id,
        status=status,
        payload=payload,
        payload_type=payload_type,
        metadata=options.metadata,
        tags=sorted(options.tags),
        queue=queue_name,
        concurrency_key=options.concurrency_key,
        machine=options.machine or (definition.machine if definition else registry.DEFAULT_MACHINE),
        region=options.region,
        priority_ms=round(options.priority * 1000),
        max_attempts=options.max_attempts or (definition.max_attempts if definition else 1),
        max_duration=options.max_duration if options.max_duration is not None else _def_duration(definition),
        ttl=ttl or None,
        options=options.raw,
        created_at=now,
        updated_at=now,
        trigger_function=options.trigger_function,
        trigger_source=source,
    )
    if status == RunStatus.QUEUED:
        _mark_queued(run, now)
    run.save(force_insert=True)
    reason = "triggered" if definition else "triggered; no worker serves this task yet"
    _record(run, "", status, actor=actor, reason=reason, now=now, created=True)
    events.wake_engine()
    return run


def _def_duration(definition: TaskDefinition | None) -> int | None:
    return definition.max_duration if definition else None


def _default_ttl(environment: Environment) -> int | None:
    return DEV_DEFAULT_TTL if environment.kind == "DEVELOPMENT" else None


def _ensure_queue(environment: Environment, name: str, definition: TaskDefinition | None) -> None:
    limit = definition.concurrency_limit if definition and definition.queue == name else None
    Queue.objects.get_or_create(environment=environment, name=name, defaults={"concurrency_limit": limit})


def _mark_queued(run: Run, now: datetime) -> None:
    """Set the queue-order key; priority is seconds of queue-time advantage."""
    run.queued_at = run.queued_at or now
    run.available_at = now - timedelta(milliseconds=run.priority_ms)


# --- transitions --------------------------------------------------------------------------


def _record(
    run: Run,
    from_status: str,
    to_status: str,
    *,
    actor: Actor,
    reason: str = "",
    now: datetime,
    data: dict[str, Any] | None = None,
    created: bool = False,
) -> None:
    RunEvent.objects.create(
        run=run, at=now, from_status=from_status, to_status=to_status, actor=actor, reason=reason, data=data or {}
    )
    events.publish_run_changed(environment_id=run.environment_id, run_id=run.id, created=created)


def _transition(
    run_id: str,
    to_status: str,
    *,
    actor: Actor,
    now: datetime,
    reason: str = "",
    allowed_from: list[str] | None = None,
    guard: Callable[[Run], bool] | None = None,
    changes: Callable[[Run], list[str]] | None = None,
    data: dict[str, Any] | None = None,
) -> Run | None:
    """Move run_id to to_status if it is in an allowed status (and guard holds).

    Returns the updated run, or None when nothing changed. Must run inside a transaction.
    """
    sources = allowed_from or sources_of(to_status)
    run = Run.objects.select_for_update().filter(pk=run_id, status__in=sources).first()
    if run is None or (guard is not None and not guard(run)):
        return None
    from_status = run.status
    assert can_transition(from_status, to_status), (from_status, to_status)
    run.status = to_status
    run.updated_at = now
    fields = ["status", "updated_at"]
    if to_status in FINAL_STATUSES:
        run.finished_at = now
        fields.append("finished_at")
    if changes is not None:
        fields += changes(run)
    run.save(update_fields=fields)
    _record(run, from_status, to_status, actor=actor, reason=reason, now=now, data=data)
    return run


# --- execution (called by the Celery entry point) -----------------------------------------


def start_attempt(*, run_id: str, worker: str, now: datetime | None = None) -> RunAttempt | None:
    """DEQUEUED -> EXECUTING and a new attempt; None if the run may not start (e.g. canceled)."""
    now = now or timezone.now()

    def start(run: Run) -> list[str]:
        run.attempt_count += 1
        run.started_at = run.started_at or now
        run.heartbeat_at = now
        run.worker = worker
        return ["attempt_count", "started_at", "heartbeat_at", "worker"]

    with transaction.atomic():
        run = _transition(
            run_id,
            RunStatus.EXECUTING,
            actor=f"worker:{worker}",
            now=now,
            allowed_from=[RunStatus.DEQUEUED],
            changes=start,
            reason="attempt started",
        )
        if run is None:
            return None
        return RunAttempt.objects.create(
            run=run, number=run.attempt_count, status=RunStatus.EXECUTING, worker=worker, started_at=now
        )


def heartbeat(*, run_id: str, attempt: int, now: datetime | None = None) -> bool:
    """Record that attempt `attempt` is alive; False if the run moved on (stop working)."""
    now = now or timezone.now()
    updated = Run.objects.filter(pk=run_id, status=RunStatus.EXECUTING, attempt_count=attempt).update(heartbeat_at=now)
    return updated == 1


def complete_attempt(
    *, run_id: str, attempt: int, output: str, output_type: str, now: datetime | None = None
) -> Run | None:
    """EXECUTING -> COMPLETED with the output, if `attempt` is still the current attempt."""
    now = now or timezone.now()

    def store(run: Run) -> list[str]:
        run.output, run.output_type = output, output_type
        return ["output", "output_type"]

    with transaction.atomic():
        run = _transition(
            run_id,
            RunStatus.COMPLETED,
            actor=f"worker:{_worker_of(run_id)}",
            now=now,
            allowed_from=[RunStatus.EXECUTING],
            guard=lambda r: r.attempt_count == attempt,
            changes=store,
            reason="attempt succeeded",
        )
        if run is not None:
            _finish_attempt(run, attempt, RunStatus.COMPLETED, now)
        return run


def fail_attempt(
    *, run_id: str, attempt: int, error: dict[str, Any], retry: registry.Retry | None, now: datetime | None = None
) -> Run | None:
    """End a failed attempt: requeue after backoff while attempts remain, else FAILED."""
    now = now or timezone.now()
    with transaction.atomic():
        run = Run.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.status != RunStatus.EXECUTING or run.attempt_count != attempt:
            return None
        actor = f"worker:{run.worker}"
        if attempt < run.max_attempts:
            wait = (retry or registry.Retry()).backoff(attempt)
            updated = _transition(
                run_id,
                RunStatus.QUEUED,
                actor=actor,
                now=now,
                changes=_requeue_after(now + timedelta(seconds=wait), run.priority_ms),
                reason=f"attempt {attempt} failed; retrying in {wait:g}s",
                data={"error": error},
            )
        else:
            updated = _transition(
                run_id,
                RunStatus.FAILED,
                actor=actor,
                now=now,
                changes=_set_error(error),
                reason=f"attempt {attempt} of {run.max_attempts} failed",
                data={"error": error},
            )
        _finish_attempt(run, attempt, RunStatus.FAILED, now, error)
        return updated


def system_failure(*, run_id: str, attempt: int, error: dict[str, Any], now: datetime | None = None) -> Run | None:
    """EXECUTING -> SYSTEM_FAILURE: Runyard could not run the attempt (not the task's fault)."""
    now = now or timezone.now()
    with transaction.atomic():
        run = _transition(
            run_id,
            RunStatus.SYSTEM_FAILURE,
            actor=ENGINE,
            now=now,
            allowed_from=[RunStatus.EXECUTING],
            guard=lambda r: r.attempt_count == attempt,
            changes=_set_error(error),
            reason=error["message"],
        )
        if run is not None:
            _finish_attempt(run, attempt, RunStatus.SYSTEM_FAILURE, now, error)
        return run


def _requeue_after(when: datetime, priority_ms: int) -> Callable[[Run], list[str]]:
    def change(run: Run) -> list[str]:
        run.available_at = when - timedelta(milliseconds=priority_ms)
        return ["available_at"]

    return change


def _set_error(error: dict[str, Any]) -> Callable[[Run], list[str]]:
    def change(run: Run) -> list[str]:
        run.error = error
        return ["error"]

    return change


def _finish_attempt(run: Run, number: int, status: str, now: datetime, error: dict[str, Any] | None = None) -> None:
    RunAttempt.objects.filter(run=run, number=number).update(status=status, finished_at=now, error=error)


def _worker_of(run_id: str) -> str:
    return Run.objects.filter(pk=run_id).values_list("worker", flat=True).first() or "unknown"


# --- operator actions ---------------------------------------------------------------------


def cancel_run(*, run_id: str, actor: Actor, reason: str = "", now: datetime | None = None) -> Run:
    """Cancel a run that is not final (a final run is returned unchanged). Raises RunNotFound."""
    now = now or timezone.now()
    with transaction.atomic():
        before = Run.objects.filter(pk=run_id).values_list("status", "dispatch_count").first()
        if before is None:
            raise RunNotFound(f"Run {run_id} not found")
        run = _transition(run_id, RunStatus.CANCELED, actor=actor, now=now, reason=reason or "canceled")
        if run is not None and before[0] in ACTIVE_STATUSES:
            RunAttempt.objects.filter(run=run, finished_at__isnull=True).update(
                status=RunStatus.CANCELED, finished_at=now
            )
            task_id = celery_task_id(run.id, before[1])
            transaction.on_commit(lambda: _revoke(task_id))
    return run or Run.objects.get(pk=run_id)


def _revoke(task_id: str) -> None:
    from dashboard.celery import app

    app.control.revoke(task_id, terminate=True, signal="SIGTERM")


# --- workers ------------------------------------------------------------------------------


def register_worker(
    *, hostname: str, queues: list[str], specs: list[registry.TaskSpec], now: datetime | None = None
) -> None:
    """Record a starting worker and the tasks it serves; task queues take its limits."""
    now = now or timezone.now()
    with transaction.atomic():
        for spec in specs:
            TaskDefinition.objects.update_or_create(task_id=spec.id, defaults=registry.definition_fields(spec))
            for environment in Environment.objects.all():
                Queue.objects.update_or_create(
                    environment=environment, name=spec.queue, defaults={"concurrency_limit": spec.concurrency_limit}
                )
        Worker.objects.update_or_create(
            hostname=hostname,
            defaults={"queues": queues, "tasks": [s.id for s in specs], "started_at": now, "last_seen_at": now},
        )
        events.wake_engine()


def worker_seen(*, hostname: str, now: datetime | None = None) -> None:
    Worker.objects.filter(hostname=hostname).update(last_seen_at=now or timezone.now())


def unregister_worker(*, hostname: str) -> None:
    Worker.objects.filter(hostname=hostname).delete()


# --- the engine loop's work ---------------------------------------------------------------


def celery_task_id(run_id: str, dispatch: int) -> str:
    return f"{run_id}-{dispatch}"


def tick(*, now: datetime | None = None) -> int:
    """One pass over time-driven work; returns how many runs changed."""
    now = now or timezone.now()
    changed = promote_pending_version(now=now)
    changed += requeue_lost(now=now)
    changed += admit(now=now)
    return changed


def promote_pending_version(*, now: datetime) -> int:
    """PENDING_VERSION -> QUEUED for runs whose task is now served by a worker."""
    served = TaskDefinition.objects.values_list("task_id", flat=True)
    ids = list(
        Run.objects.filter(status=RunStatus.PENDING_VERSION, task_identifier__in=served).values_list("id", flat=True)[
            :ADMIT_BATCH
        ]
    )
    count = 0
    for run_id in ids:
        with transaction.atomic():
            definition = TaskDefinition.objects.get(task_id=Run.objects.get(pk=run_id).task_identifier)

            def queue_it(run: Run, definition: TaskDefinition = definition) -> list[str]:
                _ensure_queue(run.environment, run.queue, definition)
                _mark_queued(run, now)
                return ["queued_at", "available_at"]

            if _transition(run_id, RunStatus.QUEUED, actor=ENGINE, now=now, changes=queue_it, reason="worker found"):
                count += 1
    return count


def requeue_lost(*, now: datetime) -> int:
    """DEQUEUED runs no worker started in time (lost message) go back to their queue."""
    cutoff = now - timedelta(seconds=settings.RUNYARD_WORKER_TIMEOUT)
    ids = list(
        Run.objects.filter(status=RunStatus.DEQUEUED, updated_at__lt=cutoff).values_list("id", flat=True)[:ADMIT_BATCH]
    )
    count = 0
    for run_id in ids:
        with transaction.atomic():
            if _transition(
                run_id,
                RunStatus.QUEUED,
                actor=ENGINE,
                now=now,
                allowed_from=[RunStatus.DEQUEUED],
                guard=lambda r: r.updated_at < cutoff,
                reason="no worker started it in time; requeued",
            ):
                count += 1
    return count


def admit(*, now: datetime) -> int:
    """Hand QUEUED runs to Celery in queue order while their queue has free slots."""
    pending = (
        Run.objects.queued().filter(available_at__lte=now).values_list("environment_id", "queue").distinct().order_by()
    )
    return sum(_admit_queue(environment_id, name, now) for environment_id, name in pending)


def _admit_queue(environment_id: int, name: str, now: datetime) -> int:
    with transaction.atomic():
        # The queue row lock serialises admission per queue across engine processes.
        queue = Queue.objects.select_for_update(skip_locked=True).filter(environment_id=environment_id, name=name)
        locked = queue.first()
        if locked is None:
            return 0
        free = ADMIT_BATCH
        if locked.concurrency_limit is not None:
            active = Run.objects.filter(environment_id=environment_id, queue=name, status__in=ACTIVE_STATUSES).count()
            free = min(free, locked.concurrency_limit - active)
        if free <= 0:
            return 0
        runs = list(
            Run.objects.select_for_update(skip_locked=True)
            .filter(environment_id=environment_id, queue=name, status=RunStatus.QUEUED, available_at__lte=now)
            .order_by("available_at", "created_at", "id")[:free]
        )
        for run in runs:
            _dispatch(run, now)
        return len(runs)


def _dispatch(run: Run, now: datetime) -> None:
    Run.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
        status=RunStatus.DEQUEUED, updated_at=now, dispatch_count=F("dispatch_count") + 1
    )
    dispatch = run.dispatch_count + 1
    _record(run, RunStatus.QUEUED, RunStatus.DEQUEUED, actor=ENGINE, reason="admitted to a worker", now=now)
    queue = registry.celery_queue(run.machine, run.region)
    transaction.on_commit(lambda: _send_to_celery(run.id, dispatch, queue))


def _send_to_celery(run_id: str, dispatch: int, queue: str) -> None:
    from runs.tasks import execute_run

    execute_run.apply_async(args=(run_id,), task_id=celery_task_id(run_id, dispatch), queue=queue)
