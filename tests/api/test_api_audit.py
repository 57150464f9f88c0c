"""Operator actions taken through the REST API are in the audit log (/audit/), named by the
key's hint as the run's timeline names them; triggers are not (they are the workload)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from runs.models import ApiKey, AuditEntry
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def hello_world(db):
    factories.task_definition("hello-world")


def delayed_run(api):
    body = {"payload": '{"json":{}}', "options": {"payloadType": "application/super+json", "delay": "1h"}}
    return api.trigger(body=body).json()["id"]


def key_name(api) -> str:
    return f"api:{ApiKey.objects.get(key_hash=ApiKey.hash(api.key)).hint}"


def test_a_cancel_through_the_api_is_audited_once_by_the_keys_hint(api):
    run_id = delayed_run(api)
    assert not AuditEntry.objects.exists()  # a trigger is not an operator action
    api.post(f"/api/v2/runs/{run_id}/cancel", raw="")
    api.post(f"/api/v2/runs/{run_id}/cancel", raw="")  # already final: nothing done, nothing audited
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.target, entry.environment.slug) == ("run.cancel", run_id, "dev")
    assert entry.username == key_name(api) and entry.user is None
    assert entry.reason == "canceled through the API"
    assert api.key not in entry.username  # the hint, never the key


def test_a_reschedule_through_the_api_is_audited_with_from_and_to(api):
    run_id = delayed_run(api)
    api.post(f"/api/v1/runs/{run_id}/reschedule", {"delay": "2030-06-01T10:00:00Z"})
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.target, entry.username) == ("run.reschedule", run_id, key_name(api))
    assert entry.data["to"].startswith("2030-06-01T10:00:00") and entry.data["from"] is not None


def test_a_refused_reschedule_is_not_audited(api):
    run_id = delayed_run(api)
    api.post(f"/api/v2/runs/{run_id}/cancel", raw="")
    response = api.post(f"/api/v1/runs/{run_id}/reschedule", {"delay": "2030-06-01T10:00:00Z"})
    assert response.status_code == 400
    assert list(AuditEntry.objects.values_list("action", flat=True)) == ["run.cancel"]


def test_a_replay_through_the_api_is_audited_once_per_request_key(api):
    run_id = delayed_run(api)
    first = api.post(
        f"/api/v1/runs/{run_id}/replay", {"tags": ["again"]}, **{"x-trigger-request-idempotency-key": "r1"}
    )
    again = api.post(
        f"/api/v1/runs/{run_id}/replay", {"tags": ["again"]}, **{"x-trigger-request-idempotency-key": "r1"}
    )
    assert first.json()["id"] == again.json()["id"]
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.target, entry.username) == ("run.replay", run_id, key_name(api))
    assert entry.data == {"replay": first.json()["id"], "changed": ["tags"]}


def test_the_audit_page_shows_api_actions_and_filters_by_the_key(api, client: Client):
    run_id = delayed_run(api)
    api.post(f"/api/v2/runs/{run_id}/cancel", raw="")
    admin = User.objects.create_user(username="ada", password=None)
    admin.groups.add(Group.objects.get(name="Admins"))
    client.force_login(admin)
    html = client.get("/audit/", {"user": key_name(api)}).content.decode()
    assert key_name(api) in html and f'href="/runs/{run_id}/?env=dev"' in html


def test_a_repeated_replay_is_audited_once_even_when_time_stands_still(api):
    import time_machine

    run_id = delayed_run(api)
    key = {"x-trigger-request-idempotency-key": "r2"}
    with time_machine.travel("2026-11-01T12:00:00Z", tick=False):
        # The answer to the retry was created at this very instant: only the engine knows it is not new.
        first = api.post(f"/api/v1/runs/{run_id}/replay", {}, **key)
        again = api.post(f"/api/v1/runs/{run_id}/replay", {}, **key)
    assert first.json()["id"] == again.json()["id"]
    assert list(AuditEntry.objects.values_list("action", flat=True)) == ["run.replay"]
