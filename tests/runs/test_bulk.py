"""Bulk actions worked off by the engine: chunks, cursor, snapshot, counts, on the real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from runs import engine
from runs.engine import bulk as bulk_engine
from runs.engine import celery_task_id
from runs.engine.bulk import CHUNK, create_bulk_action, work_bulk_actions
from runs.models import BulkAction, BulkActionStatus, Environment, Run, RunAttempt, RunEvent, Waitpoint
from runs.states import FINAL_STATUSES, RunStatus
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def patient_chunks(monkeypatch: Any) -> None:
    # Chunk sizes asserted here must not depend on how busy the machine is: the time budget
    # of a chunk has a test of its own.
    monkeypatch.setattr(bulk_engine, "CHUNK_SECONDS", 60.0)


def insert_runs(env: Environment, count: int, status: str, start: datetime, task_id: str = "bulk-task") -> None:
    """`count` runs in one INSERT, created a millisecond apart from `start` (no engine: fast)."""
    final = status in FINAL_STATUSES
    Run.objects.bulk_create(
        (
            Run(
                environment=env,
                task_identifier=task_id,
                status=status,
                queue=f"task/{task_id}",
                machine="small-1x",
                created_at=start + timedelta(milliseconds=index),
                updated_at=start,
                finished_at=start if final else None,
            )
            for index in range(count)
        ),
        batch_size=1000,
    )


def bulk(env: Environment, action: str = "cancel", **scope: Any) -> BulkAction:
    return create_bulk_action(
        environment=env, action=action, reason="cleanup after incident 42", username="ada", **scope
    )


def drain(limit: int = 1000) -> list[int]:
    """Engine ticks' bulk step until no bulk action is open; how many runs each visited."""
    visited = []
    while BulkAction.objects.filter(status__in=bulk_engine.OPEN).exists():
        visited.append(work_bulk_actions(now=timezone.now()))
        assert len(visited) < limit
    return visited


def test_two_thousand_runs_are_visited_in_chunks_with_counts(dev: Environment) -> None:
    start = timezone.now() - timedelta(hours=1)
    insert_runs(dev, 1990, RunStatus.COMPLETED, start)
    insert_runs(dev, 10, RunStatus.QUEUED, start + timedelta(minutes=5))
    action = bulk(dev, filters={"task": ["bulk-task"]})

    with CaptureQueriesContext(connection) as first:
        assert work_bulk_actions(now=timezone.now()) == CHUNK
    action.refresh_from_db()
    assert (action.status, action.total, action.processed) == (BulkActionStatus.RUNNING, 2000, CHUNK)
    # Memory and work per tick stay bounded: a chunk of final runs is a handful of queries.
    assert len(first.captured_queries) < 10

    visited = drain()
    assert visited == [CHUNK] * 9 + [0]
    action.refresh_from_db()
    assert action.status == BulkActionStatus.COMPLETED and action.finished_at is not None
    assert (action.total, action.processed, action.succeeded, action.skipped) == (2000, 2000, 10, 1990)
    assert Run.objects.filter(status=RunStatus.CANCELED).count() == 10
    assert not Run.objects.exclude(status__in=FINAL_STATUSES).exists()


def test_a_chunk_of_replays_stops_at_its_time_budget_and_the_next_tick_goes_on(
    dev: Environment, monkeypatch: Any
) -> None:
    monkeypatch.setattr(bulk_engine, "CHUNK_SECONDS", 0)  # a database so busy that every run takes too long
    runs = [factories.run("hello-world") for _ in range(3)]
    action = bulk(dev, action="replay", filters={"task": ["hello-world"]})
    assert drain() == [1, 1, 1]  # one run per tick, never none; the last tick sees the end
    action.refresh_from_db()
    assert (action.status, action.processed, action.succeeded) == ("COMPLETED", 3, 3)
    assert Run.objects.filter(replayed_from__in=runs).count() == 3

    # A chunk of cancels is a few statements whatever its size: it needs no time budget.
    bulk(dev, filters={"task": ["hello-world"]})  # the three runs and their three replays
    assert drain() == [6]
    assert all(Run.objects.get(pk=run.id).status == RunStatus.CANCELED for run in runs)


def test_canceled_runs_say_who_why_and_which_bulk_action(dev: Environment) -> None:
    run = factories.run("hello-world")
    action = bulk(dev, run_ids=[run.id])
    drain()
    event = RunEvent.objects.get(run=run, to_status=RunStatus.CANCELED)
    assert event.actor == "user:ada"
    assert event.reason == f"bulk action {action.id}: cleanup after incident 42"


def test_final_runs_are_skipped_and_unknown_ids_never_counted(dev: Environment) -> None:
    queued, done = factories.run("hello-world"), factories.run("hello-world")
    engine.cancel_run(run_id=done.id, actor="test")
    action = bulk(dev, run_ids=[queued.id, done.id, "run_doesnotexist"])
    drain()
    action.refresh_from_db()
    assert (action.total, action.processed, action.succeeded, action.skipped) == (2, 2, 1, 1)
    assert RunEvent.objects.filter(run=done, to_status=RunStatus.CANCELED).count() == 1  # not canceled again


def test_runs_of_another_environment_are_never_touched(dev: Environment, prod: Environment) -> None:
    mine, theirs = factories.run("hello-world", env="dev"), factories.run("hello-world", env="prod")
    drain_ids = [mine.id, theirs.id]
    bulk(dev, run_ids=drain_ids)
    drain()
    assert Run.objects.get(pk=theirs.id).status == RunStatus.QUEUED
    assert Run.objects.get(pk=mine.id).status == RunStatus.CANCELED


def test_a_crash_mid_chunk_redoes_only_that_chunk_from_the_cursor(dev: Environment, monkeypatch: Any) -> None:
    monkeypatch.setattr(bulk_engine, "CHUNK", 3)
    runs = [factories.run("hello-world") for _ in range(7)]
    action = bulk(dev, filters={"task": ["hello-world"]})
    assert work_bulk_actions(now=timezone.now()) == 3
    action.refresh_from_db()
    cursor = action.cursor
    assert cursor.endswith(runs[2].id)

    real_cancel_runs = bulk_engine.cancel_runs

    def dies_after_canceling(**kwargs: Any) -> list[str]:
        real_cancel_runs(**kwargs)
        raise SystemExit("engine killed")  # not an Exception: nothing catches it, as with a kill

    monkeypatch.setattr(bulk_engine, "cancel_runs", dies_after_canceling)
    with pytest.raises(SystemExit):
        work_bulk_actions(now=timezone.now())
    action.refresh_from_db()
    # The whole chunk rolled back: the runs canceled before the crash are queued again, the cursor unmoved.
    assert (action.cursor, action.processed, action.succeeded) == (cursor, 3, 3)
    assert Run.objects.get(pk=runs[3].id).status == RunStatus.QUEUED
    assert not RunEvent.objects.filter(run=runs[3], to_status=RunStatus.CANCELED).exists()

    monkeypatch.setattr(bulk_engine, "cancel_runs", real_cancel_runs)
    drain()  # a restarted engine picks it up from the stored cursor
    action.refresh_from_db()
    assert (action.status, action.processed, action.succeeded, action.skipped) == ("COMPLETED", 7, 7, 0)
    for run in runs:
        assert RunEvent.objects.filter(run=run, to_status=RunStatus.CANCELED).count() == 1


def test_a_bulk_replay_never_replays_its_own_replays_or_newer_runs(dev: Environment, monkeypatch: Any) -> None:
    monkeypatch.setattr(bulk_engine, "CHUNK", 2)  # many chunks: replays made early would be met later
    originals = [factories.run("hello-world", payload={"n": n}) for n in range(5)]
    action = bulk(dev, action="replay", filters={"task": ["hello-world"]})
    newer = factories.run("hello-world")  # triggered after the bulk action was created

    drain()
    action.refresh_from_db()
    assert (action.total, action.processed, action.succeeded) == (5, 5, 5)
    replays = Run.objects.filter(replayed_from__isnull=False)
    assert sorted(r.replayed_from_id for r in replays) == sorted(r.id for r in originals)
    assert not Run.objects.filter(replayed_from=newer).exists()
    assert all(replay.created_at > action.created_at for replay in replays)


def test_each_replay_says_which_bulk_action_made_it(dev: Environment) -> None:
    original = factories.run("hello-world", payload={"n": 1}, tags=["a"])
    action = bulk(dev, action="replay", run_ids=[original.id])
    drain()
    replay = Run.objects.get(replayed_from=original)
    assert (replay.payload, replay.tags, replay.trigger_source) == (original.payload, ["a"], "dashboard")
    event = RunEvent.objects.filter(run=replay).last()
    assert event is not None and event.actor == "user:ada"
    assert event.reason == f"replay of {original.id}: bulk action {action.id}: cleanup after incident 42"


def test_filters_are_applied_as_of_the_bulk_actions_creation(dev: Environment) -> None:
    now = timezone.now()
    insert_runs(dev, 3, RunStatus.QUEUED, now - timedelta(hours=3))  # outside "the last 1h"
    insert_runs(dev, 2, RunStatus.QUEUED, now - timedelta(minutes=30))
    insert_runs(dev, 4, RunStatus.EXECUTING, now - timedelta(minutes=20))
    action = bulk(dev, filters={"period": ["1h"], "status": ["QUEUED"]})
    drain()
    action.refresh_from_db()
    assert (action.processed, action.succeeded) == (2, 2)
    assert Run.objects.filter(status=RunStatus.QUEUED).count() == 3
    assert Run.objects.filter(status=RunStatus.EXECUTING).count() == 4


def test_the_oldest_open_bulk_action_goes_first_and_a_locked_one_is_skipped(dev: Environment) -> None:
    first_run, second_run = factories.run("hello-world"), factories.run("hello-world")
    first = bulk(dev, run_ids=[first_run.id])
    second = bulk(dev, run_ids=[second_run.id])
    work_bulk_actions(now=timezone.now())
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.processed, second.processed) == (1, 0)
    drain()
    assert BulkAction.objects.filter(status=BulkActionStatus.COMPLETED).count() == 2


def test_the_engine_tick_works_off_bulk_actions(dev: Environment) -> None:
    run = factories.run("hello-world", delay_until=timezone.now() + timedelta(hours=1))
    action = bulk(dev, run_ids=[run.id])
    engine.tick()
    engine.tick()
    action.refresh_from_db()
    assert action.status == BulkActionStatus.COMPLETED
    assert Run.objects.get(pk=run.id).status == RunStatus.CANCELED


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"action": "delete"}, "Unknown bulk action 'delete'"),
        ({"reason": "  "}, "needs a reason"),
        ({"run_ids": []}, "Select from 1 to 1000 runs"),
        ({"run_ids": ["run_x"] * 1001}, "Select from 1 to 1000 runs"),
    ],
)
def test_a_bulk_action_needs_a_known_action_a_reason_and_a_sane_selection(
    dev: Environment, fields: dict[str, Any], message: str
) -> None:
    given = {"environment": dev, "action": "cancel", "reason": "why", "username": "ada", **fields}
    with pytest.raises(engine.EngineError, match=message):
        create_bulk_action(**given)
    assert not BulkAction.objects.exists()


def test_a_bulk_action_keeps_its_user_and_filters(dev: Environment) -> None:
    user = User.objects.create_user(username="ada")
    at = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    action = create_bulk_action(
        environment=dev,
        action="replay",
        reason=" retry ",
        username="ada",
        user_id=user.id,
        filters={"status": ["FAILED"]},
        now=at,
    )
    action.refresh_from_db()
    assert (action.user_id, action.filters, action.run_ids, action.reason) == (
        user.id,
        {"status": ["FAILED"]},
        [],
        "retry",
    )
    assert (action.status, action.created_at) == (BulkActionStatus.PENDING, at)


def first_chunk_queries(env: Environment, size: int, monkeypatch: Any) -> int:
    """The queries of a bulk cancel's first chunk of `size` runs, a quarter of each status."""
    monkeypatch.setattr(bulk_engine, "CHUNK", size)
    task_id, start = f"bulk-{size}", timezone.now() - timedelta(hours=1)
    for index, status in enumerate([RunStatus.QUEUED, RunStatus.PENDING_VERSION, RunStatus.DEQUEUED, "EXECUTING"]):
        insert_runs(env, size // 4, status, start + timedelta(minutes=index), task_id=task_id)
    at = timezone.now()
    RunAttempt.objects.bulk_create(
        RunAttempt(run=run, number=1, status=run.status, started_at=at)
        for run in Run.objects.filter(task_identifier=task_id, status=RunStatus.EXECUTING)
    )
    insert_runs(env, 1, RunStatus.QUEUED, start + timedelta(minutes=9), task_id=task_id)  # one chunk short
    action = bulk(env, filters={"task": [task_id]})
    with CaptureQueriesContext(connection) as queries:
        assert work_bulk_actions(now=timezone.now()) == size
    action.refresh_from_db()
    assert (action.processed, action.succeeded, action.skipped) == (size, size, 0)
    assert Run.objects.filter(task_identifier=task_id, status=RunStatus.CANCELED).count() == size
    assert not RunAttempt.objects.filter(run__task_identifier=task_id, finished_at=None).exists()
    assert drain() == [1]
    return len(queries.captured_queries)


def test_a_chunk_of_cancels_issues_as_many_queries_at_any_size(dev: Environment, monkeypatch: Any) -> None:
    # One by one, a cancel was about ten queries (30 ms) per run: 10,000 runs took minutes.
    small = first_chunk_queries(dev, 8, monkeypatch)
    large = first_chunk_queries(dev, CHUNK, monkeypatch)
    assert small == large <= 20


def test_each_canceled_run_has_one_canceled_event_its_attempt_finished_and_its_task_revoked(
    dev: Environment, monkeypatch: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from celery import current_app

    revoked: list[Any] = []
    # Celery's, not ours: a broadcast no worker listens to here. The call says which tasks stop.
    monkeypatch.setattr(current_app.control, "revoke", lambda task_ids, **how: revoked.append((task_ids, how)))
    executing = factories.run("hello-world")
    engine.admit(now=timezone.now())
    assert engine.start_attempt(run_id=executing.id, worker="w1") is not None
    dequeued = factories.run("hello-world")
    engine.admit(now=timezone.now())
    queued = factories.run("hello-world")
    delayed = factories.run("hello-world", delay_until=timezone.now() + timedelta(hours=1))
    done = factories.run("hello-world")
    engine.cancel_run(run_id=done.id, actor="test")
    before = dict(Run.objects.values_list("id", "status"))
    assert before[executing.id] == "EXECUTING" and before[dequeued.id] == "DEQUEUED"
    action = bulk(dev, filters={"task": ["hello-world"]})

    with django_capture_on_commit_callbacks(execute=True):
        drain()

    action.refresh_from_db()
    assert (action.processed, action.succeeded, action.skipped) == (5, 4, 1)
    for run in (executing, dequeued, queued, delayed):
        run.refresh_from_db()
        assert run.status == RunStatus.CANCELED and run.finished_at is not None
        event = RunEvent.objects.get(run=run, to_status=RunStatus.CANCELED)
        assert (event.from_status, event.actor, event.reason) == (
            before[run.id],
            "user:ada",
            f"bulk action {action.id}: cleanup after incident 42",
        )
    assert RunEvent.objects.filter(run=done, to_status=RunStatus.CANCELED).count() == 1
    attempt = RunAttempt.objects.get(run=executing)
    assert attempt.status == RunStatus.CANCELED and attempt.finished_at is not None
    # The single cancel revokes a run holding a slot: so does the bulk, in one broadcast.
    assert len(revoked) == 1
    task_ids, how = revoked[0]
    assert sorted(task_ids) == sorted(celery_task_id(run.id, run.dispatch_count) for run in (executing, dequeued))
    assert how == {"terminate": True, "signal": "SIGTERM"}


def waiting_parent(task_id: str = "bulk-parent", children: int = 1) -> tuple[Run, list[Run]]:
    """A parent WAITING on `children` new QUEUED runs of hello-world, through the engine."""
    parent = factories.run(task_id)
    engine.admit(now=timezone.now())
    attempt = engine.start_attempt(run_id=parent.id, worker="w1")
    assert attempt is not None
    kids = [factories.run("hello-world", payload={"n": n}) for n in range(children)]
    engine.add_waitpoint(run_id=parent.id, sequence=1, child_ids=[kid.id for kid in kids])
    engine.suspend_run(run_id=parent.id, attempt=attempt.number)
    parent.refresh_from_db()
    assert parent.status == RunStatus.WAITING
    return parent, kids


def test_a_parent_waiting_on_canceled_children_resumes(dev: Environment) -> None:
    parent, children = waiting_parent(children=2)
    other, (its_child,) = waiting_parent("bulk-other-parent")
    action = bulk(dev, run_ids=[child.id for child in children])
    drain()
    action.refresh_from_db()
    assert (action.processed, action.succeeded) == (2, 2)
    parent.refresh_from_db()
    assert parent.status == RunStatus.QUEUED and parent.resuming
    assert not Waitpoint.objects.filter(run=parent, resolved_at=None).exists()
    other.refresh_from_db()
    assert other.status == RunStatus.WAITING  # its child was not canceled
    assert Run.objects.get(pk=its_child.id).status == RunStatus.QUEUED


def test_canceling_a_waiting_parent_cancels_its_children_and_counts_as_one_by_one(dev: Environment) -> None:
    parent, (selected, unselected) = waiting_parent(children=2)
    action = bulk(dev, run_ids=[parent.id, selected.id])
    drain()
    action.refresh_from_db()
    # As one cancel after another: the parent's cancel took its children with it, so the
    # selected child was already canceled when its turn came.
    assert (action.total, action.processed, action.succeeded, action.skipped) == (2, 2, 1, 1)
    parent_event = RunEvent.objects.get(run=parent, to_status=RunStatus.CANCELED)
    assert parent_event.reason == f"bulk action {action.id}: cleanup after incident 42"
    for child in (selected, unselected):
        event = RunEvent.objects.get(run=child, to_status=RunStatus.CANCELED)
        assert (event.actor, event.reason) == ("user:ada", f"its parent {parent.id} was canceled")
    assert Run.objects.get(pk=parent.id).status == RunStatus.CANCELED  # not resumed by its children
