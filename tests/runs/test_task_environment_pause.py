"""Operators pause a task of an environment, or a whole environment; admission obeys both."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from runs import engine, registry
from runs.engine.scheduler import next_due
from runs.models import AuditEntry, Environment, Run, TaskPause
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


def runs_of(task_id: str, count: int, **options: object) -> list[Run]:
    """`count` queued runs; their TTL outlasts every test's clock (dev's default is 10 minutes)."""
    return [factories.run(task_id, **{"ttl": 7200, **options}) for _ in range(count)]


def statuses(runs: list[Run]) -> list[str]:
    return [Run.objects.get(pk=run.pk).status for run in runs]


def notified(queries: CaptureQueriesContext) -> bool:
    return any("NOTIFY" in query["sql"] for query in queries.captured_queries)


def test_a_paused_task_is_not_admitted_while_other_tasks_of_its_queue_still_are(dev: Environment) -> None:
    held = runs_of("held", 2, queue="shared")
    free = runs_of("free", 2, queue="shared")
    engine.pause_task(environment_id=dev.pk, task_id="held", actor="user:ops", reason="bad deploy")
    assert engine.admit(now=at(1)) == 2
    assert statuses(held) == [RunStatus.QUEUED] * 2
    assert statuses(free) == [RunStatus.DEQUEUED] * 2


def test_a_paused_task_is_held_in_its_environment_only(dev: Environment, prod: Environment) -> None:
    held = runs_of("held", 1)
    elsewhere = runs_of("held", 1, env="prod")
    engine.pause_task(environment_id=dev.pk, task_id="held", actor="user:ops")
    engine.admit(now=at(1))
    assert statuses(held + elsewhere) == [RunStatus.QUEUED, RunStatus.DEQUEUED]


def test_a_paused_environment_admits_nothing_while_other_environments_still_do(
    dev: Environment, prod: Environment
) -> None:
    held = runs_of("a", 1) + runs_of("b", 1)
    free = runs_of("a", 1, env="prod")
    engine.pause_environment(environment_id=dev.pk, actor="user:ops", reason="maintenance")
    assert engine.tick(now=at(1)) == 1
    assert statuses(held) == [RunStatus.QUEUED] * 2
    assert statuses(free) == [RunStatus.DEQUEUED]


def test_resuming_a_task_or_an_environment_admits_its_runs_and_wakes_the_engine(dev: Environment) -> None:
    held = runs_of("held", 1) + runs_of("other", 1)
    engine.pause_task(environment_id=dev.pk, task_id="held", actor="user:ops")
    engine.pause_environment(environment_id=dev.pk, actor="user:ops")
    assert engine.tick(now=at(1)) == 0
    with CaptureQueriesContext(connection) as queries:
        environment = engine.resume_environment(environment_id=dev.pk, actor="user:ops")
    assert notified(queries) and environment.paused_at is None
    assert engine.admit(now=at(2)) == 1
    assert statuses(held) == [RunStatus.QUEUED, RunStatus.DEQUEUED]
    with CaptureQueriesContext(connection) as queries:
        pause = engine.resume_task(environment_id=dev.pk, task_id="held", actor="user:ops")
    assert notified(queries) and pause is not None and pause.paused_at is None
    assert engine.admit(now=at(3)) == 1
    assert statuses(held) == [RunStatus.DEQUEUED] * 2


def test_a_run_already_executing_finishes_when_its_task_and_environment_are_paused(dev: Environment) -> None:
    (run,) = runs_of("held", 1)
    engine.admit(now=at(1))
    attempt = engine.start_attempt(run_id=run.id, worker="w1", now=at(1))
    assert attempt is not None
    engine.pause_task(environment_id=dev.pk, task_id="held", actor="user:ops")
    engine.pause_environment(environment_id=dev.pk, actor="user:ops")
    done = engine.complete_attempt(run_id=run.id, attempt=attempt.number, output="{}", output_type="application/json")
    assert done is not None and done.status == RunStatus.COMPLETED


@pytest.mark.parametrize("paused", ["task", "environment"])
def test_delayed_runs_held_by_a_pause_are_queued_at_their_time_and_their_ttl_still_expires_them(
    dev: Environment, paused: str
) -> None:
    factories.task_definition("held")
    if paused == "task":
        engine.pause_task(environment_id=dev.pk, task_id="held", actor="user:ops")
    else:
        engine.pause_environment(environment_id=dev.pk, actor="user:ops")
    run = factories.run("held", delay_until=at(10), ttl=600)
    engine.tick(now=at(10))
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED and run.queued_at == at(10)
    engine.tick(now=at(19.99))
    assert statuses([run]) == [RunStatus.QUEUED]
    engine.tick(now=at(20))
    assert statuses([run]) == [RunStatus.EXPIRED]


def test_task_and_environment_pauses_with_a_resume_time_end_by_themselves(dev: Environment) -> None:
    held = runs_of("held", 1) + runs_of("other", 1)
    engine.pause_task(environment_id=dev.pk, task_id="held", actor="user:ops", resume_at=at(40))
    engine.pause_environment(environment_id=dev.pk, actor="user:ops", resume_at=at(30))
    assert next_due(after=at(1)) == at(30)  # the engine sleeps no longer than the first pause
    assert next_due(after=at(30)) == at(40)
    engine.tick(now=at(29.99))
    assert statuses(held) == [RunStatus.QUEUED] * 2
    engine.tick(now=at(30))
    assert statuses(held) == [RunStatus.QUEUED, RunStatus.DEQUEUED]
    engine.tick(now=at(40))
    assert statuses(held) == [RunStatus.DEQUEUED] * 2
    assert TaskPause.objects.get().paused_at is None and Environment.objects.get(pk=dev.pk).paused_at is None
    lifted = AuditEntry.objects.filter(username="engine").order_by("at").values_list("action", "target", "at")
    assert list(lifted) == [("environment.resume", "dev", at(30)), ("task.resume", "task:held", at(40))]


def test_each_task_and_environment_action_is_audited_with_who_why_and_what_changed(dev: Environment) -> None:
    factories.task_definition("held")
    engine.pause_task(environment_id=dev.pk, task_id="held", actor="user:ops", reason="incident 7", resume_at=at(60))
    engine.pause_task(environment_id=dev.pk, task_id="held", actor="api:tr_dev_…1234", reason="again")
    engine.resume_task(environment_id=dev.pk, task_id="held", actor="user:ops", reason="over")
    engine.pause_environment(environment_id=dev.pk, actor="user:ops", reason="freeze")
    engine.resume_environment(environment_id=dev.pk, actor="user:ops")
    rows = AuditEntry.objects.order_by("id").values_list("action", "username", "target", "reason", "data")
    assert [row[:4] for row in rows] == [
        ("task.pause", "ops", "task:held", "incident 7"),
        ("task.pause", "api:tr_dev_…1234", "task:held", "again"),
        ("task.resume", "ops", "task:held", "over"),
        ("environment.pause", "ops", "dev", "freeze"),
        ("environment.resume", "ops", "dev", ""),
    ]
    data = [row[4] for row in rows]
    assert data[0] == {"task": "held", "changed": True, "resume_at": at(60).isoformat()}
    assert not data[1]["changed"]  # the first pause stands: who paused it and since when
    pause = TaskPause.objects.get()
    assert pause.paused_at is None and data[2]["changed"]
    assert all(entry.environment_id == dev.pk for entry in AuditEntry.objects.all())


def test_pausing_changes_no_run(dev: Environment) -> None:
    held = runs_of("held", 1)
    before = held[0].events.count()
    engine.pause_task(environment_id=dev.pk, task_id="held", actor="user:ops")
    engine.pause_environment(environment_id=dev.pk, actor="user:ops")
    assert held[0].events.count() == before and statuses(held) == [RunStatus.QUEUED]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda env: engine.pause_task(environment_id=env, task_id="held", actor="u", resume_at=at(-1)),
            "resume_at must be in the future",
        ),
        (
            lambda env: engine.pause_task(environment_id=env, task_id="held", actor="u", reason="x" * 513),
            "reason must be at most 512 characters",
        ),
        (
            lambda env: engine.pause_environment(environment_id=env, actor="u", resume_at=T0),
            "resume_at must be in the future",
        ),
        (lambda env: engine.pause_environment(environment_id=env, actor="u", reason="x" * 513), "reason must be"),
    ],
)
def test_bad_pause_values_are_refused_and_change_nothing(dev: Environment, call: object, message: str) -> None:
    factories.task_definition("held")
    with pytest.raises(engine.EngineError, match=message):
        call(dev.pk)  # type: ignore[operator]
    dev.refresh_from_db()
    assert dev.paused_at is None and not TaskPause.objects.exists() and not AuditEntry.objects.exists()


def test_an_unknown_task_is_not_found(dev: Environment) -> None:
    with pytest.raises(engine.TaskNotFound):
        engine.pause_task(environment_id=dev.pk, task_id="nope", actor="u")
    assert not TaskPause.objects.exists()


@registry.task(id="test-task-pause-registered", queue="task-pause-registered")
def registered_task(payload: object) -> None:
    return None


def test_worker_registration_keeps_a_task_and_an_environment_pause(dev: Environment) -> None:
    spec = registry.get("test-task-pause-registered")
    assert spec is not None
    engine.register_worker(hostname="w1", queues=[], specs=[spec])
    engine.pause_task(environment_id=dev.pk, task_id=spec.id, actor="user:ops", reason="deploy")
    engine.pause_environment(environment_id=dev.pk, actor="user:ops", reason="freeze")
    engine.register_worker(hostname="w2", queues=[], specs=[spec])
    engine.register_worker(hostname="w1", queues=[], specs=[spec])  # the same worker again
    pause = TaskPause.objects.get(environment=dev, task_id=spec.id)
    dev.refresh_from_db()
    assert pause.paused_as_of(at(1)) and pause.pause_reason == "deploy" and pause.paused_by == "user:ops"
    assert dev.paused_as_of(at(1)) and dev.pause_reason == "freeze"


def test_admission_reads_both_pauses_in_its_queue_lock_statement(dev: Environment) -> None:
    held = runs_of("held", 1, queue="shared")
    free = runs_of("free", 1, queue="shared")
    engine.pause_task(environment_id=dev.pk, task_id="held", actor="user:ops")
    with CaptureQueriesContext(connection) as queries:
        assert engine.admit(now=at(1)) == 1
    # The pending keys, the queue's lock (with its environment and task pauses), the key's
    # admission: no statement more per queue than before pauses existed (its active slots are
    # counted only for a queue with a limit; this one has none: was 4).
    selects = [
        query["sql"] for query in queries.captured_queries if not query["sql"].startswith(("SAVEPOINT", "RELEASE"))
    ]
    assert len(selects) == 3, selects
    assert statuses(held + free) == [RunStatus.QUEUED, RunStatus.DEQUEUED]
