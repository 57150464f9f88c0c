"""Shared machinery of the engine (its transitions are runs.engine.transitions', named here too)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.backends.postgresql.base import ServerBindingCursor  # type: ignore[attr-defined]

from runs.engine.transitions import ENGINE as ENGINE
from runs.engine.transitions import Actor as Actor
from runs.engine.transitions import Change as Change
from runs.engine.transitions import bulk_transition as bulk_transition
from runs.engine.transitions import mark_queued as mark_queued
from runs.engine.transitions import record as record
from runs.engine.transitions import transition as transition
from runs.models import AuditEntry, Environment, Queue, Run, RunAttempt, TaskDefinition

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
