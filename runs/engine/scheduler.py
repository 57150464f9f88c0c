"""Time-driven work, done by the engine process in ticks.

Each step claims rows with SELECT ... FOR UPDATE SKIP LOCKED in batches, so several engine
processes can run at once without doing the same work twice.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import redis
from celery import current_app
from django.conf import settings
from django.contrib.postgres.expressions import ArraySubquery
from django.db import connection, transaction
from django.db.models import Count, OuterRef
from django.utils import timezone

from runs import registry
from runs.engine import sql, transitions
from runs.engine.batches import reap_unsealed_batches
from runs.engine.bulk import work_bulk_actions
from runs.engine.core import (
    ENGINE,
    bulk_transition,
    celery_task_id,
    ensure_queue,
    finish_attempt,
    mark_queued,
    prepared_row,
    revoke,
    set_error,
    transition,
)
from runs.engine.execution import fail_attempt
from runs.engine.pauses import paused_tasks
from runs.engine.queues import lift_expired_controls
from runs.engine.schedules import fire_due_schedules
from runs.engine.waiting import resume_ready
from runs.models import Queue, Run, TaskDefinition
from runs.redis_client import redis_client
from runs.states import ACTIVE_STATUSES, RunStatus

log = logging.getLogger(__name__)

BATCH = 500
# Runs a tick admits per queue, in one transaction: its Celery messages go out at its commit,
# so the first runs of a burst reach the workers after 100 rows are written, not 500.
ADMIT_BATCH = 100
EXECUTE_RUN = "runyard.execute_run"  # the Celery task of runs.tasks that executes an attempt
SEND_BATCH = 100  # Celery messages per Redis pipeline: the first reach workers soon after commit
PROMOTE_BATCH = 50_000  # one statement: 10,000 runs due in the same second move together


def tick(*, now: datetime | None = None) -> int:
    """One pass over time-driven work; returns how many runs changed."""
    now = now or timezone.now()
    due = _due_work(now)
    changed = promote_delayed(now=now) if due["delayed"] else 0
    changed += expire_runs(now=now) if due["expiring"] else 0
    changed += promote_pending_version(now=now) if due["pending_version"] else 0
    changed += requeue_lost(now=now) if due["lost"] else 0
    changed += recover_stalled(now=now) if due["stalled"] else 0
    changed += time_out_runs(now=now) if due["overdue"] else 0
    changed += resume_ready(now=now) if due["waiting"] else 0
    if due["schedules"]:
        changed += fire_due_schedules(now=now)  # before admit: a tick's run may start at once
    if due["queue_controls"]:
        lift_expired_controls(now=now)  # no run changes; admit below would ignore them anyway
    changed += admit(now=now)
    changed += work_bulk_actions(now=now) if due["bulk"] else 0
    if due["unsealed"]:
        reap_unsealed_batches(now=now)  # no run changes: they never existed
    return changed


def _due_work(now: datetime) -> dict[str, bool]:
    """Which time-driven steps have work at `now`, in one round trip.

    An engine ticks on every NOTIFY (each trigger, start and completion): six steps of a
    transaction and a query each, mostly finding nothing, kept it and its database busy
    about a core's worth on a busy 2-core machine. The same conditions as the steps' own
    queries; what falls due after this read is found by the next tick. Waiting runs (the
    safety net's) and open bulk actions too: reading each every tick was four of the eleven
    statements of a tick admitting one run (a BEGIN, a read and a COMMIT for bulk actions).
    """
    cutoff = now - timedelta(seconds=settings.RUNYARD_WORKER_TIMEOUT)
    unsealed = now - timedelta(seconds=settings.RUNYARD_BATCH_SEAL_TIMEOUT)
    # Prepared: planning nine EXISTS took about as long as running them, every tick.
    row = prepared_row(sql.DUE_WORK_SQL, {"now": now, "cutoff": cutoff, "unsealed": unsealed})
    assert row is not None
    return {name: bool(value) for name, value in row.items()}


def next_due(*, after: datetime) -> datetime | None:
    """When the next delay ends, TTL runs out, maxDuration passes, a pause (of a queue, task or
    environment) or an override ends or a schedule's tick comes, after `after` (a tick's
    clock: what was due by then that tick did); None if nothing is scheduled.

    The engine sleeps until then rather than a whole poll interval: a due time notifies
    nothing. One statement, each part a min() over its partial index (run_delayed,
    run_expiring, run_deadline, schedule_due; queues, task pauses and environments are few).
    """
    row = prepared_row(sql.NEXT_DUE_SQL, {"after": after})  # prepared, as _due_work's
    due: datetime | None = row["due"] if row else None
    return due


def promote_delayed(*, now: datetime) -> int:
    """DELAYED -> QUEUED for runs whose delay is over (queued as of their due time).

    One statement locks, moves and records every due run, computing the queue times in SQL
    exactly as mark_queued would (available_at, and queued_at and expires_at the first time
    only). Building 10,000 RunEvent objects in Python and updating by a list of ids took most
    of the engine's time when that many runs fell due at once (docs/performance.md).
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            sql.PROMOTE_SQL,
            {
                "delayed": RunStatus.DELAYED,
                "queued": RunStatus.QUEUED,
                "now": now,
                "limit": PROMOTE_BATCH,
                "actor": ENGINE,
                "reason": "delay is over",
            },
        )
        moved = [transitions.Moved(run_id, environment_id, RunStatus.DELAYED) for run_id, environment_id in cursor]
        transitions.moved(moved, RunStatus.QUEUED, now=now)
        return len(moved)


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
    """DEQUEUED runs no worker started in time (lost message) go back to their queue.

    A run whose Celery queue still holds messages is not taken for lost: its message may be
    among them, waiting for a worker to be free (a backlog of long runs on an unlimited queue
    lasts far longer than RUNYARD_WORKER_TIMEOUT). Requeued anyway, it would be sent again and
    its timeline would gain a false "requeued". Once the queue is empty, a run still DEQUEUED
    has lost its message (Redis restarted, a worker died holding it) and goes back.
    """
    cutoff = now - timedelta(seconds=settings.RUNYARD_WORKER_TIMEOUT)
    candidates = Run.objects.filter(status=RunStatus.DEQUEUED, updated_at__lt=cutoff).values_list(
        "id", "machine", "region", "celery_queue"
    )[:BATCH]
    queues = {
        run_id: celery_queue or registry.celery_queue(machine, region)
        for run_id, machine, region, celery_queue in candidates
    }
    waiting = celery_backlog(set(queues.values()))
    ids = [run_id for run_id, queue in queues.items() if not waiting.get(queue)]
    if not ids:
        return 0
    with transaction.atomic():
        lost = list(
            Run.objects.select_for_update(skip_locked=True).filter(
                pk__in=ids, status=RunStatus.DEQUEUED, updated_at__lt=cutoff
            )
        )
        reason = "no worker started it in time; requeued"
        return bulk_transition(lost, RunStatus.QUEUED, actor=ENGINE, now=now, reason=reason)


def celery_backlog(queues: set[str]) -> dict[str, int]:
    """Messages waiting in each of these Celery queues (on the broker, not yet taken by a
    worker); a queue that could not be read counts as empty."""
    if not queues:
        return {}
    names = sorted(queues)
    try:
        # The broker is REDIS_URL's Redis (dashboard.settings); a Celery queue is a list there,
        # one per queue as Runyard sends without a priority.
        pipe = redis_client().pipeline(transaction=False)
        for name in names:
            pipe.llen(name)
        return dict(zip(names, (int(n) for n in pipe.execute()), strict=True))
    except redis.RedisError:  # the broker down: the lost runs cannot be sent again either
        log.warning("could not read the backlog of Celery queues %s", ", ".join(names), exc_info=True)
        return {}


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
    own_transaction = not connection.in_atomic_block  # then it may commit asynchronously (_ADMIT_SQL)
    with transaction.atomic():
        # The queue row lock serialises admission per queue across engine processes; pausing a
        # task or an environment takes it too (runs.engine.pauses), so what this statement
        # reads of both pauses, once it holds the lock, is what holds until its commit. One
        # statement: nothing paused costs an index lookup of the environment and of its task
        # pauses, no round trip.
        held = paused_tasks(environment_id=OuterRef("environment_id"), now=now).values("task_id")
        locked = (
            Queue.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("environment")
            .annotate(paused_tasks=ArraySubquery(held))
            .filter(environment_id=environment_id, name=name)
            .first()
        )
        # By the tick's clock, as expire_runs reads TTLs: a pause or override whose time has
        # passed no longer applies, though lift_expired_controls clears it only after.
        if locked is None or locked.paused_as_of(now) or locked.environment.paused_as_of(now):
            return 0
        skipped: list[str] = locked.paused_tasks
        limit = locked.limit_as_of(now)
        # A queue without a limit has no slots to count: the count (a round trip and a scan of
        # the queue's active runs, per tick) is only read against a limit.
        active = {} if limit is None else _active_by_key(environment_id, name)
        # Read the clock after counting the slots: a slot this count found free was freed (and
        # stamped, by the worker's clock before its commit) earlier, so the admission's stamp
        # must not come before it in anyone's timeline.
        ticked, now = now, max(now, timezone.now())
        admitted = 0
        for key in keys:
            free = ADMIT_BATCH - admitted
            if limit is not None:
                free = min(free, limit - active.get(key, 0))
            if free > 0:
                admitted += _admit_key(environment_id, name, key, free, now, ticked, skipped, own_transaction)
        return admitted


def _active_by_key(environment_id: int, name: str) -> dict[str, int]:
    """DEQUEUED and EXECUTING runs of the queue, by concurrency key."""
    return dict(
        Run.objects.filter(environment_id=environment_id, queue=name, status__in=ACTIVE_STATUSES)
        .values_list("concurrency_key")
        .annotate(n=Count("id"))
        .order_by()
    )


def _admit_key(
    environment_id: int,
    name: str,
    key: str,
    free: int,
    now: datetime,
    ticked: datetime,
    skipped: list[str],
    async_commit: bool = False,
) -> int:
    """QUEUED -> DEQUEUED for up to `free` runs of one concurrency key, in queue order, but none
    of the `skipped` (paused) tasks, handed to Celery after commit.

    One statement locks, moves and records them (as promote_delayed does): loading each run as
    a model and building its timeline event in Python cost the engine a good part of a no-op
    run's time on a busy machine (docs/performance.md). SKIP LOCKED: a run another engine is
    admitting (or an action is changing) is left to it.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            sql.ADMIT_SQL,
            {
                "environment": environment_id,
                "queue": name,
                "key": key,
                "queued": RunStatus.QUEUED,
                "dequeued": RunStatus.DEQUEUED,
                "now": now,
                "ticked": ticked,  # the tick's clock: what expired by then is expire_runs' to end
                "free": free,
                "skipped": skipped,
                "actor": ENGINE,
                "reason": "admitted to a worker",
                "async_commit": async_commit,
            },
        )
        admitted = cursor.fetchall()
    if not admitted:
        return 0
    moved = [transitions.Moved(run_id, environment_id, RunStatus.QUEUED) for run_id, *_ in admitted]
    transitions.moved(moved, RunStatus.DEQUEUED, now=now)
    sends = [
        (run_id, dispatch, celery_queue or registry.celery_queue(machine, region))
        for run_id, dispatch, machine, region, celery_queue, _ in admitted
    ]
    transaction.on_commit(lambda: _send_to_celery(sends))
    return len(admitted)


def _send_to_celery(sends: list[tuple[str, int, str]]) -> None:
    """The execute_run message of each (run id, dispatch number, Celery queue), over one broker connection,
    SEND_BATCH messages to a Redis pipeline (kombu's Producer.batch): a round trip to Redis and a
    new redis-py client per message were most of the engine's time per admitted run.

    declare=[]: a message to a queue by name is pushed onto the queue's list, declared or not
    (workers declare the queues they consume); declaring copied and bound the queue each time.
    A pipeline is sent outside kombu's retry, which reconnects a producer whose connection broke
    (Redis restarted): if it fails, the messages go again one by one, with the retry. A message
    sent twice is harmless: a run starts once, and its later copies are skipped.
    """
    app = current_app
    publish = _publish_run if _publish_unobserved() else _send_run
    try:
        with app.producer_or_acquire() as producer, producer.batch(max_size=SEND_BATCH):
            for run_id, dispatch, queue in sends:
                publish(producer, run_id, dispatch, queue)
    except Exception:
        log.warning("could not send %d runs to Celery in pipelines; sending them one by one", len(sends), exc_info=True)
        with app.producer_or_acquire() as producer:
            for run_id, dispatch, queue in sends:
                _send_run(producer, run_id, dispatch, queue)


def _send_run(producer: Any, run_id: str, dispatch: int, queue: str) -> None:
    # Celery's own send, used when something observes publishing (signals, task-sent events)
    # and to send again after a failed pipeline; otherwise _publish_run stands in for it. By
    # name, as runs.tasks imports the engine:
    # send_task is what execute_run.apply_async calls, less the task's own options, of which
    # only ignore_result is not Celery's default (acks_late is the worker's, from the task).
    options: dict[str, Any] = {"declare": []}  # not in celery-types' signature of send_task
    current_app.send_task(
        EXECUTE_RUN,
        args=(run_id,),
        task_id=celery_task_id(run_id, dispatch),
        queue=queue,
        producer=producer,
        ignore_result=current_app.conf.task_ignore_result,
        **options,
    )


def _publish_run(producer: Any, run_id: str, dispatch: int, queue: str) -> None:
    """The message apply_async would send for the run, from a copy of one built once per process
    with only the run's own fields put in (its id, task id and their reprs), published straight
    to the queue's list: a sixth of apply_async's CPU per message. apply_async (routing, the
    task's options, create_task_message) was most of the engine's CPU per admitted run, on the
    two cores its workers share (docs/performance.md). tests/runs/test_admission_send.py holds
    the two messages equal.
    """
    task_id = celery_task_id(run_id, dispatch)
    args = (run_id,)
    headers, properties, body = _message_template()
    producer.publish(
        (args, {}, body[2]),
        exchange="",
        routing_key=queue,
        serializer="json",
        headers={**headers, "id": task_id, "root_id": task_id, "argsrepr": repr(args)},
        declare=[],
        retry=False,  # as a pipeline's publish is: the caller sends again through apply_async
        **{**properties, "correlation_id": task_id, "reply_to": current_app.thread_oid},
    )


@functools.cache
def _message_template() -> tuple[dict[str, Any], dict[str, Any], tuple[Any, ...]]:
    """Headers, properties and body of an execute_run message, as send_task builds them (the task
    sets none of these options itself: they are the app's)."""
    app = current_app
    message = app.amqp.create_task_message(
        "-",
        EXECUTE_RUN,
        ("-",),
        {},
        time_limit=app.conf.task_time_limit,
        soft_time_limit=app.conf.task_soft_time_limit,
        ignore_result=app.conf.task_ignore_result,
        create_sent_event=app.conf.task_send_sent_event,
    )
    # Celery's default queues' exchange gives none: the configured default applies (kombu maps it).
    properties = {**message.properties, "delivery_mode": app.conf.task_default_delivery_mode}
    return dict(message.headers), properties, message.body


def _publish_unobserved() -> bool:
    """Whether nothing listens to Celery's publish signals or sends task-sent events, which only
    apply_async's path gives: then _publish_run may stand in for it."""
    from celery import signals

    quiet = not (signals.before_task_publish.receivers or signals.after_task_publish.receivers)
    return quiet and not signals.task_sent.receivers and not current_app.conf.task_send_sent_event
