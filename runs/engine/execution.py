"""Attempts: what the Celery worker reports through the executor."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models.base import ModelState
from django.utils import timezone

from runs import events, registry
from runs.engine.core import ENGINE, finish_attempt, mark_queued, prepared_row, set_error, transition
from runs.engine.sql import COMPLETE_SQL, DONE_FIELDS, START_ASYNC_SQL, START_SQL, STARTED_FIELDS
from runs.engine.transitions import Moved, moved
from runs.engine.workers import hand_back
from runs.models import Run, RunAttempt
from runs.states import RunStatus


def loaded_run(row: dict[str, Any], fields: tuple[str, ...]) -> Run:
    """The run of a returned row, its other fields deferred (loaded if read).

    What Model.from_db makes of a row with deferred fields (a deferred field is one missing from
    the instance's __dict__), without Model.__init__'s pass over all 50 fields for every run.
    """
    run = Run.__new__(Run)
    run._state = ModelState()
    run._state.adding, run._state.db = False, "default"
    run.__dict__.update({name: row[name] for name in fields})
    return run


def start_attempt(*, run_id: str, worker: str, now: datetime | None = None) -> RunAttempt | None:
    """DEQUEUED -> EXECUTING and a new attempt; None if the run may not start (e.g. canceled,
    or the worker drains: the run then goes back to its queue)."""
    now = now or timezone.now()
    params = {
        "run_id": run_id,
        "from": RunStatus.DEQUEUED,
        "to": RunStatus.EXECUTING,
        "now": now,
        "worker": worker,
        "actor": f"worker:{worker}",
    }
    sql = START_SQL if transaction.get_connection().in_atomic_block else START_ASYNC_SQL
    # The drain check rides in the start's statement (one probe of the worker's unique index)
    # rather than a query of its own per run; only a start refused pays for finding out why.
    row = prepared_row(sql, params)
    if row is None:
        hand_back(run_id=run_id, hostname=worker, now=now)
        return None
    run = loaded_run(row, STARTED_FIELDS)
    moved([Moved(run.id, run.environment_id, RunStatus.DEQUEUED)], RunStatus.EXECUTING, now=now)
    attempt = RunAttempt(
        id=row["attempt_id"],
        run=run,
        number=run.attempt_count,
        status=RunStatus.EXECUTING,
        worker=worker,
        started_at=row["attempt_started_at"],
    )
    attempt._state.adding, attempt._state.db = False, "default"
    attempt.resumed = row["attempt_started_at"] < now  # the attempt's row was there already
    return attempt


def heartbeat(*, run_id: str, attempt: int, now: datetime | None = None) -> bool:
    """Record that attempt `attempt` is alive; False if the run moved on (stop working)."""
    now = now or timezone.now()
    current = Run.objects.filter(pk=run_id, status=RunStatus.EXECUTING, attempt_count=attempt)
    return current.update(heartbeat_at=now) == 1


def complete_attempt(
    *, run_id: str, attempt: int, output: str, output_type: str, now: datetime | None = None
) -> Run | None:
    """EXECUTING -> COMPLETED with the output, if `attempt` is still the current attempt."""
    now = now or timezone.now()
    params = {
        "run_id": run_id,
        "from": RunStatus.EXECUTING,
        "to": RunStatus.COMPLETED,
        "now": now,
        "attempt": attempt,
        "output": output,
        "output_type": output_type,
        "channel": events.ENGINE_CHANNEL,
    }
    row = prepared_row(COMPLETE_SQL, params)
    if row is None:
        return None
    run = loaded_run(row, DONE_FIELDS)
    # The run is final and committed (or final in the caller's transaction): a parent
    # suspending from now on sees it final, and one already WAITING is resumed here. The
    # statement woke the engine for the slot and found whether a parent waits on the run.
    done = Moved(run.id, run.environment_id, RunStatus.EXECUTING, run.queue)
    moved([done], RunStatus.COMPLETED, now=now, awaited=row["awaited"], woke=True)
    return run


def fail_attempt(
    *,
    run_id: str,
    attempt: int,
    error: dict[str, Any],
    retry: registry.Retry | None,
    final_status: str = RunStatus.FAILED,
    actor: str | None = None,
    now: datetime | None = None,
    retry_in: float | None = None,
) -> Run | None:
    """End a failed attempt: requeue after backoff while attempts remain, else final_status.

    final_status is FAILED for the task's own errors and CRASHED for a lost worker. retry_in:
    the task's code asked for another attempt in that many seconds (a Celery task's
    self.retry(), which checked its own max_retries): requeued then, whatever max_attempts
    says, which grows to count the new attempt.
    """
    now = now or timezone.now()
    with transaction.atomic():
        run = Run.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.status != RunStatus.EXECUTING or run.attempt_count != attempt:
            return None
        actor = actor or f"worker:{run.worker}"
        if retry_in is not None or attempt < run.max_attempts:
            wait = max(retry_in, 0.0) if retry_in is not None else (retry or registry.Retry()).backoff(attempt)

            def requeue(r: Run) -> list[str]:
                fields = mark_queued(r, now + timedelta(seconds=wait))
                if r.max_attempts <= attempt:
                    r.max_attempts = attempt + 1
                    fields.append("max_attempts")
                return fields

            updated = transition(
                run_id,
                RunStatus.QUEUED,
                actor=actor,
                now=now,
                changes=requeue,
                reason=f"attempt {attempt} failed: {error['message'][:200]}; retrying in {wait:g}s",
                data={"error": error},
            )
        else:
            updated = transition(
                run_id,
                final_status,
                actor=actor,
                now=now,
                changes=set_error(error),
                reason=f"attempt {attempt} of {run.max_attempts} failed: {error['message'][:200]}",
                data={"error": error},
            )
        finish_attempt(run, attempt, final_status, now, error)
        return updated


def system_failure(*, run_id: str, attempt: int, error: dict[str, Any], now: datetime | None = None) -> Run | None:
    """EXECUTING -> SYSTEM_FAILURE: Runyard could not run the attempt (not the task's fault)."""
    now = now or timezone.now()
    with transaction.atomic():
        run = transition(
            run_id,
            RunStatus.SYSTEM_FAILURE,
            actor=ENGINE,
            now=now,
            allowed_from=[RunStatus.EXECUTING],
            guard=lambda r: r.attempt_count == attempt,
            changes=set_error(error),
            reason=error["message"],
        )
        if run is not None:
            finish_attempt(run, attempt, RunStatus.SYSTEM_FAILURE, now, error)
        return run
