"""The engine acts on time: due runs are promoted together, and the loop wakes when they fall due."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from runs import engine
from runs.engine import scheduler
from runs.engine.scheduler import next_due
from runs.management.commands.engine import Command
from runs.models import Environment, Run, RunEvent
from runs.states import RunStatus
from tests import factories

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
POLL = 5.0  # far longer than any due time below: a wait that ignores them shows


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def frozen() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture(autouse=True)
def long_poll(settings: Any) -> None:
    settings.RUNYARD_ENGINE_POLL_INTERVAL = POLL


def clone(run: Run, count: int) -> None:
    """`count` more runs like `run` (same status, times and options), inserted in one statement."""
    columns = [field.column for field in Run._meta.concrete_fields if field.column != "id"]
    names = ", ".join(columns)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO runs_run (id, {names}) SELECT 'run_clone' || n, {names}"
            " FROM runs_run, generate_series(1, %s) AS n WHERE id = %s",
            [count, run.id],
        )


@pytest.mark.django_db
def test_ten_thousand_runs_due_together_are_promoted_in_one_statement(dev: Environment, frozen: Any) -> None:
    t = time.monotonic()
    clone(factories.run(delay_until=at(10), ttl=60, priority=5), 9_999)
    print("clone", time.monotonic() - t)
    with CaptureQueriesContext(connection) as queries:
        assert engine.promote_delayed(now=at(10)) == 10_000
    # The promotion (lock, update, timeline) and the NOTIFY for admission; none per run.
    statements = [q["sql"] for q in queries if "SAVEPOINT" not in q["sql"]]
    assert len(statements) <= 2, statements
    print("promoted", time.monotonic() - t)
    assert not Run.objects.filter(status=RunStatus.DELAYED).exists()
    queued = Run.objects.filter(status=RunStatus.QUEUED)
    assert queued.count() == 10_000
    # As mark_queued sets them: queued as of the due time, priority ahead, TTL from then.
    assert set(queued.values_list("queued_at", "available_at", "expires_at", "updated_at").distinct()) == {
        (at(10), at(5), at(70), at(10))
    }
    promoted = RunEvent.objects.filter(from_status=RunStatus.DELAYED, to_status=RunStatus.QUEUED)
    assert promoted.count() == 10_000
    assert promoted.values("run_id").distinct().count() == 10_000
    assert set(promoted.values_list("at", "actor", "reason").distinct()) == {(at(10), engine.ENGINE, "delay is over")}
    assert not promoted.exclude(data={}).exists()


@pytest.mark.django_db
def test_promotion_keeps_a_ttl_armed_earlier_and_arms_none_without_a_ttl(dev: Environment, frozen: Any) -> None:
    again = factories.run(delay_until=at(10), ttl=60)
    # As if it had been queued before at T0 (its TTL clock then started) and delayed again.
    Run.objects.filter(pk=again.pk).update(queued_at=at(0), expires_at=at(60))
    plain = factories.run(delay_until=at(10))
    Run.objects.filter(pk=plain.pk).update(ttl=None)  # every environment sets one by default
    assert engine.promote_delayed(now=at(10)) == 2
    again.refresh_from_db()
    plain.refresh_from_db()
    assert (again.queued_at, again.expires_at, again.available_at) == (at(0), at(60), at(10))
    assert (plain.queued_at, plain.expires_at, plain.available_at) == (at(10), None, at(10))


@pytest.mark.django_db(transaction=True)
def test_a_run_another_engine_is_promoting_is_skipped_not_waited_for(dev: Environment, frozen: Any) -> None:
    runs = [factories.run(delay_until=at(10)) for _ in range(3)]
    params = connection.get_connection_params()
    with psycopg.connect(**params) as other:  # another engine, mid-promotion of runs[0]
        other.execute("SELECT id FROM runs_run WHERE id = %s FOR UPDATE", [runs[0].id])
        began = time.monotonic()
        assert engine.promote_delayed(now=at(10)) == 2
        assert time.monotonic() - began < 2
        other.rollback()
    assert engine.promote_delayed(now=at(10)) == 1
    for run in runs:
        assert RunEvent.objects.filter(run=run, to_status=RunStatus.QUEUED).count() == 1
    assert engine.promote_delayed(now=at(11)) == 0


@pytest.mark.django_db
def test_next_due_is_the_earliest_delay_ttl_or_max_duration_after_the_tick(dev: Environment, frozen: Any) -> None:
    assert next_due(after=at(0)) is None
    factories.run(delay_until=at(30))
    assert next_due(after=at(0)) == at(30)
    expiring = factories.run(ttl=20)  # queued at trigger time (now), expires 20 s later
    assert expiring.expires_at is not None
    assert next_due(after=at(0)) == min(at(30), expiring.expires_at)
    factories.run(delay_until=at(2))
    assert next_due(after=at(0)) == at(2)
    # What was due by the tick's clock was that tick's (or another engine's) to do.
    assert next_due(after=at(2)) == min(at(30), expiring.expires_at)


@pytest.mark.django_db
def test_the_engine_sleeps_no_longer_than_until_the_next_due_run(dev: Environment, frozen: Any) -> None:
    command = Command()
    assert command._timeout(ticked_at=at(0)) == POLL  # nothing scheduled: the poll interval
    factories.run(delay_until=at(0.25))
    assert command._timeout(ticked_at=at(0)) == pytest.approx(0.25, abs=0.01)
    factories.run(ttl=1)  # expires at 1 s
    assert command._timeout(ticked_at=at(0)) == pytest.approx(0.25, abs=0.01)
    frozen.move_to(at(0.5))  # the tick ran past the due time: go again at once
    assert command._timeout(ticked_at=at(0)) == 0
    assert command._timeout(ticked_at=at(0.5)) == pytest.approx(0.5, abs=0.01)  # then the expiry


@pytest.mark.django_db
def test_the_engine_wakes_for_a_due_run_before_the_poll_interval(dev: Environment, settings: Any) -> None:
    # A poll interval far past the due time, so that the wake-up's window can be generous: a
    # loaded machine may take a second between the insert and the wait, or overshoot the sleep.
    settings.RUNYARD_ENGINE_POLL_INTERVAL = 60.0
    due = datetime.now(UTC) + timedelta(seconds=1)
    factories.run(delay_until=due)
    command = Command()
    listener = command._listen()
    assert listener is not None
    try:
        began = time.monotonic()
        command._wait(listener, command._timeout(datetime.now(UTC)))
        woke = datetime.now(UTC)
        assert time.monotonic() - began < 30  # long before the poll interval
    finally:
        listener.close()
    assert woke >= due  # and not before the run fell due
    assert engine.tick() >= 1
    assert not Run.objects.filter(status=RunStatus.DELAYED).exists()


@pytest.mark.django_db
def test_a_tick_with_nothing_due_reads_once_for_the_time_driven_steps(dev: Environment, frozen: Any) -> None:
    factories.run(delay_until=at(30), ttl=60)
    with CaptureQueriesContext(connection) as queries:
        assert engine.tick(now=at(1)) == 0
    # One read says no delay ended, no TTL ran out, no worker was lost, no deadline passed;
    # then waiting runs, admission and bulk actions look for themselves.
    statements = [q["sql"] for q in queries if "SAVEPOINT" not in q["sql"]]
    assert len(statements) <= 6, statements
    assert engine.tick(now=at(30)) >= 1  # and a due run is found by the same read
    assert not Run.objects.filter(status=RunStatus.DELAYED).exists()


@pytest.mark.django_db(transaction=True)
def test_a_wake_up_soon_after_a_tick_waits_for_the_gap_but_never_past_a_due_time(dev: Environment) -> None:
    command = Command()
    listener = command._listen()
    assert listener is not None
    params = connection.get_connection_params()
    try:
        with psycopg.connect(**params, autocommit=True) as other:
            other.execute("NOTIFY runyard_engine")
            began = time.monotonic()
            command._wait(listener, POLL, not_before=began + 0.3)
            assert 0.25 <= time.monotonic() - began < POLL / 2  # coalesced: one tick per gap
            other.execute("NOTIFY runyard_engine")
            began = time.monotonic()
            command._wait(listener, 0.1, not_before=began + 3)
            assert time.monotonic() - began < 1  # a run falling due does not wait for the gap
            other.execute("NOTIFY runyard_engine")
            began = time.monotonic()
            command._wait(listener, POLL, not_before=began - 1)
            assert time.monotonic() - began < 1  # long after the last tick: at once
    finally:
        listener.close()


@pytest.mark.django_db
@pytest.mark.parametrize("size", [1, 300])
def test_admitting_a_queue_of_runs_is_one_statement_at_any_size(
    dev: Environment, frozen: Any, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    monkeypatch.setattr(scheduler, "ADMIT_BATCH", 300)  # a tick admits up to 300 runs of a queue
    first = factories.run(priority=5)
    clone(first, size - 1)
    with CaptureQueriesContext(connection) as queries:
        assert engine.admit(now=at(0)) == size
    # Which queues wait, their row lock, their active counts, then one statement locks, moves
    # and records the runs of the key; none per run.
    statements = [q["sql"] for q in queries if "SAVEPOINT" not in q["sql"]]
    assert len(statements) <= 4, statements
    admitted = RunEvent.objects.filter(from_status=RunStatus.QUEUED, to_status=RunStatus.DEQUEUED)
    assert admitted.values("run_id").distinct().count() == size
    assert set(admitted.values_list("at", "actor", "reason").distinct()) == {
        (at(0), engine.ENGINE, "admitted to a worker")
    }
    assert set(Run.objects.values_list("status", "dispatch_count", "updated_at").distinct()) == {
        (RunStatus.DEQUEUED, 1, at(0))
    }


@pytest.mark.django_db(transaction=True)  # the engine's loop commits as it goes
def test_a_burst_is_admitted_a_hundred_runs_a_transaction_and_all_in_one_wake_up(dev: Environment) -> None:
    """A tick's Celery messages go out when it commits: 1,000 runs admitted in one transaction
    kept the workers idle until all were written. The engine ticks again at once while a tick
    admitted a full share."""
    clone(factories.run(), 249)
    assert engine.admit(now=timezone.now()) == 100
    Command()._tick()
    assert not Run.objects.filter(status=RunStatus.QUEUED).exists()
    assert Run.objects.filter(status=RunStatus.DEQUEUED).count() == 250
