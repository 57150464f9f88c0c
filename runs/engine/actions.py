"""Operator and API actions on existing runs."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from runs.engine.core import Actor, EngineError, RunNotFound, celery_task_id, record, revoke
from runs.engine.core import transition as move
from runs.engine.triggering import TriggerOptions, trigger
from runs.engine.waiting import open_children
from runs.models import Run, RunAttempt
from runs.states import ACTIVE_STATUSES, RunStatus


def cancel_run(*, run_id: str, actor: Actor, reason: str = "", now: datetime | None = None) -> Run:
    """Cancel a run that is not final (a final run is returned unchanged). Raises RunNotFound."""
    now = now or timezone.now()
    with transaction.atomic():
        before = Run.objects.filter(pk=run_id).values_list("status", "dispatch_count").first()
        if before is None:
            raise RunNotFound(f"Run {run_id} not found")
        run = move(run_id, RunStatus.CANCELED, actor=actor, now=now, reason=reason or "canceled")
        if run is not None:
            RunAttempt.objects.filter(run=run, finished_at__isnull=True).update(
                status=RunStatus.CANCELED, finished_at=now
            )
            if before[0] in ACTIVE_STATUSES:
                task_id = celery_task_id(run.id, before[1])
                transaction.on_commit(lambda: revoke(task_id))
            for child_id in open_children(run.id):
                cancel_run(run_id=child_id, actor=actor, reason=f"its parent {run.id} was canceled", now=now)
    return run or Run.objects.get(pk=run_id)


def reschedule_run(*, run_id: str, delay_until: datetime, actor: Actor, now: datetime | None = None) -> Run:
    """Move a DELAYED run's start to delay_until. Raises RunNotFound or EngineError."""
    now = now or timezone.now()
    if delay_until <= now:
        raise EngineError(f"Invalid delay: {delay_until.isoformat()} is not in the future")
    with transaction.atomic():
        run = Run.objects.select_for_update().filter(pk=run_id).first()
        if run is None:
            raise RunNotFound(f"Run {run_id} not found")
        if run.status != RunStatus.DELAYED:
            raise EngineError("Cannot reschedule a run that is not delayed")
        previous, run.delay_until, run.updated_at = run.delay_until, delay_until, now
        run.save(update_fields=["delay_until", "updated_at"])
        reason = f"rescheduled to {delay_until.isoformat()}"
        record(run, run.status, run.status, actor=actor, reason=reason, now=now, data={"from": str(previous)})
    return run


def replay_run(
    *,
    run_id: str,
    actor: Actor,
    options: TriggerOptions,
    payload: tuple[str, str] | None = None,
    overridden: set[str] | None = None,
    source: str = "api",
    request_key: str | None = None,
    now: datetime | None = None,
) -> Run:
    """A new run of the same task with the original's payload and options, overridden by
    `options` fields named in `overridden` (and `payload` when given). Raises RunNotFound."""
    original = Run.objects.filter(pk=run_id).first()
    if original is None:
        raise RunNotFound(f"Run {run_id} not found")
    overridden = overridden or set()
    kept: dict[str, Any] = {
        "metadata": original.metadata,
        "tags": list(original.tags),
        "queue": original.queue,
        "concurrency_key": original.concurrency_key,
        "machine": original.machine,
        "region": original.region,
        "max_attempts": original.max_attempts,
        "max_duration": original.max_duration,
        "priority": original.priority_ms / 1000,
        "is_test": original.is_test,
    }
    merged = replace(options, **{name: value for name, value in kept.items() if name not in overridden})
    data, content_type = payload or (original.payload, original.payload_type)
    with transaction.atomic():
        result = trigger(
            environment=original.environment,
            task_id=original.task_identifier,
            payload=data,
            payload_type=content_type,
            options=merged,
            actor=actor,
            source=source,
            request_key=f"replay:{original.id}:{request_key}" if request_key else None,
            now=now,
        )
        run = result.run
        if run.replayed_from_id is None and not result.is_cached:
            run.replayed_from = original
            run.save(update_fields=["replayed_from"])
            record(run, run.status, run.status, actor=actor, reason=f"replay of {original.id}", now=run.created_at)
    return run
