"""Operator and API actions on existing runs."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from runs.engine.core import Actor, EngineError, RunNotFound, celery_task_id, record, revoke
from runs.engine.core import transition as move
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
