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
# and reports whether a parent waits on the run, to resume it (transitions.children_finished).
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


# Which time-driven steps of a tick have work (scheduler._due_work): the same conditions as the
# steps' own queries, each an EXISTS over its partial index, in one round trip.
DUE_WORK_SQL = """
SELECT
    EXISTS (SELECT FROM runs_run WHERE status = 'DELAYED' AND delay_until <= %(now)s) AS delayed,
    EXISTS (
        SELECT FROM runs_run
        WHERE status IN ('QUEUED', 'PENDING_VERSION') AND expires_at <= %(now)s AND started_at IS NULL
    ) AS expiring,
    EXISTS (
        SELECT FROM runs_run
        WHERE status = 'PENDING_VERSION' AND task_identifier IN (SELECT task_id FROM runs_taskdefinition)
    ) AS pending_version,
    EXISTS (SELECT FROM runs_run WHERE status = 'DEQUEUED' AND updated_at < %(cutoff)s) AS lost,
    EXISTS (SELECT FROM runs_run WHERE status = 'EXECUTING' AND heartbeat_at < %(cutoff)s) AS stalled,
    EXISTS (SELECT FROM runs_run WHERE status = 'EXECUTING' AND deadline_at <= %(now)s) AS overdue,
    EXISTS (SELECT FROM runs_batch WHERE status = 'PENDING' AND created_at < %(unsealed)s) AS unsealed,
    (
        EXISTS (SELECT FROM runs_queue WHERE resume_at <= %(now)s OR limit_override_until <= %(now)s)
        OR EXISTS (SELECT FROM runs_taskpause WHERE resume_at <= %(now)s)
        OR EXISTS (SELECT FROM runs_environment WHERE resume_at <= %(now)s)
    ) AS queue_controls,
    EXISTS (SELECT FROM runs_schedule WHERE next_fire_at <= %(now)s) AS schedules,
    EXISTS (SELECT FROM runs_run WHERE status = 'WAITING') AS waiting,
    EXISTS (SELECT FROM runs_bulkaction WHERE status IN ('PENDING', 'RUNNING')) AS bulk
"""

# When the engine should tick next (scheduler.next_due): each part a min() over its partial index
# (run_delayed, run_expiring, run_deadline, schedule_due; queues, task pauses and environments are few).
NEXT_DUE_SQL = """
SELECT least(
    (SELECT min(delay_until) FROM runs_run WHERE status = 'DELAYED' AND delay_until > %(after)s),
    (SELECT min(expires_at) FROM runs_run
     WHERE status IN ('QUEUED', 'PENDING_VERSION') AND expires_at > %(after)s),
    (SELECT min(deadline_at) FROM runs_run WHERE status = 'EXECUTING' AND deadline_at > %(after)s),
    (SELECT min(resume_at) FROM runs_queue WHERE resume_at > %(after)s),
    (SELECT min(limit_override_until) FROM runs_queue WHERE limit_override_until > %(after)s),
    (SELECT min(resume_at) FROM runs_taskpause WHERE resume_at > %(after)s),
    (SELECT min(resume_at) FROM runs_environment WHERE resume_at > %(after)s),
    (SELECT min(next_fire_at) FROM runs_schedule WHERE next_fire_at > %(after)s)
) AS due
"""

# DELAYED -> QUEUED for every run whose delay is over (scheduler.promote_delayed).
# SKIP LOCKED: runs another engine is promoting are its own. Joined on ctid (the row version
# just locked): a join on id was planned as a nested loop over the whole index while the
# table's statistics still counted few delayed runs, quadratic in the due runs (a minute for
# 10,000). In an UPDATE every column reads its value from before the update, as mark_queued
# does; NULLIF: a ttl of 0 means none. A delayed run that already has an expiry keeps it (a
# Celery task's `expires` counts from its publishing, and may pass before its delay ends).
PROMOTE_SQL = """
WITH due AS (
    SELECT ctid, id FROM runs_run
    WHERE status = %(delayed)s AND delay_until <= %(now)s
    ORDER BY delay_until
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), moved AS (
    UPDATE runs_run AS run SET
        status = %(queued)s,
        updated_at = %(now)s,
        available_at = run.delay_until - run.priority_ms * interval '1 millisecond',
        queued_at = coalesce(run.queued_at, run.delay_until),
        expires_at = CASE
            WHEN run.queued_at IS NULL
            THEN coalesce(run.expires_at, run.delay_until + nullif(run.ttl, 0) * interval '1 second')
            ELSE run.expires_at
        END
    FROM due
    WHERE run.ctid = due.ctid AND run.id = due.id AND run.status = %(delayed)s
    RETURNING run.id, run.environment_id
), logged AS (
    INSERT INTO runs_runevent (run_id, at, from_status, to_status, actor, reason, data)
    SELECT id, %(now)s, %(delayed)s, %(queued)s, %(actor)s, %(reason)s, '{}'::jsonb FROM moved
)
SELECT id, environment_id FROM moved
"""

# QUEUED -> DEQUEUED for up to %(free)s runs of one concurrency key (scheduler._admit_key).
# The run's dispatch number names its Celery task (celery_task_id): RETURNING gives the row as
# updated, so the new number. Sent in queue order; a paused task's runs are passed over, so the
# runs of other tasks behind them in the queue still go (an empty array filters nothing). A run
# whose TTL ran out is left to expire_runs, though the tick that finds it expired has not come
# yet.
#
# An admission in a transaction of its own commits asynchronously (SET LOCAL synchronous_commit
# = off, in the statement), sparing the engine a WAL flush per tick, as an attempt's start does
# (START_ASYNC_SQL). PostgreSQL crashing before the WAL writer flushed it loses only the
# admission: the run is QUEUED again, its sent message finds it not DEQUEUED and is skipped, and
# the engine admits it again under the same dispatch number (a message sent twice is harmless).
ADMIT_SQL = """
WITH picked AS (
    SELECT ctid, id, available_at, created_at FROM runs_run
    WHERE environment_id = %(environment)s AND queue = %(queue)s AND concurrency_key = %(key)s
      AND status = %(queued)s AND available_at <= %(now)s
      AND (expires_at IS NULL OR expires_at > %(ticked)s OR started_at IS NOT NULL)
      AND task_identifier <> ALL(%(skipped)s::varchar[])
    ORDER BY available_at, created_at, id
    LIMIT %(free)s
    FOR UPDATE SKIP LOCKED
), admitted AS (
    UPDATE runs_run AS run SET
        status = %(dequeued)s, updated_at = %(now)s, dispatch_count = run.dispatch_count + 1
    FROM picked
    WHERE run.ctid = picked.ctid AND run.id = picked.id AND run.status = %(queued)s
    RETURNING run.id, run.dispatch_count, run.machine, run.region, run.celery_queue,
        picked.available_at, picked.created_at
), logged AS (
    INSERT INTO runs_runevent (run_id, at, from_status, to_status, actor, reason, data)
    SELECT id, %(now)s, %(queued)s, %(dequeued)s, %(actor)s, %(reason)s, '{}'::jsonb FROM admitted
)
SELECT id, dispatch_count, machine, region, celery_queue,
    CASE WHEN %(async_commit)s THEN set_config('synchronous_commit', 'off', true) END
FROM admitted ORDER BY available_at, created_at, id
"""
