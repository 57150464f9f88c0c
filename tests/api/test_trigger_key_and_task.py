"""A trigger reads its API key and its task's definition in one query (issue #8): the rules
of each are those of reading them apart."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from runs.models import ApiKey, Run
from tests import factories
from tests.api.conftest import Api

pytestmark = pytest.mark.django_db

BODY = {"payload": '{"json":{"hello":"world"}}', "options": {"payloadType": "application/super+json"}}


def test_a_revoked_key_is_401_for_a_registered_task_and_creates_nothing(client, dev):
    factories.task_definition("hello-world")
    key, secret = ApiKey.generate(dev)
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
    response = Api(client, secret).trigger(body=BODY)
    assert (response.status_code, response.json()) == (401, {"error": "Invalid API key"})
    assert not Run.objects.exists()


def test_a_task_no_worker_serves_is_triggered_and_waits_for_a_version(api):
    with CaptureQueriesContext(connection) as queries:
        response = api.trigger("not-deployed-yet", body=BODY)
    assert response.status_code == 200, response.json()
    run = Run.objects.get(pk=response.json()["id"])
    assert (run.status, run.queue, run.max_attempts) == ("PENDING_VERSION", "task/not-deployed-yet", 1)
    # The definition was looked for with the key, not again (the key's last_used_at is written once).
    assert sum("runs_taskdefinition" in query["sql"] for query in queries.captured_queries) == 1


def test_the_definition_read_with_the_key_shapes_the_run(api):
    factories.task_definition("emails/send", queue="mail", max_attempts=5, max_duration=90, machine="large-1x")
    response = api.trigger("emails/send", body=BODY)
    assert response.status_code == 200, response.json()
    run = Run.objects.get(pk=response.json()["id"])
    assert (run.status, run.queue, run.max_attempts, run.max_duration, run.machine) == (
        "QUEUED",
        "mail",
        5,
        90,
        "large-1x",
    )
    assert run.environment.slug == "dev" and run.task_identifier == "emails/send"


def test_an_invalid_task_id_is_still_a_400_naming_the_field(api):
    response = api.trigger("bad%20id", body=BODY)
    assert response.status_code == 400, response.json()
    assert "taskId" in response.json()["error"] and not Run.objects.exists()


def test_a_key_of_another_environment_triggers_there(client, dev):
    factories.task_definition("hello-world")
    secret = factories.api_key("prod")
    response = Api(client, secret).trigger(body=BODY)
    assert response.status_code == 200, response.json()
    assert Run.objects.get(pk=response.json()["id"]).environment.slug == "prod"
