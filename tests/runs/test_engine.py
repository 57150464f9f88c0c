"""Engine rules on the real database, with time under control."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import IntegrityError, transaction

from runs import engine, ratelimit, registry
from runs.models import Environment, Queue, Run, RunEvent
from runs.registry import Retry
from runs.states import RunStatus, can_transition
from tests import factories

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def frozen_clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def drive_to_executing(run: Run, now: datetime = T0) -> int:
    assert engine.admit(now=now) >= 1
    attempt = engine.start_attempt(run_id=run.id, worker="w1", now=now)
    assert attempt is not None
    return attempt.number


def statuses(run: Run) -> list[str]:
    return list(RunEvent.objects.filter(run=run).values_list("to_status", flat=True))


def test_trigger_queues_the_run_and_records_its_creation(dev: Environment) -> None:
    with time_machine.travel(T0, tick=False):
        run = factories.run("hello-world", payload={"name": "Ada"})
    run.refresh_from_db()
    assert run.id.startswith("run_") and len(run.id) == 29
    assert run.status == RunStatus.QUEUED
    assert run.created_at == run.queued_at == T0
    assert run.queue == "task/hello-world"
    assert run.payload == '{"json": {"name": "Ada"}}'
    event = RunEvent.objects.get(run=run)
    assert (event.from_status, event.to_status, event.actor) == ("", "QUEUED", "test")
    assert Queue.objects.filter(environment=dev, name="task/hello-world").exists()


def test_a_task_no_worker_serves_waits_as_pending_version_until_one_does(dev: Environment) -> None:
    run = engine.trigger(environment=dev, task_id="not-yet-deployed", actor="test").run
    assert run.status == RunStatus.PENDING_VERSION
    assert engine.promote_pending_version(now=T0) == 0
    factories.task_definition("not-yet-deployed")
    assert engine.promote_pending_version(now=T0) == 1
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED


def test_dev_runs_get_a_ten_minute_ttl_and_prod_runs_fourteen_days(dev: Environment, prod: Environment) -> None:
    assert factories.run(env="dev").ttl == 600
    assert factories.run(env="prod").ttl == 14 * 86400


def test_request_key_returns_the_first_run_instead_of_a_duplicate(dev: Environment) -> None:
    factories.task_definition("hello-world")
    first = engine.trigger(environment=dev, task_id="hello-world", actor="test", request_key="k1")
    again = engine.trigger(environment=dev, task_id="hello-world", actor="test", request_key="k1")
    assert again.run.id == first.run.id and again.is_cached is False
    assert Run.objects.count() == 1


def test_a_full_successful_run_goes_queued_dequeued_executing_completed(dev: Environment) -> None:
    run = factories.run()
    number = drive_to_executing(run)
    done = engine.complete_attempt(run_id=run.id, attempt=number, output='{"ok":true}', output_type="application/json")
    assert done is not None and done.status == RunStatus.COMPLETED
    run.refresh_from_db()
    assert run.finished_at is not None and run.output == '{"ok":true}' and run.started_at is not None
    assert statuses(run) == ["QUEUED", "DEQUEUED", "EXECUTING", "COMPLETED"]


def test_every_event_follows_the_transition_table(dev: Environment) -> None:
    run = factories.run(max_attempts=2)
    number = drive_to_executing(run)
    engine.fail_attempt(run_id=run.id, attempt=number, error={"message": "x"}, retry=Retry(min_timeout=0))
    later = T0 + timedelta(seconds=1)
    number = drive_to_executing(run, later)
    engine.fail_attempt(run_id=run.id, attempt=number, error={"message": "y"}, retry=Retry(min_timeout=0), now=later)
    chain = list(RunEvent.objects.filter(run=run).values_list("from_status", "to_status"))
    assert chain[0][0] == ""
    for (_, previous_to), (from_status, to_status) in itertools.pairwise(chain):
        assert from_status == previous_to and can_transition(from_status, to_status)


def test_a_redelivered_message_does_not_start_a_second_attempt(dev: Environment) -> None:
    run = factories.run()
    drive_to_executing(run)
    assert engine.start_attempt(run_id=run.id, worker="w2", now=T0) is None
    run.refresh_from_db()
    assert run.attempt_count == 1 and run.worker == "w1"


def test_a_stale_attempt_cannot_complete_the_run(dev: Environment) -> None:
    run = factories.run()
    number = drive_to_executing(run)
    assert engine.complete_attempt(run_id=run.id, attempt=number + 1, output="", output_type="") is None
    run.refresh_from_db()
    assert run.status == RunStatus.EXECUTING


def test_a_failed_attempt_is_retried_after_its_backoff(dev: Environment) -> None:
    run = factories.run(max_attempts=3)
    number = drive_to_executing(run)
    engine.fail_attempt(run_id=run.id, attempt=number, error={"message": "boom"}, retry=Retry(min_timeout=10), now=T0)
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED and run.available_at == T0 + timedelta(seconds=10)
    assert engine.admit(now=T0 + timedelta(seconds=9)) == 0
    assert engine.admit(now=T0 + timedelta(seconds=10)) == 1


def test_the_backoff_grows_exponentially_up_to_its_ceiling() -> None:
    retry = Retry(max_attempts=10, factor=2, min_timeout=1, max_timeout=5)
    assert [retry.backoff(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]


def test_the_last_failed_attempt_fails_the_run_with_its_error(dev: Environment) -> None:
    run = factories.run(max_attempts=1)
    number = drive_to_executing(run)
    engine.fail_attempt(run_id=run.id, attempt=number, error={"message": "boom", "name": "RuntimeError"}, retry=None)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.error == {"message": "boom", "name": "RuntimeError"}
    assert run.attempts.get().status == RunStatus.FAILED


def test_admission_never_exceeds_the_queue_limit(dev: Environment) -> None:
    factories.task_definition("limited", concurrency_limit=2, queue="task/limited")
    for _ in range(5):
        factories.run("limited")
    assert engine.admit(now=T0 + timedelta(seconds=1)) == 2
    assert engine.admit(now=T0 + timedelta(seconds=1)) == 0
    first = Run.objects.filter(status=RunStatus.DEQUEUED).first()
    assert first is not None
    number = engine.start_attempt(run_id=first.id, worker="w", now=T0)
    assert number is not None
    engine.complete_attempt(run_id=first.id, attempt=number.number, output="", output_type="")
    assert engine.admit(now=T0 + timedelta(seconds=1)) == 1
    assert Run.objects.filter(status__in=["DEQUEUED", "EXECUTING"]).count() == 2


def test_admission_follows_queue_time_minus_priority(dev: Environment) -> None:
    factories.task_definition("one-at-a-time", concurrency_limit=1, queue="task/one-at-a-time")
    with time_machine.travel(T0, tick=False):
        early = factories.run("one-at-a-time")
    with time_machine.travel(T0 + timedelta(seconds=5), tick=False):
        urgent = factories.run("one-at-a-time", priority=10)
    engine.admit(now=T0 + timedelta(seconds=6))
    assert Run.objects.get(pk=urgent.id).status == RunStatus.DEQUEUED
    assert Run.objects.get(pk=early.id).status == RunStatus.QUEUED


def test_cancel_a_queued_run(dev: Environment) -> None:
    run = factories.run()
    canceled = engine.cancel_run(run_id=run.id, actor="user:ops", reason="not needed", now=T0)
    assert canceled.status == RunStatus.CANCELED and canceled.finished_at == T0
    event = RunEvent.objects.filter(run=run).last()
    assert event is not None and (event.actor, event.reason) == ("user:ops", "not needed")


def test_a_canceled_executing_run_never_completes_afterwards(dev: Environment) -> None:
    run = factories.run()
    number = drive_to_executing(run)
    engine.cancel_run(run_id=run.id, actor="test")
    assert engine.complete_attempt(run_id=run.id, attempt=number, output="", output_type="") is None
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELED
    assert run.attempts.get().status == RunStatus.CANCELED


def test_canceling_a_final_run_changes_nothing(dev: Environment) -> None:
    run = factories.run()
    engine.cancel_run(run_id=run.id, actor="test", now=T0)
    again = engine.cancel_run(run_id=run.id, actor="test", now=T0 + timedelta(hours=1))
    assert again.finished_at == T0
    assert RunEvent.objects.filter(run=run).count() == 2


def test_canceling_an_unknown_run_raises(dev: Environment) -> None:
    with pytest.raises(engine.RunNotFound):
        engine.cancel_run(run_id="run_nope", actor="test")


@pytest.fixture
def lonely_queue(settings: Any) -> Iterator[str]:
    """A region with a Celery queue of its own that no worker of the test session consumes."""
    settings.RUNYARD_REGIONS = ["lost-test"]
    name = registry.celery_queue(registry.DEFAULT_MACHINE, "lost-test")
    ratelimit.redis_client().delete(name)
    yield name
    ratelimit.redis_client().delete(name)


def test_a_dequeued_run_no_worker_started_goes_back_to_its_queue(dev: Environment, lonely_queue: str) -> None:
    run = factories.run(region="lost-test")
    with time_machine.travel(T0, tick=False):
        engine.admit(now=T0)
    assert engine.requeue_lost(now=T0 + timedelta(seconds=30)) == 0
    assert engine.requeue_lost(now=T0 + timedelta(seconds=61)) == 1
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED


def test_a_dequeued_run_behind_a_backlog_in_its_celery_queue_is_not_taken_for_lost(
    dev: Environment, lonely_queue: str
) -> None:
    """Its message may be among those waiting for a free worker (a backlog of long runs lasts
    longer than the worker timeout): requeued, it would be sent twice and its timeline would
    say it was lost when it was not."""
    run = factories.run(region="lost-test")
    with time_machine.travel(T0, tick=False):
        engine.admit(now=T0)
    ratelimit.redis_client().lpush(lonely_queue, "a message waiting for a worker")
    assert engine.requeue_lost(now=T0 + timedelta(hours=2)) == 0
    assert Run.objects.get(pk=run.pk).status == RunStatus.DEQUEUED
    ratelimit.redis_client().delete(lonely_queue)  # the backlog drained, and the run never started
    assert engine.requeue_lost(now=T0 + timedelta(hours=2)) == 1
    assert Run.objects.get(pk=run.pk).status == RunStatus.QUEUED


def test_an_admitted_run_reaches_its_celery_queue_as_a_message_of_the_execute_run_task(
    dev: Environment, lonely_queue: str, django_capture_on_commit_callbacks: Any
) -> None:
    """The engine sends the task by name (it does not import runs.tasks): the message names the
    task the workers register, on the run's queue, with the run's Celery id and no result."""
    from runs.tasks import execute_run

    run = factories.run(region="lost-test")
    with time_machine.travel(T0, tick=False), django_capture_on_commit_callbacks(execute=True):
        assert engine.admit(now=T0) == 1
    [message] = [json.loads(raw) for raw in ratelimit.redis_client().lrange(lonely_queue, 0, -1)]
    headers = message["headers"]
    assert (headers["task"], headers["id"], headers["argsrepr"]) == (execute_run.name, f"{run.id}-1", repr((run.id,)))
    assert headers["ignore_result"] is True  # as the task's apply_async sent it (CELERY_TASK_IGNORE_RESULT)
    assert message["properties"]["delivery_info"]["routing_key"] == lonely_queue


def test_runs_whose_pipeline_to_redis_failed_are_sent_again_one_at_a_time(
    dev: Environment, lonely_queue: str, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    """Redis going away under the engine fails a whole pipeline of messages (kombu cannot tell
    which ones Redis took): each is sent again through kombu's retry, which reconnects."""
    from kombu.exceptions import BatchPublishError
    from kombu.transport import redis as kombu_redis

    runs = [factories.run(region="lost-test") for _ in range(3)]
    flushed: list[int] = []

    def failing_flush(batch: Any) -> None:
        flushed.append(batch._buffered)
        batch.discard()  # what a broken connection leaves: nothing sent
        raise BatchPublishError("Redis publish batch failed; delivery is uncertain")

    monkeypatch.setattr(kombu_redis.PublishBatch, "flush", failing_flush)
    with time_machine.travel(T0, tick=False), django_capture_on_commit_callbacks(execute=True):
        assert engine.admit(now=T0) == 3  # the messages go after commit
    assert flushed == [3]  # the three went to one pipeline, which failed
    messages = ratelimit.redis_client().lrange(lonely_queue, 0, -1)
    sent = sorted(json.loads(message)["headers"]["argsrepr"] for message in messages)
    assert sent == sorted(repr((run.id,)) for run in runs)
    assert {status for status in Run.objects.filter(pk__in=[r.pk for r in runs]).values_list("status", flat=True)} == {
        RunStatus.DEQUEUED
    }


def test_the_database_refuses_a_final_run_without_finished_at(dev: Environment) -> None:
    run = factories.run()
    with pytest.raises(IntegrityError), transaction.atomic():
        Run.objects.filter(pk=run.pk).update(status=RunStatus.COMPLETED)  # the constraint under test


def test_a_replay_is_a_new_run_with_the_originals_payload_and_options_linked_back(dev: Environment) -> None:
    original = factories.run("hello-world", payload={"n": 1}, tags=["a"], metadata={"m": 1}, concurrency_key="k")
    engine.cancel_run(run_id=original.id, actor="test")
    replay = engine.replay_run(run_id=original.id, actor="user:ops", options=engine.TriggerOptions()).run
    assert replay.id != original.id and replay.replayed_from_id == original.id
    assert (replay.payload, replay.tags, replay.metadata) == (original.payload, ["a"], {"m": 1})
    assert (replay.concurrency_key, replay.status) == ("k", RunStatus.QUEUED)
    assert RunEvent.objects.filter(run=replay, reason=f"replay of {original.id}").exists()


def test_a_replay_takes_overrides(dev: Environment) -> None:
    original = factories.run("hello-world", payload={"n": 1}, tags=["a"])
    overrides = engine.TriggerOptions(tags=["b"], machine="large-1x")
    replay = engine.replay_run(
        run_id=original.id,
        actor="test",
        options=overrides,
        overridden={"tags", "machine"},
        payload=(factories.superjson({"n": 2}), "application/super+json"),
    ).run
    assert (replay.tags, replay.machine, replay.payload) == (["b"], "large-1x", factories.superjson({"n": 2}))
