"""runs.django_tasks.RunyardBackend: django-tasks @task functions enqueue Runyard runs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from django_tasks import TaskContext, TaskResultStatus, default_task_backend, task, task_backends
from django_tasks.exceptions import TaskResultDoesNotExist

from runs import engine, registry, worker
from runs.django_tasks import RunyardBackend
from runs.models import Run, TaskDefinition
from tests import factories

pytestmark = pytest.mark.django_db


@task
def multiply(a: int, b: int = 2) -> int:
    return a * b


@task
def explode(message: str) -> None:
    raise ValueError(message)


@task(takes_context=True)
def which_run(context: TaskContext, label: str) -> dict[str, object]:
    return {"label": label, "id": context.task_result.id, "attempt": context.attempt}


@pytest.fixture(autouse=True)
def served(dev) -> None:
    """A worker announced the tasks this module registered by decorating them."""
    specs = [registry.REGISTRY[t.module_path] for t in (multiply, explode, which_run)]
    engine.register_worker(hostname="dt@test", queues=["runyard.small-1x"], specs=specs)


def execute(run_id: str) -> Run:
    """What a Celery worker does with the run: admitted by the engine, then executed."""
    engine.admit(now=timezone.now() + timedelta(seconds=1))
    worker.execute(run_id=run_id, hostname="dt@test")
    return Run.objects.get(pk=run_id)


def test_the_settings_make_runyard_the_default_backend():
    assert isinstance(task_backends["default"], RunyardBackend)


def test_decorating_registers_a_runyard_task_named_by_its_import_path():
    spec = registry.get("tests.runs.test_django_tasks.multiply")
    assert spec is not None and spec.module == "tests.runs.test_django_tasks.multiply"
    assert spec.queue == "task/tests.runs.test_django_tasks.multiply"
    assert TaskDefinition.objects.filter(task_id="tests.runs.test_django_tasks.multiply").exists()


def test_enqueue_creates_a_queued_run_of_the_task_with_its_arguments():
    result = multiply.enqueue(3, b=4)
    run = Run.objects.get(pk=result.id)
    assert (run.task_identifier, run.status, run.environment.slug) == (multiply.module_path, "QUEUED", "dev")
    assert (result.status, result.args, result.kwargs) == (TaskResultStatus.READY, [3], {"b": 4})
    assert result.enqueued_at == run.created_at and not result.is_finished
    assert run.trigger_source == "sdk"


def test_the_run_is_on_the_dashboard_like_any_run(client: Client):
    result = multiply.enqueue(1)
    client.force_login(User.objects.create_superuser("ada", "ada@example.com", "a-long-password-1"))
    page = client.get("/runs/")
    assert page.status_code == 200
    assert result.id in page.content.decode() and multiply.module_path in page.content.decode()


def test_the_worker_runs_it_to_completed_with_its_return_value():
    result = multiply.enqueue(3, b=4)
    run = execute(result.id)
    assert run.status == "COMPLETED"
    done = multiply.get_result(result.id)
    assert (done.status, done.return_value, done.worker_ids) == (TaskResultStatus.SUCCESSFUL, 12, ["dt@test"])
    assert done.started_at is not None and done.finished_at is not None and done.last_attempted_at is not None
    result.refresh()
    assert result.return_value == 12


def test_a_task_that_raises_fails_with_its_error():
    result = explode.using(priority=0).enqueue("boom")
    Run.objects.filter(pk=result.id).update(max_attempts=1)
    assert execute(result.id).status == "FAILED"
    failed = default_task_backend.get_result(result.id)
    assert failed.status == TaskResultStatus.FAILED
    (error,) = failed.errors
    assert error.exception_class is ValueError and "boom" in error.traceback
    with pytest.raises(ValueError, match="Task failed"):
        failed.return_value  # noqa: B018


def test_a_task_that_takes_context_sees_its_own_run():
    result = which_run.enqueue("x")
    execute(result.id)
    assert which_run.get_result(result.id).return_value == {"label": "x", "id": result.id, "attempt": 1}


def test_statuses_map_to_django_tasks_statuses():
    result = multiply.enqueue(1)
    assert multiply.get_result(result.id).status == TaskResultStatus.READY
    engine.admit(now=timezone.now() + timedelta(seconds=1))
    engine.start_attempt(run_id=result.id, worker="dt@test")
    assert multiply.get_result(result.id).status == TaskResultStatus.RUNNING
    engine.cancel_run(run_id=result.id, actor="test")
    assert multiply.get_result(result.id).status == TaskResultStatus.FAILED


def test_run_after_delays_the_run_and_priority_moves_it_up_the_queue():
    when = timezone.now() + timedelta(hours=2)
    result = multiply.using(run_after=when, priority=30).enqueue(1)
    run = Run.objects.get(pk=result.id)
    assert (run.status, run.delay_until, run.priority_ms) == ("DELAYED", when, 30_000)
    assert multiply.get_result(result.id).status == TaskResultStatus.READY


def test_arguments_must_be_json():
    with pytest.raises(TypeError):
        multiply.enqueue(object())
    assert not Run.objects.exists()


def test_get_result_of_an_unknown_run_or_a_plain_runyard_run_does_not_exist():
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result("run_" + "0" * 25)
    plain = factories.run("hello-world")
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(plain.id)
