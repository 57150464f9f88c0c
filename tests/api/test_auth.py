from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from runs.models import ApiKey
from tests import factories
from tests.api.conftest import Api

pytestmark = pytest.mark.django_db

TRIGGER = "/api/v1/tasks/hello-world/trigger"


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Bearer tr_dev_wrong", "Basic dXNlcjpwYXNz", "tr_dev_nobearer"],
)
def test_missing_or_wrong_key_is_401_json(client, dev, authorization):
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = client.post(TRIGGER, data="{}", content_type="application/json", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": "Invalid API key"}


def test_revoked_key_is_401(client, dev):
    key, secret = ApiKey.generate(dev)
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
    assert Api(client, secret).get("/api/v3/runs/run_x").status_code == 401


def test_rejected_key_is_never_logged(client, dev, caplog):
    secret = "tr_dev_thisIsNotAKeyButLooksLikeOne1234"
    with caplog.at_level(logging.DEBUG):
        Api(client, secret).get("/api/v3/runs/run_x")
    assert secret not in caplog.text


def test_bearer_scheme_is_case_insensitive(client, dev_key):
    response = client.get("/api/v3/runs/run_x", headers={"Authorization": f"bearer {dev_key}"})
    assert response.status_code == 404


def test_last_used_at_is_written_at_most_once_a_minute(client, dev):
    key, secret = ApiKey.generate(dev)
    api = Api(client, secret)
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        api.get("/api/v3/runs/run_x")
    key.refresh_from_db()
    assert key.last_used_at == start
    with time_machine.travel(start + timedelta(seconds=30), tick=False):
        api.get("/api/v3/runs/run_x")
    key.refresh_from_db()
    assert key.last_used_at == start
    with time_machine.travel(start + timedelta(seconds=61), tick=False):
        api.get("/api/v3/runs/run_x")
    key.refresh_from_db()
    assert key.last_used_at == start + timedelta(seconds=61)


def test_api_needs_no_csrf_token_and_no_login(dev_key):
    client = Client(enforce_csrf_checks=True)
    factories.task_definition("hello-world")
    response = Api(client, dev_key).trigger()
    assert response.status_code == 200
