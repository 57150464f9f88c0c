"""Operator pauses of a task (in one environment) and of a whole environment.

The same rules as a queue's pause (runs.engine.queues): a reason, an optional resume time in
the future, an AuditEntry in the same transaction, a second pause keeps the first, a resume
wakes the engine, and lift_expired_pauses clears those whose time has passed. No run changes:
held runs stay QUEUED, delays still end and TTLs still count.

Admission (runs.engine.scheduler._admit_queue) reads both pauses once it holds a queue's row
lock. Pausing takes the row locks of the environment's queues first, so once a pause commits,
no admission that read the state before it is still running.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import OuterRef, QuerySet
from django.utils import timezone

from runs import events
from runs.engine.core import ENGINE, Actor, EngineError, audit
from runs.holds import paused_now
from runs.models import Environment, Pausable, Queue, Run, TaskDefinition, TaskPause

REASON_LENGTH = 512  # Pausable.pause_reason


class TaskNotFound(EngineError):
    pass


def task_target(task_id: str) -> str:
    """How the audit log names a task."""
    return f"task:{task_id}"


def task_known(*, environment_id: int, task_id: str) -> bool:
    """A task a worker serves, or one the environment has a run or a pause of."""
    return (
        TaskDefinition.objects.filter(task_id=task_id).exists()
        or TaskPause.objects.filter(environment_id=environment_id, task_id=task_id).exists()
        or Run.objects.filter(environment_id=environment_id, task_identifier=task_id).exists()
    )


def pause_task(
    *,
    environment_id: int,
    task_id: str,
    actor: Actor,
    reason: str = "",
    resume_at: datetime | None = None,
    user: Any = None,
    now: datetime | None = None,
) -> TaskPause:
    """Stop admitting the task's runs in the environment (other tasks of its queues still run),
    until resume_task or resume_at; a task already paused keeps its pause. Raises TaskNotFound,
    EngineError (reason too long, resume_at not in the future)."""
    now = now or timezone.now()
    _check(reason, resume_at, now)
    with transaction.atomic():
        environment = _hold_admission(environment_id)
        pause = _task_pause(environment, task_id, create=True)
        assert pause is not None
        changed = _set_pause(pause, actor=actor, reason=reason, resume_at=resume_at, now=now)
        data = {"task": task_id, "changed": changed, "resume_at": resume_at.isoformat() if resume_at else None}
        _audit(environment_id, "task.pause", task_target(task_id), actor, user, reason, now, data)
    return pause


def resume_task(
    *, environment_id: int, task_id: str, actor: Actor, reason: str = "", user: Any = None, now: datetime | None = None
) -> TaskPause | None:
    """Admit the task's runs in the environment again and wake the engine; a task not paused is
    left as it is (None: never paused there). Raises TaskNotFound."""
    now = now or timezone.now()
    with transaction.atomic():
        environment = _hold_admission(environment_id)
        pause = _task_pause(environment, task_id, create=False)
        changed = pause is not None and _clear_pause(pause)
        data = {"task": task_id, "changed": changed}
        _audit(environment_id, "task.resume", task_target(task_id), actor, user, reason, now, data)
    return pause


def pause_environment(
    *,
    environment_id: int,
    actor: Actor,
    reason: str = "",
    resume_at: datetime | None = None,
    user: Any = None,
    now: datetime | None = None,
) -> Environment:
    """Stop admitting any run of the environment, until resume_environment or resume_at; an
    environment already paused keeps its pause. Raises EngineError (not found, reason too long,
    resume_at not in the future)."""
    now = now or timezone.now()
    _check(reason, resume_at, now)
    with transaction.atomic():
        environment = _hold_admission(environment_id)
        changed = _set_pause(environment, actor=actor, reason=reason, resume_at=resume_at, now=now)
        data = {"changed": changed, "resume_at": resume_at.isoformat() if resume_at else None}
        _audit(environment_id, "environment.pause", environment.slug, actor, user, reason, now, data)
    return environment


def resume_environment(
    *, environment_id: int, actor: Actor, reason: str = "", user: Any = None, now: datetime | None = None
) -> Environment:
    """Admit the environment's runs again and wake the engine; one not paused is left as it is.
    Raises EngineError (not found)."""
    now = now or timezone.now()
    with transaction.atomic():
        environment = _hold_admission(environment_id)
        changed = _clear_pause(environment)
        _audit(environment_id, "environment.resume", environment.slug, actor, user, reason, now, {"changed": changed})
    return environment


def lift_expired_pauses(*, now: datetime) -> int:
    """Clear (and audit, as the engine) task and environment pauses whose resume_at has passed
    by `now`; returns how many. Admission already ignores them by then."""
    lifted = 0
    reason = "its resume time came"
    with transaction.atomic():
        # SKIP LOCKED: a row an operator holds is left to the next tick.
        for environment in Environment.objects.select_for_update(skip_locked=True, no_key=True).filter(
            resume_at__lte=now
        ):
            _clear_pause(environment)
            _audit(environment.pk, "environment.resume", environment.slug, ENGINE, None, reason, now, {"changed": True})
            lifted += 1
        for pause in TaskPause.objects.select_for_update(skip_locked=True).filter(resume_at__lte=now):
            _clear_pause(pause)
            data = {"task": pause.task_id, "changed": True}
            _audit(pause.environment_id, "task.resume", task_target(pause.task_id), ENGINE, None, reason, now, data)
            lifted += 1
    return lifted


def paused_tasks(*, environment_id: int | OuterRef, now: datetime) -> QuerySet[TaskPause]:
    """The environment's task pauses in force at `now` (of an outer query's environment, by an
    OuterRef)."""
    return TaskPause.objects.filter(paused_now(now), environment_id=environment_id)  # type: ignore[misc]


_PAUSE_FIELDS = ["paused_at", "paused_by", "pause_reason", "resume_at"]


def _check(reason: str, resume_at: datetime | None, now: datetime) -> None:
    if len(reason) > REASON_LENGTH:
        raise EngineError(f"reason must be at most {REASON_LENGTH} characters")
    if resume_at is not None and resume_at <= now:
        raise EngineError("resume_at must be in the future")


def _hold_admission(environment_id: int) -> Environment:
    # FOR NO KEY UPDATE: serialises the environment's pause actions without waiting for the
    # runs being inserted, whose foreign key holds the row FOR KEY SHARE. Then the queues' row
    # locks, in id order, that admission takes (with SKIP LOCKED, so it never deadlocks here).
    environment = Environment.objects.select_for_update(no_key=True).filter(pk=environment_id).first()
    if environment is None:
        raise EngineError(f"Environment {environment_id} not found")
    list(Queue.objects.select_for_update().filter(environment_id=environment_id).order_by("pk").values_list("pk"))
    return environment


def _task_pause(environment: Environment, task_id: str, *, create: bool) -> TaskPause | None:
    pause = TaskPause.objects.select_for_update().filter(environment=environment, task_id=task_id).first()
    if pause is not None:
        return pause
    if not task_known(environment_id=environment.pk, task_id=task_id):
        raise TaskNotFound(f"No task {task_id!r} in this environment")
    # The environment's row lock (_hold_admission) keeps a second creator out.
    return TaskPause.objects.create(environment=environment, task_id=task_id) if create else None


def _set_pause(row: Pausable, *, actor: Actor, reason: str, resume_at: datetime | None, now: datetime) -> bool:
    if row.paused_as_of(now):
        return False
    row.paused_at, row.paused_by, row.pause_reason, row.resume_at = now, actor, reason, resume_at
    row.save(update_fields=_PAUSE_FIELDS)
    return True


def _clear_pause(row: Pausable) -> bool:
    if row.paused_at is None:
        return False
    row.paused_at, row.paused_by, row.pause_reason, row.resume_at = None, "", "", None
    row.save(update_fields=_PAUSE_FIELDS)
    events.wake_engine()
    return True


def _audit(
    environment_id: int,
    action: str,
    target: str,
    actor: Actor,
    user: Any,
    reason: str,
    now: datetime,
    data: dict[str, Any],
) -> None:
    audit(
        action=action,
        target=target,
        actor=actor,
        now=now,
        environment_id=environment_id,
        user=user,
        reason=reason,
        data=data,
    )
