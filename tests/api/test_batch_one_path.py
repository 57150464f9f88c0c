"""Every batch takes the engine's one path (runs.engine.batches: create_batch, then fill_batch),
whether it comes over the REST API or from the in-process Python SDK: the same rows, the same
rules for its items, and nothing half made when an item is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runs import context, engine, ratelimit, sdk
from runs.models import Batch, BatchItem, BatchStatus, Environment, Run
from tests import factories

pytestmark = pytest.mark.django_db

NDJSON = "application/x-ndjson"
ITEMS = [
    {"payload": {"i": 0}, "options": {"tags": ["first"], "machine": "large-1x"}},
    {"payload": {"i": 1}, "options": {"delay": "1h", "concurrencyKey": "c1"}},
]


@pytest.fixture(autouse=True)
def setup(dev: Environment) -> None:
    factories.task_definition("hello-world")
    redis = ratelimit.redis_client()
    for name in redis.scan_iter(f"{ratelimit.KEY_PREFIX}:*"):
        redis.delete(name)


def over_the_api(api: Any, items: list[dict[str, Any]]) -> Any:
    """The two calls the official SDK makes for tasks.batchTrigger("hello-world", items)."""
    created = api.post("/api/v3/batches", {"runCount": len(items), "taskIdentifiers": ["hello-world"]})
    assert created.status_code == 202
    lines = [
        {
            "index": index,
            "task": "hello-world",
            "payload": json.dumps({"json": entry["payload"]}, separators=(",", ":")),
            "options": {"payloadType": "application/super+json", **entry["options"]},
        }
        for index, entry in enumerate(items)
    ]
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    path = f"/api/v3/batches/{created.json()['id']}/items"
    return created.json()["id"], api.client.post(path, data=body, content_type=NDJSON, headers=api.headers())


BATCH_FIELDS = ("status", "run_count", "task_identifiers", "errors", "parent_id", "resume_parent_on_completion")
RUN_FIELDS = ("task_identifier", "status", "payload", "payload_type", "tags", "machine", "concurrency_key")


def rows(batch_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    batch = Batch.objects.filter(pk=batch_id).values(*BATCH_FIELDS, "sealed_at").get()
    assert batch.pop("sealed_at") is not None
    runs = Run.objects.in_bulk(engine.batch_run_ids(batch_id=batch_id))
    ordered = [runs[run_id] for run_id in engine.batch_run_ids(batch_id=batch_id)]
    return batch, [{name: getattr(run, name) for name in (*RUN_FIELDS, "trigger_function")} for run in ordered]


def test_the_api_and_the_in_process_sdk_make_identical_batch_rows(api):
    api_batch, response = over_the_api(api, ITEMS)
    assert response.status_code == 200 and response.json()["sealed"]
    sdk_batch = sdk.tasks.batch_trigger("hello-world", ITEMS).batch_id
    assert rows(api_batch) == rows(sdk_batch)
    assert rows(sdk_batch)[0]["status"] == BatchStatus.COMPLETED
    assert not BatchItem.objects.exists()  # staging is emptied once sealed, on both


def test_a_refused_item_has_the_same_rule_from_both_and_leaves_no_half_made_batch(api):
    refused = [ITEMS[0], {"payload": {"i": 1}, "options": {"machine": "huge-9x"}}]
    api_batch, response = over_the_api(api, refused)
    assert response.status_code == 422
    api_rule = response.json()["error"].removeprefix("Batch item 1: ")
    with pytest.raises(sdk.ValidationError) as caught:
        sdk.tasks.batch_trigger("hello-world", refused)
    assert caught.value.message == f"item 1: {api_rule}"  # the engine's rule, each wire's wrapping
    # Over the API the batch (created by its first call) is aborted with the error; in-process
    # nothing at all remains. Neither has a run or a staged item.
    assert list(Batch.objects.values_list("id", "status")) == [(api_batch, BatchStatus.ABORTED)]
    assert not Run.objects.exists() and not BatchItem.objects.exists()


def test_a_batch_wait_inside_a_task_takes_the_same_path_as_every_batch(dev):
    parent = factories.run("hello-world")
    with context.running(context.TaskContext(run_id=parent.id, attempt=1, environment_id=dev.pk)):
        child_ids, batch_id = sdk._trigger_children(context.current(), [{**ITEMS[0], "id": "hello-world"}], batch=True)
    batch = Batch.objects.get(pk=batch_id)
    assert (batch.status, batch.parent_id, batch.resume_parent_on_completion) == (
        BatchStatus.COMPLETED,
        parent.id,
        True,
    )
    assert batch.task_identifiers == ["hello-world"] and batch.run_ids == child_ids
    assert Run.objects.get(pk=child_ids[0]).trigger_function == "batchTriggerAndWait"


def test_an_item_refused_when_the_batch_is_sealed_aborts_it_through_fill_batch(dev):
    batch, _ = engine.create_batch(environment=dev, run_count=2)
    good = engine.StagedItem(0, "hello-world", "", "application/json", {})
    bad = engine.StagedItem(1, "hello-world", "", "application/json", {"machine": "huge-9x"})
    with pytest.raises(engine.BatchItemError, match="Batch item 1"):
        engine.fill_batch(batch_id=batch.id, items=[good, bad], actor="test")
    batch.refresh_from_db()
    assert batch.status == BatchStatus.ABORTED and batch.errors[0]["index"] == 1
    assert not Run.objects.exists()


def test_a_repeated_batch_key_costs_nothing_in_the_engine(dev, settings):
    settings.RUNYARD_BATCH_RATE_LIMIT_MAX = 3
    first, cached = engine.create_batch(environment=dev, run_count=3, idempotency_key="k", charge=True)
    again, cached_again = engine.create_batch(environment=dev, run_count=3, idempotency_key="k", charge=True)
    assert (again.id, cached, cached_again) == (first.id, False, True)
    with pytest.raises(engine.BatchRateLimited) as caught:
        engine.create_batch(environment=dev, run_count=1, charge=True)
    assert caught.value.phase == "create" and caught.value.decision is not None
