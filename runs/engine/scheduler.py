"""Time-driven work, done by the engine process in ticks.

Each step claims rows with SELECT ... FOR UPDATE SKIP LOCKED in batches, so several engine
processes can run at once without doing the same work twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Count, DateTimeField, ExpressionWrapper, F, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from runs import events, registry
from runs.engine.bulk import work_bulk_actions
from runs.engine.core import (
    ENGINE,
    bulk_transition,
    celery_task_id,
    ensure_queue,
    finish_attempt,
    mark_queued,
    revoke,
    set_error,
    transition,
)
from runs.engine.execution import fail_attempt
from runs.engine.waiting import resume_ready
from runs.models import Queue, Run, RunEvent, TaskDefinition
from runs.states import ACTIVE_STATUSES, RunStatus

BATCH = 500
ADMIT_BATCH = BATCH
PROMOTE_BATCH = 5000  # one UPDATE: due runs are promoted many at a time


def tick(*, now: datetime | None = None) -> int:
    """One pass over time-driven work; returns how many runs changed."""
    now = now or timezone.now()
    changed = promote_delayed(now=now)
    changed += expire_runs(now=now)
    changed += promote_pending_version(now=now)
    changed += requeue_lost(now=now)
    changed += recover_stalled(now=now)
    changed += time_out_runs(now=now)
    changed += resume_ready(now=now)
    changed += admit(now=now)
    changed += work_bulk_actions(now=now)
    return changed


def promote_delayed(*, now: datetime) -> int:
    """DELAYED -> QUEUED for runs whose delay is over (queued as of their due time).

    Set-based, as mark_queued would set each run: a Django bulk_update builds a CASE per row
    and field in Python, which made promoting 10,000 runs due at once take many seconds.
    """
    with transaction.atomic():
        due = list(
            Run.objects.select_for_update(skip_locked=True)
            .filter(status=RunStatus.DELAYED, delay_until__lte=now)
            .order_by("delay_until")
            .values_list("id", "environment_id")[:PROMOTE_BATCH]
        )
        if not due:
            return 0
        ids = [run_id for run_id, _ in due]
        # In an UPDATE every column reads its value from before the update, as mark_queued does.
        Run.objects.filter(pk__in=ids).update(
            status=RunStatus.QUEUED,
            updated_at=now,
            available_at=ExpressionWrapper(
                F("delay_until") - F("priority_ms") * timedelta(milliseconds=1), output_field=DateTimeField()
            ),
            queued_at=Coalesce("queued_at", "delay_until"),
            expires_at=Case(
                When(
                    queued_at__isnull=True,
                    ttl__isnull=False,
                    then=ExpressionWrapper(
                        F("delay_until") + F("ttl") * timedelta(seconds=1), output_field=DateTimeField()
                    ),
                ),
                default=F("expires_at"),
            ),
        )
        RunEvent.objects.bulk_create(
            RunEvent(
                run_id=run_id,
                at=now,
                from_status=RunStatus.DELAYED,
                to_status=RunStatus.QUEUED,
                actor=ENGINE,
                reason="delay is over",
            )
            for run_id in ids
        )
        by_environment: dict[int, list[str]] = {}
        for run_id, environment_id in due:
            by_environment.setdefault(environment_id, []).append(run_id)
        for environment_id, run_ids in by_environment.items():
            events.publish_runs_changed(environment_id=environment_id, run_ids=run_ids)
        events.wake_engine()
        return len(ids)


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
    served_ids = TaskDefinition.objects.values("task_id")
    with transaction.atomic():
        ready = list(
            Run.objects.select_for_update(skip_locked=True)
            .select_related("environment")
            .filter(status=RunStatus.PENDING_VERSION, task_identifier__in=served_ids)[:BATCH]
        )
        served = TaskDefinition.objects.in_bulk({run.task_identifier for run in ready}, field_name="task_id")
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


def time_out_runs(*, now: datetime) -> int:
    """EXECUTING runs past their attempt's max duration end TIMED_OUT (never retried)."""
    overdue = Run.objects.filter(status=RunStatus.EXECUTING, deadline_at__lte=now).values_list("id", flat=True)
    count = 0
    for run_id in list(overdue[:BATCH]):
        with transaction.atomic():
            dispatch = Run.objects.filter(pk=run_id).values_list("dispatch_count", flat=True).first()
            run = transition(
                run_id,
                RunStatus.TIMED_OUT,
                actor=ENGINE,
                now=now,
                allowed_from=[RunStatus.EXECUTING],
                guard=lambda r: r.deadline_at is not None and r.deadline_at <= now,
                changes=lambda r: set_error(_timeout_error(r))(r),
                reason="ran past its maxDuration",
            )
            if run is not None:
                finish_attempt(run, run.attempt_count, RunStatus.TIMED_OUT, now, run.error)
                transaction.on_commit(partial(revoke, celery_task_id(run_id, dispatch or 0)))
                count += 1
    return count


def _timeout_error(run: Run) -> dict[str, str]:
    return {"message": f"Run exceeded its maxDuration of {run.max_duration}s", "name": "MaxDurationExceeded"}


def admit(*, now: datetime) -> int:
    """Hand QUEUED runs to Celery in queue order while their queue has free slots.

    Each concurrency key of a queue gets its own copy of the queue's limit.
    """
    pending = (
        Run.objects.queued()
        .filter(available_at__lte=now)
        .values_list("environment_id", "queue", "concurrency_key")
        .distinct()
        .order_by()
    )
    by_queue: dict[tuple[int, str], list[str]] = {}
    for environment_id, name, key in pending:
        by_queue.setdefault((environment_id, name), []).append(key)
    return sum(_admit_queue(environment_id, name, keys, now) for (environment_id, name), keys in by_queue.items())


def _admit_queue(environment_id: int, name: str, keys: list[str], now: datetime) -> int:
    with transaction.atomic():
        # The queue row lock serialises admission per queue across engine processes.
        queue = Queue.objects.select_for_update(skip_locked=True).filter(environment_id=environment_id, name=name)
        locked = queue.first()
        if locked is None:
            return 0
        # Read the clock after the lock: a slot freed while this tick ran must not look
        # admitted before it was freed in the timeline.
        now = max(now, timezone.now())
        active = dict(
            Run.objects.filter(environment_id=environment_id, queue=name, status__in=ACTIVE_STATUSES)
            .values_list("concurrency_key")
            .annotate(n=Count("id"))
            .order_by()
        )
        admitted = 0
        for key in keys:
            free = BATCH - admitted
            if locked.concurrency_limit is not None:
                free = min(free, locked.concurrency_limit - active.get(key, 0))
            if free > 0:
                admitted += _admit_key(environment_id, name, key, free, now)
        return admitted


def _admit_key(environment_id: int, name: str, key: str, free: int, now: datetime) -> int:
    runs = list(
        Run.objects.select_for_update(skip_locked=True)
        .filter(
            environment_id=environment_id,
            queue=name,
            concurrency_key=key,
            status=RunStatus.QUEUED,
            available_at__lte=now,
        )
        .order_by("available_at", "created_at", "id")[:free]
    )
    _dispatch(runs, now)
    return len(runs)


def _dispatch(runs: list[Run], now: datetime) -> None:
    """QUEUED -> DEQUEUED for runs locked by the caller, in one statement each for the runs and
    their timeline, handed to Celery after commit. One round trip per run made admitting 500
    runs take seconds on a busy database, and no worker got any until all were done."""
    if not runs:
        return
    Run.objects.filter(pk__in=[run.pk for run in runs], status=RunStatus.QUEUED).update(
        status=RunStatus.DEQUEUED, updated_at=now, dispatch_count=F("dispatch_count") + 1
    )
    RunEvent.objects.bulk_create(
        RunEvent(
            run=run,
            at=now,
            from_status=RunStatus.QUEUED,
            to_status=RunStatus.DEQUEUED,
            actor=ENGINE,
            reason="admitted to a worker",
        )
        for run in runs
    )
    events.publish_runs_changed(environment_id=runs[0].environment_id, run_ids=[run.id for run in runs])
    sends = [(run.id, run.dispatch_count + 1, registry.celery_queue(run.machine, run.region)) for run in runs]
    transaction.on_commit(lambda: _send_to_celery(sends))


def _send_to_celery(sends: list[tuple[str, int, str]]) -> None:
    """apply_async for each (run id, dispatch number, Celery queue), over one broker connection."""
    from runs.tasks import execute_run

    with execute_run.app.producer_or_acquire() as producer:
        for run_id, dispatch, queue in sends:
            execute_run.apply_async(
                args=(run_id,), task_id=celery_task_id(run_id, dispatch), queue=queue, producer=producer
            )
