"""The one transition path (runs.engine.transitions): compare-and-set, timeline, after commit."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from runs import engine, events
from runs.engine import actions, transitions
from runs.models import Environment, Run, RunEvent
from runs.states import FINAL_STATUSES, RunStatus
from tests import factories

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(seconds=5)
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def frozen_clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def published(callbacks: list[Callable[[], Any]]) -> list[tuple[int, list[str]]]:
    """The run changes the on-commit callbacks would publish: (environment id, run ids)."""
    changes = [callback.args[0] for callback in callbacks if getattr(callback, "func", None) is events._send]
    return [(change.environment_id, change.run_ids) for change in changes]


def executing(task_id: str = "hello-world", **options: Any) -> Run:
    run = factories.run(task_id, **options)
    engine.admit(now=T0)
    assert engine.start_attempt(run_id=run.id, worker="w1", now=T0) is not None
    return Run.objects.get(pk=run.pk)


def waiting_parent_of(child: Run) -> Run:
    parent = executing("parent-task")
    engine.add_waitpoint(run_id=parent.id, sequence=1, child_ids=[child.id])
    assert engine.suspend_run(run_id=parent.id, attempt=parent.attempt_count, now=T0) is not None
    return Run.objects.get(pk=parent.pk)


def test_an_allowed_transition_stamps_the_run_writes_its_event_and_publishes_at_commit(
    dev: Environment, django_capture_on_commit_callbacks: Any
) -> None:
    run = factories.run()
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        moved = transitions.transition(
            run.id, RunStatus.CANCELED, actor="user:ops", now=LATER, reason="no longer needed"
        )
        assert moved is not None
        assert published(callbacks) == []  # nothing is published before the commit
    run.refresh_from_db()
    assert (run.status, run.updated_at, run.finished_at) == (RunStatus.CANCELED, LATER, LATER)
    event = run.events.last()
    assert event is not None
    assert (event.from_status, event.to_status, event.actor, event.reason, event.at) == (
        RunStatus.QUEUED,
        RunStatus.CANCELED,
        "user:ops",
        "no longer needed",
        LATER,
    )
    assert published(callbacks) == [(dev.id, [run.id])]


def test_a_transition_rolled_back_publishes_nothing(dev: Environment, django_capture_on_commit_callbacks: Any) -> None:
    run = factories.run()
    with django_capture_on_commit_callbacks() as callbacks, pytest.raises(RuntimeError), transaction.atomic():
        assert transitions.transition(run.id, RunStatus.CANCELED, actor="user:ops", now=LATER) is not None
        raise RuntimeError("the caller's transaction fails")
    assert published(callbacks) == []
    assert Run.objects.get(pk=run.pk).status == RunStatus.QUEUED


def test_a_disallowed_or_stale_transition_changes_nothing_and_says_so(
    dev: Environment, django_capture_on_commit_callbacks: Any
) -> None:
    run = factories.run()
    before = RunEvent.objects.filter(run=run).count()
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        # QUEUED -> EXECUTING skips DEQUEUED; a stale caller's guard no longer holds.
        assert transitions.transition(run.id, RunStatus.EXECUTING, actor="engine", now=LATER) is None
        assert (
            transitions.transition(run.id, RunStatus.CANCELED, actor="engine", now=LATER, guard=lambda r: False) is None
        )
        assert (
            transitions.transition(
                run.id, RunStatus.QUEUED, actor="engine", now=LATER, allowed_from=[RunStatus.DELAYED]
            )
            is None
        )
    run.refresh_from_db()
    assert (run.status, run.updated_at, run.finished_at) == (RunStatus.QUEUED, T0, None)
    assert RunEvent.objects.filter(run=run).count() == before
    assert published(callbacks) == []


def test_a_final_run_never_changes_by_any_form(dev: Environment, django_capture_on_commit_callbacks: Any) -> None:
    run = factories.run()
    engine.cancel_run(run_id=run.id, actor="user:ops", now=T0)
    before = RunEvent.objects.filter(run=run).count()
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        for status in RunStatus:
            assert transitions.transition(run.id, status, actor="engine", now=LATER) is None
            locked = list(Run.objects.select_for_update().filter(pk=run.pk))
            assert transitions.bulk_transition(locked, status, actor="engine", now=LATER, reason="") == 0
    run.refresh_from_db()
    assert (run.status, run.finished_at) == (RunStatus.CANCELED, T0)
    assert RunEvent.objects.filter(run=run).count() == before
    assert published(callbacks) == []
    with pytest.raises(AssertionError):  # a row known to be final is a caller's bug, not a no-op
        transitions.move_rows(
            [transitions.Moved(run.id, dev.id, RunStatus.CANCELED)],
            RunStatus.QUEUED,
            actor="engine",
            now=LATER,
            reasons={run.id: ""},
        )


def test_the_batch_form_moves_the_runs_allowed_with_an_event_each_and_one_message_per_environment(
    dev: Environment, prod: Environment, django_capture_on_commit_callbacks: Any
) -> None:
    mine = [factories.run(), factories.run(), factories.run(env="prod")]
    done = factories.run()
    engine.cancel_run(run_id=done.id, actor="user:ops", now=T0)
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        locked = list(Run.objects.select_for_update().filter(pk__in=[run.id for run in [*mine, done]]).order_by("id"))
        count = transitions.bulk_transition(locked, RunStatus.EXPIRED, actor="engine", now=LATER, reason="TTL passed")
    assert count == 3
    for run in mine:
        run.refresh_from_db()
        assert (run.status, run.updated_at, run.finished_at) == (RunStatus.EXPIRED, LATER, LATER)
        assert list(run.events.filter(to_status=RunStatus.EXPIRED).values_list("from_status", "reason")) == [
            (RunStatus.QUEUED, "TTL passed")
        ]
    assert Run.objects.get(pk=done.pk).status == RunStatus.CANCELED
    assert sorted((env, sorted(ids)) for env, ids in published(callbacks)) == sorted(
        [(dev.id, sorted([mine[0].id, mine[1].id])), (prod.id, [mine[2].id])]
    )


def test_rows_moved_together_each_get_their_own_reason_and_resume_the_parent_waiting_on_them(
    dev: Environment,
) -> None:
    factories.task_definition("parent-task")
    child = factories.run()
    parent = waiting_parent_of(child)
    assert parent.status == RunStatus.WAITING
    other = factories.run()
    rows = [transitions.Moved(run.id, dev.id, RunStatus.QUEUED) for run in (child, other)]
    with transaction.atomic():
        transitions.move_rows(
            rows, RunStatus.CANCELED, actor="user:ops", now=LATER, reasons={child.id: "one", other.id: "two"}
        )
    reasons = dict(
        RunEvent.objects.filter(to_status=RunStatus.CANCELED, run__in=[child, other]).values_list("run_id", "reason")
    )
    assert reasons == {child.id: "one", other.id: "two"}
    parent.refresh_from_db()
    assert (parent.status, parent.resuming) == (RunStatus.QUEUED, True)


def test_runs_made_final_together_look_up_their_parents_once_at_any_number(dev: Environment) -> None:
    def statements(size: int) -> int:
        runs = [factories.run() for _ in range(size)]
        with CaptureQueriesContext(connection) as queries, transaction.atomic():
            locked = list(Run.objects.select_for_update().filter(pk__in=[run.id for run in runs]))
            assert transitions.bulk_transition(locked, RunStatus.EXPIRED, actor="engine", now=LATER, reason="") == size
        return len(queries.captured_queries)

    # Each run made final once looked up the parents waiting on it: a query per expired run.
    assert statements(2) == statements(20)


def test_a_run_queued_wakes_the_engine_and_a_slot_freed_asks_to_wake_it_for_its_queue(dev: Environment) -> None:
    def wake_ups(change: Callable[[], object]) -> list[str]:
        with CaptureQueriesContext(connection) as queries, transaction.atomic():
            change()
        return [q["sql"] for q in queries.captured_queries if "notify" in q["sql"].lower()]

    delayed = factories.run(delay_until=T0 + timedelta(hours=1))
    assert wake_ups(lambda: actions.start_now(run_id=delayed.id, actor="user:ops", now=T0)) == [
        f"NOTIFY {events.ENGINE_CHANNEL}"
    ]
    engine.cancel_run(run_id=delayed.id, actor="user:ops", now=T0)
    queued = factories.run()  # holds no slot: canceling it frees none
    assert wake_ups(lambda: transitions.transition(queued.id, RunStatus.CANCELED, actor="u", now=LATER)) == []
    running = executing()
    # One statement, which notifies only if the queue has a limit (events.wake_engine_for_slot).
    (woke,) = wake_ups(lambda: transitions.transition(running.id, RunStatus.CANCELED, actor="u", now=LATER))
    assert "pg_notify" in woke and running.queue in woke


def test_every_final_status_sets_finished_at_and_no_other_does(dev: Environment) -> None:
    run = Run.objects.get(pk=factories.run().pk)
    for status in RunStatus:
        fields = transitions._stamp(run, status, LATER)
        assert ("finished_at" in fields) == (status in FINAL_STATUSES), status
