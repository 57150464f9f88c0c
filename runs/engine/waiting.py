"""Parents that wait on their children (triggerAndWait and friends).

A waiting parent is WAITING and holds no worker slot. When every child of its open
waitpoint is final, it is queued again with `resuming` set; its code then runs from the
start and each wait call returns the results recorded in its waitpoint.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from runs.engine.core import ENGINE, mark_queued, transition
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
        if _resolve_open_waitpoints(parent, now):
            return _resume(parent, now, allowed_from=RunStatus.EXECUTING)
        RunAttempt.objects.filter(run=parent, number=attempt).update(status=RunStatus.WAITING)
        return transition(
            run_id,
            RunStatus.WAITING,
            actor=ENGINE,
            now=now,
            allowed_from=[RunStatus.EXECUTING],
            changes=_clear_deadline,
            reason="waiting for its child runs",
        )


def child_finished(run: Run, now: datetime) -> None:
    """Called in the transaction that made `run` final: resume parents now free to go on."""
    children_finished([run.id], now)


def children_finished(run_ids: list[str], now: datetime) -> None:
    """child_finished for runs made final together: one query finds the parents waiting on any
    of them (the waitpoint_open_children index); each such parent is resolved (and resumed) once."""
    waits = Waitpoint.objects.filter(children__overlap=run_ids, resolved_at__isnull=True)
    for parent_id in sorted(set(waits.values_list("run_id", flat=True))):
        # The parent row lock orders this with suspend_run, so no wake-up is lost.
        parent = Run.objects.select_for_update().get(pk=parent_id)
        if _resolve_open_waitpoints(parent, now) and parent.status == RunStatus.WAITING:
            _resume(parent, now, allowed_from=RunStatus.WAITING)


def resume_ready(*, now: datetime, limit: int = 500) -> int:
    """Safety net for the engine tick: WAITING runs whose children are all final go on."""
    count = 0
    for run_id in Run.objects.filter(status=RunStatus.WAITING).values_list("id", flat=True)[:limit]:
        with transaction.atomic():
            parent = Run.objects.select_for_update().filter(pk=run_id, status=RunStatus.WAITING).first()
            if parent is not None and _resolve_open_waitpoints(parent, now):
                count += _resume(parent, now, allowed_from=RunStatus.WAITING) is not None
    return count


def open_children(run_id: str) -> list[str]:
    """Ids of the not-yet-final children a run is waiting on."""
    ids = [child for wp in Waitpoint.objects.filter(run_id=run_id, resolved_at__isnull=True) for child in wp.children]
    return list(Run.objects.filter(pk__in=ids).exclude(status__in=FINAL_STATUSES).values_list("id", flat=True))


def _resolve_open_waitpoints(parent: Run, now: datetime) -> bool:
    """Mark open waitpoints whose children are all final; True if none is left open."""
    open_points = list(Waitpoint.objects.filter(run=parent, resolved_at__isnull=True))
    for waitpoint in open_points:
        pending = Run.objects.filter(pk__in=waitpoint.children).exclude(status__in=FINAL_STATUSES)
        if pending.exists():
            return False
        waitpoint.resolved_at = now
        waitpoint.save(update_fields=["resolved_at"])
    return True


def _resume(parent: Run, now: datetime, *, allowed_from: str) -> Run | None:
    def go_on(run: Run) -> list[str]:
        run.resuming = True
        return ["resuming", *_clear_deadline(run), *mark_queued(run, now)]

    return transition(
        parent.id,
        RunStatus.QUEUED,
        actor=ENGINE,
        now=now,
        allowed_from=[allowed_from],
        changes=go_on,
        reason="its child runs finished; resuming",
    )


def _clear_deadline(run: Run) -> list[str]:
    run.deadline_at = None  # waits do not count toward maxDuration
    return ["deadline_at"]
