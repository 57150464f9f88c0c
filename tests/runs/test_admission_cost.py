"""What admitting a run costs the engine: its statements per tick, and no WAL flush of its own."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from runs import engine
from runs.engine.scheduler import next_due
from runs.models import Run
from runs.states import RunStatus
from tests import factories
from tests.runs.test_worker_round_trips import commit_settings

pytestmark = pytest.mark.django_db(transaction=True)  # real commits: their synchronous_commit


def test_a_tick_admitting_a_run_takes_at_most_eleven_statements() -> None:
    run = factories.run("hello-world")
    with CaptureQueriesContext(connection) as queries:
        assert engine.tick() == 1
    assert Run.objects.get(pk=run.pk).status == RunStatus.DEQUEUED
    # What is due (one statement), waits to resume, the queues with queued runs, then per queue
    # BEGIN, its lock, its active runs, the admission, COMMIT; bulk actions (BEGIN, read, COMMIT).
    assert len(queries) <= 11, [q["sql"][:80] for q in queries.captured_queries]


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
