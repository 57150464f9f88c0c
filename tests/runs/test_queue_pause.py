"""Operators pause queues and override their concurrency limits; admission obeys both."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from runs import engine, registry
from runs.engine.scheduler import next_due
from runs.models import AuditEntry, Environment, Queue, Run
from runs.states import RunStatus
from tests import factories

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def frozen_clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def runs_of(task_id: str, count: int, limit: int | None = None, **options: object) -> list[Run]:
    """`count` queued runs; their TTL outlasts every test's clock (dev's default is 10 minutes)."""
    factories.task_definition(task_id, concurrency_limit=limit)
    return [factories.run(task_id, **{"ttl": 7200, **options}) for _ in range(count)]


def queue_of(task_id: str, env: Environment) -> Queue:
    return Queue.objects.get(environment=env, name=f"task/{task_id}")


def statuses(runs: list[Run]) -> list[str]:
    return [Run.objects.get(pk=run.pk).status for run in runs]


def notified(queries: CaptureQueriesContext) -> bool:
    return any("NOTIFY" in query["sql"] for query in queries.captured_queries)


def test_a_paused_queue_admits_nothing_while_other_queues_still_do(dev: Environment) -> None:
    held = runs_of("held", 2)
    free = runs_of("free", 2)
    engine.pause_queue(queue_id=queue_of("held", dev).pk, actor="user:ops", reason="db migration")
    assert engine.admit(now=at(1)) == 2
    assert statuses(held) == [RunStatus.QUEUED] * 2
    assert statuses(free) == [RunStatus.DEQUEUED] * 2


def test_resuming_a_paused_queue_admits_its_runs_and_wakes_the_engine(dev: Environment) -> None:
    held = runs_of("held", 2)
    queue = queue_of("held", dev)
    engine.pause_queue(queue_id=queue.pk, actor="user:ops")
    assert engine.tick(now=at(1)) == 0
    with CaptureQueriesContext(connection) as queries:
        resumed = engine.resume_queue(queue_id=queue.pk, actor="user:ops")
    assert notified(queries) and resumed.paused_at is None and resumed.paused_by == ""
    assert engine.admit(now=at(2)) == 2
    assert statuses(held) == [RunStatus.DEQUEUED] * 2


def test_a_run_already_executing_in_a_paused_queue_finishes(dev: Environment) -> None:
    (run,) = runs_of("held", 1)
    engine.admit(now=at(1))
    attempt = engine.start_attempt(run_id=run.id, worker="w1", now=at(1))
    assert attempt is not None
    engine.pause_queue(queue_id=queue_of("held", dev).pk, actor="user:ops")
    done = engine.complete_attempt(run_id=run.id, attempt=attempt.number, output="{}", output_type="application/json")
    assert done is not None and done.status == RunStatus.COMPLETED


def test_delayed_runs_of_a_paused_queue_are_queued_at_their_time_and_their_ttl_still_expires_them(
    dev: Environment,
) -> None:
    factories.task_definition("held")
    engine.pause_queue(queue_id=_queue_for("held", dev).pk, actor="user:ops")
    run = factories.run("held", delay_until=at(10), ttl=600)
    engine.tick(now=at(10))
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED and run.queued_at == at(10)
    engine.tick(now=at(19.99))
    assert statuses([run]) == [RunStatus.QUEUED]
    engine.tick(now=at(20))
    assert statuses([run]) == [RunStatus.EXPIRED]


def _queue_for(task_id: str, env: Environment) -> Queue:
    """The queue a task's first run would create, made ahead of it."""
    return Queue.objects.get_or_create(environment=env, name=f"task/{task_id}")[0]


def test_a_pause_with_a_resume_time_ends_by_itself_at_that_time(dev: Environment) -> None:
    held = runs_of("held", 1)
    queue = queue_of("held", dev)
    engine.pause_queue(queue_id=queue.pk, actor="user:ops", resume_at=at(30))
    assert next_due(after=at(1)) == at(30)  # the engine sleeps no longer than the pause
    engine.tick(now=at(29.99))
    assert statuses(held) == [RunStatus.QUEUED]
    engine.tick(now=at(30))
    assert statuses(held) == [RunStatus.DEQUEUED]
    queue.refresh_from_db()
    assert queue.paused_at is None and queue.resume_at is None
    lifted = AuditEntry.objects.get(action="queue.resume")
    assert (lifted.username, lifted.target, lifted.at) == ("engine", queue.public_id, at(30))


def test_an_override_raises_and_lowers_how_many_runs_are_admitted(dev: Environment) -> None:
    runs_of("limited", 6, limit=2)
    queue = queue_of("limited", dev)
    engine.override_queue_limit(queue_id=queue.pk, limit=4, actor="user:ops")
    assert engine.admit(now=at(1)) == 4
    engine.override_queue_limit(queue_id=queue.pk, limit=1, actor="user:ops")
    assert engine.admit(now=at(2)) == 0  # four still active against a limit of one
    assert Run.objects.filter(status=RunStatus.DEQUEUED).count() == 4


def test_an_override_limits_a_queue_that_has_no_limit_of_its_own(dev: Environment) -> None:
    runs_of("open", 3)
    engine.override_queue_limit(queue_id=queue_of("open", dev).pk, limit=1, actor="user:ops")
    assert engine.admit(now=at(1)) == 1


def test_reset_returns_the_queue_to_its_decorator_limit_and_wakes_the_engine(dev: Environment) -> None:
    runs_of("limited", 6, limit=2)
    queue = queue_of("limited", dev)
    engine.override_queue_limit(queue_id=queue.pk, limit=1, actor="user:ops")
    assert engine.admit(now=at(1)) == 1
    with CaptureQueriesContext(connection) as queries:
        reset = engine.reset_queue_limit(queue_id=queue.pk, actor="user:ops")
    assert notified(queries)
    assert (reset.limit_override, reset.limit_overridden_at, reset.limit_as_of(at(2))) == (None, None, 2)
    assert engine.admit(now=at(2)) == 1


def test_an_override_with_an_expiry_ends_at_that_time(dev: Environment) -> None:
    runs_of("limited", 6, limit=1)
    queue = queue_of("limited", dev)
    engine.override_queue_limit(queue_id=queue.pk, limit=3, actor="user:ops", until=at(30))
    assert next_due(after=at(1)) == at(30)
    engine.tick(now=at(1))
    assert Run.objects.filter(status=RunStatus.DEQUEUED).count() == 3
    Run.objects.filter(status=RunStatus.DEQUEUED).update(status=RunStatus.COMPLETED, finished_at=at(2))
    engine.tick(now=at(30))  # the base limit of one applies again
    assert Run.objects.filter(status=RunStatus.DEQUEUED).count() == 1
    queue.refresh_from_db()
    assert queue.limit_override is None and queue.limit_override_until is None
    lifted = AuditEntry.objects.get(action="queue.limit_reset")
    assert lifted.username == "engine" and lifted.data["was"] == 3


@registry.task(id="test-queue-pause-limited", queue="pause-limited", concurrency_limit=5)
def limited_task(payload: object) -> None:
    return None


def test_worker_registration_keeps_a_pause_and_an_override(dev: Environment) -> None:
    spec = registry.get("test-queue-pause-limited")
    assert spec is not None
    engine.register_worker(hostname="w1", queues=[], specs=[spec])
    queue = Queue.objects.get(environment=dev, name=spec.queue)
    engine.pause_queue(queue_id=queue.pk, actor="user:ops", reason="deploy")
    engine.override_queue_limit(queue_id=queue.pk, limit=9, actor="user:ops")
    engine.register_worker(hostname="w2", queues=[], specs=[spec])
    queue.refresh_from_db()
    assert queue.paused_as_of(at(1)) and queue.pause_reason == "deploy"
    assert (queue.concurrency_limit, queue.limit_override, queue.limit_as_of(at(1))) == (5, 9, 9)


def test_each_queue_action_is_audited_with_who_why_and_what_changed(dev: Environment) -> None:
    runs_of("held", 1, limit=2)
    queue = queue_of("held", dev)
    engine.pause_queue(queue_id=queue.pk, actor="user:ops", reason="incident 42", resume_at=at(60))
    engine.pause_queue(queue_id=queue.pk, actor="api:tr_dev_…1234", reason="again")
    engine.resume_queue(queue_id=queue.pk, actor="user:ops", reason="over")
    engine.override_queue_limit(queue_id=queue.pk, limit=7, actor="user:ops", reason="catch up")
    engine.reset_queue_limit(queue_id=queue.pk, actor="user:ops")
    rows = AuditEntry.objects.order_by("id").values_list("action", "username", "target", "reason", "data")
    assert [row[:4] for row in rows] == [
        ("queue.pause", "ops", queue.public_id, "incident 42"),
        ("queue.pause", "api:tr_dev_…1234", queue.public_id, "again"),
        ("queue.resume", "ops", queue.public_id, "over"),
        ("queue.limit_override", "ops", queue.public_id, "catch up"),
        ("queue.limit_reset", "ops", queue.public_id, ""),
    ]
    data = [row[4] for row in rows]
    assert data[0]["changed"] and data[0]["resume_at"] == at(60).isoformat() and data[0]["queue"] == "task/held"
    assert not data[1]["changed"]  # the first pause stands: who paused it and since when
    assert (data[3]["limit"], data[3]["was"]) == (7, 2)
    assert (data[4]["was"], data[4]["limit"]) == (7, 2)
    assert all(entry.environment_id == dev.pk for entry in AuditEntry.objects.all())


def test_queue_actions_change_no_run(dev: Environment) -> None:
    held = runs_of("held", 1)
    queue = queue_of("held", dev)
    before = held[0].events.count()
    engine.pause_queue(queue_id=queue.pk, actor="user:ops")
    engine.override_queue_limit(queue_id=queue.pk, limit=3, actor="user:ops")
    assert held[0].events.count() == before and statuses(held) == [RunStatus.QUEUED]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda pk: engine.pause_queue(queue_id=pk, actor="u", resume_at=at(-1)), "resume_at must be in the future"),
        (lambda pk: engine.override_queue_limit(queue_id=pk, limit=-1, actor="u"), "between 0 and 100000"),
        (lambda pk: engine.override_queue_limit(queue_id=pk, limit=100_001, actor="u"), "between 0 and 100000"),
        (lambda pk: engine.override_queue_limit(queue_id=pk, limit=1, actor="u", until=T0), "until must be"),
    ],
)
def test_bad_pause_and_override_values_are_refused_and_change_nothing(
    dev: Environment, call: object, message: str
) -> None:
    runs_of("held", 1)
    queue = queue_of("held", dev)
    with pytest.raises(engine.EngineError, match=message):
        call(queue.pk)  # type: ignore[operator]
    queue.refresh_from_db()
    assert queue.paused_at is None and queue.limit_override is None and not AuditEntry.objects.exists()


def test_an_unknown_queue_is_not_found(dev: Environment) -> None:
    with pytest.raises(engine.QueueNotFound):
        engine.pause_queue(queue_id=987654, actor="u")
    with pytest.raises(engine.QueueNotFound):
        engine.find_queue(environment_id=dev.pk, ref="queue_x1", kind="id")


def test_a_queue_is_found_by_id_by_task_id_and_by_name(dev: Environment) -> None:
    runs_of("held", 1)
    queue = queue_of("held", dev)
    assert engine.find_queue(environment_id=dev.pk, ref=queue.public_id, kind="id") == queue
    assert engine.find_queue(environment_id=dev.pk, ref="held", kind="task") == queue
    assert engine.find_queue(environment_id=dev.pk, ref="task/held", kind="custom") == queue


def test_a_queue_of_another_environment_is_not_found(dev: Environment, prod: Environment) -> None:
    runs_of("held", 1, env="prod")
    queue = queue_of("held", prod)
    with pytest.raises(engine.QueueNotFound):
        engine.find_queue(environment_id=dev.pk, ref=queue.public_id, kind="id")
