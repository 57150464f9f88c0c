"""Operator controls on queues: pause and resume, override and reset the concurrency limit.

A pause or an override is kept beside the queue's base limit (the task decorator's, rewritten
by every worker start), so neither is lost when workers or the engine restart. Admission
(runs.engine.scheduler) reads both by the tick's clock; lift_expired_controls clears those whose
time has passed. Each call writes an AuditEntry in its transaction, and changes no run: runs
of a paused queue stay QUEUED, so nothing is published per run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from runs import events
from runs.engine.core import ENGINE, Actor, EngineError, audit
from runs.engine.pauses import REASON_LENGTH, lift_expired_pauses
from runs.models import QUEUE_ID_PREFIX, Queue

MAX_LIMIT = 100_000  # the reference's bound on a concurrency limit
QUEUE_KINDS = ("id", "task", "custom")


class QueueNotFound(EngineError):
    pass


def find_queue(*, environment_id: int, ref: str, kind: str) -> Queue:
    """The environment's queue named by `ref`: a queue id ("id"), a task id ("task") or a queue
    name ("custom"). Raises QueueNotFound."""
    queues = Queue.objects.filter(environment_id=environment_id)
    if kind == "id":
        number = ref.removeprefix(QUEUE_ID_PREFIX)
        # At most 18 digits: a longer number is no primary key, and PostgreSQL refuses it.
        valid = ref.startswith(QUEUE_ID_PREFIX) and number.isascii() and number.isdigit() and len(number) <= 18
        found = queues.filter(pk=int(number)).first() if valid else None
    else:
        found = queues.filter(name=task_queue_name(ref) if kind == "task" else ref).first()
    if found is None:
        raise QueueNotFound(f"No queue with {kind} {ref!r} in this environment")
    return found


def task_queue_name(task_id: str) -> str:
    """The queue a task gets when it names none (runs.registry, runs.engine.triggering)."""
    return f"task/{task_id}"


def pause_queue(
    *,
    queue_id: int,
    actor: Actor,
    reason: str = "",
    resume_at: datetime | None = None,
    user: Any = None,
    now: datetime | None = None,
) -> Queue:
    """Stop admitting runs from the queue, until resume_queue or resume_at; a queue already
    paused keeps its pause. Raises QueueNotFound, EngineError (resume_at not in the future)."""
    now = now or timezone.now()
    if resume_at is not None and resume_at <= now:
        raise EngineError("resume_at must be in the future")
    with transaction.atomic():
        queue = _locked(queue_id)
        changed = not queue.paused_as_of(now)
        if changed:
            queue.paused_at, queue.paused_by, queue.pause_reason = now, actor, reason[:REASON_LENGTH]
            queue.resume_at = resume_at
            queue.save(update_fields=["paused_at", "paused_by", "pause_reason", "resume_at"])
        data = {"changed": changed, "resume_at": resume_at.isoformat() if resume_at else None}
        _audit(queue, "queue.pause", actor=actor, user=user, reason=reason, now=now, data=data)
    return queue


def resume_queue(
    *, queue_id: int, actor: Actor, reason: str = "", user: Any = None, now: datetime | None = None
) -> Queue:
    """Admit runs from the queue again and wake the engine; a queue not paused is left as it is.
    Raises QueueNotFound."""
    now = now or timezone.now()
    with transaction.atomic():
        queue = _locked(queue_id)
        changed = queue.paused_at is not None
        if changed:
            _clear_pause(queue)
            events.wake_engine()
        _audit(queue, "queue.resume", actor=actor, user=user, reason=reason, now=now, data={"changed": changed})
    return queue


def override_queue_limit(
    *,
    queue_id: int,
    limit: int,
    actor: Actor,
    until: datetime | None = None,
    reason: str = "",
    user: Any = None,
    now: datetime | None = None,
) -> Queue:
    """Set the queue's concurrency limit in place of its base, until reset_queue_limit or
    `until`. Raises QueueNotFound, EngineError (limit outside 0..MAX_LIMIT, until not in the
    future)."""
    now = now or timezone.now()
    if not 0 <= limit <= MAX_LIMIT:
        raise EngineError(f"concurrencyLimit must be between 0 and {MAX_LIMIT}")
    if until is not None and until <= now:
        raise EngineError("until must be in the future")
    with transaction.atomic():
        queue = _locked(queue_id)
        before = queue.limit_as_of(now)
        queue.limit_override, queue.limit_overridden_at, queue.limit_overridden_by = limit, now, actor
        queue.limit_override_until = until
        queue.save(update_fields=[*_OVERRIDE_FIELDS])
        data = {"limit": limit, "was": before, "until": until.isoformat() if until else None}
        _audit(queue, "queue.limit_override", actor=actor, user=user, reason=reason, now=now, data=data)
        events.wake_engine()  # a raised limit frees slots
    return queue


def reset_queue_limit(
    *, queue_id: int, actor: Actor, reason: str = "", user: Any = None, now: datetime | None = None
) -> Queue:
    """Drop the queue's override, back to its base limit, and wake the engine. Raises QueueNotFound."""
    now = now or timezone.now()
    with transaction.atomic():
        queue = _locked(queue_id)
        changed = queue.limit_override is not None
        if changed:
            data = {"changed": True, "was": queue.limit_override, "limit": queue.concurrency_limit}
            _clear_override(queue)
            events.wake_engine()
        else:
            data = {"changed": False, "limit": queue.concurrency_limit}
        _audit(queue, "queue.limit_reset", actor=actor, user=user, reason=reason, now=now, data=data)
    return queue


def lift_expired_controls(*, now: datetime) -> int:
    """Clear (and audit, as the engine) pauses (of queues, tasks and environments) whose
    resume_at and overrides whose until have passed by `now`; returns how many. Admission
    already ignores them by then."""
    lifted = lift_expired_pauses(now=now)
    with transaction.atomic():
        # SKIP LOCKED: a queue an operator (or another engine) holds is left to the next tick.
        for queue in Queue.objects.select_for_update(skip_locked=True).filter(resume_at__lte=now):
            _clear_pause(queue)
            _audit(queue, "queue.resume", actor=ENGINE, reason="its resume time came", now=now, data={"changed": True})
            lifted += 1
        for queue in Queue.objects.select_for_update(skip_locked=True).filter(limit_override_until__lte=now):
            data = {"changed": True, "was": queue.limit_override, "limit": queue.concurrency_limit}
            _clear_override(queue)
            _audit(queue, "queue.limit_reset", actor=ENGINE, reason="its override expired", now=now, data=data)
            lifted += 1
    return lifted


_PAUSE_FIELDS = ("paused_at", "paused_by", "pause_reason", "resume_at")
_OVERRIDE_FIELDS = ("limit_override", "limit_overridden_at", "limit_overridden_by", "limit_override_until")


def _locked(queue_id: int) -> Queue:
    # The row lock admission takes (scheduler._admit_queue): once this commits, no admission
    # that read the old state is still running.
    queue = Queue.objects.select_for_update().filter(pk=queue_id).first()
    if queue is None:
        raise QueueNotFound(f"Queue {QUEUE_ID_PREFIX}{queue_id} not found")
    return queue


def _clear_pause(queue: Queue) -> None:
    queue.paused_at, queue.paused_by, queue.pause_reason, queue.resume_at = None, "", "", None
    queue.save(update_fields=[*_PAUSE_FIELDS])


def _clear_override(queue: Queue) -> None:
    queue.limit_override, queue.limit_overridden_at, queue.limit_overridden_by = None, None, ""
    queue.limit_override_until = None
    queue.save(update_fields=[*_OVERRIDE_FIELDS])


def _audit(
    queue: Queue, action: str, *, actor: Actor, reason: str, now: datetime, data: dict[str, Any], user: Any = None
) -> None:
    audit(
        action=action,
        target=queue.public_id,
        actor=actor,
        now=now,
        environment_id=queue.environment_id,
        user=user,
        reason=reason,
        data={"queue": queue.name, **data},
    )
