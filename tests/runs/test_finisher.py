"""A Celery task's attempt returns before its completion is written: the pool process's
Finisher writes it while Celery hands the process its next run (runs/worker.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from celery.signals import worker_process_shutdown
from django.db import connection

import example_tasks  # noqa: F401 - registers hello-world
from runs import engine, registry, worker
from runs.models import Environment, Run
from runs.states import RunStatus
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)  # the Finisher's thread has its own connection

LOCKS: dict[str, psycopg.Connection[Any]] = {}


@registry.task(id="test-locks-its-run")
def locks_its_run(payload: Any) -> dict[str, str]:
    """Returns once another connection holds its run's row: its completion waits for unlock()."""
    run_id = payload["run"]
    params = connection.get_connection_params()
    lock = psycopg.connect(dbname=params["dbname"], user=params["user"], host=params["host"])
    # Held at most 10 s: without a Finisher, the completion would wait on it in line.
    lock.execute("SET idle_in_transaction_session_timeout = '10s'")
    lock.execute("SELECT 1 FROM runs_run WHERE id = %s FOR UPDATE", (run_id,))
    LOCKS[run_id] = lock
    return {"done": run_id}


def unlock(run_id: str) -> None:
    LOCKS.pop(run_id).close()  # closing rolls back: the row is free


@pytest.fixture(autouse=True)
def finisher() -> Iterator[worker.Finisher]:
    yield worker.FINISHER
    for run_id in list(LOCKS):
        unlock(run_id)
    assert worker.FINISHER.drain(10)
    worker.FINISHER.submit(lambda: connection.close())  # the thread's own: the test database is dropped later
    assert worker.FINISHER.drain(10)


def dequeued(dev: Environment) -> Run:
    run = factories.run("test-locks-its-run")
    Run.objects.filter(pk=run.pk).update(payload=f'{{"run": "{run.pk}"}}', payload_type="application/json")
    engine.admit(now=run.created_at)
    run.refresh_from_db()
    assert run.status == RunStatus.DEQUEUED
    return run


def status(run: Run) -> str:
    run.refresh_from_db(fields=["status"])
    return run.status


def test_the_celery_task_returns_first_and_the_run_keeps_its_heartbeat_until_the_completion_is_written(
    dev: Environment,
) -> None:
    run = dequeued(dev)
    worker.execute(run_id=run.id, hostname="w1", finish_in_background=True)

    assert status(run) == RunStatus.EXECUTING  # returned while the completion waits on the row
    assert (run.id, 1) in worker.BEATER.due
    unlock(run.id)
    assert worker.FINISHER.drain(10)
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED and json.loads(run.output or "") == {"done": run.id}
    assert (run.id, 1) not in worker.BEATER.due


def test_in_line_the_completion_is_written_before_execute_returns(dev: Environment) -> None:
    run = factories.run("hello-world", payload={"name": "Ada"})
    engine.admit(now=run.created_at)
    worker.execute(run_id=run.id, hostname="w1")
    assert status(run) == RunStatus.COMPLETED
    assert worker.FINISHER.drain(0)


def test_a_completion_waits_for_the_one_being_written(dev: Environment) -> None:
    first, second = dequeued(dev), dequeued(dev)
    worker.execute(run_id=first.id, hostname="w1", finish_in_background=True)
    returned = threading.Event()

    def execute_second() -> None:
        worker.execute(run_id=second.id, hostname="w1", finish_in_background=True)
        returned.set()
        connection.close()

    thread = threading.Thread(target=execute_second)
    thread.start()
    # The second attempt's body runs (it locks its own row), then waits to hand over its completion.
    while second.id not in LOCKS:
        assert thread.is_alive()
        threading.Event().wait(0.01)
    assert not returned.wait(0.3)
    unlock(first.id)
    assert returned.wait(10)
    thread.join(10)
    assert status(first) == RunStatus.COMPLETED
    unlock(second.id)
    assert worker.FINISHER.drain(10)
    assert status(second) == RunStatus.COMPLETED


def test_a_pool_process_writes_the_waiting_completion_before_it_exits(dev: Environment) -> None:
    run = dequeued(dev)
    worker.execute(run_id=run.id, hostname="w1", finish_in_background=True)
    threading.Timer(0.2, unlock, args=(run.id,)).start()
    worker_process_shutdown.send(sender="w1", pid=0, exitcode=0)  # what billiard sends as the process exits
    assert status(run) == RunStatus.COMPLETED
