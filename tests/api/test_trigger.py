from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from api import jwt
from runs.models import RequestIdempotency, Run
from tests import factories

pytestmark = pytest.mark.django_db

MINIMAL_SDK_BODY = {
    "payload": '{"json":{"hello":"world"}}',
    "options": {"payloadType": "application/super+json", "payloadSize": 26},
}

ALL_OPTIONS_SDK_BODY = {
    "payload": '{"json":{"all":"options"}}',
    "options": {
        "queue": {"name": "sdk-check-queue"},
        "concurrencyKey": "user-123",
        "payloadType": "application/super+json",
        "payloadSize": 26,
        "idempotencyKey": "77760950881091cc741aa0cbffa8247ad45652c94b9262d3ef2609dc80078215",
        "idempotencyKeyTTL": "1h",
        "idempotencyKeyOptions": {"key": "all-options-X", "scope": "run"},
        "delay": "1h",
        "ttl": "10m",
        "tags": ["sdkcheck:abc", "all-options"],
        "maxAttempts": 3,
        "metadata": {"source": "sdk-check", "count": 1, "nested": {"ok": True, "list": ["a", 2]}},
        "maxDuration": 300,
        "machine": "small-2x",
        "priority": 10,
        "region": "us-east-1",
    },
}


@pytest.fixture(autouse=True)
def hello_world(db):
    factories.task_definition("hello-world")


def test_minimal_sdk_body_creates_a_queued_run_with_the_payload_verbatim(api):
    response = api.trigger(body=MINIMAL_SDK_BODY)
    assert response.status_code == 200
    body = response.json()
    assert re.fullmatch(r"run_[0-9a-z]{25}", body["id"])
    assert body["isCached"] is False
    run = Run.objects.get(pk=body["id"])
    assert run.status == "QUEUED"
    assert run.environment.slug == "dev"
    assert run.task_identifier == "hello-world"
    assert run.payload == '{"json":{"hello":"world"}}'
    assert run.payload_type == "application/super+json"


def test_response_carries_a_jwt_signed_with_the_environment_secret(api, dev):
    response = api.trigger(body=MINIMAL_SDK_BODY)
    run_id = response.json()["id"]
    claims = jwt.verify(response["x-trigger-jwt"], jwt.environment_secret(dev))
    assert claims["sub"] == str(dev.pk)
    assert claims["pub"] is True
    assert claims["scopes"] == [f"read:runs:{run_id}", f"write:inputStreams:{run_id}"]
    assert claims["iss"] == "https://id.trigger.dev"
    assert claims["aud"] == "https://api.trigger.dev"
    assert claims["exp"] == claims["iat"] + 3600


def test_jwt_does_not_verify_with_another_environments_secret(api, prod):
    token = api.trigger(body=MINIMAL_SDK_BODY)["x-trigger-jwt"]
    with pytest.raises(jwt.JwtError):
        jwt.verify(token, jwt.environment_secret(prod))


def test_repeated_request_idempotency_key_returns_the_first_run_and_creates_no_other(api):
    key = "0f6a3c1e-5d0b-4a8e-9a57-3f1b2c4d5e6f"
    first = api.trigger(body=MINIMAL_SDK_BODY, **{"x-trigger-request-idempotency-key": key})
    second = api.trigger(body=MINIMAL_SDK_BODY, **{"x-trigger-request-idempotency-key": key})
    assert first.status_code == second.status_code == 200
    assert second.json() == {"id": first.json()["id"], "isCached": False}
    assert Run.objects.count() == 1
    assert RequestIdempotency.objects.count() == 1


def test_without_request_key_every_call_creates_a_run(api):
    api.trigger(body=MINIMAL_SDK_BODY)
    api.trigger(body=MINIMAL_SDK_BODY)
    assert Run.objects.count() == 2


def test_every_documented_option_is_accepted_and_mapped(api):
    response = api.trigger(body=ALL_OPTIONS_SDK_BODY)
    assert response.status_code == 200, response.json()
    run = Run.objects.get(pk=response.json()["id"])
    assert run.queue == "sdk-check-queue"
    assert run.concurrency_key == "user-123"
    assert run.ttl == 600
    assert run.tags == ["all-options", "sdkcheck:abc"]
    assert run.max_attempts == 3
    assert run.metadata == {"source": "sdk-check", "count": 1, "nested": {"ok": True, "list": ["a", 2]}}
    assert run.max_duration == 300
    assert run.machine == "small-2x"
    assert run.priority_ms == 10_000
    assert run.region == "us-east-1"
    assert run.options == ALL_OPTIONS_SDK_BODY["options"]


def test_unknown_and_future_option_keys_are_ignored(api):
    options = {
        "payloadType": "application/super+json",
        "lockToVersion": "20260101.1",
        "externalDeploymentId": "dep-1",
        "concurrency": ["a", "b"],
        "debounce": {"key": "k", "delay": "5s"},
        "somethingNew": {"x": [1, 2]},
        "test": False,
    }
    response = api.trigger(body={"payload": '{"json":1}', "options": options, "context": {"x": 1}})
    assert response.status_code == 200


def test_task_id_is_url_decoded(api):
    factories.task_definition("emails/send")
    response = api.trigger("emails%2Fsend", body=MINIMAL_SDK_BODY)
    assert response.status_code == 200
    assert Run.objects.get(pk=response.json()["id"]).task_identifier == "emails/send"


def test_unknown_task_creates_a_run_pending_version(api):
    response = api.trigger("not-deployed-yet", body=MINIMAL_SDK_BODY)
    assert response.status_code == 200
    assert Run.objects.get(pk=response.json()["id"]).status == "PENDING_VERSION"


def test_text_plain_payload_is_stored_as_text(api):
    response = api.trigger(body={"payload": "just words", "options": {"payloadType": "text/plain"}})
    assert response.status_code == 200
    run = Run.objects.get(pk=response.json()["id"])
    assert (run.payload, run.payload_type) == ("just words", "text/plain")


def test_json_value_payload_is_stored_as_application_json(api):
    response = api.trigger(body={"payload": {"a": [1, 2]}})
    run = Run.objects.get(pk=response.json()["id"])
    assert json.loads(run.payload) == {"a": [1, 2]}
    assert run.payload_type == "application/json"


def test_absent_payload_makes_a_run_without_payload(api):
    response = api.trigger(body={"options": {"payloadType": "application/json", "payloadSize": 0}})
    assert response.status_code == 200
    assert Run.objects.get(pk=response.json()["id"]).payload == ""


@pytest.mark.parametrize(
    ("payload", "payload_type"),
    [
        ('{"hello":"world"}', "application/super+json"),
        ("not json", "application/super+json"),
        ("not json", "application/json"),
    ],
)
def test_payload_that_does_not_match_its_type_is_400(api, payload, payload_type):
    response = api.trigger(body={"payload": payload, "options": {"payloadType": payload_type}})
    assert response.status_code == 400
    assert "payload" in response.json()["error"]
    assert Run.objects.count() == 0


def test_unsupported_payload_type_is_400_naming_it(api):
    response = api.trigger(body={"payload": "x", "options": {"payloadType": "application/xml"}})
    assert response.status_code == 400
    assert "payloadType" in response.json()["error"]


def test_bad_machine_is_400_naming_machine(api):
    body = {**MINIMAL_SDK_BODY, "options": {"payloadType": "application/super+json", "machine": "huge"}}
    response = api.trigger(body=body)
    assert response.status_code == 400
    assert "machine" in response.json()["error"]
    assert Run.objects.count() == 0


def test_eleven_tags_are_422(api):
    options = {"payloadType": "application/super+json", "tags": [f"t{i}" for i in range(11)]}
    response = api.trigger(body={**MINIMAL_SDK_BODY, "options": options})
    assert response.status_code == 422
    assert response.json()["error"].startswith("Too many tags")
    assert Run.objects.count() == 0


def test_a_tag_longer_than_128_characters_is_400(api):
    options = {"payloadType": "application/super+json", "tags": ["x" * 129]}
    response = api.trigger(body={**MINIMAL_SDK_BODY, "options": options})
    assert response.status_code == 400
    assert "tags" in response.json()["error"]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("maxAttempts", 0),
        ("maxAttempts", "3"),
        ("ttl", "10 minutes"),
        ("ttl", -1),
        ("metadata", [1, 2]),
        ("priority", "high"),
        ("maxDuration", "long"),
        ("region", 5),
        ("queue", {"name": 5}),
    ],
)
def test_bad_option_value_is_400_naming_the_option(api, option, value):
    options = {"payloadType": "application/super+json", option: value}
    response = api.trigger(body={**MINIMAL_SDK_BODY, "options": options})
    assert response.status_code == 400
    assert option in response.json()["error"]


def test_numeric_concurrency_key_is_stored_as_a_string(api):
    options = {"payloadType": "application/super+json", "concurrencyKey": 42}
    response = api.trigger(body={**MINIMAL_SDK_BODY, "options": options})
    assert Run.objects.get(pk=response.json()["id"]).concurrency_key == "42"


def test_malformed_json_body_is_400_naming_the_problem(api):
    response = api.post("/api/v1/tasks/hello-world/trigger", raw='{"payload": ')
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


@pytest.mark.parametrize("raw", ["[1, 2]", '"text"', "42", "NaN"])
def test_body_that_is_not_a_json_object_is_400(api, raw):
    response = api.post("/api/v1/tasks/hello-world/trigger", raw=raw)
    assert response.status_code == 400
    assert Run.objects.count() == 0


def test_options_that_are_not_an_object_are_400(api):
    response = api.trigger(body={"payload": '{"json":1}', "options": "fast"})
    assert response.status_code == 400
    assert "options" in response.json()["error"]


def test_nul_characters_are_400_not_500(api):
    response = api.trigger(body={"payload": "a\x00b", "options": {"payloadType": "text/plain", "x": "\x00"}})
    assert response.status_code == 400


def test_task_id_that_can_never_be_registered_is_400(api):
    response = api.trigger("x" * 129, body=MINIMAL_SDK_BODY)
    assert response.status_code == 400
    assert "taskId" in response.json()["error"]


def test_overlong_request_idempotency_key_is_400(api):
    response = api.trigger(body=MINIMAL_SDK_BODY, **{"x-trigger-request-idempotency-key": "k" * 129})
    assert response.status_code == 400


def test_run_is_created_in_the_keys_environment(prod_api):
    response = prod_api.trigger(body=MINIMAL_SDK_BODY)
    run = Run.objects.get(pk=response.json()["id"])
    assert run.environment.slug == "prod"


def test_a_delayed_trigger_is_delayed_with_its_due_time_in_the_retrieve_response(api):
    body = {**MINIMAL_SDK_BODY, "options": {**MINIMAL_SDK_BODY["options"], "delay": "2030-01-01T00:00:00Z"}}
    run_id = api.trigger(body=body).json()["id"]
    retrieved = api.get(f"/api/v3/runs/{run_id}").json()
    assert retrieved["status"] == "DELAYED" and retrieved["isQueued"] is True
    assert retrieved["delayedUntil"].startswith("2030-01-01T00:00:00")


@pytest.mark.parametrize("delay", ["2001-01-01T00:00:00Z", "whenever"])
def test_a_past_or_unparseable_delay_is_a_422_naming_the_value(api, delay):
    body = {**MINIMAL_SDK_BODY, "options": {**MINIMAL_SDK_BODY["options"], "delay": delay}}
    response = api.trigger(body=body)
    assert response.status_code == 422
    assert delay in response.json()["error"]
    assert Run.objects.count() == 0


def test_a_duration_delay_counts_from_the_runs_creation_to_the_microsecond(api):
    body = {**MINIMAL_SDK_BODY, "options": {**MINIMAL_SDK_BODY["options"], "delay": "2s"}}
    run = Run.objects.get(pk=api.trigger(body=body).json()["id"])
    assert (run.delay_until - run.created_at).total_seconds() == 2


def test_the_jwt_expires_after_an_hour(api, dev):
    token = api.trigger(body=MINIMAL_SDK_BODY)["x-trigger-jwt"]
    with time_machine.travel(timezone.now() + timedelta(seconds=3601)), pytest.raises(jwt.JwtError, match="expired"):
        jwt.verify(token, jwt.environment_secret(dev))
