"""Workers announcing themselves and the tasks they serve."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from runs import events, registry
from runs.engine.schedules import sync_declared_schedules
from runs.models import Environment, Queue, TaskDefinition, Worker


def register_worker(
    *, hostname: str, queues: list[str], specs: list[registry.TaskSpec], now: datetime | None = None
) -> None:
    """Record a starting worker and the tasks it serves; task queues take its limits, and the
    tasks' declared schedules (@task(cron=...)) are synced in every environment."""
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
        Worker.objects.update_or_create(
            hostname=hostname,
            defaults={"queues": queues, "tasks": [s.id for s in specs], "started_at": now, "last_seen_at": now},
        )
        events.wake_engine()


def worker_seen(*, hostname: str, now: datetime | None = None) -> None:
    Worker.objects.filter(hostname=hostname).update(last_seen_at=now or timezone.now())


def unregister_worker(*, hostname: str) -> None:
    Worker.objects.filter(hostname=hostname).delete()
