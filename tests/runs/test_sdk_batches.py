"""Batches from the Python SDK: lists, generators and async iterators, streamed and rate limited."""

from __future__ import annotations

import asyncio
import gc
import threading
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from runs import context, engine, ratelimit, sdk
from runs.engine import StagedItem
from runs.models import Batch, BatchStatus, Environment, Run
from runs.sdk import BatchTriggerError, ValidationError, batch, tasks
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def setup(dev: Environment) -> None:
    factories.task_definition("hello-world")
    factories.task_definition("other-task")
    redis = ratelimit.redis_client()
    for name in redis.scan_iter(f"{ratelimit.KEY_PREFIX}:*"):
        redis.delete(name)


def items(count: int, **options: Any) -> Iterator[dict[str, Any]]:
    for index in range(count):
        yield {"payload": {"i": index}, "options": dict(options)}


async def async_items(count: int, closed: list[bool]) -> AsyncIterator[dict[str, Any]]:
    try:
        for index in range(count):
            await asyncio.sleep(0)
            yield {"payload": {"i": index}}
    finally:
        closed.append(True)


def payload_order(run_ids: list[str]) -> list[int]:
    runs = Run.objects.in_bulk(run_ids)
    return [sdk.packets.decode(runs[run_id].payload, runs[run_id].payload_type)["i"] for run_id in run_ids]


def test_a_list_becomes_runs_with_their_options_in_item_order():
    handle = tasks.batch_trigger(
        "hello-world",
        [{"payload": {"i": 0}, "options": {"tags": ["a"], "machine": "large-1x"}}, {"payload": {"i": 1}}],
    )
    assert handle.run_count == 2 and not handle.is_cached
    assert payload_order(handle.run_ids) == [0, 1]
    first = Run.objects.get(pk=handle.run_ids[0])
    assert first.tags == ["a"] and first.machine == "large-1x" and first.trigger_source == "sdk"
    created = Batch.objects.get(pk=handle.batch_id)
    assert created.status == BatchStatus.COMPLETED and created.task_identifiers == ["hello-world"]


def test_a_generator_of_a_thousand_items_is_streamed_without_holding_them():
    def generate(count: int) -> Iterator[dict[str, Any]]:
        for index in range(count):
            yield {"payload": {"i": index, "blob": f"{index:05d}" * 4000}, "options": {"tags": [f"n{index}"]}}

    gc.collect()
    tracemalloc.start()
    try:
        # What a batch that holds its items takes: the list and the parsed items (~40 MB).
        listed = list(generate(1000))
        parsed = [sdk._staged(index, {**item, "id": "hello-world"}) for index, item in enumerate(listed)]
        held_peak = tracemalloc.get_traced_memory()[1]
        del listed, parsed
        gc.collect()
        tracemalloc.reset_peak()
        handle = tasks.batch_trigger("hello-world", generate(1000))
        streamed_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert Run.objects.filter(batch_id=handle.batch_id).count() == 1000 == handle.run_count
    assert payload_order(handle.run_ids) == list(range(1000))
    # Streaming holds at most about two chunks of 100 items: the read-ahead,
    # or the rows the seal fetches from the database.
    assert streamed_peak * 3 < held_peak, f"streamed peak {streamed_peak:,} B, held peak {held_peak:,} B"


def test_an_async_iterator_is_consumed_on_a_helper_loop_and_closed():
    closed: list[bool] = []
    threads = threading.active_count()
    handle = batch.trigger({**item, "id": "hello-world"} async for item in async_items(250, closed))
    assert handle.run_count == 250 and payload_order(handle.run_ids) == list(range(250))
    assert closed == [True] and threading.active_count() == threads


def test_an_invalid_item_from_an_async_iterator_still_closes_it():
    closed: list[bool] = []

    async def generate() -> AsyncIterator[dict[str, Any]]:
        async for item in async_items(300, closed):
            yield item if item["payload"]["i"] != 220 else {"payload": {}, "options": {"maxAttempts": 0}}

    threads = threading.active_count()
    with pytest.raises(ValidationError, match="item 220"):
        tasks.batch_trigger("hello-world", generate())
    gc.collect()
    assert closed == [True] and threading.active_count() == threads
    assert not Batch.objects.exists()


def test_a_small_async_iterator_is_a_batch_of_known_size():
    closed: list[bool] = []
    handle = tasks.batch_trigger("hello-world", async_items(3, closed))
    assert handle.run_count == 3 and Run.objects.filter(batch_id=handle.batch_id).count() == 3


def test_batch_trigger_mixes_tasks_and_records_them():
    handle = batch.trigger(
        {"id": task_id, "payload": {"i": index}} for index, task_id in enumerate(["other-task", "hello-world"] * 150)
    )
    assert Batch.objects.get(pk=handle.batch_id).task_identifiers == ["hello-world", "other-task"]
    assert [Run.objects.get(pk=run_id).task_identifier for run_id in handle.run_ids[:2]] == [
        "other-task",
        "hello-world",
    ]


def test_trigger_by_task_takes_a_generator():
    hello = type("Fn", (), {"task_id": "hello-world"})()
    handle = batch.trigger_by_task({"task": hello, "payload": {"i": index}} for index in range(2))
    assert handle.run_count == 2


@pytest.mark.parametrize("source", [[], iter([])])
def test_an_empty_batch_is_refused(source):
    with pytest.raises(ValidationError, match="1 to 1000 items, not 0"):
        tasks.batch_trigger("hello-world", source)
    assert not Batch.objects.exists()


def test_more_than_a_thousand_items_leave_nothing_behind():
    with pytest.raises(ValidationError, match="at most 1000 items"):
        tasks.batch_trigger("hello-world", items(1001))
    assert not Batch.objects.exists() and not Run.objects.exists()


def test_an_invalid_item_names_its_index_and_leaves_nothing_behind():
    def generate() -> Iterator[dict[str, Any]]:
        yield from items(250)
        yield {"payload": {"bad": True}, "options": {"machine": "huge-9x"}}

    with pytest.raises(ValidationError, match="item 250") as caught:
        tasks.batch_trigger("hello-world", generate())
    assert caught.value.field == "items[250].machine"
    assert not Batch.objects.exists() and not Run.objects.exists()


def test_over_the_rate_limit_a_batch_of_known_size_fails_at_create(settings):
    settings.RUNYARD_BATCH_RATE_LIMIT_MAX = 10
    tasks.batch_trigger("hello-world", list(items(8)))
    with pytest.raises(BatchTriggerError) as caught:
        tasks.batch_trigger("hello-world", list(items(5)))
    error = caught.value
    assert error.phase == "create" and error.is_rate_limited and error.item_count == 5 and error.batch_id is None
    assert 0 < error.retry_after_ms <= 20_000
    assert isinstance(error.cause, sdk.RateLimitError) and error.cause.decision.remaining == 2
    assert "Rate limit exceeded" in str(error)
    assert isinstance(error, sdk.RunyardError) and Batch.objects.count() == 1


def test_over_the_rate_limit_a_stream_of_unknown_size_fails_after_reading_and_leaves_nothing(settings):
    settings.RUNYARD_BATCH_RATE_LIMIT_MAX = 300
    tasks.batch_trigger("hello-world", list(items(100)))
    with pytest.raises(BatchTriggerError) as caught:
        tasks.batch_trigger("hello-world", items(250))
    assert caught.value.phase == "stream" and caught.value.is_rate_limited and caught.value.item_count == 250
    assert Batch.objects.count() == 1 and Run.objects.count() == 100


def test_a_batch_larger_than_the_bucket_is_not_a_rate_limit(settings):
    settings.RUNYARD_BATCH_RATE_LIMIT_MAX = 5
    with pytest.raises(BatchTriggerError, match="limit of 5 items") as caught:
        tasks.batch_trigger("hello-world", list(items(6)))
    assert not caught.value.is_rate_limited and isinstance(caught.value.cause, ratelimit.ChargeTooLarge)


def test_a_repeated_batch_key_returns_the_batch_without_reading_items_or_charging(settings):
    settings.RUNYARD_BATCH_RATE_LIMIT_MAX = 3
    first = tasks.batch_trigger("hello-world", list(items(3)), {"idempotencyKey": "nightly"})
    read: list[int] = []

    def generate() -> Iterator[dict[str, Any]]:
        read.append(1)
        yield from items(3)

    again = tasks.batch_trigger("hello-world", generate(), {"idempotencyKey": "nightly"})
    assert again.is_cached and again.batch_id == first.batch_id and again.run_ids == first.run_ids
    assert read == [] and Batch.objects.get(pk=first.batch_id).idempotency_key_user == "nightly"


def test_inside_a_task_the_batch_runs_are_its_children():
    parent = factories.run("hello-world")
    with context.running(context.TaskContext(run_id=parent.id, attempt=1, environment_id=parent.environment_id)):
        handle = tasks.batch_trigger("hello-world", items(2))
    assert {run.parent_id for run in Run.objects.filter(pk__in=handle.run_ids)} == {parent.id}


def test_the_count_of_a_batch_of_unknown_size_is_fixed_before_sealing(dev):
    created, _ = engine.create_batch(environment=dev, run_count=engine.MAX_BATCH_ITEMS)
    engine.add_batch_items(
        batch=created, items=[StagedItem(i, "hello-world", "", "application/json", {}) for i in (0, 1)]
    )
    with pytest.raises(engine.EngineError, match="past index 0"):
        engine.set_batch_run_count(batch_id=created.id, run_count=1)
    engine.set_batch_run_count(batch_id=created.id, run_count=2, task_identifiers=["hello-world", "hello-world"])
    sealed = engine.seal_batch(batch_id=created.id, actor="test")
    assert (
        sealed.status == BatchStatus.COMPLETED and sealed.run_count == 2 and sealed.task_identifiers == ["hello-world"]
    )
    with pytest.raises(engine.EngineError, match="COMPLETED"):
        engine.set_batch_run_count(batch_id=created.id, run_count=2)
