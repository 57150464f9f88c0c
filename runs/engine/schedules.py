"""Schedules: creating, changing and removing them; firing their ticks.

The engine owns a schedule's state as it owns a run's. next_fire_at is the next tick that
has not been handled; firing a tick (fire_due_schedules) moves it on in the same
transaction that makes the run and records the tick. Every operator change is audited in
its transaction.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from runs import celery_serving, cron, events, packets, registry
from runs.engine.core import Actor, EngineError, audit, record
from runs.engine.triggering import trigger
from runs.models import (
    Environment,
    Missed,
    Overlap,
    Run,
    Schedule,
    ScheduleTick,
    ScheduleType,
    TaskDefinition,
)
from runs.options import OptionError, parse_trigger_options
from runs.schedule_spec import ScheduleSpec
from runs.states import FINAL_STATUSES

log = logging.getLogger(__name__)

REASON_LENGTH = 512
FIRE_BATCH = 100  # schedules one engine tick fires; the others stay due for the next tick
# A tick handled within this long after its time is on time; later, it was missed (no engine
# ran then) and the schedule's `missed` policy applies. The engine wakes at a tick's time, so
# only an engine down (or a database unreachable) for this long misses one.
MISSED_GRACE = timedelta(minutes=1)
SOURCE = "schedule"  # the reference's TriggerSource of a run its schedule made
# The key of the schedule's own payload in a Runyard task's scheduled payload.
PAYLOAD_KEY = "payload"


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
            if active:
                events.wake_engine()  # its first tick may come before the engine's next poll
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


def fire_due_schedules(*, now: datetime) -> int:
    """Handle every tick due by `now` of up to FIRE_BATCH schedules; returns the runs made.

    Each schedule is one transaction: its row locked (SKIP LOCKED: one another engine is
    firing is its own), its run made, its tick recorded and next_fire_at moved past `now`.
    A crash before the commit leaves all of it undone and the tick due for whoever comes
    next; the unique (schedule, at) of ticks is the backstop against a second fire.
    """
    due = Schedule.objects.filter(next_fire_at__lte=now).order_by("next_fire_at").values_list("id", flat=True)
    fired = 0
    for schedule_id in list(due[:FIRE_BATCH]):
        try:
            with transaction.atomic():
                fired += _fire_locked(schedule_id, now)
        except IntegrityError:
            log.warning("schedule %s: its tick was already recorded; nothing fired", schedule_id, exc_info=True)
            _pass_over(schedule_id, now, "")
        except DatabaseError:
            raise  # the database is unreachable: the engine's tick is retried as a whole
        except Exception as exc:
            # A schedule that cannot fire must not stop the others, nor be tried again at each
            # of the engine's ticks: its tick is recorded as skipped with the error.
            log.exception("schedule %s could not fire", schedule_id)
            _pass_over(schedule_id, now, f"could not fire: {type(exc).__name__}: {exc}")
    return fired


def _pass_over(schedule_id: str, now: datetime, reason: str) -> None:
    """Move a schedule whose tick could not be fired past `now`, recording the tick as
    skipped with `reason` (none: an earlier engine recorded it)."""
    with transaction.atomic():
        schedule = (
            Schedule.objects.select_for_update(skip_locked=True).filter(pk=schedule_id, next_fire_at__lte=now).first()
        )
        if schedule is None or schedule.next_fire_at is None:
            return
        if reason and not ScheduleTick.objects.filter(schedule=schedule, at=schedule.next_fire_at).exists():
            _skip(schedule, schedule.next_fire_at, now, reason)
        schedule.next_fire_at = cron.next_time(schedule.cron, schedule.timezone, now)
        schedule.save(update_fields=["next_fire_at"])


def run_schedule_now(
    *,
    environment_id: int,
    schedule_id: str,
    actor: Actor,
    user: Any = None,
    now: datetime | None = None,
) -> Run:
    """Fire the schedule once now, outside its cron, whether active or not and whatever its
    overlap policy (an operator asked): its next tick stays where it was. Raises
    ScheduleNotFound, OptionError for options that no longer parse."""
    now = now or timezone.now()
    with transaction.atomic():
        schedule = _locked(environment_id, schedule_id)
        run = _make_run(schedule, now, now, reason=f"run now by {actor}", actor=actor)
        schedule.last_run_id = run.id
        schedule.save(update_fields=["last_run_id"])
        _audit(schedule, "schedule.run_now", actor=actor, user=user, now=now, data={"run": run.id})
    return run


def _fire_locked(schedule_id: str, now: datetime) -> int:
    # of=self: the environment is read, not locked (another engine may fire its other schedules).
    schedule = (
        Schedule.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("environment")
        .filter(pk=schedule_id, next_fire_at__lte=now)
        .first()
    )
    if schedule is None or schedule.next_fire_at is None:
        return 0  # another engine holds it, or fired it since we looked
    count, latest, before = cron.due_times(schedule.cron, schedule.timezone, schedule.next_fire_at, now)
    on_time = now - latest <= MISSED_GRACE
    missed = count - 1 if on_time else count
    last_missed = before if on_time else latest
    reason = _missed_reason(missed, schedule.next_fire_at, last_missed) if missed and last_missed else ""
    fired = 0
    if reason and schedule.missed == Missed.SKIP:
        assert last_missed is not None
        _skip(schedule, last_missed, now, f"{reason}: skipped")
    if on_time or schedule.missed == Missed.ONCE:
        fired = _fire_tick(schedule, latest, now, f"; {reason}: fired once" if reason else "")
    schedule.next_fire_at = cron.next_time(schedule.cron, schedule.timezone, now)
    schedule.save(update_fields=["next_fire_at", "last_fired_at", "last_run_id"])
    return fired


def _missed_reason(missed: int, first: datetime, last: datetime) -> str:
    many = f"more than {cron.MAX_COUNTED}" if missed > cron.MAX_COUNTED else str(missed)
    ticks = "tick" if missed == 1 else "ticks"
    span = _iso(first) if missed == 1 else f"{_iso(first)} to {_iso(last)}"
    return f"{many} {ticks} missed while no engine ran ({span})"


def _fire_tick(schedule: Schedule, at: datetime, now: datetime, note: str) -> int:
    """The tick's run, or a skipped tick if the overlap policy or the options say so."""
    if schedule.overlap == Overlap.SKIP and schedule.last_run_id:
        status = Run.objects.filter(pk=schedule.last_run_id).values_list("status", flat=True).first()
        if status is not None and status not in FINAL_STATUSES:
            _skip(schedule, at, now, f"previous run {schedule.last_run_id} is still {status}")
            return 0
    try:
        run = _make_run(schedule, at, now, reason=f"tick at {_iso(at)}{note}", actor=f"schedule:{schedule.id}")
    except OptionError as exc:  # raised before anything is written
        _skip(schedule, at, now, f"cannot trigger {schedule.task_id}: {exc}")
        return 0
    ScheduleTick.objects.create(schedule=schedule, at=at, recorded_at=now, run_id=run.id)
    schedule.last_fired_at, schedule.last_run_id = at, run.id
    return 1


def _skip(schedule: Schedule, at: datetime, now: datetime, reason: str) -> None:
    ScheduleTick.objects.create(schedule=schedule, at=at, recorded_at=now, skipped=reason[:256])


def _make_run(schedule: Schedule, at: datetime, now: datetime, *, reason: str, actor: Actor) -> Run:
    """The run of one fire of the schedule, for the tick `at`; its timeline says why."""
    options = parse_trigger_options(schedule.options, now)
    options.schedule_id = schedule.id
    payload, payload_type = scheduled_payload(schedule, at, celery=_is_celery_task(schedule.task_id))
    run = trigger(
        environment=schedule.environment,
        task_id=schedule.task_id,
        payload=payload,
        payload_type=payload_type,
        options=options,
        actor=actor,
        source=SOURCE,
        now=now,
    ).run
    data = {"schedule": schedule.id, "tick": _iso(at)}
    why = f"fired by schedule {schedule.id}: {reason}"
    record(run, run.status, run.status, actor=actor, reason=why, now=now, data=data)
    return run


def scheduled_payload(schedule: Schedule, at: datetime, *, celery: bool = False) -> tuple[str, str]:
    """The run's payload and its type for the tick `at`.

    A Runyard task gets the reference's scheduled payload as SuperJSON, which the official
    SDK reads with its dates as Date objects (Python tasks see the ISO strings), and the
    schedule's own payload under PAYLOAD_KEY. A plain Celery task is called as beat called
    it: the schedule's payload is its {"args": [...], "kwargs": {...}}.
    """
    if celery:
        return json.dumps(celery_arguments(schedule.payload), separators=(",", ":")), packets.JSON
    value: dict[str, Any] = {"scheduleId": schedule.id, "type": schedule.type, "timestamp": _iso(at)}
    dates = ["timestamp"]
    if schedule.last_fired_at is not None:
        value["lastTimestamp"] = _iso(schedule.last_fired_at)
        dates.append("lastTimestamp")
    if schedule.external_id is not None:
        value["externalId"] = schedule.external_id
    value["timezone"] = schedule.timezone
    value["upcoming"] = [_iso(t) for t in cron.next_times(schedule.cron, schedule.timezone, at, cron.UPCOMING)]
    dates += [f"upcoming.{i}" for i in range(len(value["upcoming"]))]
    if schedule.payload is not None:
        value[PAYLOAD_KEY] = schedule.payload
    meta = {"values": {path: ["Date"] for path in dates}}
    return json.dumps({"json": value, "meta": meta}, separators=(",", ":")), packets.SUPERJSON


def celery_arguments(payload: Any) -> dict[str, Any]:
    """A plain Celery task's {"args", "kwargs"} from a schedule's payload: that form as it is,
    none for no payload, else the payload as the one positional argument."""
    if payload is None:
        return {"args": [], "kwargs": {}}
    if isinstance(payload, dict) and payload and set(payload) <= {"args", "kwargs"}:
        args, kwargs = payload.get("args", []), payload.get("kwargs", {})
        if isinstance(args, list) and isinstance(kwargs, dict):
            return {"args": args, "kwargs": kwargs}
    return {"args": [payload], "kwargs": {}}


def _is_celery_task(task_id: str) -> bool:
    """Whether the task is a plain Celery task: its worker says so (a Celery queue), or, while
    no worker serves it yet, RUNYARD_CELERY_TASKS adopts its name."""
    queue = TaskDefinition.objects.filter(task_id=task_id).values_list("celery_queue", flat=True).first()
    return bool(queue) if queue is not None else celery_serving.adopts(task_id)


def _iso(moment: datetime) -> str:
    """JavaScript's Date.toISOString(): UTC, milliseconds, Z."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


DECLARED_PREFIX = "declared:"  # the deduplication key of a task's declared schedule: declared:<task id>


def sync_declared_schedules(*, specs: list[registry.TaskSpec], actor: Actor, now: datetime) -> None:
    """Make each environment's declarative schedules match the tasks' code (a worker serving
    them registers): created, updated when the cron changes, deleted when it goes. An
    operator's activation or deactivation stays; an imperative schedule holding the key is
    left alone (logged)."""
    keys = {f"{DECLARED_PREFIX}{spec.id}": spec for spec in specs}
    existing = {
        (found.environment_id, found.deduplication_key): found
        for found in Schedule.objects.select_for_update().filter(
            type=ScheduleType.DECLARATIVE, deduplication_key__in=list(keys)
        )
    }
    for environment in Environment.objects.all():
        for key, spec in keys.items():
            found = existing.get((environment.pk, key))
            if spec.schedule is None:
                if found is not None:
                    _audit(found, "schedule.delete", actor=actor, now=now, reason="the task no longer declares a cron")
                    found.delete()
                continue
            wanted = _declared_spec(spec, key, active=found.active if found else True)
            if found is None or not _matches(found, wanted):
                _sync_one(environment, wanted, actor, now)


def _declared_spec(spec: registry.TaskSpec, key: str, *, active: bool) -> ScheduleSpec:
    declared = spec.schedule
    assert declared is not None
    return ScheduleSpec(
        task_id=spec.id,
        cron=declared.cron,
        timezone=declared.timezone,
        deduplication_key=key,
        active=active,
        overlap=declared.overlap,
        missed=declared.missed,
    )


def _matches(schedule: Schedule, spec: ScheduleSpec) -> bool:
    fields = ("task_id", "cron", "timezone", "external_id", "payload", "options", "active", "overlap", "missed")
    return all(getattr(schedule, name) == getattr(spec, name) for name in fields)


def _sync_one(environment: Environment, spec: ScheduleSpec, actor: Actor, now: datetime) -> None:
    try:
        create_schedule(environment=environment, spec=spec, actor=actor, type=ScheduleType.DECLARATIVE, now=now)
    except DeclarativeSchedule:
        log.warning(
            "task %s declares a cron, but %s's imperative schedule %r holds its key: left as it is",
            spec.task_id,
            environment.slug,
            spec.deduplication_key,
        )


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
    audit(
        action=action,
        target=schedule.id,
        actor=actor,
        now=now,
        environment_id=schedule.environment_id,
        user=user,
        reason=reason,
        data={"task": schedule.task_id, "cron": schedule.cron, "timezone": schedule.timezone, **(data or {})},
    )
