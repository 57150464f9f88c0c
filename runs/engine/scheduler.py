"""Time-driven work, done by the engine process in ticks.

Each step claims rows with SELECT ... FOR UPDATE SKIP LOCKED in batches, so several engine
processes can run at once without doing the same work twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from runs import registry
from runs.engine.core import ENGINE, bulk_transition, celery_task_id, ensure_queue, mark_queued, record
from runs.engine.execution import fail_attempt
from runs.models import Queue, Run, TaskDefinition
from runs.states import ACTIVE_STATUSES, RunStatus

BATCH = 500
ADMIT_BATCH = BATCH


def tick(*, now: datetime | None = None) -> int:
    """One pass over time-driven work; returns how many runs changed."""
    now = now or timezone.now()
    changed = promote_delayed(now=now)
    changed += expire_runs(now=now)
    changed += promote_pending_version(now=now)
    changed += requeue_lost(now=now)
    changed += recover_stalled(now=now)
    changed += admit(now=now)
    return changed


def promote_delayed(*, now: datetime) -> int:
    """DELAYED -> QUEUED for runs whose delay is over (queued as of their due time)."""
    with transaction.atomic():
        due = list(
            Run.objects.select_for_update(skip_locked=True)
            .filter(status=RunStatus.DELAYED, delay_until__lte=now)
            .order_by("delay_until")[:BATCH]
        )
        return bulk_transition(
            due,
            RunStatus.QUEUED,
            actor=ENGINE,
            now=now,
            reason="delay is over",
            changes=lambda run: mark_queued(run, run.delay_until or now),
        )


def expire_runs(*, now: datetime) -> int:
    """Runs still waiting when their TTL runs out become EXPIRED and never run."""

    def stamp(run: Run) -> list[str]:
        run.expired_at = now
        return ["expired_at"]

    with transaction.atomic():
        due = list(
            Run.objects.select_for_update(skip_locked=True)
            .filter(status__in=[RunStatus.QUEUED, RunStatus.PENDING_VERSION], expires_at__lte=now, started_at=None)
            .order_by("expires_at")[:BATCH]
        )
        return bulk_transition(due, RunStatus.EXPIRED, actor=ENGINE, now=now, reason="TTL passed", changes=stamp)


def promote_pending_version(*, now: datetime) -> int:
    """PENDING_VERSION -> QUEUED for runs whose task is now served by a worker."""
    served = {d.task_id: d for d in TaskDefinition.objects.all()}
    with transaction.atomic():
        ready = list(
            Run.objects.select_for_update(skip_locked=True)
            .select_related("environment")
            .filter(status=RunStatus.PENDING_VERSION, task_identifier__in=list(served))[:BATCH]
        )
        for run in ready:
            ensure_queue(run.environment, run.queue, served[run.task_identifier])
        return bulk_transition(
            ready,
            RunStatus.QUEUED,
            actor=ENGINE,
            now=now,
            reason="a worker serves this task now",
            changes=lambda run: mark_queued(run, now),
        )


def requeue_lost(*, now: datetime) -> int:
    """DEQUEUED runs no worker started in time (lost message) go back to their queue."""
    cutoff = now - timedelta(seconds=settings.RUNYARD_WORKER_TIMEOUT)
    with transaction.atomic():
        lost = list(
            Run.objects.select_for_update(skip_locked=True).filter(status=RunStatus.DEQUEUED, updated_at__lt=cutoff)[
                :BATCH
            ]
        )
        reason = "no worker started it in time; requeued"
        return bulk_transition(lost, RunStatus.QUEUED, actor=ENGINE, now=now, reason=reason)


def recover_stalled(*, now: datetime) -> int:
    """EXECUTING runs whose worker stopped beating: retried, or CRASHED when out of attempts."""
    cutoff = now - timedelta(seconds=settings.RUNYARD_WORKER_TIMEOUT)
    stalled = Run.objects.filter(status=RunStatus.EXECUTING, heartbeat_at__lt=cutoff).values_list(
        "id", "attempt_count", "task_identifier", "worker"
    )[:BATCH]
    count = 0
    for run_id, attempt, task_id, worker in stalled:
        spec = registry.get(task_id)
        error = {"message": f"worker {worker} stopped responding during attempt {attempt}", "name": "WorkerLost"}
        retry = spec.retry if spec else None
        if fail_attempt(
            run_id=run_id, attempt=attempt, error=error, retry=retry, final_status=RunStatus.CRASHED, actor=ENGINE
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
        free = BATCH
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
    record(run, RunStatus.QUEUED, RunStatus.DEQUEUED, actor=ENGINE, reason="admitted to a worker", now=now)
    queue = registry.celery_queue(run.machine, run.region)
    transaction.on_commit(lambda: _send_to_celery(run.id, dispatch, queue))


def _send_to_celery(run_id: str, dispatch: int, queue: str) -> None:
    from runs.tasks import execute_run

    execute_run.apply_async(args=(run_id,), task_id=celery_task_id(run_id, dispatch), queue=queue)
