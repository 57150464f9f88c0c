"""The executor with packets in object storage: stored payloads in, large outputs out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

import example_tasks  # noqa: F401 - registers the example tasks
from runs import context, engine, packets, registry, storage, worker
from runs.models import Environment, Run
from runs.states import RunStatus
from tests import factories

pytestmark = pytest.mark.django_db

BIG = 600 * 1024


@registry.task(id="test-large-output")
def large_output(payload: Any) -> dict[str, Any]:
    return {"blob": "z" * BIG, "echo": payload}


@registry.task(id="test-sized-output")
def sized_output(payload: Any) -> str:
    return "y" * int(payload)


@registry.task(id="test-output-after-cancel")
def output_after_cancel(payload: Any) -> str:
    ctx = context.current()
    assert ctx is not None
    engine.cancel_run(run_id=ctx.run_id, actor="test")  # the attempt is stale once it returns
    return "w" * BIG


def admitted(task_id: str, payload: str, payload_type: str, **options: Any) -> Run:
    factories.task_definition(task_id)
    run = engine.trigger(
        environment=factories.environment("dev"),
        task_id=task_id,
        payload=payload,
        payload_type=payload_type,
        options=engine.TriggerOptions(**options),
        actor="test",
    ).run
    engine.admit(now=run.created_at)
    run.refresh_from_db()
    assert run.status == RunStatus.DEQUEUED
    return run


def executed(run: Run) -> Run:
    worker.execute(run_id=run.id, hostname="w1")
    run.refresh_from_db()
    return run


def test_a_stored_payload_is_loaded_and_decoded_by_its_stored_type(dev: Environment) -> None:
    path = "trigger/packet_stored/payload.json"
    storage.put(packets.storage_key(dev.pk, path), b'{"json":{"name":"Ada"}}', packets.SUPERJSON)
    run = executed(admitted("hello-world", path, packets.STORE))
    assert run.status == RunStatus.COMPLETED
    assert json.loads(run.output or "") == {"message": "Hello, Ada!"}


def test_a_stored_text_payload_reaches_the_task_as_a_string(dev: Environment) -> None:
    path = "trigger/packet_text/payload.txt"
    storage.put(packets.storage_key(dev.pk, path), b"Grace", packets.TEXT)
    run = executed(admitted("hello-world", path, packets.STORE))
    assert json.loads(run.output or "") == {"message": "Hello, Grace!"}


def test_a_missing_stored_payload_fails_the_attempt_saying_so(dev: Environment) -> None:
    run = executed(admitted("hello-world", "trigger/packet_gone/payload.json", packets.STORE))
    assert run.status == RunStatus.FAILED
    assert run.error is not None
    assert "trigger/packet_gone/payload.json" in run.error["message"]
    assert "cannot be read" in run.error["message"]


def test_an_output_over_512_kb_is_stored_and_retrieve_gives_its_url(dev: Environment) -> None:
    run = executed(admitted("test-large-output", '{"json":{"k":1}}', packets.SUPERJSON))
    assert run.status == RunStatus.COMPLETED
    assert run.output_type == packets.STORE
    assert run.output == f"runyard/{run.id}/attempt-1/output.json"
    data, content_type = storage.get(packets.storage_key(dev.pk, run.output))
    assert content_type == packets.JSON
    assert json.loads(data) == {"blob": "z" * BIG, "echo": {"k": 1}}

    client = Client(headers={"Authorization": f"Bearer {factories.api_key('dev')}"})
    detail = client.get(f"/api/v3/runs/{run.id}").json()
    assert "output" not in detail
    fetched = Client().get(detail["outputPresignedUrl"])
    assert fetched["Content-Type"] == "application/json"
    assert json.loads(b"".join(fetched.streaming_content))["echo"] == {"k": 1}
    assert client.get(f"/api/v1/runs/{run.id}/packets/output").status_code == 200


def test_an_output_of_512_kb_stays_in_the_row(dev: Environment) -> None:
    run = executed(admitted("test-sized-output", str(512 * 1024 - 2), packets.JSON))  # plus two quotes
    assert run.output_type == packets.JSON and len(run.output or "") == 512 * 1024


def test_an_output_over_the_limit_fails_the_run_with_the_sizes(dev: Environment, settings) -> None:
    settings.RUNYARD_MAX_OUTPUT_BYTES = 1024
    run = executed(admitted("test-sized-output", "1023", packets.JSON, max_attempts=1))
    assert run.status == RunStatus.FAILED
    assert run.error is not None
    assert run.error["message"] == "Output is 1025 bytes, over the 1 KB limit"
    assert run.error["name"] == "PacketTooLarge"
    assert run.output is None


def test_an_output_over_the_limit_is_retried_like_any_task_error(dev: Environment, settings) -> None:
    settings.RUNYARD_MAX_OUTPUT_BYTES = 1024
    run = executed(admitted("test-sized-output", "2000", packets.JSON, max_attempts=2))
    assert run.status == RunStatus.QUEUED and run.attempt_count == 1


def test_the_stored_output_of_a_stale_attempt_is_deleted(dev: Environment, objects: Path) -> None:
    run = executed(admitted("test-output-after-cancel", "", packets.JSON))
    assert run.status == RunStatus.CANCELED and run.output is None
    assert not storage.exists(packets.storage_key(dev.pk, f"runyard/{run.id}/attempt-1/output.json"))
    assert not [path for path in objects.rglob("*") if path.is_file()]
