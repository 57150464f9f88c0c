"""runs.replay over the wire protocol (reference 3.8)."""

from __future__ import annotations

import json

import pytest

from runs import engine, packets
from runs.models import Run, RunEvent
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def hello_world(db):
    factories.task_definition("hello-world")


def original(api, **options) -> Run:
    body = {
        "payload": '{"json":{"n":1}}',
        "options": {"payloadType": "application/super+json", "tags": ["a"], "metadata": {"m": 1}, **options},
    }
    return Run.objects.get(pk=api.trigger(body=body).json()["id"])


def replay(api, run_id, body=None):
    raw = "" if body is None else json.dumps(body)
    return api.post(f"/api/v1/runs/{run_id}/replay", raw=raw)


def test_replay_without_a_body_copies_the_originals_payload_and_options(api):
    first = original(api, concurrencyKey="k", machine="large-1x", maxAttempts=3)
    response = replay(api, first.id)
    assert response.status_code == 200 and set(response.json()) == {"id"}
    again = Run.objects.get(pk=response.json()["id"])
    assert again.id != first.id and again.replayed_from_id == first.id
    assert (again.payload, again.payload_type) == (first.payload, first.payload_type)
    assert (again.tags, again.metadata, again.concurrency_key) == (["a"], {"m": 1}, "k")
    assert (again.machine, again.max_attempts, again.queue) == ("large-1x", 3, first.queue)
    assert RunEvent.objects.filter(run=again, reason=f"replay of {first.id}").exists()


def test_an_empty_json_object_is_the_same_as_no_body(api):
    first = original(api)
    response = replay(api, first.id, {})
    assert response.status_code == 200
    assert Run.objects.get(pk=response.json()["id"]).tags == ["a"]


def test_replay_takes_the_sdks_override_body(api):
    first = original(api)
    body = {
        "payload": '{"json":{"replayed":true,"when":"2031-05-06T07:08:09.000Z"},"meta":{"values":{"when":["Date"]}}}',
        "payloadType": "application/super+json",
        "tags": ["b", "c"],
        "metadata": {"replayed": True},
        "delay": "1h",
        "queue": "emails",
        "machine": "micro",
        "version": "20261128.1",
        "priority": 10,
    }
    response = replay(api, first.id, body)
    assert response.status_code == 200, response.json()
    again = Run.objects.get(pk=response.json()["id"])
    assert (again.payload, again.payload_type) == (body["payload"], packets.SUPERJSON)
    assert (again.tags, again.metadata, again.status) == (["b", "c"], {"replayed": True}, "DELAYED")
    assert (again.queue, again.machine, again.priority_ms) == ("emails", "micro", 10_000)
    assert again.replayed_from_id == first.id


def test_a_json_payload_override_is_stored_as_json(api):
    first = original(api)
    again = Run.objects.get(pk=replay(api, first.id, {"payload": {"n": 2}}).json()["id"])
    assert packets.decode(again.payload, again.payload_type) == {"n": 2}


def test_a_superjson_payload_must_be_a_string(api):
    first = original(api)
    response = replay(api, first.id, {"payload": {"n": 2}, "payloadType": "application/super+json"})
    assert response.status_code == 400 and "payload" in response.json()["error"]


def test_the_idempotency_key_is_used_as_given(api):
    first = original(api)
    body = {"idempotencyKey": "my-key", "idempotencyKeyTTL": "1h"}
    one, two = replay(api, first.id, body), replay(api, first.id, body)
    assert one.status_code == two.status_code == 200
    assert one.json() == two.json()
    assert Run.objects.get(pk=one.json()["id"]).idempotency_key == "my-key"


def test_an_unknown_key_is_a_400_naming_it(api):
    first = original(api)
    response = replay(api, first.id, {"tags": ["b"], "retry": {"maxAttempts": 2}})
    assert response.status_code == 400
    assert "retry" in response.json()["error"]
    assert Run.objects.count() == 1


def test_an_invalid_override_is_refused(api):
    first = original(api)
    assert replay(api, first.id, {"machine": "huge-9x"}).status_code == 400
    assert replay(api, first.id, {"maxAttempts": 0}).status_code == 400
    assert Run.objects.count() == 1


def test_a_final_run_can_be_replayed(api):
    first = original(api)
    engine.cancel_run(run_id=first.id, actor="test")
    response = replay(api, first.id)
    assert response.status_code == 200
    assert Run.objects.get(pk=response.json()["id"]).status == "QUEUED"


def test_replay_of_an_unknown_or_foreign_run_is_404(api, prod):
    assert replay(api, "run_nope").status_code == 404
    foreign = factories.run(env="prod")
    response = replay(api, foreign.id)
    assert response.status_code == 404 and response.json() == {"error": "Run not found"}
    assert Run.objects.count() == 1


def test_a_replay_keeps_the_test_flag_and_a_retried_replay_makes_one_run(api):
    from runs.models import Run

    body = {"payload": '{"json":{}}', "options": {"payloadType": "application/super+json", "test": True}}
    run_id = api.trigger(body=body).json()["id"]
    first = api.post(f"/api/v1/runs/{run_id}/replay", raw="", **{"x-trigger-request-idempotency-key": "r1"})
    again = api.post(f"/api/v1/runs/{run_id}/replay", raw="", **{"x-trigger-request-idempotency-key": "r1"})
    assert first.json()["id"] == again.json()["id"]
    assert Run.objects.get(pk=first.json()["id"]).is_test is True
