"""Child runs that their parent waits on, executed in-process by the real executor."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.utils import timezone

import example_tasks  # registers the example tasks
from runs import engine, registry, worker
from runs.models import Environment, Run, Waitpoint
from runs.sdk import SubtaskUnwrapError, tasks
from runs.states import RunStatus
from tests import factories

pytestmark = pytest.mark.django_db
CALLS: list[str] = []


@registry.task(id="test-parent-of-failure")
def parent_of_failure(payload: Any) -> dict[str, Any]:
    result = tasks.trigger_and_wait("always-fails", {}, {"maxAttempts": 1})
    try:
        result.unwrap()
    except SubtaskUnwrapError as exc:
        return {"ok": result.ok, "child": exc.run_id, "task": exc.task_id, "message": exc.cause["message"]}
    return {"ok": True}


@registry.task(id="test-two-waits")
def two_waits(payload: Any) -> list[Any]:
    CALLS.append("start")
    first = tasks.trigger_and_wait("hello-world", {"name": "one"}).unwrap()
    CALLS.append("between")
    second = tasks.trigger_and_wait("hello-world", {"name": "two"}).unwrap()
    return [first, second]


def work_everything(limit: int = 50) -> None:
    """Admit and execute runs until nothing is left to do, like a worker with one slot."""
    for _ in range(limit):
        engine.admit(now=timezone.now())
        dequeued = list(Run.objects.filter(status=RunStatus.DEQUEUED).values_list("id", flat=True))
        if not dequeued:
            return
        for run_id in dequeued:
            worker.execute(run_id=run_id, hostname="w1")


def define_all() -> None:
    for task_id in ("fan-out", "hello-world", "always-fails", "test-parent-of-failure", "test-two-waits"):
        spec = registry.get(task_id)
        assert spec is not None
        factories.task_definition(task_id, **{"max_attempts": spec.retry.max_attempts})


def test_a_fan_out_parent_waits_without_a_slot_and_completes_with_its_childrens_outputs(dev: Environment) -> None:
    define_all()
    parent = factories.run("fan-out", payload={"n": 3})
    engine.admit(now=parent.created_at)
    worker.execute(run_id=parent.id, hostname="w1")
    parent.refresh_from_db()
    assert parent.status == RunStatus.WAITING
    children = list(Run.objects.filter(parent=parent))
    assert len(children) == 3
    assert {(c.depth, c.root_id, c.trigger_function, c.status) for c in children} == {
        (1, parent.id, "batchTriggerAndWait", RunStatus.QUEUED)
    }
    work_everything()
    parent.refresh_from_db()
    assert parent.status == RunStatus.COMPLETED and parent.attempt_count == 1
    assert factories.decode_output(parent) == {
        "outputs": [{"message": "Hello, child 0!"}, {"message": "Hello, child 1!"}, {"message": "Hello, child 2!"}]
    }
    statuses = list(parent.events.values_list("to_status", flat=True))
    assert statuses == ["QUEUED", "DEQUEUED", "EXECUTING", "WAITING", "QUEUED", "DEQUEUED", "EXECUTING", "COMPLETED"]


def test_waits_are_memoized_by_call_order_and_code_before_a_wait_runs_again(dev: Environment) -> None:
    define_all()
    CALLS.clear()
    parent = factories.run("test-two-waits")
    work_everything()
    parent.refresh_from_db()
    assert parent.status == RunStatus.COMPLETED
    assert factories.decode_output(parent) == [{"message": "Hello, one!"}, {"message": "Hello, two!"}]
    assert CALLS == ["start", "start", "between", "start", "between"]
    assert Run.objects.filter(parent=parent).count() == 2
    assert list(Waitpoint.objects.filter(run=parent).values_list("sequence", flat=True)) == [1, 2]


def test_a_failed_child_gives_a_result_whose_unwrap_raises(dev: Environment) -> None:
    define_all()
    parent = factories.run("test-parent-of-failure")
    work_everything()
    parent.refresh_from_db()
    output = factories.decode_output(parent)
    child = Run.objects.get(parent=parent)
    assert output == {"ok": False, "child": child.id, "task": "always-fails", "message": "this task always fails"}


def test_canceling_a_waiting_parent_cancels_its_children(dev: Environment) -> None:
    define_all()
    parent = factories.run("fan-out", payload={"n": 2})
    engine.admit(now=parent.created_at)
    worker.execute(run_id=parent.id, hostname="w1")
    engine.cancel_run(run_id=parent.id, actor="user:ops")
    assert set(Run.objects.filter(parent=parent).values_list("status", flat=True)) == {RunStatus.CANCELED}
    child_event = Run.objects.filter(parent=parent).first().events.last()  # type: ignore[union-attr]
    assert child_event is not None and parent.id in child_event.reason


def test_a_parent_whose_children_finish_before_it_suspends_is_queued_at_once(dev: Environment) -> None:
    define_all()
    parent = factories.run("test-two-waits")
    engine.admit(now=parent.created_at)
    attempt = engine.start_attempt(run_id=parent.id, worker="w1")
    assert attempt is not None
    child = tasks.trigger("hello-world", {"name": "fast"})
    engine.add_waitpoint(run_id=parent.id, sequence=1, child_ids=[child.id])
    engine.cancel_run(run_id=child.id, actor="test")  # the child is final before the parent suspends
    engine.suspend_run(run_id=parent.id, attempt=attempt.number)
    parent.refresh_from_db()
    assert parent.status == RunStatus.QUEUED and parent.resuming


def test_trigger_and_wait_outside_a_task_is_refused(dev: Environment) -> None:
    from runs.context import NotInTask

    with pytest.raises(NotInTask):
        tasks.trigger_and_wait("hello-world", {})


@registry.task(id="test-big-output")
def big_output(payload: Any) -> str:
    return "x" * (600 * 1024)


@registry.task(id="test-parent-of-big")
def parent_of_big(payload: Any) -> int:
    return len(tasks.trigger_and_wait("test-big-output").unwrap())


def test_a_parent_gets_a_childs_offloaded_output(dev: Environment) -> None:
    for task_id in ("test-big-output", "test-parent-of-big"):
        factories.task_definition(task_id)
    parent = factories.run("test-parent-of-big")
    work_everything()
    parent.refresh_from_db()
    assert Run.objects.get(parent=parent).output_type == "application/store"
    assert parent.status == RunStatus.COMPLETED and factories.decode_output(parent) == 600 * 1024


@registry.task(id="test-waits-on-debounced")
def waits_on_debounced(payload: Any) -> Any:
    debounce = {"key": "shared", "delay": "5s"}
    return tasks.trigger_and_wait("hello-world", {"name": "late"}, {"debounce": debounce}).unwrap()


def test_trigger_and_wait_with_a_debounce_key_waits_on_the_existing_debounced_run(dev: Environment) -> None:
    define_all()
    factories.task_definition("test-waits-on-debounced")
    existing = tasks.trigger("hello-world", {"name": "first"}, {"debounce": {"key": "shared", "delay": "5s"}})
    parent = factories.run("test-waits-on-debounced")
    engine.admit(now=parent.created_at)
    worker.execute(run_id=parent.id, hostname="w1")
    parent.refresh_from_db()
    assert parent.status == RunStatus.WAITING
    assert Waitpoint.objects.get(run=parent).children == [existing.id]
    with time_machine.travel(timezone.now() + timedelta(seconds=6)):
        engine.promote_delayed(now=timezone.now())
        work_everything()
    parent.refresh_from_db()
    assert parent.status == RunStatus.COMPLETED
    assert factories.decode_output(parent) == {"message": "Hello, first!"}  # leading: the first payload


@registry.task(id="test-mixed-batch-waits")
def mixed_batch_waits(payload: Any) -> list[Any]:
    from runs.sdk import batch

    by_id = batch.trigger_and_wait(
        [{"id": "hello-world", "payload": {"name": "a"}}, {"id": "always-fails", "options": {"maxAttempts": 1}}]
    )
    by_task = batch.trigger_by_task_and_wait([{"task": example_tasks.hello_world, "payload": {"name": "b"}}])
    handle = batch.trigger_by_task([{"task": example_tasks.hello_world, "payload": {"name": "c"}}])
    return [
        [(r.ok, r.task_identifier) for r in by_id],
        by_id[0].output,
        by_task[0].unwrap(),
        handle.run_count,
    ]


def test_batches_of_several_tasks_wait_by_id_and_by_task_function(dev: Environment) -> None:
    define_all()
    factories.task_definition("test-mixed-batch-waits")
    parent = factories.run("test-mixed-batch-waits")
    work_everything()
    parent.refresh_from_db()
    assert parent.status == RunStatus.COMPLETED, parent.error
    assert factories.decode_output(parent) == [
        [[True, "hello-world"], [False, "always-fails"]],
        {"message": "Hello, a!"},
        {"message": "Hello, b!"},
        1,
    ]
    # Each batch is a Batch with the parent as parent; the fire-and-forget one too.
    assert Run.objects.filter(parent=parent).count() == 4


def test_a_batch_wait_makes_a_batch_whose_runs_are_the_children(dev: Environment) -> None:
    from runs.models import Batch

    define_all()
    parent = factories.run("fan-out", payload={"n": 2})
    work_everything()
    batch = Batch.objects.get(parent=parent)
    assert batch.run_count == 2 and batch.resume_parent_on_completion
    assert set(batch.run_ids) == set(Run.objects.filter(parent=parent).values_list("id", flat=True))
    assert Waitpoint.objects.get(run=parent).batch_id == batch.id
