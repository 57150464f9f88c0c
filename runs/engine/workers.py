"""Workers announcing themselves and the tasks they serve; operators draining them.

A drained worker finishes the runs it executes and starts no other. Three things keep it so:

- After commit, Celery's remote control tells it to stop consuming each of its queues
  (cancel_consumer, addressed to its hostname alone); other workers of the same queues take
  the runs sent there. A message that reaches it after that is given back to Redis by kombu.
- A message it already holds (prefetched before the drain, or fetched while it starts) still
  reaches its pool: the start (execution.start_attempt) refuses a worker whose row says
  draining, and hand_back returns the run to its queue, to be sent again. Nothing is lost, and
  the row, not a control message that may miss a worker, is what decides.
- The row outlives the worker's shutdown while it drains, and the worker's start-up
  (runs.worker.announce) cancels its queues again when register_worker says it is draining.

undrain_worker clears the row and tells the worker to consume its queues again (add_consumer).
Each call writes an AuditEntry in its transaction.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from runs import events, registry
from runs.engine.core import Actor, EngineError, audit, transition
from runs.engine.schedules import sync_declared_schedules
from runs.models import Environment, Queue, TaskDefinition, Worker
from runs.states import RunStatus

REASON_LENGTH = 512

log = logging.getLogger(__name__)


class WorkerNotFound(EngineError):
    pass


def register_worker(
    *, hostname: str, queues: list[str], specs: list[registry.TaskSpec], now: datetime | None = None
) -> Worker:
    """Record a starting worker and the tasks it serves; task queues take its limits, and the
    tasks' declared schedules (@task(cron=...)) are synced in every environment. The worker
    keeps a drain it had (the returned row says so)."""
    now = now or timezone.now()
    with transaction.atomic():
        # Lock the queues it rewrites in id order first, as a pause does (runs.engine.pauses):
        # locking them in task order could deadlock with a pause locking its environment's.
        names = sorted({spec.queue for spec in specs})
        list(Queue.objects.select_for_update().filter(name__in=names).order_by("pk").values_list("pk"))
        for spec in specs:
            TaskDefinition.objects.update_or_create(task_id=spec.id, defaults=registry.definition_fields(spec))
            for environment in Environment.objects.all():
                Queue.objects.update_or_create(
                    environment=environment, name=spec.queue, defaults={"concurrency_limit": spec.concurrency_limit}
                )
        sync_declared_schedules(specs=specs, actor=f"worker:{hostname}", now=now)
        worker, _ = Worker.objects.update_or_create(
            hostname=hostname,
            defaults={"queues": queues, "tasks": [s.id for s in specs], "started_at": now, "last_seen_at": now},
        )
        events.wake_engine()
    return worker


def worker_seen(*, hostname: str, now: datetime | None = None) -> None:
    Worker.objects.filter(hostname=hostname).update(last_seen_at=now or timezone.now())


def unregister_worker(*, hostname: str) -> None:
    """Forget a worker that shut down, unless it drains: its restart must find the drain."""
    Worker.objects.filter(hostname=hostname, draining_at=None).delete()


def drain_worker(
    *, hostname: str, actor: Actor, reason: str = "", user: Any = None, now: datetime | None = None
) -> Worker:
    """Let the worker finish its runs and start no other, until undrain_worker; a worker already
    draining keeps its drain. Raises WorkerNotFound."""
    now = now or timezone.now()
    with transaction.atomic():
        worker = _locked(hostname)
        changed = not worker.draining
        if changed:
            worker.draining_at, worker.drained_by, worker.drain_reason = now, actor, reason[:REASON_LENGTH]
            worker.save(update_fields=["draining_at", "drained_by", "drain_reason"])
        _audit(worker, "worker.drain", actor=actor, user=user, reason=reason, now=now, data={"changed": changed})
        queues = list(worker.queues)
        transaction.on_commit(lambda: _control(hostname, "cancel_consumer", queues))
    return worker


def undrain_worker(
    *, hostname: str, actor: Actor, reason: str = "", user: Any = None, now: datetime | None = None
) -> Worker:
    """Let a drained worker take runs again; a worker not draining is left as it is. Raises
    WorkerNotFound."""
    now = now or timezone.now()
    with transaction.atomic():
        worker = _locked(hostname)
        changed = worker.draining
        if changed:
            worker.draining_at, worker.drained_by, worker.drain_reason = None, "", ""
            worker.save(update_fields=["draining_at", "drained_by", "drain_reason"])
        _audit(worker, "worker.undrain", actor=actor, user=user, reason=reason, now=now, data={"changed": changed})
        queues = list(worker.queues)
        transaction.on_commit(lambda: _control(hostname, "add_consumer", queues))
    return worker


def hand_back(*, run_id: str, hostname: str, now: datetime) -> bool:
    """A DEQUEUED run that a draining worker was given goes back to its queue (True); False if
    the worker does not drain or the run is not DEQUEUED (canceled, started elsewhere)."""
    with transaction.atomic():
        if not Worker.objects.filter(hostname=hostname).exclude(draining_at=None).exists():
            return False
        # Its place in the queue (available_at) is kept: it was next, and is next again.
        run = transition(
            run_id,
            RunStatus.QUEUED,
            actor=f"worker:{hostname}",
            now=now,
            reason=f"worker {hostname} is draining; back to its queue",
            allowed_from=[RunStatus.DEQUEUED],
        )
        if run is None:
            return False
        # A control message the worker missed would have it hand every run back as it comes:
        # told again, it stops consuming.
        queues = list(Worker.objects.filter(hostname=hostname).values_list("queues", flat=True).first() or [])
        transaction.on_commit(lambda: _control(hostname, "cancel_consumer", queues))
        return True


def _locked(hostname: str) -> Worker:
    worker = Worker.objects.select_for_update().filter(hostname=hostname).first()
    if worker is None:
        raise WorkerNotFound(f"No worker {hostname!r}")
    return worker


def _control(hostname: str, command: str, queues: list[str]) -> None:
    """Send a remote-control command per queue to this worker alone, without waiting for a
    reply: a worker that is down misses it, and its start-up applies the row instead."""
    from celery import current_app

    try:
        for queue in queues:
            current_app.control.broadcast(command, arguments={"queue": queue}, destination=[hostname])
    except Exception:
        # The drain is committed: the broker being away must not turn its answer into an error.
        log.warning("could not send %s to worker %s; its start applies the row", command, hostname, exc_info=True)


def _audit(
    worker: Worker, action: str, *, actor: Actor, reason: str, now: datetime, data: dict[str, Any], user: Any = None
) -> None:
    # Workers serve every environment: the entry belongs to none.
    audit(
        action=action,
        target=worker.hostname,
        actor=actor,
        now=now,
        environment_id=None,
        user=user,
        reason=reason,
        data={"worker": worker.hostname, "queues": worker.queues, **data},
    )
