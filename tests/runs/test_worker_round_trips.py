"""A run's attempt costs the worker few round trips to PostgreSQL, one heartbeat thread per
process, and wakes the engine only when a queued run waits for the slot it frees (issue #8)."""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from runs import engine, events, registry, worker
from runs.engine import sql
from runs.models import Run
from runs.states import RunStatus
from tests import factories
from tests.runs.test_worker import admitted

pytestmark = pytest.mark.django_db(transaction=True)  # real commits: NOTIFY, other connections

beaters: list[threading.Thread] = []


@registry.task(id="test-rt-noop")
def noop(payload: Any) -> None:
    return None


@registry.task(id="test-rt-beats")
def beats(payload: Any) -> None:
    """Waits until its heartbeat was refreshed; records the threads beating meanwhile."""
    run = Run.objects.get(pk=payload["run"])
    deadline = time.monotonic() + 10
    while Run.objects.get(pk=run.pk).heartbeat_at == run.heartbeat_at:
        assert time.monotonic() < deadline, "the heartbeat was never refreshed"
        time.sleep(0.02)
    beaters.extend(t for t in threading.enumerate() if "heartbeat" in t.name)


@contextmanager
def listening() -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as conn:
        conn.execute(f"LISTEN {events.ENGINE_CHANNEL}")
        yield conn


def woken(conn: psycopg.Connection[Any], wait: float) -> bool:
    """Whether a NOTIFY came within `wait` seconds (NOTIFY is sent at commit, before we look)."""
    ready, _, _ = select.select([conn.fileno()], [], [], wait)
    return bool(ready and list(conn.notifies(timeout=0)))


def test_starting_and_completing_a_no_op_attempt_takes_two_statements() -> None:
    run = admitted("test-rt-noop")
    with CaptureQueriesContext(connection) as queries:
        worker.execute(run_id=run.id, hostname="w1")
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    # One statement (and so one transaction) each for start and completion; the engine's
    # transition() took about fifteen, lock, update, timeline, attempt, parents, NOTIFY, commit.
    assert len(queries) <= 2, [q["sql"][:80] for q in queries.captured_queries]


def test_a_completed_attempt_keeps_the_timeline_and_attempt_of_the_engine_rules() -> None:
    run = admitted("test-rt-noop", max_duration=30)
    worker.execute(run_id=run.id, hostname="w1")
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED and run.finished_at is not None
    assert run.attempt_count == 1 and run.worker == "w1"
    assert run.started_at is not None and run.deadline_at is not None
    assert (run.deadline_at - run.started_at).total_seconds() == 30
    timeline = [(e.from_status, e.to_status, e.actor, e.reason) for e in run.events.all()][-2:]
    assert timeline == [
        (RunStatus.DEQUEUED, RunStatus.EXECUTING, "worker:w1", "attempt started"),
        (RunStatus.EXECUTING, RunStatus.COMPLETED, "worker:w1", "attempt succeeded"),
    ]
    attempt = run.attempts.get()
    assert (attempt.number, attempt.status, attempt.worker) == (1, RunStatus.COMPLETED, "w1")
    assert attempt.started_at == run.started_at and attempt.finished_at == run.finished_at


def test_the_worker_statements_are_parsed_once_per_connection() -> None:
    """They are prepared statements: PostgreSQL parses and plans each once per connection,
    not for every run; and query logging (CaptureQueriesContext, DEBUG) still sees them."""
    for _ in range(3):
        worker.execute(run_id=admitted("test-rt-noop").id, hostname="w1")
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert len([sql for sql in prepared if "attempt started" in sql]) == 1, prepared
    assert len([sql for sql in prepared if "attempt succeeded" in sql]) == 1, prepared
    # Preparing is on for those statements only: on for the connection, psycopg would keep the
    # text of each of Django's last 100 queries (a batch insert is megabytes) to count them.
    assert connection.connection.prepare_threshold is None


def test_the_started_and_completed_runs_hold_the_stored_values_and_load_the_rest() -> None:
    run = admitted("test-rt-noop", max_duration=30, tags=["a"])
    attempt = engine.start_attempt(run_id=run.id, worker="w1")
    assert attempt is not None
    stored = Run.objects.get(pk=run.pk)
    for name in sql.STARTED_FIELDS:
        assert getattr(attempt.run, name) == getattr(stored, name), name
    assert attempt.run.tags == ["a"] and attempt.run.max_duration == 30  # not returned: loaded when read
    done = engine.complete_attempt(run_id=run.id, attempt=1, output='"x"', output_type="application/json")
    assert done is not None
    stored = Run.objects.get(pk=run.pk)
    for name in sql.DONE_FIELDS:
        assert getattr(done, name) == getattr(stored, name), name
    assert (done.status, done.output, done.tags) == (RunStatus.COMPLETED, '"x"', ["a"])


def test_a_stale_attempt_neither_starts_nor_completes_twice() -> None:
    run = admitted("test-rt-noop")
    attempt = engine.start_attempt(run_id=run.id, worker="w1")
    assert attempt is not None and attempt.number == 1
    assert engine.start_attempt(run_id=run.id, worker="w2") is None  # already started
    assert engine.complete_attempt(run_id=run.id, attempt=2, output="", output_type="application/json") is None
    assert engine.complete_attempt(run_id=run.id, attempt=1, output="1", output_type="application/json")
    assert engine.complete_attempt(run_id=run.id, attempt=1, output="2", output_type="application/json") is None
    run.refresh_from_db()
    assert (run.status, run.output) == (RunStatus.COMPLETED, "1")
    assert run.events.filter(to_status=RunStatus.COMPLETED).count() == 1


@contextmanager
def commit_settings() -> Iterator[list[tuple[str, str]]]:
    """(timeline reason, synchronous_commit in effect at COMMIT) of each transaction writing one.

    A deferred constraint trigger fires at commit, after the statement's SET LOCALs.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE test_commit_setting (n serial, reason text, setting text);"
            " CREATE FUNCTION test_record_commit_setting() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN INSERT INTO test_commit_setting (reason, setting)"
            " VALUES (NEW.reason, current_setting('synchronous_commit'));"
            " RETURN NULL; END $$;"
            " CREATE CONSTRAINT TRIGGER test_commit_setting AFTER INSERT ON runs_runevent"
            " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_record_commit_setting()"
        )
    recorded: list[tuple[str, str]] = []
    try:
        yield recorded
        with connection.cursor() as cursor:
            cursor.execute("SELECT reason, setting FROM test_commit_setting ORDER BY n")
            recorded.extend(cursor.fetchall())
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "DROP TRIGGER test_commit_setting ON runs_runevent; DROP FUNCTION test_record_commit_setting();"
                " DROP TABLE test_commit_setting"
            )


def test_an_attempt_start_commits_asynchronously_and_its_completion_durably() -> None:
    """A lost start (PostgreSQL crashed before flushing it) leaves the run DEQUEUED, which
    requeue_lost sends again; a lost completion would lose the run's output."""
    run = admitted("test-rt-noop")
    with commit_settings() as recorded:
        worker.execute(run_id=run.id, hostname="w1")
    assert Run.objects.get(pk=run.pk).status == RunStatus.COMPLETED
    assert recorded == [("attempt started", "off"), ("attempt succeeded", "on")]


def test_a_start_inside_the_callers_transaction_keeps_its_durable_commit() -> None:
    run = admitted("test-rt-noop")
    with commit_settings() as recorded, transaction.atomic():
        assert engine.start_attempt(run_id=run.id, worker="w1") is not None
        Run.objects.filter(pk=run.pk).update(worker="w1")  # the caller's own write
    assert recorded == [("attempt started", "on")]


@pytest.mark.parametrize(("limit", "wakes"), [(None, False), (1, True)])
def test_a_finished_run_wakes_the_engine_only_if_its_queue_has_a_limit(limit: int | None, wakes: bool) -> None:
    run = admitted("test-rt-noop", queue="rt-queue", queue_concurrency_limit=limit)
    with listening() as listener:
        worker.execute(run_id=run.id, hostname="w1")
        assert woken(listener, 2.0 if wakes else 0.3) is wakes


def test_one_thread_per_process_beats_for_every_attempt(settings: Any) -> None:
    settings.RUNYARD_HEARTBEAT_INTERVAL = 0.05
    beaters.clear()
    for _ in range(2):
        run = factories.run("test-rt-beats")
        Run.objects.filter(pk=run.pk).update(payload=factories.superjson({"run": run.id}))
        engine.admit(now=run.created_at)
        worker.execute(run_id=run.id, hostname="w1")
        assert Run.objects.get(pk=run.pk).status == RunStatus.COMPLETED
    assert len(beaters) == 2 and beaters[0] is beaters[1], beaters


def test_a_pool_process_keeps_its_database_connection_from_task_to_task() -> None:
    """Celery's Django fixup closes connections around every task unless told to reuse them."""
    from celery.fixups.django import DjangoWorkerFixup

    from dashboard.celery import app

    fixup = DjangoWorkerFixup(app)
    sender = type("Sender", (), {"request": type("Request", (), {"is_eager": False})()})()
    connection.ensure_connection()
    raw = connection.connection
    for _ in range(20):
        fixup.on_task_prerun(sender)
        fixup.on_task_postrun(sender)
    assert connection.connection is raw


def test_a_connection_postgresql_closed_is_dropped_before_the_next_run() -> None:
    connection.ensure_connection()
    healthy = connection.connection
    worker.drop_closed_connection()
    assert connection.connection is healthy  # an open connection is kept: no query, no reconnect
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    ready, _, _ = select.select([healthy.fileno()], [], [], 5)
    assert ready, "PostgreSQL did not close the connection"
    worker.drop_closed_connection()
    assert connection.connection is None
    assert Run.objects.count() == 0  # the next query connects again
