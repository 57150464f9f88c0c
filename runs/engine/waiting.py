"""Parents that wait on their children (triggerAndWait and friends).

A waiting parent is WAITING and holds no worker slot. When every child of its open
waitpoint is final, it is queued again with `resuming` set; its code then runs from the
start and each wait call returns the results recorded in its waitpoint.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from runs.engine.transitions import ENGINE, clear_deadline, resolve_open_waitpoints, resume_parent, transition
from runs.models import Run, RunAttempt, Waitpoint
from runs.states import FINAL_STATUSES, RunStatus


def add_waitpoint(
    *, run_id: str, sequence: int, child_ids: list[str], batch_id: str | None = None, now: datetime | None = None
) -> Waitpoint:
    """Record that wait call `sequence` of run_id waits on child_ids (once; repeats return it)."""
    waitpoint, _ = Waitpoint.objects.get_or_create(
        run_id=run_id,
        sequence=sequence,
        defaults={"children": child_ids, "batch_id": batch_id, "created_at": now or timezone.now()},
    )
    return waitpoint


def suspend_run(*, run_id: str, attempt: int, now: datetime | None = None) -> Run | None:
    """The attempt stopped at a wait: WAITING, or queued again at once if its children are done."""
    now = now or timezone.now()
    with transaction.atomic():
        parent = Run.objects.select_for_update().filter(pk=run_id, status=RunStatus.EXECUTING).first()
        if parent is None or parent.attempt_count != attempt:
            return None
        if resolve_open_waitpoints(parent, now):
            return resume_parent(parent, now, allowed_from=RunStatus.EXECUTING)
        RunAttempt.objects.filter(run=parent, number=attempt).update(status=RunStatus.WAITING)
        return transition(
            run_id,
            RunStatus.WAITING,
            actor=ENGINE,
            now=now,
            allowed_from=[RunStatus.EXECUTING],
            changes=clear_deadline,
            reason="waiting for its child runs",
        )


def resume_ready(*, now: datetime, limit: int = 500) -> int:
    """Safety net for the engine tick: WAITING runs whose children are all final go on."""
    count = 0
    for run_id in Run.objects.filter(status=RunStatus.WAITING).values_list("id", flat=True)[:limit]:
        with transaction.atomic():
            parent = Run.objects.select_for_update().filter(pk=run_id, status=RunStatus.WAITING).first()
            if parent is not None and resolve_open_waitpoints(parent, now):
                count += resume_parent(parent, now, allowed_from=RunStatus.WAITING) is not None
    return count


def open_children(run_id: str) -> list[str]:
    """Ids of the not-yet-final children a run is waiting on."""
    ids = [child for wp in Waitpoint.objects.filter(run_id=run_id, resolved_at__isnull=True) for child in wp.children]
    return list(Run.objects.filter(pk__in=ids).exclude(status__in=FINAL_STATUSES).values_list("id", flat=True))
