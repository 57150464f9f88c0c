"""`manage.py prune`: finished runs older than N days go, in batches, and nothing else does."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

import example_tasks  # noqa: F401 - registers fan-out and hello-world
from runs import engine, packets, storage, worker
from runs.models import Batch, BatchStatus, Environment, Run, RunAttempt, RunEvent, Waitpoint
from runs.states import RunStatus
from tests import factories

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
OLD = T0 - timedelta(days=40)


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(OLD, tick=False) as traveller:
        yield traveller


def prune(*args: str) -> str:
    out = io.StringIO()
    call_command("prune", *args, stdout=out)
    return out.getvalue()


def work_everything(limit: int = 20) -> None:
    """Admit and execute runs in-process until nothing is left, like a worker with one slot."""
    for _ in range(limit):
        engine.admit(now=timezone.now())
        dequeued = list(Run.objects.filter(status=RunStatus.DEQUEUED).values_list("id", flat=True))
        if not dequeued:
            return
        for run_id in dequeued:
            worker.execute(run_id=run_id, hostname="w1")


def finished_run(**options: Any) -> Run:
    run = factories.run(**options)
    engine.cancel_run(run_id=run.id, actor="test")
    return run


def fan_out_tree() -> Run:
    """A parent that batch-triggered and waited on 3 children, all completed: runs, events,
    attempts, a waitpoint and a batch."""
    for task_id in ("fan-out", "hello-world"):
        factories.task_definition(task_id)
    parent = factories.run("fan-out", payload={"n": 3})
    work_everything()
    assert Run.objects.get(pk=parent.id).status == RunStatus.COMPLETED
    return parent


@pytest.mark.django_db
def test_old_finished_runs_go_with_their_events_attempts_waitpoints_and_empty_batch(
    dev: Environment, clock: time_machine.Traveller
) -> None:
    parent = fan_out_tree()
    old_ids = set(Run.objects.values_list("id", flat=True))
    assert len(old_ids) == 4 and Waitpoint.objects.exists() and Batch.objects.count() == 1
    clock.move_to(T0 - timedelta(days=10))
    recent = finished_run()
    clock.move_to(T0)

    output = prune("--older-than", "30d", "--batch-size", "2")

    assert set(Run.objects.values_list("id", flat=True)) == {recent.id}
    assert not RunEvent.objects.filter(run_id__in=old_ids).exists()
    assert not RunAttempt.objects.filter(run_id__in=old_ids).exists()
    assert not Waitpoint.objects.filter(run_id=parent.id).exists()
    assert not Batch.objects.exists()
    assert RunEvent.objects.filter(run=recent).exists()
    assert "deleted 2 runs (2 so far)" in output and "deleted 2 runs (4 so far)" in output
    assert "Deleted 4 runs" in output and "and 1 batches" in output


@pytest.mark.django_db
def test_unfinished_runs_are_never_touched_however_old(dev: Environment, clock: time_machine.Traveller) -> None:
    delayed = factories.run(delay_until=T0 + timedelta(days=1))
    queued = factories.run()
    clock.move_to(T0)
    before = {run.id: (run.status, run.updated_at) for run in Run.objects.all()}

    assert "Deleted 0 runs" in prune("--older-than", "1d")

    after = {run.id: (run.status, run.updated_at) for run in Run.objects.all()}
    assert after == before and {delayed.id, queued.id} == set(after)


@pytest.mark.django_db
def test_a_finished_run_that_an_unfinished_run_points_at_is_kept(
    dev: Environment, clock: time_machine.Traveller
) -> None:
    parent = finished_run()
    child = factories.run(parent_run_id=parent.id, delay_until=T0 + timedelta(days=1))
    replayed = finished_run()
    replay = engine.replay_run(run_id=replayed.id, actor="test", options=engine.TriggerOptions()).run
    waiting_parent = factories.run()
    done_child = finished_run(parent_run_id=waiting_parent.id)
    prunable = finished_run()
    clock.move_to(T0)

    prune("--older-than", "30d")

    kept = set(Run.objects.values_list("id", flat=True))
    assert kept == {parent.id, child.id, replayed.id, replay.id, waiting_parent.id, done_child.id}
    assert prunable.id not in kept


@pytest.mark.django_db
def test_a_finished_child_of_a_pruned_parent_loses_its_link_not_its_row(
    dev: Environment, clock: time_machine.Traveller
) -> None:
    parent = finished_run()
    clock.move_to(T0 - timedelta(days=5))
    child = finished_run(parent_run_id=parent.id)
    clock.move_to(T0)
    prune("--older-than", "30d")
    assert list(Run.objects.values_list("id", "parent_id")) == [(child.id, None)]


@pytest.mark.django_db
def test_offloaded_payloads_and_outputs_are_deleted_from_object_storage(
    dev: Environment, clock: time_machine.Traveller, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.RUNYARD_PACKET_OFFLOAD_BYTES = 16
    factories.task_definition("hello-world")
    big = factories.superjson({"name": "x" * 100})
    path, kind = packets.offload(big, packets.SUPERJSON, environment_id=dev.id, path="trigger/packet_a/payload.json")
    run = engine.trigger(
        environment=dev,
        task_id="hello-world",
        payload=path,
        payload_type=kind,
        options=engine.TriggerOptions(),
        actor="t",
    ).run
    work_everything()
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED and run.output_type == packets.STORE
    keys = [packets.storage_key(dev.id, path), packets.storage_key(dev.id, run.output or "")]
    assert all(storage.exists(key) for key in keys)
    clock.move_to(T0)

    with django_capture_on_commit_callbacks(execute=True):  # packets go once the batch commits
        prune("--older-than", "30d")

    assert not Run.objects.exists()
    assert not any(storage.exists(key) for key in keys)


@pytest.mark.django_db
def test_dry_run_counts_and_deletes_nothing(dev: Environment, clock: time_machine.Traveller) -> None:
    fan_out_tree()
    finished_run()
    clock.move_to(T0)
    output = prune("--older-than", "30d", "--dry-run")
    assert "Would delete 5 runs" in output and "0 finished batches" in output
    assert Run.objects.count() == 5 and Batch.objects.count() == 1


@pytest.mark.django_db
def test_finished_batches_that_still_have_runs_stay(dev: Environment, clock: time_machine.Traveller) -> None:
    fan_out_tree()
    clock.move_to(T0)
    child = Run.objects.filter(task_identifier="hello-world").first()
    assert child is not None
    Run.objects.filter(pk=child.pk).update(created_at=T0, finished_at=T0)  # a child too recent to prune
    prune("--older-than", "30d")
    assert Batch.objects.filter(status=BatchStatus.COMPLETED).count() == 1 and Run.objects.count() == 1


@pytest.mark.django_db
def test_bad_arguments_are_refused() -> None:
    with pytest.raises(CommandError, match="--older-than must be a duration"):
        prune("--older-than", "30 days")
    with pytest.raises(CommandError, match="--batch-size must be at least 1"):
        prune("--older-than", "30d", "--batch-size", "0")


@pytest.mark.django_db
def test_each_batch_takes_row_locks_only(dev: Environment, clock: time_machine.Traveller) -> None:
    """Inside a batch's transaction, runs_run holds no lock that would block other writers."""
    finished_run()
    clock.move_to(T0)
    modes: list[str] = []

    def after_delete(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        if sql.lstrip().startswith(("DELETE FROM runs_run", "WITH doomed")):
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT mode FROM pg_locks WHERE pid = pg_backend_pid() AND relation = 'runs_run'::regclass"
                )
                modes.extend(row[0] for row in cursor.fetchall())
        return result

    with connection.execute_wrapper(after_delete):
        prune("--older-than", "30d")
    assert modes and set(modes) <= {"AccessShareLock", "RowShareLock", "RowExclusiveLock"}


@pytest.mark.django_db(transaction=True)
def test_a_run_locked_by_someone_else_is_skipped_without_waiting(
    dev: Environment, clock: time_machine.Traveller
) -> None:
    locked, free = finished_run(), finished_run()
    clock.move_to(T0)
    done = threading.Event()

    def prune_in_thread() -> None:
        try:
            prune("--older-than", "30d")
            done.set()
        finally:
            connection.close()

    with psycopg.connect(_url(), autocommit=False) as other:
        other.execute("SELECT 1 FROM runs_run WHERE id = %s FOR UPDATE", [locked.id])
        thread = threading.Thread(target=prune_in_thread, daemon=True)
        thread.start()
        assert done.wait(20), "prune waited on a row lock"
        other.rollback()
    assert set(Run.objects.values_list("id", flat=True)) == {locked.id}
    assert not Run.objects.filter(pk=free.id).exists()


def _url() -> str:
    params = connection.get_connection_params()
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in params.items() if isinstance(v, str | int)})


def test_every_relation_to_run_is_handled() -> None:
    """A new model pointing at Run must say what happens on delete in a way prune knows."""
    from django.db import models

    from runs.management.commands import prune as command

    assert command.SELF_LINKS == ["parent_id", "root_id", "replayed_from_id"]
    for relation in Run._meta.related_objects:
        assert relation.on_delete in (models.CASCADE, models.SET_NULL), relation
