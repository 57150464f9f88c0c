"""Runs in the wire protocol's shapes (reference section 3.4).

The SDK parses responses with zod: an optional field must be absent, never null, so every
schema object goes through `_present`. User data (payload, output, metadata) is left as is.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.http import HttpRequest

from api.packets import download_url
from runs import packets, schedule_items
from runs.models import Environment, Run, Schedule
from runs.options import format_duration
from runs.states import RunStatus, api_flags

log = logging.getLogger(__name__)


def run_detail(
    run: Run, children: list[Run], *, request: HttpRequest | None = None, schedule: Schedule | None = None
) -> dict[str, Any]:
    """RetrieveRunResponse: the run, its payload, output, error, related runs and the schedule
    that fired it (given when it still exists).

    An offloaded payload or output is a signed URL instead (`payloadPresignedUrl`,
    `outputPresignedUrl`), absolute for `request`; without a request it is left out.
    """
    related: dict[str, Any] = {"children": [related_run(child) for child in children]}
    if run.parent is not None:
        related["parent"] = related_run(run.parent)
    if run.root is not None:
        related["root"] = related_run(run.root)
    data = related_run(run)
    data.update(_packet(run, "payload", run.payload, run.payload_type, request))
    if run.status == RunStatus.COMPLETED:
        data.update(_packet(run, "output", run.output, run.output_type, request))
    if run.error is not None and run.status != RunStatus.COMPLETED:
        data["error"] = run_error(run.error)
    if schedule is not None:
        data["schedule"] = schedule_items.run_schedule(schedule)
    data["relatedRuns"] = related
    data["attemptCount"] = run.attempt_count
    data.update(run_options(run))
    return _present(data)


def run_options(run: Run) -> dict[str, Any]:
    """Runyard's additions to the retrieve shape: every option the run was triggered with.

    None of these names is in the SDK's schema, so the official SDK ignores them.
    """
    return _present(
        {
            "queue": run.queue,
            "concurrencyKey": run.concurrency_key or None,
            "machine": run.machine,
            "maxAttempts": run.max_attempts,
            "maxDuration": run.max_duration,
            "priority": run.priority_ms / 1000 if run.priority_ms else None,
            "idempotencyKeyExpiresAt": _date(run.idempotency_key_expires_at),
            "debounce": run.debounce,
            "triggerOptions": run.options or None,
        }
    )


def related_run(run: Run) -> dict[str, Any]:
    """The common run fields (`id` to `batchId`), without payload, output or error."""
    return _present(
        {
            "id": run.id,
            "status": run.status,
            "taskIdentifier": run.task_identifier,
            "idempotencyKey": run.idempotency_key_user or run.idempotency_key or None,
            **api_flags(run.status),
            "isTest": run.is_test,
            "createdAt": _date(run.created_at),
            "updatedAt": _date(run.updated_at),
            "startedAt": _date(run.started_at),
            "finishedAt": _date(run.finished_at),
            "delayedUntil": _date(run.delay_until),
            "ttl": format_duration(run.ttl) if run.ttl else None,
            "expiredAt": _date(run.expired_at),
            "tags": sorted(run.tags),
            "costInCents": 0,
            "baseCostInCents": 0,
            "durationMs": _duration_ms(run.started_at, run.finished_at),
            "metadata": run.metadata,
            "taskKind": "SCHEDULED" if run.schedule_id else "STANDARD",
            "region": run.region or None,
            "depth": run.depth,
            "triggerFunction": run.trigger_function,
            "batchId": run.batch_id,
        }
    )


def run_list_item(run: Run, environment: Environment) -> dict[str, Any]:
    """ListRunItem (reference 3.5): the common run fields and the run's environment."""
    return {**related_run(run), "env": {"id": str(environment.pk), "name": environment.slug}}


def run_error(error: Any) -> dict[str, Any]:
    """The TaskRunError shape: a string message, optional name and stackTrace."""
    if not isinstance(error, dict):
        return {"message": str(error)}
    return _present(
        {
            "message": str(error.get("message") or "Unknown error"),
            "name": _string(error.get("name")),
            "stackTrace": _string(error.get("stackTrace")),
        }
    )


def _packet(run: Run, what: str, data: str | None, content_type: str, request: HttpRequest | None) -> dict[str, Any]:
    """{what: value}, or {whatPresignedUrl: url} for a packet in object storage."""
    if content_type == packets.STORE:
        if request is None or not data:
            return {}
        return {f"{what}PresignedUrl": download_url(request, run.environment_id, data)}
    try:
        return {what: packets.decode(data, content_type)}
    except packets.PacketError:
        # Stored packets are checked on the way in; a bad one must not break the whole run.
        log.warning("run %s has an unreadable %s", run.id, what)
        return {what: None}


def _date(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _duration_ms(started: datetime | None, finished: datetime | None) -> int:
    if started is None or finished is None:
        return 0
    return max(round((finished - started).total_seconds() * 1000), 0)


def _string(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _present(data: dict[str, Any]) -> dict[str, Any]:
    """Drop absent optional fields (None)."""
    return {key: value for key, value in data.items() if value is not None}
