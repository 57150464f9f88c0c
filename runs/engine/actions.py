"""Operator and API actions on existing runs."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from runs.engine.core import Actor, EngineError, RunNotFound, celery_task_id, mark_queued, record, revoke
from runs.engine.core import transition as move
from runs.engine.triggering import TriggerOptions, trigger
from runs.engine.waiting import open_children
from runs.models import Run, RunAttempt
from runs.states import ACTIVE_STATUSES, RunStatus


def cancel_run(*, run_id: str, actor: Actor, reason: str = "", now: datetime | None = None) -> Run:
    """Cancel a run that is not final (a final run is returned unchanged). Raises RunNotFound."""
    return try_cancel_run(run_id=run_id, actor=actor, reason=reason, now=now)[0]


def try_cancel_run(*, run_id: str, actor: Actor, reason: str = "", now: datetime | None = None) -> tuple[Run, bool]:
    """cancel_run, also saying whether this call canceled the run (False: it was final). Raises RunNotFound."""
    now = now or timezone.now()
    with transaction.atomic():
        before = Run.objects.filter(pk=run_id).values_list("status", "dispatch_count").first()
        if before is None:
            raise RunNotFound(f"Run {run_id} not found")
        run = move(run_id, RunStatus.CANCELED, actor=actor, now=now, reason=_cut(reason or "canceled"))
        if run is not None:
            RunAttempt.objects.filter(run=run, finished_at__isnull=True).update(
                status=RunStatus.CANCELED, finished_at=now
            )
            if before[0] in ACTIVE_STATUSES:
                task_id = celery_task_id(run.id, before[1])
                transaction.on_commit(lambda: revoke(task_id))
            for child_id in open_children(run.id):
                cancel_run(run_id=child_id, actor=actor, reason=f"its parent {run.id} was canceled", now=now)
    return (run, True) if run is not None else (Run.objects.get(pk=run_id), False)


def reschedule_run(
    *, run_id: str, delay_until: datetime, actor: Actor, reason: str = "", now: datetime | None = None
) -> Run:
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
        why = _because(f"rescheduled to {delay_until.isoformat()}", reason)
        record(run, run.status, run.status, actor=actor, reason=why, now=now, data={"from": str(previous)})
    return run


def start_now(*, run_id: str, actor: Actor, reason: str = "", now: datetime | None = None) -> Run:
    """Queue a DELAYED run at once instead of at its delay_until. Raises RunNotFound or EngineError."""
    now = now or timezone.now()

    def release(run: Run) -> list[str]:
        # The delay is over now; the queue order and the TTL clock count from this moment,
        # exactly as when the engine promotes a run whose delay ran out (scheduler.promote_delayed).
        previous, run.delay_until = run.delay_until, now
        data["from"] = str(previous)
        return ["delay_until", *mark_queued(run, now)]

    data: dict[str, Any] = {}
    with transaction.atomic():
        if not Run.objects.filter(pk=run_id).exists():
            raise RunNotFound(f"Run {run_id} not found")
        run = move(
            run_id,
            RunStatus.QUEUED,
            actor=actor,
            now=now,
            reason=_because("started now instead of at its delay", reason),
            allowed_from=[RunStatus.DELAYED],
            changes=release,
            data=data,
        )
        if run is None:
            raise EngineError("Cannot start a run that is not delayed")
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
    reason: str = "",
    now: datetime | None = None,
) -> Run:
    """A new run of the same task with the original's payload and options, overridden by
    `options` fields named in `overridden` (and `payload` when given). Raises RunNotFound.

    `reason` (why it was replayed) joins "replay of <id>" in the new run's timeline."""
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
            why = _because(f"replay of {original.id}", reason)
            record(run, run.status, run.status, actor=actor, reason=why, now=run.created_at)
    return run


REASON_LENGTH = 512  # RunEvent.reason


def _because(what: str, reason: str) -> str:
    """A timeline reason: what happened, then why (when a reason was given)."""
    return _cut(f"{what}: {reason}" if reason else what)


def _cut(text: str) -> str:
    return text if len(text) <= REASON_LENGTH else text[: REASON_LENGTH - 1] + "…"
