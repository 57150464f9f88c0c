"""Queues as the API and the Python SDK give them: the reference's QueueItem (V1)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count

from runs.engine.queues import task_queue_name
from runs.models import Queue, Run
from runs.states import ACTIVE_STATUSES, RunStatus

TASK_PREFIX = task_queue_name("")


def items(queues: list[Queue], now: datetime) -> list[dict[str, Any]]:
    """QueueItem (V1) of each queue, its run counts read in one query."""
    counts: dict[tuple[str, str], int] = {}
    if queues:
        rows = (
            Run.objects.filter(
                environment_id=queues[0].environment_id,
                queue__in=[queue.name for queue in queues],
                status__in=[RunStatus.QUEUED, *ACTIVE_STATUSES],
            )
            .values_list("queue", "status")
            .annotate(n=Count("id"))
            .order_by()
        )
        counts = {(name, status): n for name, status, n in rows}
    return [item(queue, now, counts) for queue in queues]


def item(queue: Queue, now: datetime, counts: dict[tuple[str, str], int]) -> dict[str, Any]:
    is_task = queue.name.startswith(TASK_PREFIX)
    override = queue.override_as_of(now)
    by = queue.limit_overridden_by if override is not None else ""
    return {
        "id": queue.public_id,
        "name": queue.name.removeprefix(TASK_PREFIX) if is_task else queue.name,
        "type": "task" if is_task else "custom",
        "running": sum(counts.get((queue.name, status), 0) for status in ACTIVE_STATUSES),
        "queued": counts.get((queue.name, RunStatus.QUEUED), 0),
        "paused": queue.paused_as_of(now),
        "concurrencyLimit": queue.limit_as_of(now),
        "concurrency": {
            "current": queue.limit_as_of(now),
            "base": queue.concurrency_limit,
            "override": override,
            "overriddenAt": queue.limit_overridden_at.isoformat()
            if override is not None and queue.limit_overridden_at
            else None,
            # The reference leaves it null for an override made through the API.
            "overriddenBy": by.removeprefix("user:") if by and not by.startswith("api:") else None,
        },
    }
