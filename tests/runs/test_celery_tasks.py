"""Plain Celery tasks (runs.celery_adoption, runs.celery_serving): published as runs, executed by
the worker's executor (called directly here, the engine for real), with Celery's own options,
retries and revokes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from celery import Task, shared_task
from celery.result import AsyncResult
from django.db import transaction
from django.utils import timezone

import example_tasks
from dashboard.celery import app
from runs import celery_adoption, celery_serving, engine, registry, worker
from runs.engine import triggering
from runs.models import Environment, Run, TaskDefinition
from runs.options import OptionError
from runs.states import RunStatus

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
CALLS: list[Any] = []


@shared_task(name="tests.celery.flaky", bind=True, max_retries=2)
def flaky(self: Task, succeed_on: int) -> dict[str, Any]:
    CALLS.append((self.request.id, self.request.retries))
    if self.request.retries + 1 < succeed_on:
        raise self.retry(countdown=5, exc=ConnectionError(f"try {self.request.retries + 1} failed"))
    return {"retries": self.request.retries}


@shared_task(name="tests.celery.autoretry", autoretry_for=(KeyError,), retry_kwargs={"max_retries": 1, "countdown": 3})
def autoretry(key: str) -> str:
    return {"known": "yes"}[key]


@shared_task(name="tests.celery.explodes")
def explodes() -> None:
    raise ValueError("boom in a plain task")


@shared_task(name="tests.celery.parent")
def parent() -> str:
    return example_tasks.add.delay(1, 2).id


@shared_task(name="tests.celery.routed", queue="reports")
def routed() -> None:
    return None


@pytest.fixture(autouse=True)
def served(dev: Environment) -> None:
    """A worker of the app announced the Celery tasks it serves."""
    celery_serving.serve(app)
    celery_adoption._definitions.clear()
    celery_adoption._environments.clear()
    names = [n for n in registry.REGISTRY if n.startswith(("tests.celery.", "example.add"))]
    engine.register_worker(hostname="c@test", queues=["runyard.small-1x"], specs=[registry.REGISTRY[n] for n in names])
    CALLS.clear()


def run_of(result: AsyncResult) -> Run:
    return Run.objects.get(celery_id=result.id)


def execute(run: Run, at: datetime | None = None) -> Run:
    """What the worker does with the run once the engine admits it."""
    engine.admit(now=at or timezone.now() + timedelta(seconds=1))
    run.refresh_from_db()
    assert run.status == RunStatus.DEQUEUED
    worker.execute(run_id=run.id, hostname="c@test")
    run.refresh_from_db()
    return run


def test_delay_creates_a_queued_run_named_after_the_task_with_args_and_kwargs_as_payload() -> None:
    result = example_tasks.add.delay(2, b=3)
    run = run_of(result)
    assert isinstance(result, AsyncResult) and run.celery_id == result.id
    assert (run.task_identifier, run.status, run.environment.slug) == ("example.add", "QUEUED", "dev")
    assert json.loads(run.payload) == {"args": [2], "kwargs": {"b": 3}}
    assert (run.trigger_source, run.ttl, run.expires_at) == ("celery", None, None)
    assert run.celery_queue == "runyard.small-1x"  # the app's default queue, where its workers listen


def test_a_task_no_worker_announced_yet_waits_for_one() -> None:
    TaskDefinition.objects.filter(task_id="example.add").delete()
    run = run_of(example_tasks.add.delay(1, 1))
    assert run.status == RunStatus.PENDING_VERSION


def test_publishing_writes_the_run_in_one_statement(django_assert_max_num_queries: Any) -> None:
    example_tasks.add.delay(0, 0)  # the environment and the definition are read once per process
    with django_assert_max_num_queries(1):
        example_tasks.add.delay(1, 2)


def test_a_countdown_is_delayed_until_due_then_queued() -> None:
    with time_machine.travel(NOW, tick=False):
        run = run_of(example_tasks.add.apply_async((2, 3), countdown=60))
    assert run.status == RunStatus.DELAYED and run.delay_until == NOW + timedelta(seconds=60)
    engine.promote_delayed(now=NOW + timedelta(seconds=61))
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED


def test_an_eta_is_the_runs_delay() -> None:
    eta = timezone.now() + timedelta(hours=2)
    run = run_of(example_tasks.add.apply_async((2, 3), eta=eta))
    assert (run.status, run.delay_until) == (RunStatus.DELAYED, eta)


def test_an_expiry_passing_before_the_task_starts_expires_it_and_it_never_runs() -> None:
    with time_machine.travel(NOW, tick=False):
        run = run_of(example_tasks.add.apply_async((2, 3), expires=30))
    assert run.expires_at == NOW + timedelta(seconds=30)
    engine.tick(now=NOW + timedelta(seconds=31))  # the same tick that could admit it must not
    run.refresh_from_db()
    assert run.status == RunStatus.EXPIRED and run.attempt_count == 0


def test_an_expiry_before_the_countdown_ends_expires_the_run_when_it_is_due() -> None:
    with time_machine.travel(NOW, tick=False):
        run = run_of(example_tasks.add.apply_async((2, 3), countdown=60, expires=NOW + timedelta(seconds=10)))
    assert run.status == RunStatus.DELAYED
    engine.tick(now=NOW + timedelta(seconds=61))
    engine.tick(now=NOW + timedelta(seconds=61))
    run.refresh_from_db()
    assert run.status == RunStatus.EXPIRED and run.attempt_count == 0


def test_an_expiry_after_the_countdown_lets_it_run() -> None:
    with time_machine.travel(NOW, tick=False):
        run = run_of(example_tasks.add.apply_async((2, 3), countdown=60, expires=120))
    engine.promote_delayed(now=NOW + timedelta(seconds=61))
    run = execute(run, at=NOW + timedelta(seconds=62))
    assert run.status == RunStatus.COMPLETED


def test_the_queue_priority_and_tags_of_a_publish_are_the_runs() -> None:
    result = example_tasks.add.apply_async((1, 2), queue="reports", priority=7, headers={"runyard_tags": ["a", "b"]})
    run = run_of(result)
    assert (run.celery_queue, run.priority_ms, run.tags) == ("reports", 7000, ["a", "b"])
    assert run.options["queue"] == "reports" and run.options["celeryTaskId"] == result.id


def test_a_tasks_own_queue_routes_its_runs_there() -> None:
    assert run_of(routed.delay()).celery_queue == "reports"
    assert TaskDefinition.objects.get(task_id="tests.celery.routed").celery_queue == "reports"


def test_tags_runyard_refuses_name_the_header_and_create_no_run() -> None:
    with pytest.raises(OptionError, match="at most 10"):
        example_tasks.add.apply_async((1, 2), headers={"runyard_tags": [str(n) for n in range(11)]})
    assert not Run.objects.exists()


def test_a_given_task_id_is_the_celery_id() -> None:
    result = example_tasks.add.apply_async((1, 2), task_id="my-own-id")
    assert result.id == "my-own-id" and run_of(result).task_identifier == "example.add"


def test_a_rolled_back_transaction_publishes_nothing() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        example_tasks.add.delay(1, 2)
        raise RuntimeError("the caller's transaction fails")
    assert not Run.objects.exists()


def test_the_worker_runs_the_task_to_completed_with_its_return_value() -> None:
    run = execute(run_of(example_tasks.add.delay(2, 3)))
    assert (run.status, json.loads(run.output or "")) == (RunStatus.COMPLETED, 5)


def test_an_exception_fails_the_run_with_its_traceback_and_no_retry() -> None:
    run = execute(run_of(explodes.delay()))
    assert run.status == RunStatus.FAILED and run.attempt_count == 1
    assert run.error is not None and run.error["name"] == "ValueError"
    assert run.error["message"] == "boom in a plain task" and "explodes" in run.error["stackTrace"]


def test_self_retry_attempts_the_same_run_again_after_its_countdown() -> None:
    run = run_of(flaky.delay(succeed_on=2))
    started = timezone.now()
    run = execute(run)
    assert run.status == RunStatus.QUEUED and run.attempt_count == 1
    assert run.available_at is not None and run.available_at >= started + timedelta(seconds=5)
    retried = run.events.get(from_status=RunStatus.EXECUTING, to_status=RunStatus.QUEUED)
    assert "try 1 failed" in retried.reason and "retrying in 5s" in retried.reason
    assert Run.objects.count() == 1  # the retry's republish made no run of its own
    run = execute(run, at=run.available_at)
    assert run.status == RunStatus.COMPLETED and json.loads(run.output or "") == {"retries": 1}
    seen = list(CALLS)  # the task saw its own id and retry count
    assert seen == [(run.celery_id, 0), (run.celery_id, 1)]
    assert [a.status for a in run.attempts.order_by("number")] == [RunStatus.FAILED, RunStatus.COMPLETED]


def test_retries_beyond_max_retries_fail_the_run_with_the_tasks_error() -> None:
    run = run_of(flaky.delay(succeed_on=10))
    for _ in range(2):
        run = execute(run, at=(run.available_at or timezone.now()) + timedelta(seconds=1))
        assert run.status == RunStatus.QUEUED
    run = execute(run, at=(run.available_at or timezone.now()) + timedelta(seconds=1))
    assert run.status == RunStatus.FAILED and run.attempt_count == 3
    assert run.error is not None and run.error["name"] == "ConnectionError"


def test_autoretry_for_retries_the_listed_exception() -> None:
    run = execute(run_of(autoretry.delay("unknown")))
    assert run.status == RunStatus.QUEUED
    run = execute(run, at=(run.available_at or timezone.now()) + timedelta(seconds=1))
    assert run.status == RunStatus.FAILED and run.error is not None and run.error["name"] == "KeyError"


def test_a_lost_worker_crashes_the_run() -> None:
    run = run_of(example_tasks.add.delay(1, 2))
    engine.admit(now=timezone.now() + timedelta(seconds=1))
    assert engine.start_attempt(run_id=run.id, worker="c@test") is not None
    engine.recover_stalled(now=timezone.now() + timedelta(hours=1))
    run.refresh_from_db()
    assert run.status == RunStatus.CRASHED


def test_revoking_the_celery_id_cancels_the_run() -> None:
    result = example_tasks.add.apply_async((1, 2), countdown=60)
    result.revoke()
    run = run_of(result)
    assert run.status == RunStatus.CANCELED
    assert run.events.order_by("-at", "-id").first().actor == "celery"


def test_a_task_published_from_a_runs_code_is_its_child() -> None:
    run = execute(run_of(parent.delay()))
    child = Run.objects.get(celery_id=json.loads(run.output or ""))
    assert child.parent_id == run.id and child.task_identifier == "example.add"


def test_callbacks_and_arguments_that_are_not_json_stay_plain_celery_messages(monkeypatch: Any) -> None:
    sent: list[str] = []
    monkeypatch.setattr(celery_adoption, "_original_send_task", lambda app, name, *a, **kw: sent.append(name))
    example_tasks.add.apply_async((1, 2), link=example_tasks.add.s(3))
    example_tasks.add.delay(datetime(2026, 1, 1, tzinfo=UTC), 1)
    assert sent == ["example.add", "example.add"] and not Run.objects.exists()


def test_runyards_own_and_celerys_tasks_are_never_adopted() -> None:
    assert celery_serving.adopts("example.add")
    assert not celery_serving.adopts("runyard.execute_run")
    assert not celery_serving.adopts("celery.backend_cleanup")


def test_the_setting_can_name_tasks_with_wildcards(settings: Any) -> None:
    settings.RUNYARD_CELERY_TASKS = ["billing.*", "emails.send"]
    assert celery_serving.adopts("billing.invoice") and celery_serving.adopts("emails.send")
    assert not celery_serving.adopts("example.add")


def test_the_worker_records_the_tasks_signature_and_a_payload_of_args_and_kwargs() -> None:
    definition = TaskDefinition.objects.get(task_id="example.add")
    assert definition.signature == "add(a: float, b: float)"
    assert definition.module == "example_tasks.add"
    assert definition.payload_schema == celery_serving.ARGS_SCHEMA
    assert TaskDefinition.objects.get(task_id="tests.celery.flaky").signature == "flaky(succeed_on: int)"


def test_a_publish_inside_the_callers_transaction_keeps_its_durability(django_assert_max_num_queries: Any) -> None:
    example_tasks.add.delay(0, 0)
    with django_assert_max_num_queries(1) as queries:
        example_tasks.add.delay(1, 2)  # a test runs inside a transaction, as a view in ATOMIC_REQUESTS
    assert "synchronous_commit" not in queries.captured_queries[0]["sql"]
    # Outside one, the publish's own statement commits without waiting for the WAL flush.
    assert "set_config('synchronous_commit', 'off', true)" in triggering._new_runs_statement(True, True)
