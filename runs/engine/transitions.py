"""The one transition path: every change of a run's status and what must follow it.

The rule (docs: ARCHITECTURE.md, the run ledger): a transition is a compare-and-set on the run's
status, a row locked FOR UPDATE (transition, bulk_transition, move_rows) or an UPDATE ... WHERE
status = <from> (the statements of runs.engine.sql), in the caller's transaction; it stamps
updated_at, and finished_at when the status is final; it appends one timeline RunEvent per run
moved. Then `moved` runs its after-effects: publish after commit (one message per environment),
resume the parents waiting on runs made final, and wake the engine when a run joins a queue or
frees a concurrency slot. A caller finding nothing to move (a stale message, a final run) moves
nothing and is told so: None, or no rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.db import transaction

from runs import events
from runs.models import Run, RunEvent, Waitpoint
from runs.states import ACTIVE_STATUSES, FINAL_STATUSES, RunStatus, can_transition, sources_of

Actor = str  # "engine", "worker:<host>", "api:<key hint>", "user:<username>", "sdk"
ENGINE: Actor = "engine"
Change = Callable[[Run], list[str]]  # sets fields on the locked run, returns their names


class Moved(NamedTuple):
    """A run a transition moved: what its after-effects need to know of it."""

    run_id: str
    environment_id: int
    from_status: str
    queue: str = ""  # for the wake-up of a freed slot (events.wake_engine_for_slot)


def transition(
    run_id: str,
    to_status: str,
    *,
    actor: str,
    now: datetime,
    reason: str = "",
    allowed_from: list[str] | None = None,
    guard: Callable[[Run], bool] | None = None,
    changes: Change | None = None,
    data: dict[str, Any] | None = None,
) -> Run | None:
    """Move run_id to to_status if it is in an allowed status (and guard holds).

    Returns the updated run, or None when nothing changed. Must run inside a transaction.
    """
    sources = allowed_from or sources_of(to_status)
    run = Run.objects.select_for_update().filter(pk=run_id, status__in=sources).first()
    if run is None or (guard is not None and not guard(run)):
        return None
    from_status = run.status
    assert can_transition(from_status, to_status), (from_status, to_status)
    fields = _stamp(run, to_status, now)
    if changes is not None:
        fields += changes(run)
    run.save(update_fields=fields)
    RunEvent.objects.create(
        run=run, at=now, from_status=from_status, to_status=to_status, actor=actor, reason=reason, data=data or {}
    )
    moved([Moved(run.id, run.environment_id, from_status, run.queue)], to_status, now=now)
    return run


def bulk_transition(
    runs: list[Run], to_status: str, *, actor: str, now: datetime, reason: str, changes: Change | None = None
) -> int:
    """Move runs (already locked FOR UPDATE by the caller) to to_status in one statement; a run
    whose status may not go there is left as it is. Returns how many moved."""
    fields = {"status", "updated_at"}
    done, changed = [], []
    for run in runs:
        from_status = run.status
        if not can_transition(from_status, to_status):
            continue
        fields.update(_stamp(run, to_status, now))
        if changes is not None:
            fields.update(changes(run))
        done.append(Moved(run.id, run.environment_id, from_status, run.queue))
        changed.append(run)
    Run.objects.bulk_update(changed, sorted(fields))
    _log(done, to_status, actor=actor, now=now, reasons=lambda _: reason)
    moved(done, to_status, now=now)
    return len(done)


def move_rows(rows: Sequence[Moved], to_status: str, *, actor: str, now: datetime, reasons: Mapping[str, str]) -> None:
    """Move runs already locked FOR UPDATE by the caller, each known by its row (its status as
    locked), to to_status: one UPDATE and one INSERT of their events whatever their number,
    each event with the run's own reason."""
    for row in rows:
        assert can_transition(row.from_status, to_status), (row.from_status, to_status)
    stamps: dict[str, Any] = {"status": to_status, "updated_at": now}
    if to_status in FINAL_STATUSES:
        stamps["finished_at"] = now
    Run.objects.filter(pk__in=[row.run_id for row in rows]).update(**stamps)
    _log(rows, to_status, actor=actor, now=now, reasons=reasons.__getitem__)
    moved(rows, to_status, now=now)


def record(
    run: Run,
    from_status: str,
    to_status: str,
    *,
    actor: str,
    reason: str = "",
    now: datetime,
    data: dict[str, Any] | None = None,
    created: bool = False,
) -> None:
    """Append a timeline event and publish the change after commit (no status changes: a run
    rescheduled, replayed, its idempotency key released)."""
    RunEvent.objects.create(
        run=run, at=now, from_status=from_status, to_status=to_status, actor=actor, reason=reason, data=data or {}
    )
    events.publish_run_changed(environment_id=run.environment_id, run_id=run.id, created=created)


def moved(
    runs: Sequence[Moved], to_status: str, *, now: datetime, awaited: bool | None = None, woke: bool = False
) -> None:
    """What follows moving `runs` to to_status, in the transaction that moved them.

    awaited: False when the caller knows no parent waits on them (the statement asked), None to
    look. woke: the statement already woke the engine for the slots it freed.
    """
    if not runs:
        return
    by_environment: dict[int, list[str]] = {}
    for run in runs:
        by_environment.setdefault(run.environment_id, []).append(run.run_id)
    # One message per environment: a message per run made promoting 10,000 due runs take seconds.
    for environment_id, run_ids in by_environment.items():
        events.publish_runs_changed(environment_id=environment_id, run_ids=run_ids)
    if to_status in FINAL_STATUSES and awaited is not False:
        # No savepoint: in the caller's transaction this adds no statement; outside one (a
        # worker's completion) it makes one, so a parent resumes with the lock it took.
        with transaction.atomic(savepoint=False):
            children_finished([run.run_id for run in runs], now)
    if to_status == RunStatus.QUEUED:
        events.wake_engine()  # a run to admit: admit without waiting for the poll
    elif to_status not in ACTIVE_STATUSES and not woke:
        # A slot freed: admit the next run of a limited queue without waiting for the poll. One
        # NOTIFY either way: of the run's queue if it has a limit, or at once for many runs.
        freed = [run for run in runs if run.from_status in ACTIVE_STATUSES]
        if len(freed) == 1:
            events.wake_engine_for_slot(environment_id=freed[0].environment_id, queue=freed[0].queue)
        elif freed:
            events.wake_engine()


def _stamp(run: Run, to_status: str, now: datetime) -> list[str]:
    """Set the status and its timestamps on a locked run; the names of the fields set."""
    run.status, run.updated_at = to_status, now
    if to_status not in FINAL_STATUSES:
        return ["status", "updated_at"]
    run.finished_at = now
    return ["status", "updated_at", "finished_at"]


def _log(runs: Iterable[Moved], to_status: str, *, actor: str, now: datetime, reasons: Callable[[str], str]) -> None:
    """The timeline events of runs moved, in one INSERT."""
    RunEvent.objects.bulk_create(
        RunEvent(
            run_id=run.run_id,
            at=now,
            from_status=run.from_status,
            to_status=to_status,
            actor=actor,
            reason=reasons(run.run_id),
        )
        for run in runs
    )


# Waiting parents (runs.engine.waiting): resuming a parent whose children are final is an
# after-effect of the children's transition, so it lives here and waiting builds on it.


def children_finished(run_ids: list[str], now: datetime) -> None:
    """In the transaction that made these runs final: resume the parents now free to go on. One
    query finds the parents waiting on any of them (the waitpoint_open_children index); each
    such parent is resolved (and resumed) once."""
    waits = Waitpoint.objects.filter(children__overlap=run_ids, resolved_at__isnull=True)
    for parent_id in sorted(set(waits.values_list("run_id", flat=True))):
        # The parent row lock orders this with suspend_run, so no wake-up is lost.
        parent = Run.objects.select_for_update().get(pk=parent_id)
        if resolve_open_waitpoints(parent, now) and parent.status == RunStatus.WAITING:
            resume_parent(parent, now, allowed_from=RunStatus.WAITING)


def resolve_open_waitpoints(parent: Run, now: datetime) -> bool:
    """Mark open waitpoints whose children are all final; True if none is left open."""
    open_points = list(Waitpoint.objects.filter(run=parent, resolved_at__isnull=True))
    for waitpoint in open_points:
        pending = Run.objects.filter(pk__in=waitpoint.children).exclude(status__in=FINAL_STATUSES)
        if pending.exists():
            return False
        waitpoint.resolved_at = now
        waitpoint.save(update_fields=["resolved_at"])
    return True


def resume_parent(parent: Run, now: datetime, *, allowed_from: str) -> Run | None:
    def go_on(run: Run) -> list[str]:
        run.resuming = True
        return ["resuming", *clear_deadline(run), *mark_queued(run, now)]

    return transition(
        parent.id,
        RunStatus.QUEUED,
        actor=ENGINE,
        now=now,
        allowed_from=[allowed_from],
        changes=go_on,
        reason="its child runs finished; resuming",
    )


def clear_deadline(run: Run) -> list[str]:
    run.deadline_at = None  # waits do not count toward maxDuration
    return ["deadline_at"]


def mark_queued(run: Run, when: datetime) -> list[str]:
    """Set the queue-order key and, the first time only, the TTL clock."""
    run.available_at = when - timedelta(milliseconds=run.priority_ms)
    if run.queued_at is None:
        # TTL counts from the first time the run is queued, and is never re-armed.
        run.queued_at = when
        run.expires_at = when + timedelta(seconds=run.ttl) if run.ttl else None
    return ["available_at", "queued_at", "expires_at"]
