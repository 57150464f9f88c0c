from __future__ import annotations

import json

import pytest

from runs import engine, sdk
from runs.models import Run
from runs.sdk import RunNotFoundError, RunyardError, ValidationError, runs, tasks
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def hello_world(dev, prod):
    factories.task_definition("hello-world")


def test_trigger_stores_the_payload_as_superjson_and_queues_the_run():
    handle = tasks.trigger("hello-world", {"hello": "world"})
    assert handle.is_cached is False
    run = Run.objects.get(pk=handle.id)
    assert run.status == "QUEUED"
    assert run.environment.slug == "dev"
    assert json.loads(run.payload) == {"json": {"hello": "world"}}
    assert run.payload_type == "application/super+json"
    assert run.trigger_source == "sdk"


def test_trigger_takes_camel_case_or_snake_case_options():
    camel = tasks.trigger("hello-world", 1, {"maxAttempts": 4, "concurrencyKey": "u1", "queue": {"name": "q"}})
    snake = tasks.trigger("hello-world", 1, {"max_attempts": 4, "concurrency_key": "u1", "queue": "q"})
    for handle in (camel, snake):
        run = Run.objects.get(pk=handle.id)
        assert (run.max_attempts, run.concurrency_key, run.queue) == (4, "u1", "q")


def test_trigger_into_another_environment():
    handle = tasks.trigger("hello-world", None, {"tags": "nightly", "ttl": 90}, env="prod")
    run = Run.objects.get(pk=handle.id)
    assert run.environment.slug == "prod"
    assert (run.tags, run.ttl, run.payload) == (["nightly"], 90, "")


def test_bad_option_raises_validation_error_naming_the_field():
    with pytest.raises(ValidationError) as caught:
        tasks.trigger("hello-world", {}, {"machine": "huge"})
    assert caught.value.field == "machine"
    assert "machine" in str(caught.value)
    assert Run.objects.count() == 0


def test_too_many_tags_is_a_validation_error():
    with pytest.raises(ValidationError, match="Too many tags"):
        tasks.trigger("hello-world", {}, {"tags": [str(i) for i in range(11)]})


def test_payload_that_is_not_json_is_a_validation_error():
    with pytest.raises(ValidationError) as caught:
        tasks.trigger("hello-world", {"when": object()})
    assert caught.value.field == "payload"


def test_unknown_environment_is_a_validation_error():
    with pytest.raises(ValidationError) as caught:
        tasks.trigger("hello-world", {}, env="qa")
    assert caught.value.field == "env"


def test_sdk_errors_share_a_base_class():
    assert issubclass(ValidationError, RunyardError)
    assert issubclass(RunNotFoundError, RunyardError)


def test_retrieve_returns_the_decoded_run():
    handle = tasks.trigger("hello-world", {"n": 1}, {"tags": ["b", "a"], "metadata": {"k": "v"}})
    info = runs.retrieve(handle.id)
    assert isinstance(info, sdk.RunInfo)
    assert (info.id, info.status, info.task_identifier) == (handle.id, "QUEUED", "hello-world")
    assert info.payload == {"n": 1}
    assert (info.output, info.error, info.started_at, info.finished_at) == (None, None, None, None)
    assert info.tags == ["a", "b"]
    assert info.metadata == {"k": "v"}
    assert info.attempt_count == 0
    assert info.is_queued and not (info.is_executing or info.is_completed or info.is_failed)


def test_retrieve_of_a_completed_run_has_its_output():
    handle = tasks.trigger("hello-world", {"n": 1})
    engine.admit(now=Run.objects.get(pk=handle.id).created_at)
    attempt = engine.start_attempt(run_id=handle.id, worker="test-worker")
    assert attempt is not None
    engine.complete_attempt(run_id=handle.id, attempt=attempt.number, output="2", output_type="application/json")
    info = runs.retrieve(handle.id)
    assert (info.status, info.output, info.is_success, info.attempt_count) == ("COMPLETED", 2, True, 1)
    assert info.finished_at is not None


def test_retrieve_unknown_run_raises_run_not_found():
    with pytest.raises(RunNotFoundError):
        runs.retrieve("run_doesnotexist0000000000000")


def test_retrieve_does_not_see_runs_of_another_environment():
    handle = tasks.trigger("hello-world", {}, env="prod")
    with pytest.raises(RunNotFoundError):
        runs.retrieve(handle.id, env="dev")
    assert runs.retrieve(handle.id, env="prod").id == handle.id


def test_the_sdk_cancels_and_reschedules_runs(dev):
    from datetime import UTC, datetime

    from runs.sdk import RunStateError, runs, tasks

    factories.task_definition("hello-world")
    handle = tasks.trigger("hello-world", {"n": 1}, {"delay": "1h"})
    moved = runs.reschedule(handle.id, datetime(2031, 1, 1, tzinfo=UTC))
    assert moved.status == "DELAYED"
    assert runs.cancel(handle.id).status == "CANCELED"
    with pytest.raises(RunStateError, match="not delayed"):
        runs.reschedule(handle.id, "1h")


def test_the_sdk_hashes_idempotency_keys_like_the_official_sdk(dev):
    import hashlib

    from runs.models import Run
    from runs.sdk import tasks

    factories.task_definition("hello-world")
    first = tasks.trigger("hello-world", {"n": 1}, {"idempotency_key": "order-42"})
    again = tasks.trigger("hello-world", {"n": 2}, {"idempotencyKey": "order-42"})
    assert again.id == first.id and again.is_cached
    run = Run.objects.get(pk=first.id)
    assert run.idempotency_key == hashlib.sha256(b"order-42").hexdigest()
    assert run.idempotency_key_user == "order-42"
