"""One attempt as a worker executes it (the executor called directly, the engine for real)."""

from __future__ import annotations

import json
from typing import Any

import pytest

import example_tasks  # noqa: F401 - registers the example tasks
from runs import engine, registry, worker
from runs.models import Environment, Run
from runs.states import RunStatus
from tests import factories

pytestmark = pytest.mark.django_db


@registry.task(id="test-returns-a-set")
def returns_a_set(payload: Any) -> set[int]:
    return {1, 2}


def admitted(task_id: str, payload: Any = None, **options: Any) -> Run:
    run = factories.run(task_id, payload=payload, **options)
    engine.admit(now=run.created_at)
    run.refresh_from_db()
    assert run.status == RunStatus.DEQUEUED
    return run


def test_hello_world_completes_with_a_greeting_from_the_payload(dev: Environment) -> None:
    run = admitted("hello-world", {"name": "Ada"})
    worker.execute(run_id=run.id, hostname="w1")
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert json.loads(run.output or "") == {"message": "Hello, Ada!"}
    assert run.attempts.get().worker == "w1"


def test_a_raising_task_fails_its_attempt_with_the_error_and_stack_trace(dev: Environment) -> None:
    run = admitted("always-fails", max_attempts=1)
    worker.execute(run_id=run.id, hostname="w1")
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.error is not None
    assert run.error["message"] == "this task always fails" and run.error["name"] == "RuntimeError"
    assert "always_fails" in run.error["stackTrace"]


def test_a_failed_attempt_with_attempts_left_is_requeued(dev: Environment) -> None:
    run = admitted("always-fails", max_attempts=2)
    worker.execute(run_id=run.id, hostname="w1")
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED and run.attempt_count == 1


def test_an_output_that_is_not_json_fails_the_run_with_a_clear_error(dev: Environment) -> None:
    run = admitted("test-returns-a-set")
    worker.execute(run_id=run.id, hostname="w1")
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.error is not None and "not JSON serializable" in run.error["message"]


def test_a_run_canceled_before_it_starts_is_not_executed(dev: Environment) -> None:
    run = admitted("hello-world", {"name": "Ada"})
    engine.cancel_run(run_id=run.id, actor="test")
    worker.execute(run_id=run.id, hostname="w1")
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELED and run.attempt_count == 0 and run.output is None


def test_a_task_this_worker_does_not_serve_is_a_system_failure(dev: Environment) -> None:
    run = admitted("served-elsewhere")
    worker.execute(run_id=run.id, hostname="w1")
    run.refresh_from_db()
    assert run.status == RunStatus.SYSTEM_FAILURE
    assert run.error is not None and "not served by worker w1" in run.error["message"]


def test_a_worker_records_the_tasks_it_serves(dev: Environment) -> None:
    engine.register_worker(hostname="w9", queues=["runyard.small-1x"], specs=list(registry.REGISTRY.values()))
    from runs.models import Queue, TaskDefinition, Worker

    definition = TaskDefinition.objects.get(task_id="hello-world-2")
    assert (definition.queue, definition.concurrency_limit) == ("greetings", 5)
    assert TaskDefinition.objects.get(task_id="always-fails").max_attempts == 2
    assert Queue.objects.get(environment=dev, name="greetings").concurrency_limit == 5
    assert "sleep" in Worker.objects.get(hostname="w9").tasks
