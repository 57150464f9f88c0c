"""Operators act on plain Celery tasks' runs from the dashboard as on any run: the tasks page
lists them with their signatures, and the trigger form, cancel, reschedule, replay with edited
args and bulk actions work for them."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

import example_tasks
from dashboard.celery import app
from runs import celery_adoption, celery_serving, engine, registry, worker
from runs.engine.bulk import work_bulk_actions
from runs.models import Environment, Run
from runs.states import RunStatus
from tests.dashboard.test_actions import replay_form

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(dev: Environment) -> Client:
    celery_serving.serve(app)
    celery_adoption._definitions.clear()
    engine.register_worker(hostname="c@test", queues=["runyard.small-1x"], specs=[registry.REGISTRY["example.add"]])
    user = User.objects.create_user(username="olga", password=None)
    user.groups.add(Group.objects.get(name="Operators"))
    client = Client()
    client.force_login(user)
    return client


def executed(run: Run) -> Run:
    engine.admit(now=timezone.now() + timedelta(seconds=1))
    worker.execute(run_id=run.id, hostname="c@test")
    run.refresh_from_db()
    return run


def test_the_tasks_page_lists_a_celery_task_with_its_signature(operator: Client) -> None:
    page = operator.get("/tasks/").content.decode()
    row = re.search(r'<tr id="task-exampleadd".*?</tr>', page, re.S)
    assert row is not None
    assert "add(a: float, b: float)" in row.group(0) and ">Celery<" in row.group(0)
    detail = operator.get("/tasks/example.add/").content.decode()
    assert "add(a: float, b: float)" in detail and "runyard.small-1x" in detail


def test_the_trigger_form_runs_a_celery_task_with_the_args_typed_in(operator: Client) -> None:
    page = operator.get("/tasks/example.add/").content.decode()
    assert 'name="p.args"' in page and 'name="p.kwargs"' in page
    response = operator.post("/tasks/example.add/", {"payload_mode": "fields", "p.args": "[4, 5]", "p.kwargs": "{}"})
    assert response.status_code == 302, response.content.decode()
    run = Run.objects.get(task_identifier="example.add")
    assert json.loads(run.payload) == {"args": [4, 5], "kwargs": {}}
    assert run.celery_queue == "runyard.small-1x"  # where the task's workers listen
    run = executed(run)
    assert (run.status, json.loads(run.output or "")) == (RunStatus.COMPLETED, 9)


def test_a_celery_tasks_run_is_canceled_from_its_page(operator: Client) -> None:
    run = Run.objects.get(celery_id=example_tasks.add.delay(1, 2).id)
    assert operator.post(f"/runs/{run.id}/cancel/", {"reason": "not needed"}).status_code == 303
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELED


def test_a_delayed_celery_task_is_rescheduled(operator: Client) -> None:
    run = Run.objects.get(celery_id=example_tasks.add.apply_async((2, 3), countdown=60).id)
    response = operator.post(f"/runs/{run.id}/reschedule/", {"when": "delay", "delay": "2h", "reason": "later"})
    assert response.status_code == 303
    run.refresh_from_db()
    assert run.status == RunStatus.DELAYED and run.delay_until is not None
    assert run.delay_until > timezone.now() + timedelta(minutes=110)


def test_a_replay_with_edited_args_runs_the_task_again_on_its_queue(operator: Client) -> None:
    original = executed(Run.objects.get(celery_id=example_tasks.add.apply_async((2, 3), queue="runyard.small-1x").id))
    values = replay_form(operator, original) | {"payload": '{"args": [20, 22], "kwargs": {}}', "reason": "fixed"}
    assert operator.post(f"/runs/{original.id}/replay/", values).status_code == 303
    replay = Run.objects.get(replayed_from=original)
    assert (replay.task_identifier, replay.celery_queue, replay.celery_id) == ("example.add", "runyard.small-1x", "")
    replay = executed(replay)
    assert (replay.status, json.loads(replay.output or "")) == (RunStatus.COMPLETED, 42)


def test_a_bulk_cancel_of_a_celery_tasks_runs(operator: Client) -> None:
    ids = [Run.objects.get(celery_id=example_tasks.add.apply_async((n, n), countdown=60).id).id for n in range(3)]
    body: dict[str, Any] = {"action": "cancel", "scope": "selected", "runs": ids, "confirm": "1", "reason": "dup"}
    assert operator.post("/runs/bulk/", body).status_code == 303
    work_bulk_actions(now=timezone.now())
    assert set(Run.objects.filter(pk__in=ids).values_list("status", flat=True)) == {RunStatus.CANCELED}
