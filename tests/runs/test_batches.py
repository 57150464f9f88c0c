"""Batches in the engine: staged items, deduplication by index, all-or-nothing sealing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from runs import engine
from runs.engine import StagedItem
from runs.models import Batch, BatchItem, BatchStatus, Environment, Run
from tests import factories

pytestmark = pytest.mark.django_db


def item(index: int, task: str = "hello-world", **options: object) -> StagedItem:
    return StagedItem(index, task, factories.superjson({"i": index}), "application/super+json", dict(options))


def test_a_batch_becomes_runs_when_its_last_item_arrives(dev: Environment) -> None:
    factories.task_definition("hello-world")
    batch, cached = engine.create_batch(environment=dev, run_count=3, task_identifiers=["hello-world"])
    assert not cached and batch.status == BatchStatus.PENDING and batch.id.startswith("batch_")
    assert engine.add_batch_items(batch=batch, items=[item(0), item(1)]) == (2, 0)
    assert engine.seal_batch(batch_id=batch.id, actor="test").status == BatchStatus.PENDING
    assert Run.objects.count() == 0
    assert engine.add_batch_items(batch=batch, items=[item(0), item(1), item(2, tags="third")]) == (1, 2)
    sealed = engine.seal_batch(batch_id=batch.id, actor="test")
    assert sealed.status == BatchStatus.COMPLETED and sealed.sealed_at is not None
    runs = list(Run.objects.filter(batch=batch).order_by("created_at"))
    assert len(runs) == 3 and {r.trigger_function for r in runs} == {"batchTrigger"}
    assert Run.objects.get(batch=batch, tags=["third"]).payload == factories.superjson({"i": 2})


def test_an_invalid_item_creates_no_runs_and_names_its_index(dev: Environment) -> None:
    batch, _ = engine.create_batch(environment=dev, run_count=2)
    engine.add_batch_items(batch=batch, items=[item(0), item(1, machine="huge")])
    with pytest.raises(engine.BatchItemError) as caught:
        engine.seal_batch(batch_id=batch.id, actor="test")
    assert caught.value.index == 1 and "machine" in str(caught.value)
    assert Run.objects.count() == 0
    batch.refresh_from_db()
    assert batch.status == BatchStatus.ABORTED and batch.errors[0]["index"] == 1


def test_an_item_index_past_the_run_count_is_refused(dev: Environment) -> None:
    batch, _ = engine.create_batch(environment=dev, run_count=2)
    with pytest.raises(engine.BatchItemError, match="index must be from 0 to 1"):
        engine.add_batch_items(batch=batch, items=[item(2)])


@pytest.mark.parametrize("count", [0, 1001])
def test_a_batch_holds_one_to_a_thousand_items(dev: Environment, count: int) -> None:
    with pytest.raises(engine.EngineError, match="1,000"):
        engine.create_batch(environment=dev, run_count=count)


def test_a_repeated_batch_key_returns_the_existing_batch(dev: Environment, prod: Environment) -> None:
    first, _ = engine.create_batch(environment=dev, run_count=1, idempotency_key="k")
    again, cached = engine.create_batch(environment=dev, run_count=5, idempotency_key="k")
    assert cached and again.id == first.id
    other, cached = engine.create_batch(environment=prod, run_count=1, idempotency_key="k")
    assert not cached and other.id != first.id
    assert Batch.objects.count() == 2


def test_a_thousand_items_seal_into_a_thousand_runs(dev: Environment) -> None:
    factories.task_definition("hello-world")
    batch, _ = engine.create_batch(environment=dev, run_count=1000)
    engine.add_batch_items(batch=batch, items=(item(i) for i in range(1000)))
    engine.seal_batch(batch_id=batch.id, actor="test")
    assert Run.objects.filter(batch=batch).count() == 1000


def test_an_item_matching_an_existing_key_names_that_run_in_item_order(dev: Environment) -> None:
    factories.task_definition("hello-world")
    existing = factories.run(idempotency_key="k")
    batch, _ = engine.create_batch(environment=dev, run_count=3)
    engine.add_batch_items(batch=batch, items=[item(0), item(1, idempotencyKey="k"), item(2)])
    engine.seal_batch(batch_id=batch.id, actor="test")
    ids = engine.batch_run_ids(batch_id=batch.id)
    assert len(ids) == 3 and ids[1] == existing.id
    assert [Run.objects.get(pk=i).payload for i in (ids[0], ids[2])] == [
        factories.superjson({"i": 0}),
        factories.superjson({"i": 2}),
    ]


def test_a_batch_left_unsealed_is_aborted_after_the_seal_timeout(dev: Environment) -> None:
    factories.task_definition("hello-world")
    left, _ = engine.create_batch(environment=dev, run_count=3, task_identifiers=["hello-world"])
    engine.add_batch_items(batch=left, items=[item(0), item(2)])  # the client died before item 1
    done, _ = engine.create_batch(environment=dev, run_count=1, task_identifiers=["hello-world"])
    engine.add_batch_items(batch=done, items=[item(0)])
    engine.seal_batch(batch_id=done.id, actor="test")
    timeout = timedelta(seconds=1800)  # the reference's BATCH_SEAL_TIMEOUT_MS: 30 minutes

    engine.tick(now=left.created_at + timeout - timedelta(seconds=1))
    assert Batch.objects.get(pk=left.pk).status == BatchStatus.PENDING  # still time to finish the stream

    engine.tick(now=left.created_at + timeout + timedelta(seconds=1))
    left.refresh_from_db()
    assert left.status == BatchStatus.ABORTED
    assert left.errors[0]["index"] == 1 and "item 1 never arrived: 2 of 3 items" in left.errors[0]["error"]
    assert not BatchItem.objects.filter(batch=left).exists()  # staged items dropped
    assert Batch.objects.get(pk=done.pk).status == BatchStatus.COMPLETED  # a sealed batch is left alone
    assert Run.objects.filter(batch=left).count() == 0
    # Sealing it later creates nothing.
    assert engine.seal_batch(batch_id=left.id, actor="test").status == BatchStatus.ABORTED
