"""Attempts: what the Celery worker reports through the executor."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models.base import ModelState
from django.utils import timezone

from runs import events, registry
from runs.engine.core import ENGINE, child_finished, finish_attempt, mark_queued, prepared_row, set_error, transition
from runs.engine.workers import hand_back
from runs.models import Run, RunAttempt
from runs.states import FINAL_STATUSES, RunStatus, can_transition

# The worker's two transitions of every attempt, each one statement (its own transaction, or
# part of the caller's): the run's row, its timeline event and its attempt written together.
# Through transition() they took about twelve round trips to PostgreSQL per run (lock, update,
# event, attempt, parent lookup, NOTIFY, commit, twice), most of a no-op run's time on a busy
# machine (docs/performance.md). The rules are transition()'s: the same source statuses, the
# same timeline event, publish after commit; the UPDATE's WHERE is the compare-and-set.
assert can_transition(RunStatus.DEQUEUED, RunStatus.EXECUTING)
assert can_transition(RunStatus.EXECUTING, RunStatus.COMPLETED)
assert RunStatus.COMPLETED in FINAL_STATUSES

# The columns of the run the worker reads (the others are loaded if asked for): returning the
# whole row cost a no-op run about as much CPU in Django and psycopg as the rest of its work.
STARTED_FIELDS = (
    "id",
    "environment_id",
    "task_identifier",
    "status",
    "payload",
    "payload_type",
    "attempt_count",
    "celery_id",
)
DONE_FIELDS = ("id", "environment_id", "status", "output", "output_type", "attempt_count", "queue", "worker")

# A run resuming after its children continues its attempt rather than starting a new one: the
# SET expressions read the row as it was, so `resuming` there is the flag before it is cleared.
START_SQL = """
WITH started AS (
    UPDATE runs_run SET
        status = %(to)s,
        updated_at = %(now)s,
        resuming = false,
        attempt_count = attempt_count + CASE WHEN resuming THEN 0 ELSE 1 END,
        started_at = COALESCE(started_at, %(now)s),
        heartbeat_at = %(now)s,
        worker = %(worker)s,
        deadline_at = CASE WHEN COALESCE(max_duration, 0) = 0 THEN NULL
                           ELSE %(now)s + max_duration * interval '1 second' END
    WHERE id = %(run_id)s AND status = %(from)s
      AND NOT EXISTS (SELECT FROM runs_worker WHERE hostname = %(worker)s AND draining_at IS NOT NULL)
    RETURNING {started}
), event AS (
    INSERT INTO runs_runevent (run_id, at, from_status, to_status, actor, reason, data)
    SELECT id, %(now)s, %(from)s, %(to)s, %(actor)s, 'attempt started', '{{}}'::jsonb FROM started
), attempt AS (
    INSERT INTO runs_runattempt (run_id, number, status, worker, started_at)
    SELECT id, attempt_count, %(to)s, %(worker)s, %(now)s FROM started
    ON CONFLICT (run_id, number) DO UPDATE SET status = EXCLUDED.status, worker = EXCLUDED.worker
    RETURNING id, number, started_at
)
SELECT started.*, attempt.id AS attempt_id, attempt.started_at AS attempt_started_at FROM started, attempt
""".format(started=", ".join(STARTED_FIELDS))

# A start of its own commits asynchronously (SET LOCAL synchronous_commit = off, in the same
# statement: no round trip), sparing the worker one of a run's two WAL flushes. PostgreSQL
# crashing before the WAL writer flushed it (within ~3 x wal_writer_delay) loses only the
# start: the run is DEQUEUED again and requeue_lost sends it again, as for a lost message
# (at least once). The completion, and any commit after this one, is durable and flushes it
# too. A start inside the caller's transaction keeps that transaction's setting.
START_ASYNC_SQL = START_SQL.replace(
    " FROM started, attempt\n",
    ",\n    set_config('synchronous_commit', 'off', true) AS async_commit FROM started, attempt\n",
)
assert START_ASYNC_SQL != START_SQL

# Completing wakes the engine only if the run's queue has a limit (events.wake_engine_for_slot)
# and reports whether a parent waits on the run, to resume it (core.child_finished).
COMPLETE_SQL = """
WITH done AS (
    UPDATE runs_run SET
        status = %(to)s, updated_at = %(now)s, finished_at = %(now)s, output = %(output)s, output_type = %(output_type)s
    WHERE id = %(run_id)s AND status = %(from)s AND attempt_count = %(attempt)s
    RETURNING {done}
), event AS (
    INSERT INTO runs_runevent (run_id, at, from_status, to_status, actor, reason, data)
    SELECT id, %(now)s, %(from)s, %(to)s, 'worker:' || COALESCE(NULLIF(worker, ''), 'unknown'), 'attempt succeeded',
           '{{}}'::jsonb
    FROM done
), attempt AS (
    UPDATE runs_runattempt SET status = %(to)s, finished_at = %(now)s, error = NULL
    WHERE run_id = %(run_id)s AND number = %(attempt)s AND EXISTS (SELECT FROM done)
)
SELECT done.*,
    (SELECT count(pg_notify(%(channel)s, '')) FROM runs_queue AS queue
     WHERE queue.environment_id = done.environment_id AND queue.name = done.queue
       AND (queue.concurrency_limit IS NOT NULL OR queue.limit_override IS NOT NULL)) AS woke_engine,
    EXISTS (SELECT 1 FROM runs_waitpoint
            WHERE children @> ARRAY[%(run_id)s]::varchar(32)[] AND resolved_at IS NULL) AS awaited
FROM done
""".format(done=", ".join(DONE_FIELDS))


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
    events.publish_run_changed(environment_id=run.environment_id, run_id=run.id)
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
    events.publish_run_changed(environment_id=run.environment_id, run_id=run.id)
    if row["awaited"]:
        # The run is final and committed (or final in the caller's transaction): a parent
        # suspending from now on sees it final, and one already WAITING is resumed here.
        with transaction.atomic():
            child_finished(run, now)
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
