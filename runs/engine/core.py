"""Shared machinery of the engine: compare-and-set transitions and their timeline events."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.backends.postgresql.base import ServerBindingCursor  # type: ignore[attr-defined]

from runs import events
from runs.models import AuditEntry, Environment, Queue, Run, RunAttempt, RunEvent, TaskDefinition, Waitpoint
from runs.states import ACTIVE_STATUSES, FINAL_STATUSES, RunStatus, can_transition, sources_of

Actor = str  # "engine", "worker:<host>", "api:<key hint>", "user:<username>", "sdk"
ENGINE: Actor = "engine"
Change = Callable[[Run], list[str]]  # sets fields on the locked run, returns their names


AUDIT_REASON_LENGTH = 512


def audit(
    *,
    action: str,
    target: str,
    actor: Actor,
    now: datetime,
    environment_id: int | None,
    user: Any = None,
    reason: str = "",
    data: dict[str, Any] | None = None,
) -> None:
    """One AuditEntry for an operator control, in the caller's transaction. People are named
    as the rest of the audit log names them: a dashboard user by username, an API key as
    `api:<hint>` (dashboard.audit)."""
    AuditEntry.objects.create(
        at=now,
        user=user,
        username=actor.removeprefix("user:")[:150],
        environment_id=environment_id,
        action=action,
        target=target[:128],
        reason=reason[:AUDIT_REASON_LENGTH],
        data=data or {},
    )


class EngineError(Exception):
    """A request the engine refuses; the message is safe to show to the caller."""


class RunNotFound(EngineError):
    pass


def prepared_row(sql: str, params: Mapping[str, Any] | Sequence[Any]) -> dict[str, Any] | None:
    """The first row of `sql` (or None), run as a prepared statement on Django's connection.

    For the statements run for every run by the worker: Django binds parameters into the
    query text, which PostgreSQL then parses and plans anew each time; a prepared statement
    is parsed once per connection (psycopg keeps it, by text). Django's cursor wrapper still
    runs it, so query logging and execute wrappers see it.
    """
    connection.ensure_connection()
    raw = connection.connection
    assert raw is not None
    with connection.wrap_database_errors:
        cursor = ServerBindingCursor(raw)
    wrapped = connection.make_debug_cursor(cursor) if connection.queries_logged else connection.make_cursor(cursor)
    # Django turns psycopg's preparing off (prepare_threshold None, for poolers). Turned on for
    # the whole connection, psycopg would count every query Django sends (by text, up to 100 of
    # them, a batch's insert of megabytes included); on for this statement only, it prepares
    # it the first time and finds it prepared the next. Django's own cursors bind client-side
    # and never prepare.
    threshold, raw.prepare_threshold = raw.prepare_threshold, 0
    try:
        with wrapped:
            wrapped.execute(sql, params)
            if connection.queries_logged and connection.queries_log and connection.queries_log[-1]["sql"] is None:
                # Django reads the text back from psycopg, which keeps none for a prepared statement.
                connection.queries_log[-1]["sql"] = sql
            row = wrapped.fetchone()
            if row is None:
                return None
            names = _COLUMNS.get(sql)
            if names is None:
                names = _COLUMNS[sql] = [column.name for column in wrapped.description]
            return dict(zip(names, row, strict=True))
    finally:
        raw.prepare_threshold = threshold


_COLUMNS: dict[str, list[str]] = {}  # the result columns of each prepared_row statement (fixed by its text)


def record(
    run: Run,
    from_status: str,
    to_status: str,
    *,
    actor: Actor,
    reason: str = "",
    now: datetime,
    data: dict[str, Any] | None = None,
    created: bool = False,
) -> None:
    """Append a timeline event and publish the change after commit."""
    RunEvent.objects.create(
        run=run, at=now, from_status=from_status, to_status=to_status, actor=actor, reason=reason, data=data or {}
    )
    events.publish_run_changed(environment_id=run.environment_id, run_id=run.id, created=created)


def transition(
    run_id: str,
    to_status: str,
    *,
    actor: Actor,
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
    run.status = to_status
    run.updated_at = now
    fields = ["status", "updated_at"]
    if to_status in FINAL_STATUSES:
        run.finished_at = now
        fields.append("finished_at")
    if changes is not None:
        fields += changes(run)
    run.save(update_fields=fields)
    record(run, from_status, to_status, actor=actor, reason=reason, now=now, data=data)
    if to_status in FINAL_STATUSES:
        _wake_parents(run, now)
    if to_status == RunStatus.QUEUED:
        events.wake_engine()  # a run to admit: admit without waiting for the poll
    elif from_status in ACTIVE_STATUSES and to_status not in ACTIVE_STATUSES:
        # A slot freed: admit the next run of a limited queue without waiting for the poll.
        events.wake_engine_for_slot(environment_id=run.environment_id, queue=run.queue)
    return run


def _wake_parents(run: Run, now: datetime) -> None:
    child_finished(run, now)


def mark_queued(run: Run, when: datetime) -> list[str]:
    """Set the queue-order key and, the first time only, the TTL clock."""
    run.available_at = when - timedelta(milliseconds=run.priority_ms)
    if run.queued_at is None:
        # TTL counts from the first time the run is queued, and is never re-armed.
        run.queued_at = when
        run.expires_at = when + timedelta(seconds=run.ttl) if run.ttl else None
    return ["available_at", "queued_at", "expires_at"]


def ensure_queue(
    environment: Environment, name: str, definition: TaskDefinition | None, limit: int | None = None
) -> None:
    """Create the queue on first use; a limit given at trigger time becomes the queue's limit."""
    if limit is not None:
        Queue.objects.update_or_create(environment=environment, name=name, defaults={"concurrency_limit": limit})
        return
    declared = definition.concurrency_limit if definition and definition.queue == name else None
    Queue.objects.get_or_create(environment=environment, name=name, defaults={"concurrency_limit": declared})


def set_error(error: dict[str, Any]) -> Change:
    def change(run: Run) -> list[str]:
        run.error = error
        return ["error"]

    return change


def finish_attempt(run: Run, number: int, status: str, now: datetime, error: dict[str, Any] | None = None) -> None:
    RunAttempt.objects.filter(run=run, number=number).update(status=status, finished_at=now, error=error)


def celery_task_id(run_id: str, dispatch: int) -> str:
    return f"{run_id}-{dispatch}"


def revoke(task_id: str) -> None:
    """Stop the Celery task of a run that must not go on (canceled, timed out)."""
    from celery import current_app

    current_app.control.revoke(task_id, terminate=True, signal="SIGTERM")


def bulk_transition(
    runs: list[Run], to_status: str, *, actor: Actor, now: datetime, reason: str, changes: Change | None = None
) -> int:
    """Move runs (already locked FOR UPDATE by the caller) to to_status in one statement."""
    fields = {"status", "updated_at"}
    moved = []
    for run in runs:
        from_status = run.status
        if not can_transition(from_status, to_status):
            continue
        run.status, run.updated_at = to_status, now
        if to_status in FINAL_STATUSES:
            run.finished_at = now
            fields.add("finished_at")
        if changes is not None:
            fields.update(changes(run))
        moved.append((run, from_status))
    Run.objects.bulk_update([run for run, _ in moved], sorted(fields))
    RunEvent.objects.bulk_create(
        RunEvent(run=run, at=now, from_status=frm, to_status=to_status, actor=actor, reason=reason)
        for run, frm in moved
    )
    changed: dict[int, list[str]] = {}
    for run, _ in moved:
        changed.setdefault(run.environment_id, []).append(run.id)
        if to_status in FINAL_STATUSES:
            _wake_parents(run, now)
    # One message per environment: a message per run made promoting 10,000 due runs take seconds.
    for environment_id, run_ids in changed.items():
        events.publish_runs_changed(environment_id=environment_id, run_ids=run_ids)
    if moved and to_status == RunStatus.QUEUED:
        events.wake_engine()
    return len(moved)


# Waking waiting parents: here, not in runs.engine.waiting, as a transition to a final status
# resumes the parents waiting on the run through transition itself (waiting builds on this module).


def child_finished(run: Run, now: datetime) -> None:
    """Called in the transaction that made `run` final: resume parents now free to go on."""
    for waitpoint in Waitpoint.objects.filter(children__contains=[run.id], resolved_at__isnull=True):
        # The parent row lock orders this with suspend_run, so no wake-up is lost.
        parent = Run.objects.select_for_update().get(pk=waitpoint.run_id)
        if _resolve_open_waitpoints(parent, now) and parent.status == RunStatus.WAITING:
            _resume(parent, now, allowed_from=RunStatus.WAITING)


def _resolve_open_waitpoints(parent: Run, now: datetime) -> bool:
    """Mark open waitpoints whose children are all final; True if none is left open."""
    open_points = list(Waitpoint.objects.filter(run=parent, resolved_at__isnull=True))
    for waitpoint in open_points:
        pending = Run.objects.filter(pk__in=waitpoint.children).exclude(status__in=FINAL_STATUSES)
        if pending.exists():
            return False
        waitpoint.resolved_at = now
        waitpoint.save(update_fields=["resolved_at"])
    return True


def _resume(parent: Run, now: datetime, *, allowed_from: str) -> Run | None:
    def go_on(run: Run) -> list[str]:
        run.resuming = True
        return ["resuming", *_clear_deadline(run), *mark_queued(run, now)]

    return transition(
        parent.id,
        RunStatus.QUEUED,
        actor=ENGINE,
        now=now,
        allowed_from=[allowed_from],
        changes=go_on,
        reason="its child runs finished; resuming",
    )


def _clear_deadline(run: Run) -> list[str]:
    run.deadline_at = None  # waits do not count toward maxDuration
    return ["deadline_at"]
