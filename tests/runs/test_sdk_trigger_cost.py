"""What an in-process `tasks.trigger` costs: its round trips to PostgreSQL (issue #19)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from runs.models import Environment, Run
from runs.sdk import ValidationError, tasks
from runs.states import RunStatus
from tests import factories

pytestmark = pytest.mark.django_db


def test_an_in_process_trigger_is_two_statements(dev: Environment) -> None:
    factories.task_definition("hello-world", queue="greetings", max_attempts=3)
    with CaptureQueriesContext(connection) as queries:
        handle = tasks.trigger("hello-world", {"name": "Ada"})
    statements = [q["sql"] for q in queries.captured_queries]
    # Was 3: the environment (by the ORM), the task's definition, the run's statement.
    assert len(statements) == 2, statements
    assert "runs_environment" in statements[0] and "runs_taskdefinition" in statements[0]
    run = Run.objects.get(pk=handle.id)
    assert (run.environment_id, run.status, run.queue, run.max_attempts) == (dev.pk, RunStatus.QUEUED, "greetings", 3)


def test_an_in_process_trigger_of_a_task_no_worker_serves_waits_for_one(dev: Environment) -> None:
    handle = tasks.trigger("nobody-serves-this", {"n": 1})
    run = Run.objects.get(pk=handle.id)
    assert (run.status, run.queue) == (RunStatus.PENDING_VERSION, "task/nobody-serves-this")


def test_an_in_process_trigger_to_an_unknown_env_names_the_env(dev: Environment) -> None:
    factories.task_definition("hello-world")
    with pytest.raises(ValidationError) as raised:
        tasks.trigger("hello-world", {}, env="nowhere")
    assert raised.value.field == "env"
    with pytest.raises(ValidationError) as raised:
        tasks.trigger("", {}, env="nowhere")  # a bad env is still named before a bad task id
    assert raised.value.field == "env"
    assert not Run.objects.exists()
