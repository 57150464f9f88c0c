"""Schedules: creating, changing and removing them; firing their ticks.

The engine owns a schedule's state as it owns a run's. next_fire_at is the next tick that
has not been handled; firing a tick (fire_due_schedules) moves it on in the same
transaction that makes the run and records the tick. Every operator change is audited in
its transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from runs import cron, events
from runs.engine.core import Actor, EngineError
from runs.models import AuditEntry, Environment, Schedule, ScheduleType
from runs.schedule_spec import ScheduleSpec

REASON_LENGTH = 512


class ScheduleNotFound(EngineError):
    pass


class DeclarativeSchedule(EngineError):
    """A change that only the task's code may make to a schedule it declares."""


def find_schedule(*, environment_id: int, schedule_id: str) -> Schedule:
    """The environment's schedule by id. Raises ScheduleNotFound."""
    found = Schedule.objects.filter(environment_id=environment_id, pk=schedule_id).first()
    if found is None:
        raise ScheduleNotFound(f"No schedule with id {schedule_id[:64]!r} in this environment")
    return found


def create_schedule(
    *,
    environment: Environment,
    spec: ScheduleSpec,
    actor: Actor,
    type: str = ScheduleType.IMPERATIVE,
    user: Any = None,
    now: datetime | None = None,
) -> tuple[Schedule, bool]:
    """A new schedule, or the one with the spec's deduplication key updated to the spec:
    (schedule, created). Raises DeclarativeSchedule if that one is declared in code and this
    call is not."""
    now = now or timezone.now()
    try:
        return _upsert(environment, spec, actor, type, user, now)
    except IntegrityError:
        # Two creates of one new key at once: neither saw a row to lock, the second's insert
        # waited on the unique key for the first's commit and failed. It is an update now.
        if spec.deduplication_key is None:
            raise
        return _upsert(environment, spec, actor, type, user, now)


def _upsert(
    environment: Environment, spec: ScheduleSpec, actor: Actor, type: str, user: Any, now: datetime
) -> tuple[Schedule, bool]:
    with transaction.atomic():
        existing = None
        if spec.deduplication_key is not None:
            existing = (
                Schedule.objects.select_for_update()
                .filter(environment=environment, deduplication_key=spec.deduplication_key)
                .first()
            )
        if existing is not None:
            if existing.type != type:
                raise DeclarativeSchedule(_declared(existing))
            _apply(existing, spec, now)
            existing.save()
            _audit(existing, "schedule.update", actor=actor, user=user, now=now)
            return existing, False
        schedule = Schedule(environment=environment, type=type, created_at=now, created_by=actor)
        schedule.deduplication_key = spec.deduplication_key
        _apply(schedule, spec, now)
        schedule.save(force_insert=True)
        _audit(schedule, "schedule.create", actor=actor, user=user, now=now)
    return schedule, True


def update_schedule(
    *,
    environment_id: int,
    schedule_id: str,
    spec: ScheduleSpec,
    actor: Actor,
    user: Any = None,
    now: datetime | None = None,
) -> Schedule:
    """Replace an imperative schedule's task, cron, time zone and the rest (its
    deduplication key stays). Raises ScheduleNotFound, DeclarativeSchedule."""
    now = now or timezone.now()
    with transaction.atomic():
        schedule = _locked(environment_id, schedule_id)
        if schedule.type == ScheduleType.DECLARATIVE:
            raise DeclarativeSchedule(_declared(schedule))
        _apply(schedule, spec.with_changes(deduplication_key=schedule.deduplication_key), now)
        schedule.save()
        _audit(schedule, "schedule.update", actor=actor, user=user, now=now)
    return schedule


def set_schedule_active(
    *,
    environment_id: int,
    schedule_id: str,
    active: bool,
    actor: Actor,
    reason: str = "",
    user: Any = None,
    now: datetime | None = None,
) -> Schedule:
    """Activate (its next tick is the first after now: none missed while inactive is fired)
    or deactivate a schedule. Raises ScheduleNotFound."""
    now = now or timezone.now()
    with transaction.atomic():
        schedule = _locked(environment_id, schedule_id)
        changed = schedule.active != active
        if changed:
            schedule.active = active
            schedule.next_fire_at = _next_fire(schedule, now)
            schedule.updated_at = now
            schedule.save(update_fields=["active", "next_fire_at", "updated_at"])
        action = "schedule.activate" if active else "schedule.deactivate"
        _audit(schedule, action, actor=actor, user=user, now=now, reason=reason, data={"changed": changed})
    return schedule


def delete_schedule(
    *,
    environment_id: int,
    schedule_id: str,
    actor: Actor,
    user: Any = None,
    now: datetime | None = None,
) -> Schedule:
    """Delete an imperative schedule and its ticks; its runs stay, still naming it. Raises
    ScheduleNotFound, DeclarativeSchedule."""
    now = now or timezone.now()
    with transaction.atomic():
        schedule = _locked(environment_id, schedule_id)
        if schedule.type == ScheduleType.DECLARATIVE:
            raise DeclarativeSchedule(_declared(schedule))
        _audit(schedule, "schedule.delete", actor=actor, user=user, now=now)
        schedule.delete()
    return schedule


def upcoming(schedule: Schedule, *, now: datetime | None = None, count: int = cron.UPCOMING) -> list[datetime]:
    """The schedule's next fire times from now (none while inactive)."""
    if not schedule.active:
        return []
    return cron.next_times(schedule.cron, schedule.timezone, now or timezone.now(), count)


def _apply(schedule: Schedule, spec: ScheduleSpec, now: datetime) -> None:
    moved = (schedule.cron, schedule.timezone, schedule.active) != (spec.cron, spec.timezone, spec.active)
    schedule.task_id, schedule.cron, schedule.timezone = spec.task_id, spec.cron, spec.timezone
    schedule.external_id, schedule.payload, schedule.options = spec.external_id, spec.payload, spec.options
    schedule.active, schedule.overlap, schedule.missed = spec.active, spec.overlap, spec.missed
    schedule.updated_at = now
    if moved or schedule.next_fire_at is None:
        schedule.next_fire_at = _next_fire(schedule, now)
    events.wake_engine()


def _next_fire(schedule: Schedule, now: datetime) -> datetime | None:
    return cron.next_time(schedule.cron, schedule.timezone, now) if schedule.active else None


def _locked(environment_id: int, schedule_id: str) -> Schedule:
    # The row lock the engine takes to fire a tick: a change never races a fire.
    found = Schedule.objects.select_for_update().filter(environment_id=environment_id, pk=schedule_id).first()
    if found is None:
        raise ScheduleNotFound(f"No schedule with id {schedule_id[:64]!r} in this environment")
    return found


def _declared(schedule: Schedule) -> str:
    return f"Schedule {schedule.id} is declared by task {schedule.task_id}'s code: change it there"


def _audit(
    schedule: Schedule,
    action: str,
    *,
    actor: Actor,
    now: datetime,
    user: Any = None,
    reason: str = "",
    data: dict[str, Any] | None = None,
) -> None:
    AuditEntry.objects.create(
        at=now,
        user=user,
        username=actor.removeprefix("user:")[:150],
        environment_id=schedule.environment_id,
        action=action,
        target=schedule.id,
        reason=reason[:REASON_LENGTH],
        data={"task": schedule.task_id, "cron": schedule.cron, "timezone": schedule.timezone, **(data or {})},
    )
