"""What admitting a run costs the engine: its statements per tick, and no WAL flush of its own."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import example_tasks  # noqa: F401 - registers fan-out and hello-world
from runs import engine, worker
from runs.engine.bulk import create_bulk_action
from runs.engine.scheduler import next_due
from runs.models import BulkActionStatus, Environment, Run
from runs.states import RunStatus
from tests import factories
from tests.runs.test_worker_round_trips import commit_settings

pytestmark = pytest.mark.django_db(transaction=True)  # real commits: their synchronous_commit


def test_a_tick_admitting_a_run_takes_at_most_six_statements() -> None:
    run = factories.run("hello-world")
    with CaptureQueriesContext(connection) as queries:
        assert engine.tick() == 1
    assert Run.objects.get(pk=run.pk).status == RunStatus.DEQUEUED
    # What is due (one statement, waiting runs and open bulk actions included), the queues with
    # queued runs, then per queue BEGIN, its lock, the admission, COMMIT. Was 11: every tick
    # also read the waiting runs, the open bulk actions (BEGIN, read, COMMIT) and the queue's
    # active runs, though the queue has no limit to count them against.
    assert len(queries) <= 6, [q["sql"][:80] for q in queries.captured_queries]


def test_a_tick_counts_a_queues_active_runs_only_against_a_limit() -> None:
    factories.run("hello-world", queue="limited", queue_concurrency_limit=1)
    second = factories.run("hello-world", queue="limited")
    with CaptureQueriesContext(connection) as queries:
        assert engine.tick() == 1  # one slot
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"]]
    assert len(counts) == 1, counts
    assert Run.objects.get(pk=second.pk).status == RunStatus.QUEUED
    assert engine.tick() == 0  # the slot is still taken


def test_a_tick_still_resumes_a_parent_whose_wake_up_was_lost(dev: Environment) -> None:
    """resume_ready (the safety net) runs in a tick whenever some run is WAITING."""
    parent = factories.run("fan-out", payload={"n": 2})
    factories.task_definition("fan-out")
    engine.admit(now=parent.created_at)
    worker.execute(run_id=parent.id, hostname="w1")
    assert Run.objects.get(pk=parent.pk).status == RunStatus.WAITING
    now = timezone.now()
    # The children finish without the wake-up of their parent (as if the process died after commit).
    Run.objects.filter(parent=parent).update(status=RunStatus.COMPLETED, finished_at=now, output='{"json":1}')
    engine.tick()
    assert Run.objects.get(pk=parent.pk).status in (RunStatus.QUEUED, RunStatus.DEQUEUED)


def test_a_tick_still_works_an_open_bulk_action(dev: Environment) -> None:
    run = factories.run("hello-world", delay_until=timezone.now() + timedelta(hours=1))
    bulk = create_bulk_action(environment=dev, action="cancel", run_ids=[run.id], reason="test", username="ada")
    engine.tick()
    bulk.refresh_from_db()
    assert bulk.status == BulkActionStatus.COMPLETED
    assert Run.objects.get(pk=run.pk).status == RunStatus.CANCELED
    with CaptureQueriesContext(connection) as queries:
        engine.tick()  # none open: not even a transaction for it
    assert not [q for q in queries.captured_queries if "runs_bulkaction" in q["sql"] and "EXISTS" not in q["sql"]]


def test_the_time_driven_statements_of_every_tick_are_parsed_once_per_connection() -> None:
    for _ in range(3):
        engine.tick()
        next_due(after=factories.run("hello-world").created_at)
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert len([sql for sql in prepared if "AS schedules" in sql]) == 1, prepared  # _due_work
    assert len([sql for sql in prepared if ") AS due" in sql]) == 1, prepared


def test_an_admission_commits_asynchronously() -> None:
    """A lost admission (PostgreSQL crashed before flushing it) leaves the run QUEUED: its
    message finds it not DEQUEUED and is skipped, and the engine admits it again."""
    run = factories.run("hello-world")
    with commit_settings() as recorded:
        engine.admit(now=run.created_at)
    assert Run.objects.get(pk=run.pk).status == RunStatus.DEQUEUED
    assert recorded == [("admitted to a worker", "off")]


def test_an_admission_inside_the_callers_transaction_keeps_its_durable_commit() -> None:
    run = factories.run("hello-world")
    with commit_settings() as recorded, transaction.atomic():
        engine.admit(now=run.created_at)
    assert recorded == [("admitted to a worker", "on")]
