"""Workers as the REST API and the Python SDK give them (WorkerItem)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from runs.models import Worker


def item(worker: Worker, now: datetime) -> dict[str, Any]:
    alive_since = now - timedelta(seconds=settings.RUNYARD_WORKER_TIMEOUT)
    return {
        "hostname": worker.hostname,
        "queues": list(worker.queues),
        "tasks": list(worker.tasks),
        "startedAt": worker.started_at.isoformat(),
        "lastSeenAt": worker.last_seen_at.isoformat(),
        "online": worker.last_seen_at >= alive_since,
        "draining": worker.draining,
        "drainingSince": worker.draining_at.isoformat() if worker.draining_at else None,
        # Named as the audit log names people: a dashboard user by username, a key as api:<hint>.
        "drainedBy": worker.drained_by.removeprefix("user:") or None,
        "drainReason": worker.drain_reason or None,
    }
