"""The engine's hand-written SQL, one named statement each, with why it is written so.

The statements that move many runs at once (the engine's sweeps) or one run in a single round
trip (the worker's two transitions of every attempt). Each is a compare-and-set: its UPDATE's
WHERE names the status it moves from, so a run another caller moved first is left alone, and
each writes the timeline events of the runs it moved in the same statement. What follows a
statement (publish after commit, waking parents and the engine) is runs.engine.transitions'.
Pure: no database access at import, nothing imported from the engine.
"""

from __future__ import annotations

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
# and reports whether a parent waits on the run, to resume it (waiting.child_finished).
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
