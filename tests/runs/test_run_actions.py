"""Operator actions in the engine: cancel with a result, reschedule with a reason, start now, replay reasons."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from runs import engine
from runs.engine.actions import start_now, try_cancel_run
from runs.models import Environment, Run, RunEvent
from runs.states import RunStatus
from tests import factories

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def frozen_clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def last_event(run: Run) -> RunEvent:
    event = RunEvent.objects.filter(run=run).last()
    assert event is not None
    return event


def test_try_cancel_says_whether_it_canceled(dev: Environment) -> None:
    run = factories.run()
    canceled, changed = try_cancel_run(run_id=run.id, actor="user:ada", reason="wrong payload")
    assert (canceled.status, changed) == (RunStatus.CANCELED, True)
    again, changed = try_cancel_run(run_id=run.id, actor="user:ada")
    assert (again.status, changed) == (RunStatus.CANCELED, False)
    assert last_event(run).reason == "wrong payload"


def test_reschedule_records_the_reason_beside_the_new_time(dev: Environment) -> None:
    run = factories.run(delay_until=T0 + timedelta(hours=1))
    later = T0 + timedelta(hours=3)
    engine.reschedule_run(run_id=run.id, delay_until=later, actor="user:ada", reason="after the deploy")
    event = last_event(run)
    assert (event.actor, event.from_status, event.to_status) == ("user:ada", "DELAYED", "DELAYED")
    assert event.reason == f"rescheduled to {later.isoformat()}: after the deploy"
    assert Run.objects.get(pk=run.id).delay_until == later


def test_start_now_queues_a_delayed_run_at_once(dev: Environment, frozen_clock: time_machine.Traveller) -> None:
    run = factories.run(delay_until=T0 + timedelta(hours=1), ttl=600, priority=5)
    frozen_clock.shift(timedelta(minutes=2))
    now = T0 + timedelta(minutes=2)
    started = start_now(run_id=run.id, actor="user:ada", reason="customer waiting")
    assert started.status == RunStatus.QUEUED
    # Queued as of now: the queue order and the TTL clock count from this moment.
    assert (started.queued_at, started.delay_until) == (now, now)
    assert started.available_at == now - timedelta(seconds=5)
    assert started.expires_at == now + timedelta(minutes=10)
    event = last_event(run)
    assert (event.from_status, event.to_status, event.actor) == ("DELAYED", "QUEUED", "user:ada")
    assert event.reason == "started now instead of at its delay: customer waiting"
    assert event.data == {"from": str(T0 + timedelta(hours=1))}
    assert engine.admit(now=now) == 1  # the engine admits it on its next tick


def test_start_now_refuses_a_run_that_is_not_delayed(dev: Environment) -> None:
    run = factories.run()
    with pytest.raises(engine.EngineError, match="not delayed"):
        start_now(run_id=run.id, actor="user:ada")
    with pytest.raises(engine.RunNotFound):
        start_now(run_id="run_nope", actor="user:ada")
    assert Run.objects.get(pk=run.id).status == RunStatus.QUEUED


def test_a_replay_reason_joins_the_replay_event(dev: Environment) -> None:
    original = factories.run()
    replay = engine.replay_run(
        run_id=original.id, actor="user:ada", options=engine.TriggerOptions(), reason="fixed the bug"
    ).run
    assert last_event(replay).reason == f"replay of {original.id}: fixed the bug"


def test_long_reasons_are_cut_to_fit_the_timeline(dev: Environment) -> None:
    run = factories.run(delay_until=T0 + timedelta(hours=1))
    engine.reschedule_run(run_id=run.id, delay_until=T0 + timedelta(hours=2), actor="user:ada", reason="x" * 600)
    reason = last_event(run).reason
    assert len(reason) == 512 and reason.endswith("…")
