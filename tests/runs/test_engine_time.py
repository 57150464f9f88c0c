"""Time-driven engine rules: delays, reschedules, TTL expiry, stalled workers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from runs import engine
from runs.models import Environment, Run, RunEvent
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


def reload(run: Run) -> Run:
    run.refresh_from_db()
    return run


def test_a_delayed_run_waits_then_joins_its_queue_at_its_time(dev: Environment) -> None:
    run = factories.run(delay_until=at(10))
    assert run.status == RunStatus.DELAYED and run.delay_until == at(10) and run.queued_at is None
    assert engine.promote_delayed(now=at(9.99)) == 0
    assert engine.promote_delayed(now=at(10)) == 1
    run = reload(run)
    assert run.status == RunStatus.QUEUED and run.queued_at == at(10)


def test_ttl_counts_from_enqueue_not_from_trigger(dev: Environment) -> None:
    # The reference's timeline: created 12:00, delay 10m, ttl 1h -> enqueued 12:10, expired 13:10.
    run = factories.run(delay_until=at(10), ttl=3600)
    engine.promote_delayed(now=at(10))
    assert engine.expire_runs(now=at(60)) == 0
    assert engine.expire_runs(now=at(69.99)) == 0
    assert engine.expire_runs(now=at(70)) == 1
    run = reload(run)
    assert run.status == RunStatus.EXPIRED and run.expired_at == at(70) and run.finished_at == at(70)


def test_an_expired_run_never_runs(dev: Environment) -> None:
    factories.task_definition("blocked", concurrency_limit=0, queue="task/blocked")
    run = factories.run("blocked", ttl=60)
    engine.tick(now=at(1))
    assert reload(run).status == RunStatus.EXPIRED
    assert engine.admit(now=at(2)) == 0
    assert engine.start_attempt(run_id=run.id, worker="w", now=at(2)) is None


def test_a_started_run_does_not_expire_while_retrying(dev: Environment) -> None:
    run = factories.run(ttl=60, max_attempts=2)
    engine.admit(now=T0)
    attempt = engine.start_attempt(run_id=run.id, worker="w", now=T0)
    assert attempt is not None
    engine.fail_attempt(run_id=run.id, attempt=1, error={"message": "x"}, retry=None, now=at(0.5))
    assert engine.expire_runs(now=at(5)) == 0
    assert reload(run).status == RunStatus.QUEUED


def test_reschedule_replaces_the_delay(dev: Environment) -> None:
    run = factories.run(delay_until=at(10))
    engine.reschedule_run(run_id=run.id, delay_until=at(30), actor="user:ops", now=at(1))
    assert engine.promote_delayed(now=at(10)) == 0
    assert engine.promote_delayed(now=at(30)) == 1
    event = RunEvent.objects.filter(run=run, from_status="DELAYED", to_status="DELAYED").get()
    assert event.actor == "user:ops" and "rescheduled" in event.reason


def test_only_delayed_runs_can_be_rescheduled(dev: Environment) -> None:
    run = factories.run()
    with pytest.raises(engine.EngineError, match="Cannot reschedule a run that is not delayed"):
        engine.reschedule_run(run_id=run.id, delay_until=at(30), actor="test")


def test_a_reschedule_into_the_past_is_refused(dev: Environment) -> None:
    run = factories.run(delay_until=at(10))
    with pytest.raises(engine.EngineError, match="Invalid delay"):
        engine.reschedule_run(run_id=run.id, delay_until=at(-1), actor="test")


def test_a_delayed_run_can_be_canceled(dev: Environment) -> None:
    run = factories.run(delay_until=at(10))
    engine.cancel_run(run_id=run.id, actor="test")
    assert engine.promote_delayed(now=at(11)) == 0
    assert reload(run).status == RunStatus.CANCELED


def test_a_run_whose_worker_stopped_beating_is_retried_then_crashed(dev: Environment) -> None:
    run = factories.run(max_attempts=2)
    engine.admit(now=T0)
    engine.start_attempt(run_id=run.id, worker="w", now=T0)
    assert engine.recover_stalled(now=at(0.5)) == 0
    assert engine.recover_stalled(now=at(2)) == 1
    assert reload(run).status == RunStatus.QUEUED
    engine.admit(now=at(3))
    engine.start_attempt(run_id=run.id, worker="w", now=at(3))
    assert engine.recover_stalled(now=at(5)) == 1
    run = reload(run)
    assert run.status == RunStatus.CRASHED
    assert run.error is not None and "stopped responding" in run.error["message"]


def test_a_ttl_above_fourteen_days_is_clamped(dev: Environment) -> None:
    assert factories.run(ttl=30 * 86400).ttl == 14 * 86400
